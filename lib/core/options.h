/* Internal: the option bag's fields, read directly by the stages. */
#ifndef REPQ_CORE_OPTIONS_H
#define REPQ_CORE_OPTIONS_H

#include "core/object.h"

struct repq_options {
    repq_object base;
    int32_t weight_bits;
    int32_t act_bits;
    int32_t method;
    int32_t patch_input_bits;
    int32_t threads;
    int32_t kernels;   /* repq_kernels */
    int32_t post_gelu; /* repq_post_gelu */
    int32_t dual_clip; /* REPQ_OPT_DUAL_CLIP: 0 the reference's search, 1 dual clipping */
    int32_t mixed;     /* greedy mixed precision */
    int32_t smooth;    /* repq_smooth */
    int32_t gptq_target; /* repq_gptq_target */
};

void repq_options_defaults(repq_options *o);

#endif
