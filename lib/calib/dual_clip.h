/* Internal: RepQuant's per-channel dual clipping of post-LayerNorm activations, in
 * librepq's reconstruction (docs/method.md, "Dual clipping").
 *
 * For one channel's values, a lower and an upper clipping bound are searched
 * separately (asymmetric) to minimise the channel's own fake-quantization MSE; the
 * bounds become (s, z) through repq_quant_params_from_range. The candidates:
 *   - the reference's three pairs [quantile(1 - p), quantile(p)], p in
 *     repq_quant_percentiles; the best of them (by MSE) is the starting point;
 *   - lower bounds v[r] and upper bounds v[n - 1 - r] (v: the sorted values) for the
 *     ranks r = 0, 1, 2, 3, 4, 6, 8, 11, 16, ... (about sqrt(2) apart) below n / 8,
 *     together with the reference's quantiles on that side; for a channel of at most
 *     REPQ_DUAL_CLIP_EXHAUSTIVE_N values, every value of its lower half as a lower
 *     bound and every value of its upper half as an upper bound;
 * and the search:
 *   1. coordinate descent: the best upper bound over all upper candidates with the
 *      lower one held, then the best lower bound with the upper one held, then the
 *      same over the candidates within two places of the current ones, until neither
 *      moves (at most REPQ_DUAL_CLIP_MAX_SWEEPS rounds); a channel of at most
 *      REPQ_DUAL_CLIP_EXHAUSTIVE_N values tries every pair instead;
 *   2. refinement: each bound, the other held, tries REPQ_DUAL_CLIP_REFINE - 1 evenly
 *      spaced values strictly between its two neighbouring candidates;
 *   3. the winner replaces the reference's (s, z) only if its sum of squared errors is
 *      strictly lower (both summed in double in the same order); otherwise the result
 *      is bit-identical to repq_quant_search's.
 * So the chosen MSE is never above the reference search's on the same values (up to
 * the order of the additions). Every step keeps the first of equal candidates.
 * Candidates are scored by repq_quant_sse_lanes over a contiguous copy of the values:
 * one pass over the channel each, about 60 for a channel of 2,000 values.
 *
 * Pure functions over the caller's buffers, as quantizer.h; same errors
 * (REPQ_ERR_INVALID_ARGUMENT, REPQ_ERR_NUMERIC, REPQ_ERR_OVERFLOW).
 */
#ifndef REPQ_CALIB_DUAL_CLIP_H
#define REPQ_CALIB_DUAL_CLIP_H

#include "calib/quantizer.h"

#define REPQ_DUAL_CLIP_MAX_SWEEPS 4
#define REPQ_DUAL_CLIP_EXHAUSTIVE_N 64
#define REPQ_DUAL_CLIP_REFINE 8

/* Dual clipping over the n values x[i * stride]: *out, and if mse != NULL its MSE.
 * scratch: n floats of the caller's, overwritten; must not overlap x. */
repq_status repq_quant_search_dual(const float *x, size_t n, size_t stride, int32_t bits, float *scratch,
                                   repq_quant_params *out, double *mse);

/* One dual-clipping search per column of the row-major [rows][cols] matrix m
 * (activations [tokens][channels]): out[c] for c < cols. scratch: rows floats. Stops at
 * the first failing column and returns its status. */
repq_status repq_quant_search_cols_dual(const float *m, size_t rows, size_t cols, int32_t bits, float *scratch,
                                        repq_quant_params *out);

#endif
