/* Internal: the float steps of integer inference (LayerNorm, GELU), computed per
 * token exactly as the float forward (lib/model/forward.c) computes them: fixed
 * lane-order reductions, no fused multiply-add, so every CPU gives the same bits. */
#ifndef REPQ_INFER_FLOAT_OPS_H
#define REPQ_INFER_FLOAT_OPS_H

#include <stddef.h>

/* y[i, :] = LayerNorm(x[i, :]) * g + b for `rows` rows of d values (strides d). */
void repq_infer_layer_norm(const float *x, size_t rows, size_t d, const float *g, const float *b,
                           float eps, float *y);
/* x[i] <- GELU(x[i]) with the erf form, i < n. */
void repq_infer_gelu(float *x, size_t n);

#endif
