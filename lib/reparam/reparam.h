/* Internal: reparameterization with a chosen layer-wise target.
 *
 * After the fold (method.md 2.1) the layer-wise codes equal the channel-wise ones for
 * any s~ > 0 and any integer z~: X'_c / s~ + z~ = X_c / s_c + z_c holds whatever the
 * pair. repq_qmodel_reparameterize takes s~ = mean_c s_c and z~ = round(mean_c z_c), as
 * the method does. Other choices give models equal in exact arithmetic whose float
 * parameters round differently; tests use them to measure what float rounding alone
 * does to predictions. */
#ifndef REPQ_REPARAM_REPARAM_H
#define REPQ_REPARAM_REPARAM_H

#include "model/qmodel.h"

typedef struct repq_reparam_target {
    double scale_factor; /* s~ = scale_factor * mean_c s_c (finite, > 0) */
    int32_t zero_offset; /* z~ = round(mean_c z_c) + zero_offset (|offset| <= 255) */
} repq_reparam_target;

/* repq_qmodel_reparameterize with target t (an already reparameterized src is copied
 * unchanged, whatever t). */
repq_status repq_qmodel_reparameterize_to(repq_context *ctx, const repq_qmodel *src, const repq_reparam_target *t,
                                          repq_qmodel **out);

/* The same, with the error reported to `err` and the copy allocated with `al` (for
 * stages that hold an allocator, not a context). Arguments are not checked again. */
repq_status repq_qmodel_reparameterize_with(repq_object *err, const repq_allocator *al, const repq_qmodel *src,
                                            const repq_reparam_target *t, repq_qmodel **out);

#endif
