/* The bad-input table: every public function given NULL or foreign handles, NULL
 * pointers and wrong sizes returns its documented status and never crashes. Deeper
 * per-stage cases live in the test file of each stage. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "io/safetensors.h"
#include "repq/repq.h"

#define MODEL_PATH REPQ_TEST_DATA "/vit_tiny_cifar10.safetensors"
#define BAD REPQ_ERR_INVALID_ARGUMENT

static void null_handles_are_refused(void **state)
{
    (void)state;
    int64_t v;
    double acc;
    size_t nb;
    repq_tensor *t;
    int64_t shape[1] = {4};
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 1, shape, NULL, &t), REPQ_OK);
    /* A live handle of the wrong kind is refused like NULL. */
    void *foreign = t;
    assert_int_equal(repq_context_set_allocator(NULL, NULL, NULL, NULL), BAD);
    assert_int_equal(repq_context_set_allocator(foreign, NULL, NULL, NULL), BAD);
    assert_int_equal(repq_context_new(NULL), BAD);
    assert_int_equal(repq_options_new(NULL), BAD);
    assert_int_equal(repq_options_set_int(foreign, REPQ_OPT_THREADS, 1), BAD);
    assert_int_equal(repq_options_get_int(NULL, REPQ_OPT_THREADS, &v), BAD);
    assert_int_equal(repq_tensor_describe(NULL, NULL, NULL, NULL, 0), BAD);
    assert_int_equal(repq_tensor_describe(t, NULL, NULL, NULL, 2), BAD);
    assert_int_equal(repq_tensor_describe(t, NULL, NULL, NULL, -1), BAD);
    assert_int_equal(repq_tensor_nbytes(NULL, &nb), BAD);
    assert_int_equal(repq_tensor_nbytes(t, NULL), BAD);
    assert_int_equal(repq_tensor_read(NULL, &v, 8), BAD);
    assert_int_equal(repq_tensor_read(t, NULL, 16), BAD);
    assert_int_equal(repq_tensor_write(t, NULL, 16), BAD);
    assert_int_equal(repq_tensor_write(NULL, &v, 16), BAD);
    assert_int_equal(repq_model_load(NULL, NULL, NULL, NULL), BAD);
    repq_model *m = (repq_model *)1;
    assert_int_equal(repq_model_load(NULL, NULL, NULL, &m), BAD);
    assert_null(m);
    assert_int_equal(repq_model_create_random(NULL, NULL, 0, 1, &m), BAD);
    assert_int_equal(repq_model_create_random(NULL, "deit_tiny_patch16_224", 0, 1, NULL), BAD);
    assert_int_equal(repq_model_get_int(NULL, REPQ_MODEL_DEPTH, &v), BAD);
    assert_int_equal(repq_model_get_int(foreign, REPQ_MODEL_DEPTH, &v), BAD);
    assert_int_equal(repq_model_forward(foreign, t, t), BAD);
    assert_int_equal(repq_cifar_load(NULL, NULL, 0, 1, NULL, NULL), BAD);
    assert_int_equal(repq_top1_compute(NULL, t, &acc), BAD);
    assert_int_equal(repq_top1_compute(t, t, &acc), BAD);
    repq_calib *c = (repq_calib *)1;
    assert_int_equal(repq_calib_new(NULL, foreign, NULL, &c), BAD);
    assert_null(c);
    assert_int_equal(repq_calib_feed(foreign, t), BAD);
    assert_int_equal(repq_calib_set_progress(NULL, NULL, NULL), BAD);
    repq_qmodel *q = (repq_qmodel *)1;
    assert_int_equal(repq_calib_finish(NULL, &q), BAD);
    assert_int_equal(repq_qmodel_reparameterize(NULL, foreign, &q), BAD);
    assert_null(q);
    q = (repq_qmodel *)1;
    assert_int_equal(repq_calib_reconstruct(foreign, NULL, &q), BAD);
    assert_null(q);
    assert_int_equal(repq_calib_reconstruct(NULL, foreign, NULL), BAD);
    assert_int_equal(repq_qmodel_forward(foreign, REPQ_FORWARD_FAKE_QUANT, t, t), BAD);
    assert_int_equal(repq_qmodel_get_int(NULL, REPQ_QMODEL_ACT_BITS, &v), BAD);
    assert_int_equal(repq_qmodel_save(foreign, "/tmp/x.repq"), BAD);
    assert_int_equal(repq_qmodel_save(NULL, "/tmp/x.repq"), BAD);
    q = (repq_qmodel *)1;
    assert_int_equal(repq_qmodel_load(NULL, NULL, &q), BAD);
    assert_null(q);
    repq_session *s = (repq_session *)1;
    assert_int_equal(repq_session_new(NULL, foreign, NULL, 1, &s), BAD);
    assert_null(s);
    assert_int_equal(repq_session_run(NULL, t, t), BAD);
    assert_int_equal(repq_session_run(foreign, t, t), BAD);
    assert_int_equal(repq_session_get_int(NULL, REPQ_SESSION_KERNELS, &v), BAD);
    assert_int_equal(repq_session_get_int(foreign, REPQ_SESSION_KERNELS, &v), BAD);
    /* Every _free accepts NULL and foreign handles without touching them. */
    repq_context_free(NULL);
    repq_options_free(NULL);
    repq_model_free(NULL);
    repq_calib_free(NULL);
    repq_qmodel_free(NULL);
    repq_session_free(NULL);
    repq_model_free(foreign);
    repq_qmodel_free(foreign);
    repq_session_free(foreign);
    repq_calib_free(foreign);
    assert_string_equal(repq_last_error(NULL), "");
    repq_tensor_free(t);
}

