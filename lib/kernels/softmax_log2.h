/* Internal: integer softmax that emits log2 codes (the attention quantizer of
 * a log2 / "log-int-softmax" scheme).
 *
 * Float contract approximated: with real scores r = in_scale * x and
 * p = softmax(r), code = round_half_even(-2 * log2(p / s)); a code >= 2^b means
 * "zero" and is emitted as the sentinel (2^b, or 255 when b == 8); smaller codes
 * are clamped to [0, 2^b - 1].
 *
 * Integer method, per row (d = max(x) - x >= 0, t = d * in_scale * log2(e), so
 * p = 2^-t / S with S = sum 2^-t):
 *   t   in Q22: T = min(min(d, dcap) * cm >> cs, 192 * 2^22) (any t >= 192 yields the
 *       sentinel for every s >= 2^-64 and b <= 8).
 *   2^-t = 2^-floor(t) * 2^-(i/32) * 2^-x with i the top 5 fraction bits: a 32-entry
 *       binary32 table (2^30 scale) times 1 - u + u^2/2 - u^3/6, u = x ln2 < 0.022,
 *       with fused multiply-adds only (IEEE-exact, so the same bits on every CPU and
 *       level; relative error ~2e-7), truncated to Q30, then a right shift by
 *       floor(t); the Q30 terms are summed in uint64.
 *   log2 S in Q22: leading-zero count for the integer part, 22 exact fraction bits by
 *       repeated squaring of the normalized Q62 mantissa (128-bit products); a double
 *       log2 gives the same bits faster away from Q22 boundaries (repq_log2_q22; with
 *       AVX-512 the rows go in groups of up to 16 whose sums share one vector log2).
 *   code = round_half_even((2*T + 2*log2 S + 2*log2 s) / 2^22), all in Q22.
 * The codes equal the double-precision contract's except within ~1e-6 of a code
 * step from a rounding boundary (all 93,433 entries of the kernel test agree).
 */
#ifndef REPQ_KERNELS_SOFTMAX_LOG2_H
#define REPQ_KERNELS_SOFTMAX_LOG2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu.h"

/* Fixed-point constants; same for every row of one attention head. */
typedef struct repq_log2softmax_params {
    uint32_t cm;       /* t(Q22) = d * cm * 2^-cs */
    uint32_t cs;       /* in [0, 48] */
    uint32_t dcap;     /* smallest d whose t reaches the cap (d is clamped to it) */
    int32_t two_log2_s; /* round(2 * log2(s) * 2^22), <= 0 */
    int32_t code_max;  /* 2^b - 1 */
    int32_t sentinel;  /* 2^b, or 255 for b == 8 */
} repq_log2softmax_params;

/* Derive the constants. false if in_scale is not in [2^-40, 2^12], s not in
 * [2^-64, 1], or bits not in [2, 8]. */
bool repq_log2softmax_prepare(float in_scale, float s, int bits, repq_log2softmax_params *params);

/* codes[i][j] for `rows` rows of n >= 1 (n <= 2^24) int32 scores each. Every
 * level gives the same bits (AVX2 runs the scalar code). */
void repq_log2softmax_rows(repq_kernel_level level, const repq_log2softmax_params *params, size_t rows,
                           size_t n, const int32_t *x, size_t ldx, uint8_t *codes, size_t ldcodes);

/* The same for the scores x[i][j] + colbias[j] (each sum must fit in int32): a
 * per-column zero-point correction folded into the softmax. Per-row constants need
 * no correction at all: the codes depend only on max - x within a row. */
void repq_log2softmax_rows_bias(repq_kernel_level level, const repq_log2softmax_params *params, size_t rows,
                                size_t n, const int32_t *x, size_t ldx, const int32_t *colbias, uint8_t *codes,
                                size_t ldcodes);

/* log2(sum * 2^-30) in Q22 (sum >= 2^30), by repeated squaring: the definition. */
int32_t repq_log2_q22_reference(uint64_t sum);

/* The same bits, through a double log2 where that is unambiguous. */
int32_t repq_log2_q22(uint64_t sum);

/* out[i] = repq_log2_q22(sum[i]) for i < count, eight at a time in vector lanes
 * where the level has AVX-512 (the softmax's rows share one such call per group). */
void repq_log2_q22_batch(repq_kernel_level level, size_t count, const uint64_t *sum, int32_t *out);

#endif
