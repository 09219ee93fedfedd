/* A small float Swin checkpoint with random weights, written for tests that need a
 * Swin fast enough to run hundreds of times (allocation-failure injection) or to edit
 * (hostile checkpoints). */
#ifndef REPQ_TESTS_SWIN_SMALL_FILE_H
#define REPQ_TESTS_SWIN_SMALL_FILE_H

#include <stdbool.h>
#include <stdint.h>

#include "repq/repq.h"

/* 32x32 images, patches of 2 (a 16x16 grid), windows of 4 (shifted by 2 on odd blocks),
 * depths [2, 2], heads [1, 2], embed_dim 8, mlp_ratio 2, 3 classes. */
#define SWIN_SMALL_ARCH                                                                                          \
    "{\"img_size\": 32, \"patch_size\": 2, \"in_chans\": 3, \"num_classes\": 3, \"embed_dim\": 8, "              \
    "\"depths\": [2, 2], \"num_heads\": [1, 2], \"window_size\": 4, \"mlp_ratio\": 2.0, \"qkv_bias\": true, "   \
    "\"global_pool\": \"avg\", \"norm_eps\": 1e-05, \"act\": \"gelu_erf\", \"patch_norm\": true, \"ape\": false}"

/* Write a float checkpoint of architecture `arch_json` (timm.swin_transformer, timm's
 * current layout, F32) with weights drawn from `seed`: LayerNorm weights near 1, other
 * tensors small. With `buffers`, also timm's old buffers: every block's
 * attn.relative_position_index and every shifted block's attn_mask. */
repq_status swin_small_write(const char *path, const char *arch_json, uint64_t seed, bool buffers);

/* timm's attention mask of a shifted block on a g x g grid with windows of w shifted by
 * sh, [(g / w)^2, w^2, w^2] (0 or -100), and its relative_position_index for windows of
 * w, [w^2, w^2]: recomputed here from timm's definition, independently of the library.
 * NULL when out of memory; free with free(). */
float *swin_timm_attn_mask(int g, int w, int sh);
int64_t *swin_timm_relative_index(int w);

#endif
