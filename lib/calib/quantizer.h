/* Internal: the quantizers used during calibration and their range searches.
 *
 * Uniform asymmetric quantizer (weights, activations feeding linear layers):
 *     q = clamp(round(x / s) + z, 0, 2^b - 1)        x^ = s (q - z)
 * Log quantizers (post-softmax attention probabilities), scale s:
 *     log-sqrt2: code = round(-2 log2(x / s))        x^ = s 2^(-code/2)
 *     log2:      code = round(-log2(x / s))          x^ = s 2^(-code)
 *   a code >= 2^b is the zero state (x^ = 0); otherwise the code is clamped to
 *   [0, 2^b - 1] (values above s give code 0, x^ = s).
 *
 * All rounding is round half to even (the reference's torch.round), done in float
 * exactly as the reference does in float32; squared errors are accumulated in double.
 * Range searches follow the reference procedure (spec/reference.md): candidates from the {0.999, 0.9999,
 * 0.99999} quantiles (NumPy's default linear interpolation), scored by the mean
 * squared error of the fake quantization, the first candidate kept on ties.
 *
 * Every function is pure over the buffers it is given: no global state, no
 * allocation, no printing; any number of threads may call them on distinct outputs.
 * Buffers are the caller's. Errors: REPQ_ERR_INVALID_ARGUMENT for NULL pointers, bad
 * sizes or bits outside [REPQ_QUANT_MIN_BITS, REPQ_QUANT_MAX_BITS], REPQ_ERR_NUMERIC
 * for NaN or infinity in the data, REPQ_ERR_OVERFLOW when n and stride address more
 * than SIZE_MAX elements.
 */
#ifndef REPQ_CALIB_QUANTIZER_H
#define REPQ_CALIB_QUANTIZER_H

#include <stddef.h>
#include <stdint.h>

#include "repq/common.h"

#define REPQ_QUANT_MIN_BITS 2
#define REPQ_QUANT_MAX_BITS 8

/* Bound on |zero point|. The reference never clamps z into [0, 2^b - 1] (all-positive
 * or all-negative data gives z outside it) and librepq keeps that, but a range whose
 * width is tiny next to its distance from zero would give an unbounded z. With
 * |z| <= 2^23, every |q - z| and every relevant round(x / s) stays below 2^24, so all
 * float steps of the quantizer are exact and int32 never overflows. A candidate
 * whose z would exceed the bound is treated as degenerate (see repq_quant_params_from_range). */
#define REPQ_QUANT_ZERO_POINT_MAX (1 << 23)

/* Scale given to data that is all zero (or subnormal): any positive scale reproduces
 * zeros exactly; a tiny one keeps the channel from weighing on scale averages
 * (reparameterization takes the mean of channel scales). 2^-24. */
#define REPQ_QUANT_FALLBACK_SCALE 5.9604644775390625e-8f

/* The number of percentile candidates of the searches and their values. */
#define REPQ_QUANT_NUM_CANDIDATES 3
extern const double repq_quant_percentiles[REPQ_QUANT_NUM_CANDIDATES]; /* .999 .9999 .99999 */

/* ---- Uniform asymmetric quantizer ---------------------------------------------- */

typedef struct repq_quant_params {
    float scale;        /* s: a positive normal float */
    int32_t zero_point; /* z: |z| <= REPQ_QUANT_ZERO_POINT_MAX, NOT clamped to [0, 2^b-1] */
    int32_t bits;       /* b in [REPQ_QUANT_MIN_BITS, REPQ_QUANT_MAX_BITS] */
} repq_quant_params;

/* REPQ_OK if p is usable: bits in range, scale finite and >= FLT_MIN, |z| in bound. */
repq_status repq_quant_params_check(const repq_quant_params *p);

/* (s, z) from a clipping range [lo, hi] (lo <= hi, both finite):
 *     s = (hi - lo) / (2^b - 1),  z = round(-lo / s)      (in float, as the reference)
 * Guards the reference lacks: if s is not a positive normal float (hi == lo: constant
 * data) or |z| > REPQ_QUANT_ZERO_POINT_MAX, the range is widened to include zero,
 * [min(lo, 0), max(hi, 0)], which gives z in [0, 2^b - 1] and reproduces a constant c
 * to within float rounding (c is then an end of the grid); if that range is still
 * degenerate (all zero or subnormal) s = REPQ_QUANT_FALLBACK_SCALE, z = 0, and zeros
 * are reproduced exactly. */
repq_status repq_quant_params_from_range(float lo, float hi, int32_t bits, repq_quant_params *out);

/* codes[i] = clamp(round(x[i] / s) + z, 0, 2^b - 1) for i < n (n == 0 is fine).
 * REPQ_ERR_NUMERIC if some x is NaN or infinite; all n codes are still written (NaN
 * gives code 0, infinities the clamp ends). */
