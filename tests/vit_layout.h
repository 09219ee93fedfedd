/* The ViT layout of docs/format.md, written out for tests: they check the library's
 * network description against it rather than reuse it. */
#ifndef REPQ_TESTS_VIT_LAYOUT_H
#define REPQ_TESTS_VIT_LAYOUT_H

#include "model/arch.h"

/* Slots per row of a ViT qmodel's activation table ("activations" in the file): the
 * points PATCH_IN..HEAD_IN. */
#define VIT_ACT_ROW 10

/* Index of a quantization point in a ViT qmodel's activation table: a row per block,
 * then one row for the patch and head inputs. */
static inline size_t vit_act_index(const repq_arch *a, int32_t block, repq_qpoint pt)
{
    return (size_t)(block < 0 ? a->depth : block) * VIT_ACT_ROW + (size_t)pt;
}

/* Linear layer ids: 0 patch embedding, 1 + 4 b + {0 qkv, 1 proj, 2 fc1, 3 fc2}, last head. */
static inline int32_t vit_linear_id(int32_t block, int32_t which) { return 1 + 4 * block + which; }

#endif
