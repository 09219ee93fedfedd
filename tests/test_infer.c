/* Tests of lib/infer: the integer session agrees with the fake-quant forward on the
 * bundled model, gives the same bits at every kernel level and thread count, never
 * allocates while running, rejects bad input with a message, and serves many threads
 * from one shared qmodel. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/tensor.h"
#include "infer/session.h"
#include "infer/shared_weights.h"
#include "kernel_levels.h"
#include "kernels/cpu.h"
#include "model/qmodel.h"
#include "vit_layout.h"
#include "repq/repq.h"
#include "session_checks.h"

#define MODEL_PATH REPQ_TEST_DATA "/vit_tiny_cifar10.safetensors"
#define CALIB_IMAGES REPQ_TEST_DATA "/cifar10_calib.bin"
#define TEST_IMAGES REPQ_TEST_DATA "/cifar10_test_dev.bin"
#define N_AGREE 1000
#define N_SMALL 16
#define BATCH 100
#define CLASSES 10

typedef struct fixture {
    repq_model *model;
    repq_qmodel *w8a8, *w4a4, *raw; /* raw: W8A8 before reparameterization */
    repq_tensor *images, *labels;   /* N_AGREE test images */
    repq_tensor *small;             /* the first N_SMALL of them */
} fixture;

static repq_status quantize(repq_model *m, repq_tensor *calib, int bits, repq_qmodel **raw, repq_qmodel **out)
{
    repq_options *o;
    repq_calib *c;
    repq_qmodel *q;
    repq_status st;
    if ((st = repq_options_new(&o)) || (st = repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, bits)) ||
        (st = repq_options_set_int(o, REPQ_OPT_ACT_BITS, bits)) || (st = repq_calib_new(NULL, m, o, &c)))
        return st;
    if (!(st = repq_calib_feed(c, calib)) && !(st = repq_calib_finish(c, &q))) {
        st = repq_qmodel_reparameterize(NULL, q, out);
        if (raw)
            *raw = q;
        else
            repq_qmodel_free(q);
    }
    repq_calib_free(c);
    repq_options_free(o);
    return st;
}

static int setup(void **state)
{
    static fixture f;
    repq_tensor *calib, *calib_labels, *l2;
    if (repq_model_load(NULL, MODEL_PATH, NULL, &f.model) ||
        repq_cifar_load(NULL, CALIB_IMAGES, 0, 32, &calib, &calib_labels) ||
        repq_cifar_load(NULL, TEST_IMAGES, 0, N_AGREE, &f.images, &f.labels) ||
        repq_cifar_load(NULL, TEST_IMAGES, 0, N_SMALL, &f.small, &l2))
        return -1;
    if (quantize(f.model, calib, 8, &f.raw, &f.w8a8) || quantize(f.model, calib, 4, NULL, &f.w4a4))
        return -1;
    repq_tensor_free(calib);
    repq_tensor_free(calib_labels);
    repq_tensor_free(l2);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    repq_qmodel_free(f->w8a8);
    repq_qmodel_free(f->w4a4);
    repq_qmodel_free(f->raw);
    repq_model_free(f->model);
    repq_tensor_free(f->images);
    repq_tensor_free(f->labels);
    repq_tensor_free(f->small);
    return 0;
}

static repq_tensor *logits_new(size_t n)
{
    int64_t shape[2] = {(int64_t)n, CLASSES};
    repq_tensor *t;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &t), REPQ_OK);
    return t;
}

/* Images [i0, i0 + n) of a U8 image tensor as a new tensor. */
static repq_tensor *slice(const repq_tensor *images, size_t i0, size_t n)
{
    size_t per = images->nbytes / (size_t)images->shape[0];
    int64_t shape[4] = {(int64_t)n, images->shape[1], images->shape[2], images->shape[3]};
    repq_tensor *t;
    assert_int_equal(repq_tensor_new(NULL, images->dtype, 4, shape, (const uint8_t *)images->data + i0 * per, &t),
                     REPQ_OK);
    return t;
}