/* A model file whose weights hold NaN is refused at load, naming the tensor. */
/* The image API: NULL and foreign handles refused; in a build without image support
 * (-Dimages=disabled) every function says REPQ_ERR_UNSUPPORTED instead. */
static void image_functions_refuse_bad_handles(void **state)
{
    (void)state;
#ifdef REPQ_HAVE_IMAGES
    const repq_status want = BAD;
#else
    const repq_status want = REPQ_ERR_UNSUPPORTED;
#endif
    repq_tensor *t;
    int64_t shape[1] = {4}, v;
    int32_t n32;
    const char *s;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 1, shape, NULL, &t), REPQ_OK);
    void *foreign = t;
    repq_image_loader *l = (repq_image_loader *)1;
    repq_image_folder *f = (repq_image_folder *)1;
    assert_int_equal(repq_image_loader_new(NULL, NULL, &l), want);
    assert_null(l);
    l = (repq_image_loader *)1;
    assert_int_equal(repq_image_loader_new(NULL, foreign, &l), want);
    assert_null(l);
    assert_int_equal(repq_image_loader_new_quantized(NULL, foreign, &l), want);
    assert_int_equal(repq_image_loader_new(NULL, foreign, NULL), BAD);
    assert_int_equal(repq_image_loader_set_int(foreign, REPQ_IMAGE_THREADS, 2), want);
    assert_int_equal(repq_image_loader_set_float(NULL, REPQ_IMAGE_CROP_PCT, 0.9), want);
    assert_int_equal(repq_image_loader_get_int(foreign, REPQ_IMAGE_CROP_SIZE, &v), want);
    repq_tensor *img = (repq_tensor *)1;
    assert_int_equal(repq_image_load(foreign, "x.jpg", &img), want);
    assert_null(img);
    const char *paths[1] = {"x.jpg"};
    assert_int_equal(repq_image_load_batch(foreign, paths, 1, t, NULL), want);
    assert_int_equal(repq_image_folder_open(NULL, NULL, NULL, &f), want);
    assert_null(f);
    assert_int_equal(repq_image_folder_size(foreign, &v, &n32), want);
    assert_int_equal(repq_image_folder_entry(NULL, 0, &s, &n32), want);
    assert_int_equal(repq_image_folder_class_name(foreign, 0, &s), want);
    assert_int_equal(repq_image_folder_load(foreign, foreign, 0, 1, t, t, NULL), want);
    repq_image_loader_free(foreign);
    repq_image_folder_free(foreign);
    repq_image_loader_free(NULL);
    repq_image_folder_free(NULL);
    repq_tensor_free(t);
}

static void nan_weights_are_refused(void **state)
{
    (void)state;
    FILE *f = fopen(MODEL_PATH, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *bytes = malloc((size_t)size);
    assert_int_equal(fread(bytes, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    repq_allocator al = repq_allocator_of(NULL);
    repq_st_file *st;
    assert_int_equal(repq_st_parse(NULL, &al, bytes, (size_t)size, &st), REPQ_OK);
    const repq_st_tensor *w = repq_st_find(st, "blocks.3.mlp.fc1.weight");
    assert_non_null(w);
    size_t at = (size_t)(w->data - bytes) + 4 * 1000;
    repq_st_close(st);
    const char *what[2] = {"NaN", "Inf"};
    for (int i = 0; i < 2; i++) {
        float bad = i == 0 ? NAN : INFINITY;
        memcpy(bytes + at, &bad, sizeof bad);
        char path[] = "/tmp/repq_nan_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, bytes, (size_t)size), size);
        close(fd);
        repq_context *ctx;
        repq_model *m = (repq_model *)1;
        assert_int_equal(repq_context_new(&ctx), REPQ_OK);
        assert_int_equal(repq_model_load(ctx, path, NULL, &m), REPQ_ERR_NUMERIC);
        assert_null(m);
        if (!strstr(repq_last_error(ctx), "blocks.3.mlp.fc1.weight"))
            fail_msg("%s weights: message '%s' does not name the tensor", what[i], repq_last_error(ctx));
        repq_context_free(ctx);
        unlink(path);
    }
    free(bytes);
}

/* A float model must not be accepted as a quantized one, nor the reverse. */
static void files_of_the_other_kind_are_refused(void **state)
{
    (void)state;
    repq_qmodel *q = (repq_qmodel *)1;
    assert_int_equal(repq_qmodel_load(NULL, MODEL_PATH, &q), REPQ_ERR_FORMAT);
    assert_null(q);
    repq_model *m = (repq_model *)1;
    assert_int_equal(repq_model_load(NULL, REPQ_TEST_DATA "/cifar10_calib.bin", NULL, &m), REPQ_ERR_FORMAT);
    assert_null(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(null_handles_are_refused),
        cmocka_unit_test(image_functions_refuse_bad_handles),
        cmocka_unit_test(nan_weights_are_refused),
        cmocka_unit_test(files_of_the_other_kind_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
