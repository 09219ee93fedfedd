/* Tests of lib/core: status strings, contexts, options, tensors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "repq/repq.h"

static void status_strings_name_every_status(void **state)
{
    (void)state;
    for (int s = REPQ_OK; s <= REPQ_ERR_OVERFLOW; s++)
        assert_non_null(strstr(repq_status_string((repq_status)s), "REPQ_"));
    assert_string_equal(repq_status_string((repq_status)999), "unknown repq_status");
}

static void version_matches_macros(void **state)
{
    (void)state;
    assert_int_equal(repq_version_number(), REPQ_VERSION_NUMBER);
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", REPQ_VERSION_MAJOR, REPQ_VERSION_MINOR, REPQ_VERSION_PATCH);
    assert_string_equal(repq_version_string(), expect);
}

static void tensor_round_trips_data(void **state)
{
    (void)state;
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    float src[6] = {1, 2, 3, 4, 5, 6}, dst[6];
    int64_t shape[2] = {2, 3};
    repq_tensor *t;
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, shape, src, &t), REPQ_OK);
    repq_dtype dt;
    int32_t nd;
    int64_t got[4] = {0};
    assert_int_equal(repq_tensor_describe(t, &dt, &nd, got, 4), REPQ_OK);
    assert_int_equal(dt, REPQ_DTYPE_F32);
    assert_int_equal(nd, 2);
    assert_int_equal(got[0], 2);
    assert_int_equal(got[1], 3);
    assert_int_equal(repq_tensor_read(t, dst, sizeof dst), REPQ_OK);
    assert_memory_equal(src, dst, sizeof src);
    assert_int_equal(repq_tensor_read(t, dst, 5), REPQ_ERR_SHAPE);
    assert_non_null(strstr(repq_last_error(t), "5 bytes"));
    repq_tensor_free(t);
    repq_context_free(ctx);
}

static void tensor_rejects_bad_shapes(void **state)
{
    (void)state;
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    repq_tensor *t = (repq_tensor *)1;
    int64_t zero[1] = {0}, neg[1] = {-3}, huge[3] = {INT64_MAX, INT64_MAX, 2};
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 1, zero, NULL, &t), REPQ_ERR_INVALID_ARGUMENT);
    assert_null(t);
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 1, neg, NULL, &t), REPQ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(repq_last_error(ctx), "not positive"));
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 3, huge, NULL, &t), REPQ_ERR_OVERFLOW);
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 0, zero, NULL, &t), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 9, huge, NULL, &t), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_tensor_new(ctx, (repq_dtype)77, 1, neg, NULL, &t), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 1, NULL, NULL, &t), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 1, zero, NULL, NULL), REPQ_ERR_INVALID_ARGUMENT);
    repq_tensor_free(NULL);
    repq_context_free(ctx);
}

static void options_check_ranges(void **state)
{
    (void)state;
    repq_options *o;
    int64_t v;
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_WEIGHT_BITS, &v), REPQ_OK);
    assert_int_equal(v, 8);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, 4), REPQ_OK);
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_WEIGHT_BITS, &v), REPQ_OK);
    assert_int_equal(v, 4);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_ACT_BITS, 9), REPQ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(repq_last_error(o), "act_bits"));
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_ACT_BITS, 1), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_KERNELS, &v), REPQ_OK);
    assert_int_equal(v, REPQ_KERNELS_AUTO);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_KERNELS, REPQ_KERNELS_AMX + 1), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_KERNELS, -1), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_KERNELS, REPQ_KERNELS_SCALAR), REPQ_OK);
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_KERNELS, &v), REPQ_OK);
    assert_int_equal(v, REPQ_KERNELS_SCALAR);
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_POST_GELU, &v), REPQ_OK);
    assert_int_equal(v, REPQ_POST_GELU_TWO_REGION);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_POST_GELU, 2), REPQ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(repq_last_error(o), "post_gelu"));
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_POST_GELU, -1), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_POST_GELU, REPQ_POST_GELU_UNIFORM), REPQ_OK);
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_POST_GELU, &v), REPQ_OK);
    assert_int_equal(v, REPQ_POST_GELU_UNIFORM);
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_DUAL_CLIP, &v), REPQ_OK);
    assert_int_equal(v, 0); /* the reference's search until the ablation picks a default */
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_DUAL_CLIP, 2), REPQ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(repq_last_error(o), "dual_clip"));
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_DUAL_CLIP, 1), REPQ_OK);
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_DUAL_CLIP, &v), REPQ_OK);
    assert_int_equal(v, 1);
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_GPTQ_TARGET, &v), REPQ_OK);
    assert_int_equal(v, REPQ_GPTQ_TARGET_FLOAT_MODEL); /* the best measured (docs/accuracy.md) */
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_GPTQ_TARGET, 2), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_GPTQ_TARGET, -1), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_GPTQ_TARGET, REPQ_GPTQ_TARGET_QUANTIZED_INPUT), REPQ_OK);
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_GPTQ_TARGET, &v), REPQ_OK);
    assert_int_equal(v, REPQ_GPTQ_TARGET_QUANTIZED_INPUT);
    assert_int_equal(repq_options_set_int(o, (repq_option)1234, 1), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_options_set_int(NULL, REPQ_OPT_ACT_BITS, 8), REPQ_ERR_INVALID_ARGUMENT);
    repq_options_free(o);
    repq_options_free(NULL);
}

static int failing_calls;
static void *failing_alloc(void *user, size_t size, size_t align)
{
    (void)user; (void)size; (void)align;
    failing_calls++;
    return NULL;
}
static void failing_release(void *user, void *ptr) { (void)user; (void)ptr; }

static void allocator_failure_is_reported(void **state)
{
    (void)state;
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    assert_int_equal(repq_context_set_allocator(ctx, failing_alloc, NULL, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_context_set_allocator(ctx, failing_alloc, failing_release, NULL), REPQ_OK);
    int64_t shape[1] = {4};
    repq_tensor *t;
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_U8, 1, shape, NULL, &t), REPQ_ERR_NOMEM);
    assert_int_equal(failing_calls, 1);
    repq_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(status_strings_name_every_status),
        cmocka_unit_test(version_matches_macros),
        cmocka_unit_test(tensor_round_trips_data),
        cmocka_unit_test(tensor_rejects_bad_shapes),
        cmocka_unit_test(options_check_ranges),
        cmocka_unit_test(allocator_failure_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