static size_t argmax(const float *r)
{
    size_t best = 0;
    for (size_t j = 1; j < CLASSES; j++)
        if (r[j] > r[best])
            best = j;
    return best;
}

/* Session logits of `images` in batches of BATCH. */
static void session_logits(const repq_qmodel *q, int threads, repq_kernel_level level, const repq_tensor *images,
                           float *out)
{
    repq_options *o;
    repq_session *s;
    size_t n = (size_t)images->shape[0];
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_THREADS, threads), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_KERNELS, (int64_t)level + 1), REPQ_OK);
    assert_int_equal(repq_session_new(NULL, q, o, BATCH, &s), REPQ_OK);
    /* The session reports the family it runs: the asked one if the CPU has it, else
     * the best lower one that it has. */
    int64_t kernels = -1, got_threads = -1, max_batch = -1;
    assert_int_equal(repq_session_get_int(s, REPQ_SESSION_KERNELS, &kernels), REPQ_OK);
    assert_int_equal(kernels, (int64_t)repq_kernel_level_clamp(repq_cpu_detect(), level) + 1);
    assert_int_equal(repq_session_get_int(s, REPQ_SESSION_THREADS, &got_threads), REPQ_OK);
    assert_int_equal(got_threads, threads);
    assert_int_equal(repq_session_get_int(s, REPQ_SESSION_MAX_BATCH, &max_batch), REPQ_OK);
    assert_int_equal(max_batch, BATCH);
    assert_int_equal(repq_session_get_int(s, 0, &max_batch), REPQ_ERR_INVALID_ARGUMENT);
    for (size_t i = 0; i < n; i += BATCH) {
        size_t c = n - i < BATCH ? n - i : BATCH;
        repq_tensor *x = slice(images, i, c), *y = logits_new(c);
        repq_status st = repq_session_run(s, x, y);
        if (st)
            fail_msg("run: %s", repq_last_error(s));
        assert_int_equal(repq_tensor_read(y, out + i * CLASSES, c * CLASSES * sizeof(float)), REPQ_OK);
        repq_tensor_free(x);
        repq_tensor_free(y);
    }
    repq_session_free(s);
    repq_options_free(o);
}

/* Same top-1 as the fake-quant forward on at least 99.5% of the images (the issue's
 * requirement), accuracies within 0.2 points of each other, and logits within
 * max_rms (relative RMS). Both compute the products of quantized operands exactly and
 * round the same way, so they differ only where the fake-quant forward's float softmax
 * and the integer log2 softmax put an attention code on different sides of a rounding
 * boundary (measured on these 1000 images: 99.8% / 100.0%, logit RMS 0.009 / 0.014;
 * 99.86% / 99.98% on all 5000). A quantized network turns every such flip into more
 * flipped codes downstream; when the forward multiplied the dequantized floats and the
 * session dropped attention terms below 2^-16, agreement was 98.7% / 99.1% (99.1% /
 * 98.3% with sgemm's rounding). See docs/inference.md. */
