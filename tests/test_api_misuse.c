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

static void assert_message(const void *handle, const char *needle)
{
    const char *m = repq_last_error(handle);
    if (!strstr(m, needle))
        fail_msg("message '%s' does not contain '%s'", m, needle);
}

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

/* A float model must not be accepted as a quantized one, nor the reverse; the message
 * says what the file is. */
static void files_of_the_other_kind_are_refused(void **state)
{
    (void)state;
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    repq_qmodel *q = (repq_qmodel *)1;
    assert_int_equal(repq_qmodel_load(ctx, MODEL_PATH, &q), REPQ_ERR_FORMAT);
    assert_null(q);
    assert_message(ctx, "it holds float weights: load it with repq_model_load");
    repq_model *m = (repq_model *)1;
    assert_int_equal(repq_model_load(ctx, REPQ_TEST_DATA "/cifar10_calib.bin", NULL, &m), REPQ_ERR_FORMAT);
    assert_null(m);
    assert_message(ctx, "it looks like a CIFAR-10 binary file");
    assert_int_equal(repq_model_load(ctx, REPQ_TEST_SOURCE "/tests/fuzz/corpus/qmodel/tiny_w4a4.safetensors", NULL,
                                     &m), REPQ_ERR_FORMAT);
    assert_message(ctx, "is a quantized model (a .repq file");
    assert_message(ctx, "load it with repq_qmodel_load");
    repq_context_free(ctx);
}


/* ---- Every failure records its own message ---------------------------------------------
 * Each case first makes an unrelated call fail on the same handle, so that a call that
 * recorded nothing would show the older message. */

static void options_record_their_own_messages(void **state)
{
    (void)state;
    repq_options *o;
    int64_t v;
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, (repq_option)99, 1), BAD);
    assert_message(o, "unknown option key 99");
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_THREADS, 100000), BAD);
    assert_message(o, "option threads = 100000 is outside [1, 256]");
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_THREADS, &v), REPQ_OK);
    assert_int_equal(v, 1); /* the refused value left the old one */
    assert_int_equal(repq_options_get_int(o, (repq_option)77, &v), BAD);
    assert_message(o, "unknown option key 77");
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_THREADS, NULL), BAD);
    assert_message(o, "out_value is NULL");
    /* The ranges common.h states, at both ends and one past them. */
    const struct { repq_option key; int64_t lo, hi; } ranges[] = {
        {REPQ_OPT_WEIGHT_BITS, 2, 8}, {REPQ_OPT_ACT_BITS, 2, 8}, {REPQ_OPT_METHOD, 0, 1},
        {REPQ_OPT_PATCH_INPUT_BITS, 2, 8}, {REPQ_OPT_THREADS, 1, 256}, {REPQ_OPT_KERNELS, 0, 5},
        {REPQ_OPT_POST_GELU, 0, 1}, {REPQ_OPT_DUAL_CLIP, 0, 1},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "is outside [%lld, %lld]", (long long)ranges[i].lo, (long long)ranges[i].hi);
        assert_int_equal(repq_options_set_int(o, ranges[i].key, ranges[i].lo), REPQ_OK);
        assert_int_equal(repq_options_set_int(o, ranges[i].key, ranges[i].hi), REPQ_OK);
        assert_int_equal(repq_options_set_int(o, ranges[i].key, ranges[i].lo - 1), BAD);
        assert_message(o, want);
        assert_int_equal(repq_options_set_int(o, ranges[i].key, ranges[i].hi + 1), BAD);
        assert_message(o, want);
    }
    repq_options_free(o);
}

static void tensors_record_their_own_messages(void **state)
{
    (void)state;
    repq_context *ctx;
    repq_tensor *t, *rows = (repq_tensor *)1;
    int64_t shape[2] = {3, 2}, v = 0;
    size_t nb;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, shape, NULL, &t), REPQ_OK);
    assert_int_equal(repq_tensor_read(t, &v, sizeof v), REPQ_ERR_SHAPE);
    assert_message(t, "buffer holds 8 bytes, tensor has 24");
    assert_int_equal(repq_tensor_describe(t, NULL, NULL, NULL, -1), BAD);
    assert_message(t, "shape_capacity -1");
    assert_int_equal(repq_tensor_nbytes(t, NULL), BAD);
    assert_message(t, "out_nbytes is NULL");
    assert_int_equal(repq_tensor_nbytes(t, &nb), REPQ_OK);
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 0, shape, NULL, &rows), BAD);
    assert_message(ctx, "ndim 0");
    assert_int_equal(repq_tensor_rows_copy(ctx, t, 2, 2, &rows), BAD);
    assert_null(rows);
    assert_message(ctx, "rows [2, 2) are not a non-empty range of the tensor's 3");
    assert_int_equal(repq_tensor_rows_copy(ctx, t, 1, 4, &rows), BAD);
    assert_message(ctx, "rows [1, 4)");
    assert_int_equal(repq_tensor_rows_copy(ctx, (const repq_tensor *)(const void *)ctx, 0, 1, &rows), BAD);
    assert_message(ctx, "the source is not a tensor");
    repq_tensor_free(t);
    repq_context_free(ctx);
}

