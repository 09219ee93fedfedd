/* Internal: float -> uint8 quantization and the epilogue of a zero-point-corrected
 * integer GEMM (exact int32 sums, then float, then optionally codes again).
 *
 * Quantization follows repq_quant_quantize to the bit:
 *     code = clamp(rint(x / s) + z, 0, 2^b - 1)
 * with x / s one float division, rint round-half-even, the add and the clamp in float
 * (NaN gives 0, infinities the clamp ends). z may be any integer with |z| <= 2^23.
 *
 * GEMM epilogue. With C = A * B^T from repq_gemm_u8s8 over s8 weights B = W - off
 * and the true sum V = sum_p (A[i][p] - za) (W[j][p] - zw[j]),
 *     V[i][j] = C[i][j] + colmul[j] * rowsum[i] + colconst[j]
 * where rowsum[i] = sum_p A[i][p], colmul[j] = off - zw[j] and
 * colconst[j] = -za * sum_p B[j][p] - k * za * colmul[j]. Every term and V itself
 * must fit in int32 (the caller checks this once). Then
 *     y = (float)V * scale[j] + bias[j]      (a product and a sum, no fused multiply-add)
 * Every level returns the same bits as the scalar reference; the AVX2 level runs the
 * scalar code.
 */
#ifndef REPQ_KERNELS_QUANTIZE_F32_H
#define REPQ_KERNELS_QUANTIZE_F32_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu.h"

/* codes[i] for i < n. bits in [1, 8]. */
void repq_quantize_f32_u8(repq_kernel_level level, size_t n, const float *x, float scale, int32_t zp,
                          int32_t bits, uint8_t *codes);

/* The same for rows x n values, row strides ldx and ldcodes. */
void repq_quantize_rows_f32_u8(repq_kernel_level level, size_t rows, size_t n, const float *x, size_t ldx,
                               float scale, int32_t zp, int32_t bits, uint8_t *codes, size_t ldcodes);

/* codes[i] for i < n under the two-region quantizer (calib/two_region.h, bit for bit):
 *     q = x / s;  c = q >= 0 ? min(rint(q), top) 2^shift : max(rint(q 2^shift), -z);  code = c + z
 * NaN gives 0. Needs z >= 0, top >= 0, shift in [0, 7] and z + top 2^shift <= 255. */
void repq_quantize_f32_two_region_u8(repq_kernel_level level, size_t n, const float *x, float scale, int32_t zp,
                                     int32_t top, int32_t shift, uint8_t *codes);

/* repq_float_layer_norm_codes (model/float_ops.h) at the given level, bit for bit. */
void repq_layer_norm_codes_u8(repq_kernel_level level, const float *x, size_t rows, size_t d, const float *g,
                              const float *b, float eps, float scale, int32_t zp, int32_t bits, uint8_t *codes);

/* acc[i][j] <- V[i][j] in place (m rows, n columns, row stride ldacc). */
void repq_gemm_correct_s32(repq_kernel_level level, size_t m, size_t n, int32_t *acc, size_t ldacc,
                           const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst);

/* out[i][j] = y, or out[i][j] += y when accumulate is set. bias may be NULL (zero). */
void repq_gemm_out_f32(repq_kernel_level level, size_t m, size_t n, const int32_t *acc, size_t ldacc,
                       const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst,
                       const float *scale, const float *bias, bool accumulate, float *out, size_t ldout);

/* out[i][j] = the code of y under (qscale, qzp, bits), as repq_quantize_f32_u8. */
void repq_gemm_out_u8(repq_kernel_level level, size_t m, size_t n, const int32_t *acc, size_t ldacc,
                      const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst,
                      const float *scale, const float *bias, float qscale, int32_t qzp, int32_t bits,
                      uint8_t *out, size_t ldout);

/* The same for y * post (one float product): Swin's q, scaled by 1 / sqrt(head_dim)
 * in float before its quantizer. */
void repq_gemm_out_scaled_u8(repq_kernel_level level, size_t m, size_t n, const int32_t *acc, size_t ldacc,
                             const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst,
                             const float *scale, const float *bias, float post, float qscale, int32_t qzp,
                             int32_t bits, uint8_t *out, size_t ldout);

/* fc2's input quantizer as the fused epilogue takes it: uniform (two_region false:
 * scale, zero_point, bits) or two-region (scale, zero_point, top, shift as
 * repq_quantize_f32_two_region_u8). */
typedef struct repq_gelu_codes {
    float scale;
    int32_t zero_point, bits;
    bool two_region;
    int32_t top, shift;
} repq_gelu_codes;

/* out[i][j] = repq_gelu_codes_u8 of repq_gelu_quartic_one(y) (model/float_ops.h: the
 * session's GELU, within REPQ_GELU_FAST_ERR of the erf form), y being
 * repq_gemm_out_f32's value: the bits of those steps, which the fake-quant forward
 * runs, at every level. */
void repq_gemm_out_gelu_u8(repq_kernel_level level, size_t m, size_t n, const int32_t *acc, size_t ldacc,
                           const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst,
                           const float *scale, const float *bias, const repq_gelu_codes *q, uint8_t *out,
                           size_t ldout);

/* fc2's input codes of GELU values g under q as the session forms them: w = g / unit
 * as a product by the unit's reciprocal (unit = s, or s 2^-shift on the two-region
 * quantizer's negative side, g < 0), rounded half to even; then, as
 * repq_quantize_f32_u8 (uniform: clamped to [0, 2^bits - 1] after adding z) or
 * repq_quantize_f32_two_region_u8 (min(w, top) 2^shift + z for g >= 0, max(w, -z) + z
 * below). A code differs from those quantizers' (which divide) only where w lies
 * within a float rounding of a half-integer. False if some g is not finite (codes
 * written all the same). */
bool repq_gelu_codes_u8(size_t n, const float *g, const repq_gelu_codes *q, uint8_t *codes);

/* The epilogue's GELU on n values (the same bits at every level): the fake-quant
 * forward's GELU, and the test of its bound. out may be y. */
#define REPQ_GELU_FAST_ERR 6e-6f
void repq_gelu_fast_f32(repq_kernel_level level, size_t n, const float *y, float *out);

#endif