static void agreement(fixture *f, const repq_qmodel *q, const char *name, double max_rms)
{
    /* REPQ_TEST_QUICK skips the 1000-image comparison (sanitizer builds: tests/meson.build). */
    if (getenv("REPQ_TEST_QUICK"))
        skip();
    static float a[N_AGREE * CLASSES], b[N_AGREE * CLASSES];
    repq_tensor *y = logits_new(N_AGREE);
    assert_int_equal(repq_qmodel_forward(q, REPQ_FORWARD_FAKE_QUANT, f->images, y), REPQ_OK);
    assert_int_equal(repq_tensor_read(y, a, sizeof a), REPQ_OK);
    repq_tensor_free(y);
    session_logits(q, 2, repq_kernel_level_best(repq_cpu_detect()), f->images, b);
    const int32_t *lab = f->labels->data;
    size_t same = 0, ok_fake = 0, ok_int = 0;
    double err = 0, ref = 0, worst = 0;
    for (size_t i = 0; i < N_AGREE; i++) {
        size_t pa = argmax(a + i * CLASSES), pb = argmax(b + i * CLASSES);
        same += pa == pb;
        ok_fake += (int32_t)pa == lab[i];
        ok_int += (int32_t)pb == lab[i];
        for (size_t j = 0; j < CLASSES; j++) {
            double e = (double)a[i * CLASSES + j] - b[i * CLASSES + j];
            err += e * e;
            ref += (double)a[i * CLASSES + j] * a[i * CLASSES + j];
            worst = fmax(worst, fabs(e));
        }
    }
    double agree = 100.0 * (double)same / N_AGREE;
    double acc_f = 100.0 * (double)ok_fake / N_AGREE, acc_i = 100.0 * (double)ok_int / N_AGREE;
    printf("[ %s ] %d images: same top-1 %.1f%%, accuracy fake-quant %.1f%% integer %.1f%%, "
           "logit rel. rms diff %.4f, max abs diff %.3f\n",
           name, N_AGREE, agree, acc_f, acc_i, sqrt(err / ref), worst);
    assert_true(agree >= 99.5);
    assert_true(fabs(acc_i - acc_f) <= 0.2 + 1e-9);
    assert_true(sqrt(err / ref) <= max_rms);
}

static void agrees_with_fake_quant_w8a8(void **state)
{
    fixture *f = *state;
    agreement(f, f->w8a8, "W8A8", 0.02);
}

static void agrees_with_fake_quant_w4a4(void **state)
{
    fixture *f = *state;
    /* At 4 bits the calibrated model quantizes fc2's input with two regions in some
     * blocks: the comparison covers the session's two-region path. */
    assert_true(repq_qmodel_two_region_blocks(f->w4a4) > 0);
    agreement(f, f->w4a4, "W4A4", 0.04);
}

/* The session bounds fc2's int32 sums with the largest code of the two-region fine
 * grid (z + (2^b - 1 - z) 2^m, 54-62 here), not 2^b - 1: with weight zero points of
 * 10^5 in a two-region block the sums could overflow and the session refuses the
 * model; at 2 10^4 they cannot and it is accepted. */
static void two_region_sums_are_bounded_by_the_fine_grid(void **state)
{
    fixture *f = *state;
    const repq_qmodel *src = f->w4a4;
    int32_t block = -1;
    for (int32_t b = 0; b < src->arch.depth && block < 0; b++)
        if (src->acts[vit_act_index(&src->arch, b, REPQ_QP_FC2_IN)].kind == REPQ_AQ_TWO_REGION)
            block = b;
    assert_true(block >= 0);
    const int32_t zw[2] = {100000, 20000};
    const repq_status want[2] = {REPQ_ERR_UNSUPPORTED, REPQ_OK};
    for (int i = 0; i < 2; i++) {
        repq_qmodel *q;
        assert_int_equal(repq_qmodel_clone(NULL, &src->base.allocator, src, &q), REPQ_OK);
        repq_qlinear *l = &q->linear[vit_linear_id(block, 3)];
        for (int32_t j = 0; j < l->out; j++)
            l->wq[j].zero_point = zw[i];
        repq_session *s = NULL;
        assert_int_equal(repq_session_new(NULL, q, NULL, 1, &s), want[i]);
        repq_session_free(s);
        repq_qmodel_free(q);
    }
}

/* A session's level decides how the qmodel's shared weights hold 4-bit layers when it
 * builds them: unpacked to bytes at AMX, two per byte below. A W4A4 session at AMX gives
 * the scalar session's logits (ref) from either form: here from the packed one (the
 * AMX kernel unpacking on every call), built by a scalar session held open; the caller's
 * loop checks the unpacked one. */