/* The bundled model calibrated on two images at W8A8, reparameterized. */
static void quantize_bundled(repq_context *ctx, repq_model **m, repq_qmodel **r)
{
    repq_tensor *calib, *calib_labels;
    repq_calib *c;
    repq_qmodel *cw;
    assert_int_equal(repq_model_load(ctx, MODEL_PATH, NULL, m), REPQ_OK);
    assert_int_equal(repq_cifar_load(ctx, REPQ_TEST_DATA "/cifar10_calib.bin", 0, 2, &calib, &calib_labels), REPQ_OK);
    assert_int_equal(repq_calib_new(ctx, *m, NULL, &c), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, calib), REPQ_OK);
    assert_int_equal(repq_calib_finish(c, &cw), REPQ_OK);
    assert_int_equal(repq_qmodel_reparameterize(ctx, cw, r), REPQ_OK);
    repq_qmodel_free(cw);
    repq_calib_free(c);
    repq_tensor_free(calib);
    repq_tensor_free(calib_labels);
}

static void stages_record_their_own_messages(void **state)
{
    (void)state;
    repq_context *ctx;
    repq_model *m;
    repq_qmodel *r, *loaded;
    repq_session *s = (repq_session *)1;
    repq_tensor *images, *labels, *logits, *wrong, *three_labels;
    int64_t v, shape[2] = {4, 10}, one[1] = {2};
    double acc;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    quantize_bundled(ctx, &m, &r);
    assert_int_equal(repq_cifar_load(ctx, REPQ_TEST_DATA "/cifar10_test_dev.bin", 0, 4, &images, &labels), REPQ_OK);
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, shape, NULL, &logits), REPQ_OK);
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 1, one, NULL, &wrong), REPQ_OK);

    /* Model: a failed forward, then get_int. */
    assert_int_equal(repq_model_forward(m, wrong, logits), REPQ_ERR_SHAPE);
    assert_message(m, "images must be [N, 3, 32, 32]");
    assert_int_equal(repq_model_get_int(m, (repq_model_attr)999, &v), BAD);
    assert_message(m, "repq_model_get_int: unknown attribute 999");
    assert_int_equal(repq_model_get_int(m, REPQ_MODEL_DEPTH, NULL), BAD);
    assert_message(m, "out_value is NULL");

    /* Context: a failed load, then a session of max_batch 0. */
    repq_tensor *none_images, *none_labels;
    assert_int_equal(repq_cifar_load(ctx, "/nonexistent", 0, 1, &none_images, &none_labels), REPQ_ERR_IO);
    assert_int_equal(repq_session_new(ctx, r, NULL, 0, &s), BAD);
    assert_null(s);
    assert_message(ctx, "max_batch 0 must be >= 1");
    assert_int_equal(repq_session_new(ctx, r, NULL, 4, &s), REPQ_OK);

    /* Session: a failed run, then get_int (the case that showed "images is not a tensor"). */
    assert_int_equal(repq_session_run(s, (repq_tensor *)(void *)m, logits), BAD);
    assert_message(s, "images is not a tensor");
    assert_int_equal(repq_session_get_int(s, 999, &v), BAD);
    assert_message(s, "repq_session_get_int: unknown attribute 999");
    assert_int_equal(repq_session_run(s, images, wrong), REPQ_ERR_SHAPE);
    assert_message(s, "logits must be F32 [4, 10]");

    /* A loaded qmodel has no float weights: the message lands on the logits. */
    char path[] = "/tmp/repq_misuse_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(repq_qmodel_save(r, path), REPQ_OK);
    assert_int_equal(repq_qmodel_load(ctx, path, &loaded), REPQ_OK);
    unlink(path);
    assert_int_equal(repq_tensor_read(logits, &v, sizeof v), REPQ_ERR_SHAPE);
    assert_int_equal(repq_qmodel_forward(loaded, REPQ_FORWARD_FLOAT, images, logits), REPQ_ERR_STATE);
    assert_message(logits, "REPQ_FORWARD_FLOAT needs the float weights");
    assert_int_equal(repq_qmodel_forward(loaded, REPQ_FORWARD_FAKE_QUANT, wrong, logits), REPQ_ERR_SHAPE);
    assert_message(logits, "images must be");
    assert_int_equal(repq_qmodel_forward(loaded, REPQ_FORWARD_FAKE_QUANT, images, logits), REPQ_OK);

    /* top-1 on mismatched sizes. */
    assert_int_equal(repq_tensor_rows_copy(ctx, labels, 0, 3, &three_labels), REPQ_OK);
    assert_int_equal(repq_top1_compute(logits, three_labels, &acc), BAD);
    assert_message(logits, "repq_top1_compute: logits have 4 rows but labels 3");
    assert_int_equal(repq_top1_count(logits, three_labels, &v), BAD);
    assert_message(logits, "repq_top1_count: logits have 4 rows but labels 3");
    assert_int_equal(repq_top1_count(logits, labels, NULL), BAD);
    assert_message(logits, "output pointer is NULL");

    repq_tensor_free(three_labels);
    repq_session_free(s);
    repq_qmodel_free(loaded);
    repq_qmodel_free(r);
    repq_model_free(m);
    repq_tensor_free(images);
    repq_tensor_free(labels);
    repq_tensor_free(logits);
    repq_tensor_free(wrong);
    repq_context_free(ctx);
}