repq_status repq_quant_quantize(const repq_quant_params *p, const float *x, size_t n, uint8_t *codes);
/* out[i] = s (codes[i] - z). REPQ_ERR_INVALID_ARGUMENT if some code > 2^b - 1. */
repq_status repq_quant_dequantize(const repq_quant_params *p, const uint8_t *codes, size_t n, float *out);
/* x[i] <- s (clamp(round(x[i] / s) + z, 0, 2^b - 1) - z) in place; same errors as quantize. */
repq_status repq_quant_fake(const repq_quant_params *p, float *x, size_t n);
/* Mean squared error (in double) of the fake quantization of n values x[i * stride],
 * leaving x unchanged. */
repq_status repq_quant_mse(const repq_quant_params *p, const float *x, size_t n, size_t stride,
                           double *mse);
/* For searches that score many candidates: the sum of squared fake-quantization errors
 * of the n finite values x[0, n), in double, summed over 8 lanes in chunks of 256
 * values, the last chunk first (vectorized; equal to n times repq_quant_mse up to the
 * order of the additions). Stops after the first chunk at which the running sum
 * exceeds `bound` and returns that partial sum (> bound): a candidate that cannot win
 * costs less. Below the bound the result does not depend on it. p must be valid. */
double repq_quant_sse_lanes(const repq_quant_params *p, const float *x, size_t n, double bound);

/* ---- Quantiles ------------------------------------------------------------------ */

/* NumPy-default (linear) quantiles of the n values x[i * stride]: for each p[j] in
 * [0, 1], h = (n - 1) p, out[j] = v[floor h] + (h - floor h)(v[floor h + 1] - v[floor h])
 * over the sorted values v (interpolated in double, rounded once to float).
 * Uses selection, not a sort: one pass splits off the two tails (bounds read from a
 * sample of the data), then introselect inside them; O(n) expected, O(n log n) worst
 * case (about 3 ms for 1.6 million values). scratch: n floats, overwritten (it holds a permutation of the data
 * afterwards). REPQ_ERR_NUMERIC on NaN/Inf, REPQ_ERR_INVALID_ARGUMENT for n == 0,
 * stride == 0, np == 0 or np > 16, p outside [0, 1]. */
repq_status repq_quantiles(const float *x, size_t n, size_t stride, const double *p, size_t np,
                           float *scratch, float *out);

/* Order statistics of the n finite values v[0, n), rearranged in place: afterwards v[k]
 * holds the k-th smallest value for every k in ranks[0, nr) (ascending, distinct, all
 * < n), by the same selection as repq_quantiles. The caller has checked the data. */
void repq_order_statistics(float *v, size_t n, const size_t *ranks, size_t nr);

/* Sorts v[0, len) (no NaN) by insertion: for short or nearly sorted arrays. */
void repq_sort_small(float *v, size_t len);

/* ---- Range searches --------------------------------------------------------------- */

/* The reference search's candidate ranges over the n values x[i * stride]: for p_c in
 * repq_quant_percentiles, lo[c] = quantile(1 - p_c), hi[c] = quantile(p_c). scratch: n
 * floats, afterwards a permutation of the values; must not overlap x. */
repq_status repq_quant_candidate_ranges(const float *x, size_t n, size_t stride, float *scratch,
                                        float lo[REPQ_QUANT_NUM_CANDIDATES], float hi[REPQ_QUANT_NUM_CANDIDATES]);

/* The reference's search over the n values x[i * stride] (stride 1: a weight row or a
 * whole tensor; stride = channels: one channel of a [tokens][channels] matrix): for p
 * in repq_quant_percentiles, [quantile(1 - p), quantile(p)] through
 * repq_quant_params_from_range, scored by MSE; the first least-MSE candidate is
 * written to *out and, if mse != NULL, its MSE to *mse.
 * scratch: n floats of the caller's, overwritten; must not overlap x. */
repq_status repq_quant_search(const float *x, size_t n, size_t stride, int32_t bits,
                              float *scratch, repq_quant_params *out, double *mse);
/* The first least-SSE of the `count` ranges [lo[c], hi[c]] (each through
 * repq_quant_params_from_range) over the n finite values x[0, n): its (s, z) to *out
 * and its sum of squared errors to *sse. */
repq_status repq_quant_best_range(const float *x, size_t n, int32_t bits, const float *lo, const float *hi,
                                  size_t count, repq_quant_params *out, double *sse);
/* Naive baseline: lo = min(x), hi = max(x), then repq_quant_params_from_range. No
 * scratch. mse may be NULL. */
