/* Internal: the float-model target of GPTQ weight reconstruction
 * (REPQ_GPTQ_TARGET_FLOAT_MODEL; docs/method.md).
 *
 * GPTQ keeps a layer's output on the inputs it receives, X~ W^T, close to X~ W^ T.
 * The float model's layer computes Xf W^T instead, and X~ differs from Xf by every
 * earlier quantizer's error. Weights W* minimizing ||Xf W^T - X~ W*^T||^2 move part
 * of that error into the layer (least squares; the difference of the objectives is
 * then constant, so GPTQ on W* minimizes the float-target error):
 *
 *     W* = W + W D (H + lambda I)^-1,   D = (Xf - X~)^T X~,   H = X~^T X~
 *
 * With a few thousand calibration rows and hundreds of inputs, the unregularized fit
 * follows the rounding noise of X~ and raises the error on new images; lambda is
 * therefore chosen per layer by two-fold cross-validation over the images (fit on the
 * even images, measure the error change on the odd ones, and the reverse), from a
 * fixed grid of multiples of H's mean diagonal. When no lambda lowers the held-out
 * error, W* = W (the layer gets GPTQ's own target).
 */
#ifndef REPQ_CALIB_FLOAT_TARGET_H
#define REPQ_CALIB_FLOAT_TARGET_H

#include <stddef.h>

#include "core/object.h"

/* Multiples of H's mean diagonal tried as lambda, smallest first. */
#define REPQ_FLOAT_TARGET_GRID_SIZE 12
extern const double repq_float_target_grid[REPQ_FLOAT_TARGET_GRID_SIZE];

/* target [out][in] <- W* for weight w [out][in], quantized inputs xq and the float
 * model's inputs xf [images * rows_per_image][in] (row-major, image by image).
 * *out_lambda: the chosen multiple of H's mean diagonal, or 0 when target = w (no
 * lambda lowered the held-out error, fewer than two images, or inputs always zero).
 * Scratch is allocated with `al` (about 4 in^2 + 4 out * in + 2 rows_per_image * in
 * doubles) and freed before returning.
 * Errors: REPQ_ERR_INVALID_ARGUMENT (NULL, zero size), REPQ_ERR_OVERFLOW,
 * REPQ_ERR_NOMEM, REPQ_ERR_NUMERIC (a non-finite input or weight). */
repq_status repq_float_target_weights(const repq_allocator *al, const float *w, size_t out, size_t in,
                                      const float *xq, const float *xf, size_t images, size_t rows_per_image,
                                      float *target, double *out_lambda);

#endif
