/* Internal: the Swin Transformer architecture (timm's SwinTransformer), its presets, its
 * JSON metadata, and the names and shapes of its tensors in timm's two layouts.
 *
 * Supported: square images, patch embedding with LayerNorm, stages of blocks with window
 * attention (relative position bias per block), shifted windows on odd blocks, patch
 * merging (2x2 concat, LayerNorm, bias-free reduction to 2C) between stages, final
 * LayerNorm, average pooling, linear head; GELU (erf). Not supported, refused when a file
 * asks for it: absolute position embedding (ape), patch embedding without LayerNorm
 * (patch_norm false), other pooling, per-stage window sizes, windows that do not tile a
 * stage's grid (timm would pad). Pure functions of their inputs; safe from any thread.
 */
#ifndef REPQ_MODEL_SWIN_ARCH_H
#define REPQ_MODEL_SWIN_ARCH_H

#include "core/object.h"
#include "io/safetensors.h"
#include "model/swin_geometry.h"

#define REPQ_SWIN_MAX_STAGES 8

typedef struct repq_swin_arch {
    int32_t img_size; /* square images */
    int32_t patch_size;
    int32_t in_chans;
    int32_t num_classes;
    int32_t embed_dim; /* stage s has embed_dim << s channels */
    int32_t stages;
    int32_t depths[REPQ_SWIN_MAX_STAGES];
    int32_t num_heads[REPQ_SWIN_MAX_STAGES];
    int32_t mlp_hidden[REPQ_SWIN_MAX_STAGES]; /* int(dim(s) * mlp_ratio), exact */
    int32_t window_h, window_w;               /* the target window of the file */
    bool qkv_bias;
    float norm_eps;
    /* Preprocessing of U8 pixels: ((x * pixel_scale) - mean[c]) / std[c]. timm's presets
     * also resize and center-crop with crop_pct 0.9, bicubic: done by the caller. */
    float pixel_scale;
    float mean[3];
    float std[3];
} repq_swin_arch;

static inline int32_t repq_swin_stage_dim(const repq_swin_arch *a, int32_t stage)
{
    return a->embed_dim << stage;
}
/* Side of stage `stage`'s token grid: (img / patch) >> stage (patch merging at the start
 * of every stage after the first halves it). */
static inline int32_t repq_swin_stage_grid(const repq_swin_arch *a, int32_t stage)
{
    return (a->img_size / a->patch_size) >> stage;
}
/* The windows of block `block` of stage `stage` (timm's rule, swin_geometry.h). */
static inline repq_swin_window repq_swin_block_window(const repq_swin_arch *a, int32_t stage, int32_t block)
{
    const int32_t g = repq_swin_stage_grid(a, stage);
    return repq_swin_window_calc(g, g, a->window_h, a->window_w, block % 2 == 1);
}

/* Architecture from the JSON text of a safetensors "architecture" entry (format
 * "timm.swin_transformer": timm's argument names img_size, patch_size, in_chans,
 * num_classes, embed_dim, depths, num_heads, window_size (integer or [h, w]), mlp_ratio,
 * qkv_bias, plus norm_eps, act, global_pool, patch_norm, ape), with preprocessing from
 * an optional "preprocess" entry (NULL: ImageNet mean/std, scale 1/255). Every field is
 * range-checked for hostile files. Errors: REPQ_ERR_FORMAT (no or malformed metadata,
 * missing or mistyped field), REPQ_ERR_UNSUPPORTED (out of range, inconsistent, or a
 * feature listed above as refused). */
repq_status repq_swin_arch_from_json(repq_object *err, const char *arch_json, const char *preprocess_json,
                                     repq_swin_arch *out);
/* swin_tiny_patch4_window7_224, swin_small_patch4_window7_224 or
 * swin_base_patch4_window7_224 (timm's widths, depths and heads, 1000 classes, norm eps
 * 1e-5, ImageNet mean/std); REPQ_ERR_UNSUPPORTED for any other name. */
repq_status repq_swin_arch_from_preset(repq_object *err, const char *name, repq_swin_arch *out);
/* Checks a filled-in description as repq_swin_arch_from_json does (for presets and
 * callers that build one). Errors: REPQ_ERR_UNSUPPORTED with the reason. */
repq_status repq_swin_arch_check(repq_object *err, const repq_swin_arch *a);

