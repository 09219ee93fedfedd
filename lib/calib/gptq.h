/* Internal: GPTQ weight reconstruction of one linear layer (RepQuant; method.md
 * section 3).
 *
 * Round-to-nearest makes every weight's own error small; GPTQ makes the layer's output
 * error on the calibration inputs X small instead, ||(W - W^) X^T||^2 = sum over rows of
 * d^T H d with d = w - w^ and H = X^T X. It quantizes the columns in order and moves
 * each column's rounding error onto the columns not yet quantized, weighted by the
 * Cholesky factor U of H^-1 (H^-1 = U^T U, U upper triangular):
 *
 *     e = (w_i - w^_i) / U_ii;     w_j -= e U_ij   for j > i
 *
 * (optimal for the quadratic once columns < i are fixed, one column at a time).
 * The per-row quantizers (s, z) are given, not searched: GPTQ only picks codes. With a
 * diagonal H it is round-to-nearest exactly.
 */
#ifndef REPQ_CALIB_GPTQ_H
#define REPQ_CALIB_GPTQ_H

#include <stddef.h>
#include <stdint.h>

#include "calib/quantizer.h"
#include "core/object.h"

/* Relative damping added to H's diagonal (times the mean diagonal), as in GPTQ: it
 * keeps H invertible with fewer tokens than columns and limits how far errors move. */
#define REPQ_GPTQ_DAMPING 0.01

/* h[cols][cols] += x^T x for x [rows][cols] (float, row-major): each product is exact
 * in double, the sums are rounded in double. Widens `chunk` rows at a time into
 * scratch (chunk * cols doubles). */
void repq_gptq_gram_add(const float *x, size_t rows, size_t cols, double *scratch, size_t chunk, double *h);

/* Doubles of work space repq_gptq_quantize needs for a rows x cols weight, or 0 if
 * that overflows size_t. */
size_t repq_gptq_work_doubles(size_t rows, size_t cols);

/* Codes [rows][cols] of w [rows][cols] (row r with quantizer wq[r]) chosen by GPTQ for
 * the Gram matrix h [cols][cols] (symmetric, positive semidefinite; left unchanged).
 * work: repq_gptq_work_doubles(rows, cols) doubles of the caller's (one allocation
 * serves every layer of a model).
 * A column whose input was always zero (h_ii == 0) is rounded to nearest. If H is not
 * positive definite after damping, the damping is raised tenfold up to three times.
 * Errors: REPQ_ERR_INVALID_ARGUMENT (NULL, zero size, damping < 0 or not finite, an
 * unusable quantizer), REPQ_ERR_NUMERIC (NaN or infinity in w or h, or H still not
 * positive definite), REPQ_ERR_OVERFLOW. */
repq_status repq_gptq_quantize(const float *w, size_t rows, size_t cols, const double *h, double damping,
                               const repq_quant_params *wq, double *work, uint8_t *codes);

#endif