/* The batched evaluation loop of docs/guide.md (the same code), over batches that do
 * not divide the image count. */
static repq_status evaluate_in_batches(repq_context *ctx, repq_session *session, const repq_tensor *images,
                                       const repq_tensor *labels, int64_t n, int64_t classes, int64_t batch,
                                       int64_t *out_correct)
{
    repq_status st = REPQ_OK;
    *out_correct = 0;
    for (int64_t begin = 0; begin < n && st == REPQ_OK; begin += batch) {
        int64_t end = begin + batch < n ? begin + batch : n, hits = 0;
        int64_t shape[2] = {end - begin, classes};
        repq_tensor *x = NULL, *y = NULL, *logits = NULL;
        if ((st = repq_tensor_rows_copy(ctx, images, begin, end, &x)) == REPQ_OK &&
            (st = repq_tensor_rows_copy(ctx, labels, begin, end, &y)) == REPQ_OK &&
            (st = repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, shape, NULL, &logits)) == REPQ_OK &&
            (st = repq_session_run(session, x, logits)) == REPQ_OK &&
            (st = repq_top1_count(logits, y, &hits)) == REPQ_OK)
            *out_correct += hits;
        repq_tensor_free(x);
        repq_tensor_free(y);
        repq_tensor_free(logits);
    }
    return st;
}

static void batched_evaluation_counts_every_image(void **state)
{
    (void)state;
    enum { N = 10, K = 10 };
    repq_context *ctx;
    repq_model *m;
    repq_qmodel *r;
    repq_session *whole, *small;
    repq_tensor *images, *labels, *logits;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    quantize_bundled(ctx, &m, &r);
    assert_int_equal(repq_cifar_load(ctx, REPQ_TEST_DATA "/cifar10_test_dev.bin", 0, N, &images, &labels), REPQ_OK);
    /* Reference: one run over all images, argmax counted here. */
    int64_t shape[2] = {N, K};
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, shape, NULL, &logits), REPQ_OK);
    assert_int_equal(repq_session_new(ctx, r, NULL, N, &whole), REPQ_OK);
    assert_int_equal(repq_session_run(whole, images, logits), REPQ_OK);
    float l[N * K];
    int32_t y[N];
    assert_int_equal(repq_tensor_read(logits, l, sizeof l), REPQ_OK);
    assert_int_equal(repq_tensor_read(labels, y, sizeof y), REPQ_OK);
    int64_t want = 0;
    for (int i = 0; i < N; i++) {
        int best = 0;
        for (int j = 1; j < K; j++)
            best = l[i * K + j] > l[i * K + best] ? j : best;
        want += best == y[i];
    }
    assert_true(want > 0 && want < N); /* neither all nor none: a miscount would show */
    assert_int_equal(repq_session_new(ctx, r, NULL, 4, &small), REPQ_OK);
    for (int64_t batch = 1; batch <= 4; batch++) {
        int64_t correct = -1;
        assert_int_equal(evaluate_in_batches(ctx, small, images, labels, N, K, batch, &correct), REPQ_OK);
        assert_int_equal(correct, want);
    }
    /* The copied rows are the source's rows. */
    repq_tensor *mid;
    assert_int_equal(repq_tensor_rows_copy(ctx, labels, 3, 7, &mid), REPQ_OK);
    int32_t got[4];
    assert_int_equal(repq_tensor_read(mid, got, sizeof got), REPQ_OK);
    assert_memory_equal(got, y + 3, sizeof got);
    repq_tensor_free(mid);
    repq_session_free(small);
    repq_session_free(whole);
    repq_qmodel_free(r);
    repq_model_free(m);
    repq_tensor_free(images);
    repq_tensor_free(labels);
    repq_tensor_free(logits);
    repq_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(null_handles_are_refused),
        cmocka_unit_test(image_functions_refuse_bad_handles),
        cmocka_unit_test(nan_weights_are_refused),
        cmocka_unit_test(files_of_the_other_kind_are_refused),
        cmocka_unit_test(options_record_their_own_messages),
        cmocka_unit_test(tensors_record_their_own_messages),
        cmocka_unit_test(stages_record_their_own_messages),
        cmocka_unit_test(batched_evaluation_counts_every_image),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
