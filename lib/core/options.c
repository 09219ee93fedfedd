#include "core/options.h"

REPQ_API repq_status repq_options_new(repq_options **out_options)
{
    if (!out_options)
        return REPQ_ERR_INVALID_ARGUMENT;
    *out_options = NULL;
    repq_allocator allocator = repq_allocator_of(NULL);
    repq_options *o = repq_mem_alloc(&allocator, sizeof *o);
    if (!o)
        return REPQ_ERR_NOMEM;
    repq_object_init(&o->base, REPQ_KIND_OPTIONS, allocator);
    repq_options_defaults(o);
    *out_options = o;
    return REPQ_OK;
}

void repq_options_defaults(repq_options *o)
{
    o->weight_bits = 8;
    o->act_bits = 8;
    o->method = REPQ_METHOD_REPQ;
    o->patch_input_bits = 8;
    o->threads = 1;
    o->kernels = REPQ_KERNELS_AUTO;
    o->post_gelu = REPQ_POST_GELU_TWO_REGION;
    o->dual_clip = 0;
    o->mixed = 0;
    /* The best combination measured (docs/accuracy.md, issue 16): SQ-b, and GPTQ towards
     * the float model when the caller reconstructs. */
    o->smooth = REPQ_SMOOTH_SQB;
    o->gptq_target = REPQ_GPTQ_TARGET_FLOAT_MODEL;
}

REPQ_API void repq_options_free(repq_options *options)
{
    if (!repq_object_is(options, REPQ_KIND_OPTIONS))
        return;
    options->base.kind = 0;
    repq_mem_free(&options->base.allocator, options);
}

static repq_status check_range(repq_options *o, const char *name, int64_t v, int64_t lo, int64_t hi)
{
    if (v < lo || v > hi)
        return repq_fail(&o->base, REPQ_ERR_INVALID_ARGUMENT,
                         "option %s = %lld is outside [%lld, %lld]", name, (long long)v,
                         (long long)lo, (long long)hi);
    return REPQ_OK;
}

REPQ_API repq_status repq_options_set_int(repq_options *o, repq_option key, int64_t value)
{
    if (!repq_object_is(o, REPQ_KIND_OPTIONS))
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_status st;
    switch (key) {
    case REPQ_OPT_WEIGHT_BITS:
        if ((st = check_range(o, "weight_bits", value, 2, 8)) == REPQ_OK)
            o->weight_bits = (int32_t)value;
        return st;
    case REPQ_OPT_ACT_BITS:
        if ((st = check_range(o, "act_bits", value, 2, 8)) == REPQ_OK)
            o->act_bits = (int32_t)value;
        return st;
    case REPQ_OPT_METHOD:
        if ((st = check_range(o, "method", value, REPQ_METHOD_REPQ, REPQ_METHOD_MINMAX)) == REPQ_OK)
            o->method = (int32_t)value;
        return st;
    case REPQ_OPT_PATCH_INPUT_BITS:
        if ((st = check_range(o, "patch_input_bits", value, 2, 8)) == REPQ_OK)
            o->patch_input_bits = (int32_t)value;
        return st;
    case REPQ_OPT_THREADS:
        if ((st = check_range(o, "threads", value, 1, 256)) == REPQ_OK)
            o->threads = (int32_t)value;
        return st;
    case REPQ_OPT_KERNELS:
        if ((st = check_range(o, "kernels", value, REPQ_KERNELS_AUTO, REPQ_KERNELS_AMX)) == REPQ_OK)
            o->kernels = (int32_t)value;
        return st;
    case REPQ_OPT_POST_GELU:
        if ((st = check_range(o, "post_gelu", value, REPQ_POST_GELU_UNIFORM, REPQ_POST_GELU_TWO_REGION)) == REPQ_OK)
            o->post_gelu = (int32_t)value;
        return st;
    case REPQ_OPT_DUAL_CLIP:
        if ((st = check_range(o, "dual_clip", value, 0, 1)) == REPQ_OK)
            o->dual_clip = (int32_t)value;
        return st;
    case REPQ_OPT_MIXED:
        if ((st = check_range(o, "mixed", value, 0, 1)) == REPQ_OK)
            o->mixed = (int32_t)value;
        return st;
    case REPQ_OPT_SMOOTH:
        if ((st = check_range(o, "smooth", value, REPQ_SMOOTH_OFF, REPQ_SMOOTH_SQB)) == REPQ_OK)
            o->smooth = (int32_t)value;
        return st;
    case REPQ_OPT_GPTQ_TARGET:
        if ((st = check_range(o, "gptq_target", value, REPQ_GPTQ_TARGET_QUANTIZED_INPUT,
                              REPQ_GPTQ_TARGET_FLOAT_MODEL)) == REPQ_OK)
            o->gptq_target = (int32_t)value;
        return st;
    }
    return repq_fail(&o->base, REPQ_ERR_INVALID_ARGUMENT, "unknown option key %d", (int)key);
}

REPQ_API repq_status repq_options_get_int(const repq_options *o, repq_option key,
                                          int64_t *out_value)
{
    if (!repq_object_is(o, REPQ_KIND_OPTIONS))
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_object *err = (repq_object *)&o->base;
    if (!out_value)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_options_get_int: out_value is NULL");
    switch (key) {
    case REPQ_OPT_WEIGHT_BITS: *out_value = o->weight_bits; return REPQ_OK;
    case REPQ_OPT_ACT_BITS: *out_value = o->act_bits; return REPQ_OK;
    case REPQ_OPT_METHOD: *out_value = o->method; return REPQ_OK;
    case REPQ_OPT_PATCH_INPUT_BITS: *out_value = o->patch_input_bits; return REPQ_OK;
    case REPQ_OPT_THREADS: *out_value = o->threads; return REPQ_OK;
    case REPQ_OPT_KERNELS: *out_value = o->kernels; return REPQ_OK;
    case REPQ_OPT_POST_GELU: *out_value = o->post_gelu; return REPQ_OK;
    case REPQ_OPT_DUAL_CLIP: *out_value = o->dual_clip; return REPQ_OK;
    case REPQ_OPT_MIXED: *out_value = o->mixed; return REPQ_OK;
    case REPQ_OPT_SMOOTH: *out_value = o->smooth; return REPQ_OK;
    case REPQ_OPT_GPTQ_TARGET: *out_value = o->gptq_target; return REPQ_OK;
    }
    return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "unknown option key %d", (int)key);
}
