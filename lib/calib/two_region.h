/* Internal: the two-region uniform quantizer of post-GELU activations (MPTQ-ViT's
 * OPT-m, in librepq's form; docs/method.md).
 *
 * GELU's output has a short negative tail (down to about -0.17) and a long positive
 * one. A single uniform grid spends its levels on the positive range and rounds the
 * whole negative tail to zero or to one coarse level. This quantizer keeps the step s
 * for values >= 0 and gives the negative ones a step 2^m times finer:
 *     q = x / s
 *     c = min(rint(q), 2^b - 1 - z) 2^m      if q >= 0
 *     c = max(rint(q 2^m), -z)                if q < 0   (and for NaN: c = -z)
 *     code = z + c                            x^ = (code - z) s 2^-m
 * z negative levels and 2^b - z non-negative ones: 2^b levels, all of them points of
 * the fine grid (s 2^-m, z). The codes are stored on that fine grid, so a linear layer
 * fed by them is an ordinary uniform u8 layer with scale s 2^-m and zero point z; the
 * largest code z + (2^b - 1 - z) 2^m must fit in 8 bits.
 *
 * Rounding is round half to even in float, as the uniform quantizer's; q 2^m is exact
 * (a power of two), so the negative branch equals rint(x / (s 2^-m)).
 * Pure functions over the caller's buffers, as quantizer.h.
 */
#ifndef REPQ_CALIB_TWO_REGION_H
#define REPQ_CALIB_TWO_REGION_H

#include "calib/quantizer.h"

/* Largest m: a step 128 times finer than s. */
#define REPQ_TWOREG_MAX_SHIFT 7

typedef struct repq_tworeg_params {
    float scale;        /* s: the step of the non-negative region, a positive normal float */
    int32_t zero_point; /* z: the number of negative levels, 0 <= z <= 2^b - 1 */
    int32_t bits;       /* b in [REPQ_QUANT_MIN_BITS, REPQ_QUANT_MAX_BITS] */
    int32_t neg_shift;  /* m in [0, REPQ_TWOREG_MAX_SHIFT]: the negative step is s 2^-m */
} repq_tworeg_params;

/* REPQ_OK if p is usable: bits, z and m in range, s and s 2^-m positive normal floats,
 * the largest code within 255 and every level finite. REPQ_ERR_INVALID_ARGUMENT
 * otherwise. */
repq_status repq_tworeg_params_check(const repq_tworeg_params *p);

/* The uniform grid the codes live on: scale s 2^-m, zero point z, bits b (as a
 * description; codes reach *max_code, which may exceed 2^b - 1). */
repq_status repq_tworeg_grid(const repq_tworeg_params *p, repq_quant_params *grid, int32_t *max_code);

/* codes[i] as above for i < n. REPQ_ERR_NUMERIC if some x is NaN or infinite; all n
 * codes are still written. */
repq_status repq_tworeg_quantize(const repq_tworeg_params *p, const float *x, size_t n, uint8_t *codes);
/* out[i] = (codes[i] - z) s 2^-m. REPQ_ERR_INVALID_ARGUMENT if some code is above the
 * largest code. */
repq_status repq_tworeg_dequantize(const repq_tworeg_params *p, const uint8_t *codes, size_t n, float *out);
/* x[i] <- its level, in place; errors as quantize. */
repq_status repq_tworeg_fake(const repq_tworeg_params *p, float *x, size_t n);
/* Mean squared error (in double) of the fake quantization of x[0, n), x unchanged. */
repq_status repq_tworeg_mse(const repq_tworeg_params *p, const float *x, size_t n, double *mse);

/* The search (OPT-m's ratio search, with the top of the range held): the non-negative
 * range ends where the layer-wise quantizer `uniform` (the reference's search on the
 * same data) ends, hi = s0 (2^b - 1 - z0); for every z in [1, min((2^b - 1) / 2, 16)]
 * and every m in [0, REPQ_TWOREG_MAX_SHIFT] whose largest code fits in 8 bits,
 * s = hi / (2^b - 1 - z), scored by the MSE over x[0, n). The first least-MSE candidate
 * goes to *out and its MSE to *mse. If hi is not positive (no non-negative range to
 * keep), *mse = INFINITY and *out is untouched. scratch: n floats, overwritten, not
 * overlapping x. Cost: one pass over the values >= 0 per z, one over the negative
 * values per (z, m): at 4 bits 7 and 35 (m <= 4), at 6 bits 16 and 48 (m <= 2). */
repq_status repq_tworeg_search(const float *x, size_t n, const repq_quant_params *uniform, float *scratch,
                               repq_tworeg_params *out, double *mse);

#endif