static void amx_sessions_read_either_form(const repq_qmodel *q, repq_tensor *images, const float *ref, float *got,
                                          size_t bytes)
{
    repq_options *o;
    repq_session *held;
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_KERNELS, (int64_t)REPQ_LEVEL_SCALAR + 1), REPQ_OK);
    assert_int_equal(repq_session_new(NULL, q, o, 1, &held), REPQ_OK);
    assert_false(q->shared->nibbles_unpacked);
    assert_true(q->shared->nibble_k > 0);
    session_logits(q, 1, REPQ_LEVEL_AMX, images, got);
    if (memcmp(ref, got, bytes))
        fail_msg("amx with 4-bit layers packed two per byte differs from scalar");
    repq_session_free(held);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_KERNELS, (int64_t)REPQ_LEVEL_AMX + 1), REPQ_OK);
    assert_int_equal(repq_session_new(NULL, q, o, 1, &held), REPQ_OK);
    assert_true(q->shared->nibbles_unpacked);
    assert_int_equal(q->shared->nibble_k, 0);
    repq_session_free(held);
    repq_options_free(o);
}

/* Meson runs this one as "infer avx2", "infer amx" and so on (tests/kernel_levels.h),
 * each recomputing the scalar reference, which is most of the time: on 3 images, whose
 * 195 token rows make two of the AMX GEMM's 96-row blocks and a tail of 3. */
static void every_level_gives_the_same_bits(void **state)
{
    skip_unless_simd_checked();
    fixture *f = *state;
    enum { N_LEVEL = 3 };
    static float ref[N_LEVEL * CLASSES], got[N_LEVEL * CLASSES];
    const repq_qmodel *qs[2] = {f->w8a8, f->w4a4};
    repq_tensor *images = slice(f->small, 0, N_LEVEL);
    for (int m = 0; m < 2; m++) {
        session_logits(qs[m], 1, REPQ_LEVEL_SCALAR, images, ref);
        for (int lv = REPQ_LEVEL_AVX2; lv <= REPQ_LEVEL_AMX; lv++) {
            if (!kernel_level_checked((repq_kernel_level)lv))
                continue;
            session_logits(qs[m], 1, (repq_kernel_level)lv, images, got);
            if (memcmp(ref, got, sizeof ref))
                fail_msg("level %s differs from scalar", repq_kernel_level_name((repq_kernel_level)lv));
            if (lv == REPQ_LEVEL_AMX && qs[m] == f->w4a4)
                amx_sessions_read_either_form(qs[m], images, ref, got, sizeof ref);
        }
    }
    repq_tensor_free(images);
}

static void threads_give_the_same_bits(void **state)
{
    fixture *f = *state;
    static float one[N_SMALL * CLASSES], two[N_SMALL * CLASSES], three[N_SMALL * CLASSES];
    repq_kernel_level best = repq_kernel_level_best(repq_cpu_detect());
    session_logits(f->w4a4, 1, best, f->small, one);
    session_logits(f->w4a4, 2, best, f->small, two);
    session_logits(f->w4a4, 3, best, f->small, three);
    assert_memory_equal(one, two, sizeof one);
    assert_memory_equal(one, three, sizeof one);
}

/* The last block's class-token shortcut (one query row per head, the row-wise rest on
 * the class rows alone) against every row through it: W8A8 on one image and on three
 * (the class rows moved to the front; 195 rows, AMX's row blocks and a tail) with one
 * thread and on three with two, W4A4 on one. At each checked level: in meson's runs
 * the scalar one, and every_level_gives_the_same_bits holds each SIMD level's session,
 * shortcut included, to the scalar one's bits. */
