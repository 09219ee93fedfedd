/* Internal: the float model handle. */
#ifndef REPQ_MODEL_MODEL_H
#define REPQ_MODEL_MODEL_H

#include "model/net.h"
#include "repq/model.h"

struct repq_model {
    repq_object base;
    repq_arch arch;
    repq_net *net;
    repq_params params;
    int64_t file_tensors; /* tensors in the file it was loaded from (0 if generated) */
};

/* Check an images tensor against an architecture: U8 or F32 [N, C, H, W], finite.
 * On success *out_n is N and *out_u8 tells the dtype. */
repq_status repq_images_check(repq_object *err, const repq_arch *a, const repq_tensor *images,
                              size_t *out_n, bool *out_u8);
/* Check a logits tensor: F32 [n, num_classes]. */
repq_status repq_logits_check(repq_object *err, const repq_arch *a, const repq_tensor *logits,
                              size_t n);
/* Checks images and logits, then runs the float forward (with `hook`, which may be
 * NULL) over the images in bounded chunks. Messages go to `err` (may be NULL). */
repq_status repq_net_forward_tensors(repq_object *err, const repq_allocator *al, const repq_net *net,
                                     const repq_params *p, const repq_hook *hook,
                                     repq_tensor *images, repq_tensor *logits);
/* Value of a repq_model_attr for a network (REPQ_ERR_INVALID_ARGUMENT if unknown). */
repq_status repq_net_attr(const repq_net *net, int32_t attr, int64_t *out);
/* Value of a repq_stage_attr of stage `stage` (REPQ_ERR_INVALID_ARGUMENT if out of range). */
repq_status repq_net_stage_attr(const repq_net *net, int32_t stage, int32_t attr, int64_t *out);

#endif
