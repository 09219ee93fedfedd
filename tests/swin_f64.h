/* A float64 Swin Transformer forward for the tests, written from timm's SwinTransformer
 * semantics and apart from lib/model: every step is the literal one in double
 * (torch.roll as a copy, window_partition / window_reverse as reshapes, the attention
 * mask built from timm's img_mask slices, patch merging as timm's x0..x3 slices, exact
 * exp, erf and sqrt; products with dgemm). It only takes the architecture description
 * (repq_swin_arch) from the library; the window rule is recomputed here (timm's: a
 * stage whose grid is at most the window uses the grid as window and no shift).
 *
 * Activations are [n, tokens, channels] with tokens in raster order (y * side + x). */
#ifndef REPQ_TESTS_SWIN_F64_H
#define REPQ_TESTS_SWIN_F64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"
#include "model/swin_arch.h"

/* One block's parameters, PyTorch layouts ([out, in] weights). qkv_b may be NULL (no
 * qkv bias); rel_table is [(2w - 1)^2, heads] of the block's effective window w. */
typedef struct swin_f64_block {
    const double *norm1_w, *norm1_b;
    const double *qkv_w, *qkv_b;
    const double *rel_table;
    const double *proj_w, *proj_b;
    const double *norm2_w, *norm2_b;
    const double *fc1_w, *fc1_b;
    const double *fc2_w, *fc2_b;
} swin_f64_block;

typedef struct swin_f64_stage {
    const double *merge_norm_w, *merge_norm_b; /* [4 d_in], stages >= 1 */
    const double *merge_reduction_w;           /* [2 d_in, 4 d_in] */
    swin_f64_block *blocks;                    /* [depths[s]] */
} swin_f64_stage;

/* The whole model's parameters as doubles. Fill the pointers from any source (the
 * library's parameters converted to double, say); swin_f64_params_load fills them from a
 * file and owns the memory then. */
typedef struct swin_f64_params {
    const double *patch_w, *patch_b;           /* [C0, 3, P, P], [C0] */
    const double *patch_norm_w, *patch_norm_b; /* [C0] */
    swin_f64_stage stages[REPQ_SWIN_MAX_STAGES];
    const double *norm_w, *norm_b;             /* [d_last] */
    const double *head_w, *head_b;             /* [num_classes, d_last] */
    double *owned;                             /* set by swin_f64_params_load */
    swin_f64_block *owned_blocks;
} swin_f64_params;

/* Every parameter of `a` from `file` by timm's names (current layout, `layers.S.downsample`
 * for S >= 1, `head.fc`; with `legacy`, `layers.{S-1}.downsample` and `head`), F32, F16 or
 * BF16 converted exactly to double. false (with a line on stderr) on a missing tensor, a
 * wrong element count or dtype, or out of memory. */
bool swin_f64_params_load(const repq_swin_arch *a, const repq_st_file *file, bool legacy, swin_f64_params *p);
/* Frees what swin_f64_params_load allocated. */
void swin_f64_params_free(swin_f64_params *p);

/* logits [n, num_classes] of n U8 images [n, 3, img, img]: (x * pixel_scale - mean) / std,
 * patch embedding, stages, final LayerNorm, average pooling, head. false when out of
 * memory. */
bool swin_f64_forward(const repq_swin_arch *a, const swin_f64_params *p, const uint8_t *images, size_t n,
                      double *logits);

/* Block `block` of stage `stage` (shifted when block is odd, by timm's rule) applied in
 * place to x [n, side * side, dim] of that stage. false when out of memory or for a stage
 * or block out of range. */
bool swin_f64_block_apply(const repq_swin_arch *a, int32_t stage, int32_t block, const swin_f64_block *bp,
                          double *x, size_t n);

#endif