static void class_token_shortcut_gives_the_same_bits(void **state)
{
    fixture *f = *state;
    enum { N_SHORT = 3 };
    static float full[N_SHORT * CLASSES], cut[N_SHORT * CLASSES];
    const struct {
        const repq_qmodel *q;
        int bits, threads;
        size_t n;
    } cases[] = {{f->w8a8, 8, 1, 1}, {f->w8a8, 8, 1, N_SHORT}, {f->w8a8, 8, 2, N_SHORT}, {f->w4a4, 4, 1, 1}};
    repq_tensor *images = slice(f->small, 0, N_SHORT);
    for (int lv = REPQ_LEVEL_SCALAR; lv <= REPQ_LEVEL_AMX; lv++) {
        if (!kernel_level_checked((repq_kernel_level)lv))
            continue;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const size_t n = cases[c].n, bytes = n * CLASSES * sizeof(float);
            repq_options *o;
            repq_session *s;
            assert_int_equal(repq_options_new(&o), REPQ_OK);
            assert_int_equal(repq_options_set_int(o, REPQ_OPT_THREADS, cases[c].threads), REPQ_OK);
            assert_int_equal(repq_options_set_int(o, REPQ_OPT_KERNELS, (int64_t)lv + 1), REPQ_OK);
            assert_int_equal(repq_session_new(NULL, cases[c].q, o, N_SHORT, &s), REPQ_OK);
            repq_tensor *x = slice(images, 0, n), *y = logits_new(n);
            repq_session_run_all_rows(s, true);
            assert_int_equal(repq_session_run(s, x, y), REPQ_OK);
            assert_int_equal(repq_tensor_read(y, full, bytes), REPQ_OK);
            repq_session_run_all_rows(s, false);
            assert_int_equal(repq_session_run(s, x, y), REPQ_OK);
            assert_int_equal(repq_tensor_read(y, cut, bytes), REPQ_OK);
            if (memcmp(full, cut, bytes))
                fail_msg("W%dA%d, level %s, %d threads, %zu images: the shortcut changes the logits", cases[c].bits,
                         cases[c].bits, repq_kernel_level_name((repq_kernel_level)lv), cases[c].threads, n);
            repq_tensor_free(x);
            repq_tensor_free(y);
            repq_session_free(s);
            repq_options_free(o);
        }
    }
    repq_tensor_free(images);
}

/* F32 preprocessed images give the same logits as the U8 pixels they come from. */
static void float_images_match_pixels(void **state)
{
    fixture *f = *state;
    const repq_arch *a = &f->w8a8->arch;
    size_t n = N_SMALL, ch = (size_t)a->in_chans, hw = (size_t)a->img_size * (size_t)a->img_size;
    float *px = malloc(n * ch * hw * sizeof(float));
    assert_non_null(px);
    const uint8_t *u = f->small->data;
    for (size_t b = 0; b < n; b++)
        for (size_t c = 0; c < ch; c++)
            for (size_t i = 0; i < hw; i++) {
                float v = (float)u[(b * ch + c) * hw + i] * a->pixel_scale;
                px[(b * ch + c) * hw + i] = (v - a->mean[c]) / a->std[c];
            }
    int64_t shape[4] = {(int64_t)n, (int64_t)ch, a->img_size, a->img_size};
    repq_tensor *x;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 4, shape, px, &x), REPQ_OK);
    static float from_u8[N_SMALL * CLASSES], from_f32[N_SMALL * CLASSES];
    repq_kernel_level best = repq_kernel_level_best(repq_cpu_detect());
    session_logits(f->w8a8, 1, best, f->small, from_u8);
    session_logits(f->w8a8, 1, best, x, from_f32);
    assert_memory_equal(from_u8, from_f32, sizeof from_u8);
    repq_tensor_free(x);
    free(px);
}

/* ---- no allocation while running ------------------------------------------------- */

static void run_allocates_nothing(void **state)
{
    fixture *f = *state;
    repq_tensor *x4 = slice(f->small, 0, 4);
    session_runs_allocate_nothing(f->w8a8, f->small, x4, CLASSES);
    repq_tensor_free(x4);
}

/* ---- errors ---------------------------------------------------------------------- */

