/* Internal: the architecture description of every family, the parameter view, the
 * quantization points and the hooks of the float forward (net.h walks the network). */
#ifndef REPQ_MODEL_ARCH_H
#define REPQ_MODEL_ARCH_H

#include "core/object.h"
#include "model/swin_arch.h"
#include "repq/model.h" /* repq_family */
#include "model/preprocess.h"

/* The fields every family has, read family-neutrally where a family has several
 * values: depth counts all transformer blocks, and embed_dim, num_heads and mlp_hidden
 * are those of the first stage. `swin` holds the whole Swin description. */
typedef struct repq_arch {
    int32_t family;
    int32_t img_size;
    int32_t patch_size;
    int32_t in_chans;
    int32_t num_classes;
    int32_t embed_dim;
    int32_t depth;
    int32_t num_heads;
    int32_t mlp_hidden;
    float norm_eps;
    /* Preprocessing of U8 pixels: ((x * pixel_scale) - mean[c]) / std[c]. */
    float pixel_scale;
    float mean[3];
    float std[3];
    repq_image_prep image; /* resize and crop of image files (lib/image) */
    repq_swin_arch swin;
} repq_arch;

/* The description of a Swin architecture (already checked). */
void repq_arch_from_swin(const repq_swin_arch *s, repq_arch *out);
/* Architecture from a file's metadata: "format" timm.swin_transformer (or an
 * architecture JSON with "family": "swin") is a Swin, anything else a ViT. */
repq_status repq_arch_from_metadata(repq_object *err, const char *format, const char *arch_json,
                                    const char *preprocess_json, repq_arch *out);

static inline int32_t repq_vit_patches(const repq_arch *a)
{
    int32_t side = a->img_size / a->patch_size;
    return side * side;
}
static inline int32_t repq_vit_tokens(const repq_arch *a) { return repq_vit_patches(a) + 1; }
static inline int32_t repq_vit_patch_dim(const repq_arch *a)
{
    return a->in_chans * a->patch_size * a->patch_size;
}

typedef struct repq_block_params {
    float *norm1_w, *norm1_b;
    float *qkv_w, *qkv_b;   /* [3D, D], [3D] */
    float *proj_w, *proj_b; /* [D, D], [D] */
    float *norm2_w, *norm2_b;
    float *fc1_w, *fc1_b;   /* [H, D], [H] */
    float *fc2_w, *fc2_b;   /* [D, H], [D] */
} repq_block_params;

/* All parameters live in one arena so that a copy is one memcpy plus a rebase. */
typedef struct repq_params {
    float *arena;
    size_t arena_floats;
    float *patch_w, *patch_b; /* [D, C*P*P] (conv weight flattened as c, row, col), [D] */
    float *cls_token;         /* [D] */
    float *pos_embed;         /* [T, D] */
    float *norm_w, *norm_b;
    float *head_w, *head_b;   /* [K, D], [K] */
    repq_block_params *blocks;   /* [depth] */
} repq_params;

/* Architecture from the JSON text of a safetensors "architecture" entry, with
 * preprocessing from an optional "preprocess" entry (NULL: ImageNet defaults). Every
 * field is range-checked, since it comes from a file. */
repq_status repq_arch_from_json(repq_object *err, const char *arch_json,
                                    const char *preprocess_json, repq_arch *out);
/* One of the named presets; REPQ_ERR_UNSUPPORTED for an unknown name. */
repq_status repq_arch_from_preset(repq_object *err, const char *name, repq_arch *out);

/* The places where quantized inference quantizes an activation. The values index
 * per-block quantizer tables and are stored in files: never renumber. */
typedef enum repq_qpoint {
    REPQ_QP_PATCH_IN = 0, /* im2col of the preprocessed image (once, block -1) */
    REPQ_QP_QKV_IN = 1,   /* post-LayerNorm 1 */
    REPQ_QP_Q = 2,
    REPQ_QP_K = 3,
    REPQ_QP_V = 4,
    REPQ_QP_ATTN = 5,     /* post-softmax probabilities, [B*H*T, T] */
    REPQ_QP_PROJ_IN = 6,
    REPQ_QP_FC1_IN = 7,   /* post-LayerNorm 2 */
    REPQ_QP_FC2_IN = 8,   /* post-GELU */
    REPQ_QP_HEAD_IN = 9,  /* final LayerNorm, pooled (once, block -1) */
    REPQ_QP_MERGE_IN = 10, /* post-LayerNorm of patch merging (Swin; unit = the stage it starts) */
    REPQ_QP_COUNT = 11
} repq_qpoint;

/* A product whose operands come out of quantization points, which a hook may compute
 * itself (from the codes) instead of the forward's product of the float values. Every such operand
 * feeds exactly one product, named here by the point of its left operand `in`:
 *   PATCH_IN, QKV_IN, PROJ_IN, FC1_IN, FC2_IN, HEAD_IN, MERGE_IN: that point's linear layer,
 *       out[i][j] (+)= x[row0 + i] . W[col0 + j] + bias[j] for i < rows, j < cols
 *       (qkv: col0 selects q, k or v); `accumulate` adds into out (the residual
 *       stream), as out += (x W^T + bias);
 *   Q: the scores of one image and head (and window), out = q k^T / sqrt(head_dim)
 *       (q already scaled: q k^T) + score_bias, [T, T];
 *   ATTN: attention times v of one image and head (and window), out = a v, [T, head_dim].
 * The attention of image b, head h, window w is the [T, T] block at
 * ((b heads + h) windows + w) T^2 of the activation at ATTN.
 * `in` rows are rows of the activation the hook last saw at that point. */
typedef struct repq_product {
    const struct repq_net_node *node; /* the node computing it */
    int32_t slot;   /* activation slot of the left operand */
    repq_qpoint in; /* its point */
    size_t row0, rows, col0, cols; /* linear layers */
    size_t image, head;            /* Q, ATTN */
    /* Q, ATTN of a windowed block: the window (windows in window order), its token rows
     * within the image (`token_rows`, `tokens` of them) and, for Q, the [tokens, tokens]
     * relative position bias and mask (0 or REPQ_SWIN_MASK; NULL without shift) added,
     * in that order, to the scaled scores. Global attention: window and tokens 0, the
     * pointers NULL (the product covers all of the node's tokens). */
    size_t window, tokens;
    const int32_t *token_rows;
    const float *score_bias, *score_mask;
    const float *bias;             /* linear layers: [cols] */
    float *out;
    size_t ldout;
    bool accumulate;
} repq_product;

/* Called at every activation slot (net.h) with the activation as a row-major
 * [rows, cols] matrix that the hook may rewrite in place (fake quantization) or
 * only observe (calibration).
 * `product`, if set, is offered every product of quantized operands first; it sets
 * *done when it wrote the result, else the forward computes the product itself. */
typedef struct repq_hook {
    repq_status (*act)(void *user, int32_t slot, float *x, size_t rows, size_t cols);
    void *user;
    /* Compute every matrix product as the exact sum rounded once to float (double
     * accumulation) instead of with sgemm: quantized forwards then give the same codes
     * whatever OpenBLAS kernel the CPU gets, and calibration the same qmodel. */
    bool exact_products;
    repq_status (*product)(void *user, const repq_product *p, bool *done);
    /* GELU as the integer session computes it (repq_gelu_quartic_one) instead of the
     * erf form: set by the forwards that model the session. */
    bool session_gelu;
} repq_hook;


#endif
