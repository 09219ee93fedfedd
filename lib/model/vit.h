/* Internal: the ViT/DeiT architecture description, its parameters, and the float
 * forward pass shared by the float model, calibration and fake quantization. */
#ifndef REPQ_MODEL_VIT_H
#define REPQ_MODEL_VIT_H

#include "core/object.h"
#include "model/preprocess.h"

typedef struct repq_vit_arch {
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
} repq_vit_arch;

static inline int32_t repq_vit_patches(const repq_vit_arch *a)
{
    int32_t side = a->img_size / a->patch_size;
    return side * side;
}
static inline int32_t repq_vit_tokens(const repq_vit_arch *a) { return repq_vit_patches(a) + 1; }
static inline int32_t repq_vit_patch_dim(const repq_vit_arch *a)
{
    return a->in_chans * a->patch_size * a->patch_size;
}

typedef struct repq_vit_block {
    float *norm1_w, *norm1_b;
    float *qkv_w, *qkv_b;   /* [3D, D], [3D] */
    float *proj_w, *proj_b; /* [D, D], [D] */
    float *norm2_w, *norm2_b;
    float *fc1_w, *fc1_b;   /* [H, D], [H] */
    float *fc2_w, *fc2_b;   /* [D, H], [D] */
} repq_vit_block;

/* All parameters live in one arena so that a copy is one memcpy plus a rebase. */
typedef struct repq_vit_params {
    float *arena;
    size_t arena_floats;
    float *patch_w, *patch_b; /* [D, C*P*P] (conv weight flattened as c, row, col), [D] */
    float *cls_token;         /* [D] */
    float *pos_embed;         /* [T, D] */
    float *norm_w, *norm_b;
    float *head_w, *head_b;   /* [K, D], [K] */
    repq_vit_block *blocks;   /* [depth] */
} repq_vit_params;

/* Architecture from the JSON text of a safetensors "architecture" entry, with
 * preprocessing from an optional "preprocess" entry (NULL: ImageNet defaults). Every
 * field is range-checked, since it comes from a file. */
repq_status repq_vit_arch_from_json(repq_object *err, const char *arch_json,
                                    const char *preprocess_json, repq_vit_arch *out);
/* One of the named presets; REPQ_ERR_UNSUPPORTED for an unknown name. */
repq_status repq_vit_arch_from_preset(repq_object *err, const char *name, repq_vit_arch *out);

/* Number of floats of all parameters, or false on overflow. */
bool repq_vit_param_count(const repq_vit_arch *a, size_t *out_floats);
/* Allocate the arena and block table and point every field into it (zeroed). */
repq_status repq_vit_params_alloc(repq_object *err, const repq_allocator *al,
                                  const repq_vit_arch *a, repq_vit_params *p);
repq_status repq_vit_params_copy(repq_object *err, const repq_allocator *al,
                                 const repq_vit_arch *a, const repq_vit_params *src,
                                 repq_vit_params *dst);
void repq_vit_params_release(const repq_allocator *al, repq_vit_params *p);

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
    REPQ_QP_HEAD_IN = 9,  /* final LayerNorm of the class token (once, block -1) */
    REPQ_QP_COUNT = 10
} repq_qpoint;

/* A product whose operands come out of quantization points, which a hook may compute
 * itself (from the codes) instead of the forward's product of the float values. Every such operand
 * feeds exactly one product, named here by the point of its left operand `in`:
 *   PATCH_IN, QKV_IN, PROJ_IN, FC1_IN, FC2_IN, HEAD_IN: that point's linear layer,
 *       out[i][j] (+)= x[row0 + i] . W[col0 + j] + bias[j] for i < rows, j < cols
 *       (qkv: col0 selects q, k or v); `accumulate` adds into out (the residual
 *       stream), as out += (x W^T + bias);
 *   Q: the scores of one image and head, out = q k^T / sqrt(head_dim), [T, T];
 *   ATTN: attention times v of one image and head, out = a v, [T, head_dim].
 * `in` rows are rows of the activation the hook last saw at that point. */
typedef struct repq_vit_product {
    int32_t block; /* -1 for the patch embedding and the head */
    repq_qpoint in;
    size_t row0, rows, col0, cols; /* linear layers */
    size_t image, head;            /* Q, ATTN */
    const float *bias;             /* linear layers: [cols] */
    float *out;
    size_t ldout;
    bool accumulate;
} repq_vit_product;

/* Called at every quantization point with the activation as a row-major
 * [rows, cols] matrix that the hook may rewrite in place (fake quantization) or
 * only observe (calibration). block is -1 for the patch input and the head input.
 * `product`, if set, is offered every product of quantized operands first; it sets
 * *done when it wrote the result, else the forward computes the product itself. */
typedef struct repq_vit_hook {
    repq_status (*act)(void *user, int32_t block, repq_qpoint point, float *x, size_t rows,
                       size_t cols);
    void *user;
    /* Compute every matrix product as the exact sum rounded once to float (double
     * accumulation) instead of with sgemm: quantized forwards then give the same codes
     * whatever OpenBLAS kernel the CPU gets, and calibration the same qmodel. */
    bool exact_products;
    repq_status (*product)(void *user, const repq_vit_product *p, bool *done);
} repq_vit_hook;

/* Float forward of `n` images. `images` are [n, C, H, W], U8 pixels if `pixels_u8`
 * else preprocessed floats. Writes logits [n, num_classes]. `hook` may be NULL.
 * Allocates its scratch with `al`. */
repq_status repq_vit_forward(repq_object *err, const repq_allocator *al, const repq_vit_arch *a,
                             const repq_vit_params *p, const void *images, bool pixels_u8,
                             size_t n, const repq_vit_hook *hook, float *logits);

/* One transformer block applied in place to x [n, tokens, embed_dim] (for tests). */
repq_status repq_vit_block_apply(repq_object *err, const repq_allocator *al, const repq_vit_arch *a,
                                 const repq_vit_block *blk, float *x, size_t n);

/* Multiply-adds x 2 of one image's forward (linear layers and attention products). */
double repq_vit_flops(const repq_vit_arch *a);

#endif