static void bad_input_is_rejected(void **state)
{
    fixture *f = *state;
    repq_context *ctx;
    repq_session *s = (repq_session *)1;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    assert_int_equal(repq_session_new(ctx, NULL, NULL, 4, &s), REPQ_ERR_INVALID_ARGUMENT);
    assert_null(s);
    assert_int_equal(repq_session_new(ctx, f->w8a8, NULL, 4, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_session_new(ctx, f->w8a8, NULL, 0, &s), REPQ_ERR_INVALID_ARGUMENT);
    assert_true(strlen(repq_last_error(ctx)) > 0);
    assert_int_equal(repq_session_new(ctx, f->raw, NULL, 4, &s), REPQ_ERR_STATE);
    assert_non_null(strstr(repq_last_error(ctx), "reparameterize"));
    assert_null(s);

    assert_int_equal(repq_session_new(ctx, f->w8a8, NULL, 4, &s), REPQ_OK);
    repq_tensor *y4 = logits_new(4), *y16 = logits_new(N_SMALL), *y3 = logits_new(3);
    repq_tensor *x4 = slice(f->small, 0, 4);
    assert_int_equal(repq_session_run(NULL, x4, y4), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_session_run(s, NULL, y4), REPQ_ERR_INVALID_ARGUMENT);
    assert_true(strlen(repq_last_error(s)) > 0);
    assert_int_equal(repq_session_run(s, x4, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_session_run(s, x4, y3), REPQ_ERR_SHAPE);
    assert_true(strlen(repq_last_error(s)) > 0);
    /* N > max_batch */
    assert_int_equal(repq_session_run(s, f->small, y16), REPQ_ERR_SHAPE);
    assert_non_null(strstr(repq_last_error(s), "max_batch"));
    /* wrong image size */
    int64_t bad[4] = {1, 3, 16, 16};
    repq_tensor *xb, *y1 = logits_new(1);
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_U8, 4, bad, NULL, &xb), REPQ_OK);
    assert_int_equal(repq_session_run(s, xb, y1), REPQ_ERR_SHAPE);
    repq_tensor_free(xb);
    /* NaN in F32 images */
    int64_t good[4] = {1, 3, 32, 32};
    static float px[3 * 32 * 32];
    px[100] = NAN;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 4, good, px, &xb), REPQ_OK);
    assert_int_equal(repq_session_run(s, xb, y1), REPQ_ERR_NUMERIC);
    assert_true(strlen(repq_last_error(s)) > 0);
    repq_tensor_free(xb);
    /* Still works afterwards. */
    assert_int_equal(repq_session_run(s, x4, y4), REPQ_OK);
    repq_tensor_free(x4);
    repq_tensor_free(y1);
    repq_tensor_free(y3);
    repq_tensor_free(y4);
    repq_tensor_free(y16);
    repq_session_free(s);
    repq_session_free(NULL);
    repq_context_free(ctx);
}

/* A qmodel saved and loaded again runs to the same logits. */
static void loaded_qmodel_runs(void **state)
{
    fixture *f = *state;
    char path[] = "/tmp/repq_test_infer_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    repq_qmodel *l;
    assert_int_equal(repq_qmodel_save(f->w8a8, path), REPQ_OK);
    assert_int_equal(repq_qmodel_load(NULL, path, &l), REPQ_OK);
    remove(path);
    static float a[N_SMALL * CLASSES], b[N_SMALL * CLASSES];
    repq_kernel_level best = repq_kernel_level_best(repq_cpu_detect());
    session_logits(f->w8a8, 1, best, f->small, a);
    session_logits(l, 1, best, f->small, b);
    assert_memory_equal(a, b, sizeof a);
    repq_qmodel_free(l);
}

/* ---- many threads, one qmodel ----------------------------------------------------- */

static void sessions_share_one_qmodel(void **state)
{
    fixture *f = *state;
    static float ref[N_SMALL * CLASSES];
    session_logits(f->w8a8, 1, repq_kernel_level_best(repq_cpu_detect()), f->small, ref);
    sessions_on_threads(f->w8a8, f->small, 8, ref, N_SMALL * CLASSES);
}