/* Where patch merging lives in a file: timm >= 0.9 puts it at the start of stage S
 * (`layers.S.downsample`, S >= 1) and names the head `head.fc`; timm < 0.9 and the
 * original release put it at the end of stage S - 1 (`layers.{S-1}.downsample`) and name
 * the head `head`. Blocks are `layers.S.blocks.B` in both. */
typedef enum repq_swin_layout {
    REPQ_SWIN_LAYOUT_TIMM = 0,
    REPQ_SWIN_LAYOUT_LEGACY = 1
} repq_swin_layout;

/* What a parameter tensor is, independent of its name. */
typedef enum repq_swin_param {
    REPQ_SWIN_PATCH_W, REPQ_SWIN_PATCH_B, /* [C0, in_chans, P, P], [C0] */
    REPQ_SWIN_PATCH_NORM_W, REPQ_SWIN_PATCH_NORM_B,
    REPQ_SWIN_NORM1_W, REPQ_SWIN_NORM1_B,
    REPQ_SWIN_QKV_W, REPQ_SWIN_QKV_B, /* [3d, d], [3d] (no bias unless qkv_bias) */
    REPQ_SWIN_REL_BIAS_TABLE,         /* [(2wh-1)(2ww-1), heads] of the block's effective window */
    REPQ_SWIN_PROJ_W, REPQ_SWIN_PROJ_B,
    REPQ_SWIN_NORM2_W, REPQ_SWIN_NORM2_B,
    REPQ_SWIN_FC1_W, REPQ_SWIN_FC1_B, /* [hidden, d], [hidden] */
    REPQ_SWIN_FC2_W, REPQ_SWIN_FC2_B, /* [d, hidden], [d] */
    REPQ_SWIN_MERGE_NORM_W, REPQ_SWIN_MERGE_NORM_B, /* [4 d_in] */
    REPQ_SWIN_MERGE_REDUCTION_W,                    /* [2 d_in, 4 d_in], no bias */
    REPQ_SWIN_NORM_W, REPQ_SWIN_NORM_B,             /* final, [d_last] */
    REPQ_SWIN_HEAD_W, REPQ_SWIN_HEAD_B              /* [num_classes, d_last] */
} repq_swin_param;

#define REPQ_SWIN_NAME_CAPACITY 80

typedef struct repq_swin_tensor {
    char name[REPQ_SWIN_NAME_CAPACITY];
    repq_swin_param param;
    int32_t stage; /* the stage the tensor serves: 0 for the patch embedding, S for the merging
                    * that starts stage S (in either layout), -1 for the final norm and head */
    int32_t block; /* -1 outside blocks */
    int32_t ndim;
    int64_t shape[4];
    size_t numel;
} repq_swin_tensor;

/* The parameter tensors of `a` in `layout`, in forward order (patch embedding, then per
 * stage its merging and its blocks, final norm, head). Writes min(count, capacity)
 * entries to `out` (which may be NULL when capacity is 0) and returns the count. */
size_t repq_swin_tensors(const repq_swin_arch *a, repq_swin_layout layout, repq_swin_tensor *out,
                         size_t capacity);

/* Total number of parameters (the sum of the tensors' numel). */
size_t repq_swin_param_count(const repq_swin_arch *a);

/* The layout of `file`: the one in which every parameter tensor of `a` is present.
 * Errors: REPQ_ERR_FORMAT naming the first tensor of the timm layout that is missing
 * when neither is complete. Shapes and dtypes are not checked here. */
repq_status repq_swin_layout_detect(repq_object *err, const repq_swin_arch *a, const repq_st_file *file,
                                    repq_swin_layout *out);

/* Older files carry the buffers layers.S.blocks.B.attn.relative_position_index (integer,
 * [area, area]) and layers.S.blocks.B.attn_mask (float, [windows, area, area], 0 or -100,
 * shifted blocks only). Where present they must equal what swin_geometry computes; they
 * are never used for indexing. Errors: REPQ_ERR_FORMAT naming the buffer and the first
 * difference (wrong dtype, shape or value, or a mask on a block that does not shift),
 * REPQ_ERR_NOMEM. `al` provides scratch. */
repq_status repq_swin_buffers_check(repq_object *err, const repq_allocator *al, const repq_swin_arch *a,
                                    const repq_st_file *file);

#endif