repq_status repq_quant_minmax(const float *x, size_t n, size_t stride, int32_t bits,
                              repq_quant_params *out, double *mse);

typedef enum repq_range_method {
    REPQ_RANGE_PERCENTILE = 0, /* repq_quant_search */
    REPQ_RANGE_MINMAX = 1      /* repq_quant_minmax */
} repq_range_method;

/* One search per row of the row-major [rows][cols] matrix m (weights: one row per
 * output channel): out[r] for r < rows. scratch: cols floats (unused for MINMAX, may
 * be NULL then). Stops at the first failing row and returns its status. */
repq_status repq_quant_search_rows(const float *m, size_t rows, size_t cols, int32_t bits,
                                   repq_range_method method, float *scratch, repq_quant_params *out);
/* One search per column of the row-major [rows][cols] matrix m (activations
 * [tokens][channels]: one column per channel): out[c] for c < cols. scratch: rows
 * floats (may be NULL for MINMAX). */
repq_status repq_quant_search_cols(const float *m, size_t rows, size_t cols, int32_t bits,
                                   repq_range_method method, float *scratch, repq_quant_params *out);

/* ---- Log quantizers (post-softmax) ------------------------------------------------ */

typedef enum repq_log_base {
    REPQ_LOG_SQRT2 = 0, /* code = round(-2 log2(x / s)), x^ = s 2^(-code/2) */
    REPQ_LOG_2 = 1      /* code = round(-log2(x / s)),   x^ = s 2^(-code)   */
} repq_log_base;

typedef struct repq_logq_params {
    float scale;        /* s: a positive normal float (usually about the largest probability) */
    int32_t bits;       /* b in [REPQ_QUANT_MIN_BITS, REPQ_QUANT_MAX_BITS] */
    repq_log_base base;
} repq_logq_params;

/* REPQ_OK if p is usable (bits in range, base known, scale finite and >= FLT_MIN). */
repq_status repq_logq_params_check(const repq_logq_params *p);

/* The stored code of the zero state: min(2^b, 255). For b == 8 this is 255, which is
 * also the code of the smallest level s 2^-127.5 (log-sqrt2) or s 2^-255 (log2);
 * repq_logq_dequantize maps it to 0, an error of at most s 2^-127.5 (< 6e-39 s). */
int32_t repq_logq_zero_code(int32_t bits);

/* The level of code c in [0, 2^b - 1] (not the zero code) for scale s:
 *   log-sqrt2: s 2^(-ceil(c/2)) (1 + (c mod 2)(sqrt2 - 1)),
 * which equals s 2^(-c/2): for c = 2m, 2^(-m); for c = 2m + 1, 2^(-(m+1)) sqrt2 =
 * 2^(-m - 1/2). It is evaluated in float in the reference's order, (2^-k m) s with
 * m = 1 or float(sqrt2), so it agrees with s 2^(-c/2) to about one float rounding
 * (for levels in the subnormal range, to the subnormal spacing). log2: s 2^(-c).
 * c outside [0, 2^b - 1] or invalid p gives 0. */
float repq_logq_level(const repq_logq_params *p, int32_t c);

/* codes[i] = the code of x[i]; x[i] <= 0 (and x / s underflowing) gives the zero code.
 * REPQ_ERR_NUMERIC on NaN/Inf (codes still written: NaN gives the zero code, +Inf code 0). */
repq_status repq_logq_quantize(const repq_logq_params *p, const float *x, size_t n, uint8_t *codes);
/* out[i] = level of codes[i], 0 for the zero code (so for b == 8 code 255 gives 0).
 * REPQ_ERR_INVALID_ARGUMENT if some code is neither in [0, 2^b - 1] nor the zero code. */
repq_status repq_logq_dequantize(const repq_logq_params *p, const uint8_t *codes, size_t n, float *out);
/* x[i] <- its level (0 in the zero state), exactly the reference's fake quantization
 * (for b == 8 code 255 keeps its tiny level here). Same errors as quantize. */
repq_status repq_logq_fake(const repq_logq_params *p, float *x, size_t n);
/* MSE in double of the fake quantization of x[i * stride], x unchanged. */
repq_status repq_logq_mse(const repq_logq_params *p, const float *x, size_t n, size_t stride,
                          double *mse);

/* Scale search: candidates s = quantile(x, p) for p in repq_quant_percentiles, each
 * scored by the MSE of the fake quantization, first least MSE kept. A candidate below
 * FLT_MIN (data that is all zero or non-positive at that quantile) is replaced by 1.
 * Values <= 0 are allowed (they quantize to the zero state). scratch: n floats. */
repq_status repq_logq_search(const float *x, size_t n, size_t stride, int32_t bits, repq_log_base base,
                             float *scratch, repq_logq_params *out, double *mse);

#endif