/* Sessions of one qmodel hold one copy of its packed weights: the second session adds
 * only its own scratch, the weights outlive the first session's free and go with the
 * last one's, and a session on the survivors computes the same bits. */
static void sessions_share_packed_weights(void **state)
{
    fixture *f = *state;
    static float ref[N_SMALL * CLASSES], got[N_SMALL * CLASSES];
    const repq_kernel_level best = repq_kernel_level_best(repq_cpu_detect());
    session_logits(f->w8a8, 1, best, f->small, ref);
    assert_null(f->w8a8->shared);
    repq_session *a, *b;
    assert_int_equal(repq_session_new(NULL, f->w8a8, NULL, N_SMALL, &a), REPQ_OK);
    const repq_shared_weights *w = f->w8a8->shared;
    assert_non_null(w);
    assert_int_equal(repq_session_new(NULL, f->w8a8, NULL, 1, &b), REPQ_OK);
    assert_ptr_equal(f->w8a8->shared, w);
    assert_int_equal(w->users, 2);
    size_t shared_a, own_a, shared_b, own_b;
    repq_session_memory(a, &shared_a, &own_a);
    repq_session_memory(b, &shared_b, &own_b);
    assert_int_equal(shared_a, shared_b);
    /* Packed weights: at least one byte per weight of every layer. */
    size_t weights = 0;
    for (int32_t i = 0; i < f->w8a8->num_linear; i++)
        weights += (size_t)f->w8a8->linear[i].out * (size_t)f->w8a8->linear[i].in;
    assert_true(shared_a >= weights);
    assert_true(own_b < own_a); /* scratch for 1 image against 16 */
    print_message("shared weights %.2f MB; own memory %.2f MB at max_batch %d, %.2f MB at 1\n", shared_a / 1e6,
                  own_a / 1e6, N_SMALL, own_b / 1e6);
    repq_session_free(a);
    assert_ptr_equal(f->w8a8->shared, w);
    assert_int_equal(w->users, 1);
    for (size_t i = 0; i < N_SMALL; i++) {
        repq_tensor *x = slice(f->small, i, 1), *y = logits_new(1);
        assert_int_equal(repq_session_run(b, x, y), REPQ_OK);
        assert_int_equal(repq_tensor_read(y, got + i * CLASSES, CLASSES * sizeof(float)), REPQ_OK);
        repq_tensor_free(x);
        repq_tensor_free(y);
    }
    assert_memory_equal(got, ref, sizeof ref);
    repq_session_free(b);
    assert_null(f->w8a8->shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_input_is_rejected),
        cmocka_unit_test(run_allocates_nothing),
        cmocka_unit_test(two_region_sums_are_bounded_by_the_fine_grid),
        cmocka_unit_test(every_level_gives_the_same_bits),
        cmocka_unit_test(threads_give_the_same_bits),
        cmocka_unit_test(class_token_shortcut_gives_the_same_bits),
        cmocka_unit_test(float_images_match_pixels),
        cmocka_unit_test(sessions_share_one_qmodel),
        cmocka_unit_test(sessions_share_packed_weights),
        cmocka_unit_test(loaded_qmodel_runs),
        cmocka_unit_test(agrees_with_fake_quant_w8a8),
        cmocka_unit_test(agrees_with_fake_quant_w4a4),
    };
    /* REPQ_TEST_FILTER runs only the tests whose names match (e.g. the threaded one under
     * ThreadSanitizer, where the whole suite is slow). A run for one SIMD level runs
     * only the level comparison: the plain "infer" runs the rest once. */
    kernel_levels_select();
    if (getenv("REPQ_TEST_FILTER"))
        cmocka_set_test_filter(getenv("REPQ_TEST_FILTER"));
    else if (!kernel_level_checked(REPQ_LEVEL_SCALAR))
        cmocka_set_test_filter("every_level_gives_the_same_bits");
    return cmocka_run_group_tests(tests, setup, teardown);
}
