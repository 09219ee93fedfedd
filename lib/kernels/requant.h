/* Internal: int32 -> uint8 requantization, int32 -> float dequantization of
 * GEMM outputs, and row sums of uint8 activations (for zero-point corrections).
 *
 * Fixed-point multiplier: real = mult * 2^-(31 + shift), mult in [2^30, 2^31).
 * Rounding: y = round(v * real), to nearest with ties away from zero, computed
 * exactly from the 64-bit product v * mult (|v| < 2^31, so |v*mult| < 2^62). */
#ifndef REPQ_KERNELS_REQUANT_H
#define REPQ_KERNELS_REQUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu.h"

/* Smallest and largest `shift` produced by repq_requant_multiplier_from_float. */
#define REPQ_REQUANT_SHIFT_MIN (-15)
#define REPQ_REQUANT_SHIFT_MAX 31

/* Decompose `real` in (0, 2^15) into (mult, shift). Reals below 2^-32 keep
 * shift = 31 and get a smaller (possibly zero) mult; the product then rounds to
 * 0 for every int32 input anyway, bar 2^-32 sized errors. Returns false (and
 * leaves the outputs alone) for real outside (0, 2^15) or NaN. */
bool repq_requant_multiplier_from_float(double real, int32_t *mult, int32_t *shift);

/* round(v * mult * 2^-(31+shift)), ties away from zero. shift in
 * [REPQ_REQUANT_SHIFT_MIN, REPQ_REQUANT_SHIFT_MAX], 0 <= mult < 2^31. The result
 * can exceed int32 (up to 2^46) for large multipliers, hence int64. */
int64_t repq_requant_round(int32_t v, int32_t mult, int32_t shift);

/* out[i][j] = clamp(zp + round((acc[i][j] + bias[j]) * real[j]), qmin, qmax), with
 * real[j] given by (mult[j], shift[j]). bias may be NULL (zero). acc + bias must
 * fit in int32. 0 <= qmin <= qmax <= 255. ldacc/ldout are in elements. */
void repq_requant_u8(repq_kernel_level level, size_t m, size_t n, const int32_t *acc, size_t ldacc,
                     const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t zp,
                     int32_t qmin, int32_t qmax, uint8_t *out, size_t ldout);

/* out[i][j] = (float)(acc[i][j] + bias[j]) * scale[j] (one float rounding for
 * the conversion, one for the product, so every level agrees bit for bit).
 * bias may be NULL. */
void repq_dequant_f32(repq_kernel_level level, size_t m, size_t n, const int32_t *acc, size_t ldacc,
                      const int32_t *bias, const float *scale, float *out, size_t ldout);

/* sums[i] = sum_p a[i][p] for p < k. Exact for k < 2^23. */
void repq_row_sums_u8(repq_kernel_level level, size_t m, size_t k, const uint8_t *a, size_t lda,
                      int32_t *sums);

#endif
