/* Internal: what every session of one qmodel shares, read-only: packed weights, the
 * zero-point corrections and scales of each linear layer, the activation quantizers as
 * the kernels take them, attention and window tables. Built by the first session of a
 * qmodel and kept by the qmodel while any session uses it, so that N sessions (say one
 * per thread) hold one copy of the weights and N sets of scratch. */
#ifndef REPQ_INFER_SHARED_WEIGHTS_H
#define REPQ_INFER_SHARED_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/object.h"
#include "kernels/quantize_f32.h"
#include "kernels/softmax_log2.h"
#include "model/qmodel.h"

/* A uniform activation quantizer, or the fine grid of a two-region one: codes in
 * [0, max_code]. */
typedef struct aq {
    float s;
    int32_t z, bits, max_code;
} aq;

/* A linear layer over u8 codes of one input quantizer (see quantize_f32.h). */
typedef struct qlin {
    size_t n, k;
    bool nibbles; /* weights of <= 4 bits, packed two per byte (kernels/gemm_u4.h) */
    void *packed;
    int32_t *colmul, *colconst;
    float *scale;
    const float *bias; /* the qmodel's fq_params (read-only, shared) */
} qlin;

typedef struct qblock {
    const repq_block_params *p; /* LayerNorm parameters from the qmodel's fq_params */
    size_t t, d, heads, hd, hidden; /* token rows per image, widths */
    /* Window attention (Swin): `windows` windows of `area` tokens through the row map;
     * the scores run on a grid 2^score_shift finer than s_q s_k, where bias holds the
     * relative position bias per head ([heads][area][area]) and region (NULL without
     * shift) the mask regions of the rows. Global attention: one window of t. */
    bool windowed, q_scaled;
    size_t area, windows;
    int32_t *rows, *region, *bias;
    int32_t mask; /* timm's additive -100 between regions, on the score grid */
    int score_shift;
    aq qkv_in, q, k, v, proj_in, fc1_in, fc2_in;
    /* fc2's input quantizer as the fused fc1 epilogue takes it; when two-region,
     * fc2_in is its fine grid (what fc2's zero-point corrections use). */
    repq_gelu_codes fc2_codes;
    qlin lq, lk, lv, proj, fc1, fc2;
    /* q k^T: k codes become s8 by subtracting koff; colmul = koff - z_k. */
    int32_t koff, qk_colmul, qk_const; /* qk_const = -hd * z_q * qk_colmul */
    repq_log2softmax_params sm;
    int frac_bits;
    double av_even, av_odd; /* attention x V: level of code 0 / 1 at 2^0, times s_v 2^-2F */
} qblock;

typedef struct repq_shared_weights {
    const repq_qmodel *q;
    repq_allocator al;
    repq_mem_chain mem; /* every allocation but this struct */
    int32_t users;
    /* Layers of <= 4-bit weights held in the 8-bit packed layout instead of two per byte:
     * chosen for AMX sessions, whose tiles multiply bytes only (shared_weights.c). */
    bool nibbles_unpacked;
    size_t nibble_k; /* largest input count of a layer with 4-bit packed weights (0: none) */
    size_t nibble_unpacked; /* largest 8-bit packed size of such a layer */
    aq patch_in, head_in;
    qlin patch, head;
    qblock *blocks;
    /* Patch merging (Swin): the node, its input quantizer and reduction, per merge. */
    const repq_net_node **merge_nodes;
    aq *merge_in;
    qlin *merge;
    int32_t **merge_rows; /* repq_swin_merge_rows of each merge's input grid */
    uint8_t *pixel_codes; /* [C][256]: U8 pixel -> PATCH_IN code */
} repq_shared_weights;

/* The qmodel's shared weights, built on first use (thread-safe: the qmodel's lock), with
 * 4-bit layers unpacked when unpack_nibbles is set (the first session decides; every
 * session computes the same sums from either form). Each successful call must be
 * paired with repq_shared_weights_release. Errors as repq_session_new's, recorded on
 * err. */
repq_status repq_shared_weights_acquire(repq_object *err, const repq_qmodel *q, bool unpack_nibbles,
                                        const repq_shared_weights **out);
/* Bytes they take. */
size_t repq_shared_weights_bytes(const repq_shared_weights *w);
/* Drop one use; the last one frees them. NULL is ignored. */
void repq_shared_weights_release(const repq_shared_weights *w);

#endif
