/* The reference's reparameterization with its unrounded layer-wise zero point, rebuilt
 * from librepq's for the accuracy suite (spec reference.md asks that the two be
 * compared). */
#ifndef REPQ_TESTS_UNROUNDED_ZERO_POINT_H
#define REPQ_TESTS_UNROUNDED_ZERO_POINT_H

#include "model/qmodel.h"

/* Fake-quant logits of `reparameterized` (librepq's, from `channelwise`) as the
 * reference would compute them: z~ = mean_c z_c kept fractional. Products are the
 * forward's exact products of the fake-quantized floats. */
repq_status unrounded_zero_point_forward(const repq_qmodel *channelwise, const repq_qmodel *reparameterized,
                                         repq_tensor *images, repq_tensor *logits);

#endif
