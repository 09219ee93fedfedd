/* The scale reparameterization (docs/method.md, Reparameterization) recomputed in double for the
 * accuracy suite: the exact counterpart of the library's float32 fold, so that what the
 * fold changes in exact arithmetic (nothing) and what float32 storage of its result
 * changes can be told apart. */
#ifndef REPQ_TESTS_FOLD_F64_H
#define REPQ_TESTS_FOLD_F64_H

#include "model/qmodel.h"

/* Overwrites, in `values` (vit_f64_params layout of layerwise->float_params), the
 * parameters that the fold rewrites, recomputed in double from channelwise's float
 * parameters and channel-wise quantizers (s_c, z_c) and the layer-wise quantizer
 * (s~, z~) that `layerwise` (the library's reparameterization of channelwise) holds
 * there. For each post-LayerNorm point, with r_c = s_c / s~ and b_c = s~ (z~ - z_c):
 *   gamma'_c = gamma_c / r_c,  beta'_c = beta_c / r_c - b_c,
 *   W'[o][c] = W[o][c] r_c,    bias'_o = bias_o + sum_c W'[o][c] b_c
 * for the LayerNorm before it and the linear layer after it. Returns false if a
 * quantizer is not of the kind the fold expects. */
bool fold_f64(const repq_qmodel *channelwise, const repq_qmodel *layerwise, double *values);

#endif
