/* The reference's reparameterization with its unrounded layer-wise zero point, rebuilt
 * from librepq's for the accuracy suite (spec reference.md asks that the two be
 * compared). */
#ifndef REPQ_TESTS_UNROUNDED_ZERO_POINT_H
#define REPQ_TESTS_UNROUNDED_ZERO_POINT_H

#include "model/qmodel.h"

/* Fake-quant logits of `reparameterized` (librepq's, from `channelwise`) as the
 * reference would compute them: z~ = mean_c z_c kept fractional. Products are the
 * forward's exact products of the fake-quantized floats. */
/* The reference's parameters: *out gets a copy of `base` (a parameter set of
 * `reparameterized`, e.g. its fq_params or float_params) with the reference's LayerNorm
 * and next-layer biases, and frac[2 b], frac[2 b + 1] the fractional part f of z~ at block
 * b's qkv and fc1 inputs (frac: 2 * depth doubles). Release *out with
 * repq_params_release. */
repq_status unrounded_zero_point_params(const repq_qmodel *channelwise, const repq_qmodel *reparameterized,
                                        const repq_params *base, repq_params *out, double *frac);

repq_status unrounded_zero_point_forward(const repq_qmodel *channelwise, const repq_qmodel *reparameterized,
                                         repq_tensor *images, repq_tensor *logits);

#endif
