/* Accuracy suite: the bundled CIFAR-10 ViT calibrated on 32 training images and
 * evaluated on the 5,000 bundled test images, fp32 and W8A8/W6A6/W4A4 with librepq's
 * default pipeline (SQ-b, RepQ-ViT with the two-region post-GELU quantizer, GPTQ towards
 * the float model), with RepQ-ViT alone and with the min/max baseline. Prints the table
 * that docs/accuracy.md reports. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "core/tensor.h"
#include "model/qmodel.h"
#include "repq/repq.h"
#include "unrounded_zero_point.h"
#include "fold_f64.h"
#include "vit_f64.h"

#define MODEL_PATH REPQ_TEST_DATA "/vit_tiny_cifar10.safetensors"
#define CALIB_IMAGES REPQ_TEST_DATA "/cifar10_calib.bin"
#define TEST_IMAGES REPQ_TEST_DATA "/cifar10_test_dev.bin"
#define REF_LOGITS REPQ_TEST_DATA "/vit_tiny_cifar10_ref.bin"
#define N_CALIB 32
/* Test images that checks needing fewer than all of them use: the first ones. */
#define N_UNSEEN 1000

typedef struct suite {
    repq_model *model;
    repq_tensor *calib, *calib_labels, *test, *labels, *logits;
    int64_t n;
    double fp32;
    double w4a4;     /* W4A4 top-1 once measured (0 before) */
    bool have_fp32;  /* fp32_logits holds the float model's logits of every test image */
    float *fp32_logits;
} suite;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int setup(void **state)
{
    static suite s;
    static float fp32_logits[5000 * 10];
    s.fp32_logits = fp32_logits;
    if (repq_model_load(NULL, MODEL_PATH, NULL, &s.model) ||
        repq_cifar_load(NULL, CALIB_IMAGES, 0, N_CALIB, &s.calib, &s.calib_labels) ||
        repq_cifar_load(NULL, TEST_IMAGES, 0, 0, &s.test, &s.labels) ||
        repq_tensor_describe(s.labels, NULL, NULL, &s.n, 1) || s.n > 5000)
        return -1;
    int64_t shape[2] = {s.n, 10};
    if (repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &s.logits))
        return -1;
    *state = &s;
    return 0;
}

static int teardown(void **state)
{
    suite *s = *state;
    repq_model_free(s->model);
    repq_tensor_free(s->calib);
    repq_tensor_free(s->calib_labels);
    repq_tensor_free(s->test);
    repq_tensor_free(s->labels);
    repq_tensor_free(s->logits);
    return 0;
}

/* The float model's logits of every test image, computed once per run (in s->logits
 * when computed here). */
static const float *fp32_logits(suite *s)
{
    if (!s->have_fp32) {
        assert_int_equal(repq_model_forward(s->model, s->test, s->logits), REPQ_OK);
        assert_int_equal(repq_tensor_read(s->logits, s->fp32_logits, (size_t)s->n * 10 * sizeof(float)), REPQ_OK);
        s->have_fp32 = true;
    }
    return s->fp32_logits;
}

static void fp32_matches_reference_accuracy(void **state)
{
    suite *s = *state;
    s->have_fp32 = false;
    fp32_logits(s);
    assert_int_equal(repq_top1_compute(s->logits, s->labels, &s->fp32), REPQ_OK);
    print_message("| fp32 | %.2f |\n", 100 * s->fp32);
    /* PyTorch reaches 79.94 on these 5,000 images (the model's provenance, GPU). */
    assert_true(fabs(100 * s->fp32 - 79.94) <= 0.1);
}

/* The standard calibration set through calibration with options `o` and
 * reparameterization. Returns the
 * reparameterized model; hands out the channel-wise one and the calibrator if asked
 * (freed otherwise), and the seconds of calibration + reparameterization if secs is
 * set. */
static repq_qmodel *calibrated_with(suite *s, const repq_options *o, repq_qmodel **out_channelwise,
                                    repq_calib **out_calib, double *secs)
{
    repq_calib *c;
    repq_qmodel *q, *r;
    assert_int_equal(repq_calib_new(NULL, s->model, o, &c), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, s->calib), REPQ_OK);
    double t0 = now();
    assert_int_equal(repq_calib_finish(c, &q), REPQ_OK);
    assert_int_equal(repq_qmodel_reparameterize(NULL, q, &r), REPQ_OK);
    if (secs)
        *secs = now() - t0;
    if (out_calib)
        *out_calib = c;
    else
        repq_calib_free(c);
    if (out_channelwise)
        *out_channelwise = q;
    else
        repq_qmodel_free(q);
    return r;
}

/* The library's default options at these widths. */
static repq_options *default_options(int wbits, int abits)
{
    repq_options *o;
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, wbits), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_ACT_BITS, abits), REPQ_OK);
    return o;
}

/* One method alone, without the default's SQ-b, GPTQ towards the float model when
 * reconstructing: these widths, method and post-GELU quantizer. */
static repq_options *options_for(int wbits, int abits, int method, int post_gelu)
{
    repq_options *o = default_options(wbits, abits);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_METHOD, method), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_POST_GELU, post_gelu), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_SMOOTH, REPQ_SMOOTH_OFF), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_GPTQ_TARGET, REPQ_GPTQ_TARGET_QUANTIZED_INPUT), REPQ_OK);
    return o;
}

/* calibrated_with options_for these widths, method and post-GELU quantizer. */
static repq_qmodel *calibrated(suite *s, int wbits, int abits, int method, int post_gelu,
                               repq_qmodel **out_channelwise, repq_calib **out_calib, double *secs)
{
    repq_options *o = options_for(wbits, abits, method, post_gelu);
    repq_qmodel *r = calibrated_with(s, o, out_channelwise, out_calib, secs);
    repq_options_free(o);
    return r;
}

/* Calibrate with one method alone (two-region post-GELU quantizer, no SQ-b),
 * reparameterize and evaluate the fake-quant model, rounded to nearest; its logits stay
 * in s->logits. The calibrator is handed out if out_calib is set
 * (for reconstruction). */
static double quantized_top1(suite *s, int bits, int method, repq_qmodel **out_channelwise,
                             repq_qmodel **out_layerwise, repq_calib **out_calib)
{
    double secs, top1;
    repq_qmodel *r = calibrated(s, bits, bits, method, REPQ_POST_GELU_TWO_REGION, out_channelwise, out_calib, &secs);
    assert_int_equal(repq_qmodel_forward(r, REPQ_FORWARD_FAKE_QUANT, s->test, s->logits), REPQ_OK);
    assert_int_equal(repq_top1_compute(s->logits, s->labels, &top1), REPQ_OK);
    print_message("| W%dA%d | %s | %.2f | calibration + reparameterization %.2f s |\n", bits, bits,
                  method == REPQ_METHOD_REPQ ? "repq" : "minmax", 100 * top1, secs);
    if (out_layerwise)
        *out_layerwise = r;
    else
        repq_qmodel_free(r);
    return top1;
}

/* The default pipeline, what `repq quantize` does without flags: calibration with the
 * default options (SQ-b, two-region post-GELU quantizer), reparameterization and weight
 * reconstruction (GPTQ towards the float model). Evaluates the result's fake-quant
 * forward, whose logits stay in s->logits, and hands the result out. */
static double default_top1(suite *s, int bits, repq_qmodel **out_reconstructed)
{
    repq_options *o = default_options(bits, bits);
    repq_calib *c;
    repq_qmodel *g;
    double t0 = now(), top1;
    repq_qmodel *r = calibrated_with(s, o, NULL, &c, NULL);
    assert_int_equal(repq_calib_reconstruct(c, r, &g), REPQ_OK);
    double secs = now() - t0;
    assert_int_equal(repq_qmodel_forward(g, REPQ_FORWARD_FAKE_QUANT, s->test, s->logits), REPQ_OK);
    assert_int_equal(repq_top1_compute(s->logits, s->labels, &top1), REPQ_OK);
    print_message("| W%dA%d | default (SQ-b + repq + GPTQ towards the float model) | %.2f | whole pipeline %.2f s |\n",
                  bits, bits, 100 * top1, secs);
    repq_calib_free(c);
    repq_options_free(o);
    repq_qmodel_free(r);
    *out_reconstructed = g;
    return top1;
}

static int argmax(const float *row, int k)
{
    int best = 0;
    for (int j = 1; j < k; j++)
        best = row[j] > row[best] ? j : best;
    return best;
}

/* The integer session against the fake-quant logits left in s->logits (accuracy
 * fake_top1): the issue asks for the same top-1 on >= 99.5% of the images and
 * accuracies within 0.2 points. Measured on the 5,000 images: 99.86% (W8A8), 99.98%
 * (W6A6, W4A4); docs/inference.md. */
static void session_agrees(suite *s, const repq_qmodel *r, int bits, double fake_top1)
{
    enum { BATCH = 100 };
    size_t n = (size_t)s->n, per = s->test->nbytes / n;
    static float fake[5000 * 10], integer[5000 * 10];
    assert_true(n <= 5000);
    assert_int_equal(repq_tensor_read(s->logits, fake, n * 10 * sizeof(float)), REPQ_OK);
    repq_options *o;
    repq_session *ss;
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_THREADS, 2), REPQ_OK);
    assert_int_equal(repq_session_new(NULL, r, o, BATCH, &ss), REPQ_OK);
    for (size_t i = 0; i < n; i += BATCH) {
        size_t c = n - i < BATCH ? n - i : BATCH;
        int64_t ishape[4] = {(int64_t)c, s->test->shape[1], s->test->shape[2], s->test->shape[3]};
        int64_t lshape[2] = {(int64_t)c, 10};
        repq_tensor *x, *y;
        assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_U8, 4, ishape, (const uint8_t *)s->test->data + i * per, &x),
                         REPQ_OK);
        assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, lshape, NULL, &y), REPQ_OK);
        assert_int_equal(repq_session_run(ss, x, y), REPQ_OK);
        assert_int_equal(repq_tensor_read(y, integer + i * 10, c * 10 * sizeof(float)), REPQ_OK);
        repq_tensor_free(x);
        repq_tensor_free(y);
    }
    repq_session_free(ss);
    repq_options_free(o);
    const int32_t *labels = s->labels->data;
    size_t same = 0, hits = 0;
    for (size_t i = 0; i < n; i++) {
        int pi = argmax(integer + i * 10, 10);
        same += argmax(fake + i * 10, 10) == pi;
        hits += pi == labels[i];
    }
    double top1 = (double)hits / (double)n;
    print_message("| W%dA%d | integer session | %.2f | same top-1 as fake quant on %.2f%% of %zu images |\n", bits,
                  bits, 100 * top1, 100.0 * (double)same / (double)n, n);
    assert_true((double)same >= 0.995 * (double)n);
    assert_true(fabs(top1 - fake_top1) <= 0.002 + 1e-12);
}

/* Top-1 of the reference's unrounded z~ (unrounded_zero_point.c) for the calibrated q and
 * its reparameterization r, and the share of images on which it predicts what the
 * logits in `rounded` predict. */
static double unrounded_top1(suite *s, const repq_qmodel *q, const repq_qmodel *r, const float *rounded,
                             double *same_share)
{
    size_t n = (size_t)s->n, same = 0;
    double top1;
    assert_int_equal(unrounded_zero_point_forward(q, r, s->test, s->logits), REPQ_OK);
    assert_int_equal(repq_top1_compute(s->logits, s->labels, &top1), REPQ_OK);
    const float *u = s->logits->data;
    for (size_t i = 0; i < n; i++)
        same += argmax(u + i * 10, 10) == argmax(rounded + i * 10, 10);
    *same_share = (double)same / (double)n;
    return top1;
}

/* reference.md: librepq rounds z~ and folds the rounding into b; the reference keeps z~
 * fractional. The two must agree to within noise. They are different quantizations (the
 * reference's grid sits f steps off the channel-wise one and has 2^b + 1 levels), so at
 * 4 bits they disagree on 7-8% of the images, and their accuracies differ by a
 * calibration-set-dependent amount: over eight disjoint 32-image calibration sets the
 * difference (unrounded - rounded) was -0.05 points on average with a standard
 * deviation of 0.41, from -0.62 to +0.42 (+0.42 on the standard set; docs/accuracy.md,
 * REPQ_CALIB_SETS=8 reruns the study). Asserted: within 1.2 points (three standard
 * deviations), and the same top-1 on 90-99% (measured 92.0-92.8%; the upper bound
 * catches a rebuild that changes nothing). That the rebuild is the reference's fold is
 * checked in test_reparam. s->logits holds the rounded model's fake-quant logits on
 * entry. */
static void unrounded_agrees(suite *s, const repq_qmodel *q, const repq_qmodel *r, double rounded_top1)
{
    static float rounded[5000 * 10];
    size_t n = (size_t)s->n;
    assert_true(n <= 5000);
    assert_int_equal(repq_tensor_read(s->logits, rounded, n * 10 * sizeof(float)), REPQ_OK);
    double same;
    double top1 = unrounded_top1(s, q, r, rounded, &same);
    print_message("| W%dA%d | reference's unrounded z~ | %.2f | same top-1 as rounded z~ on %.2f%% |\n",
                  r->weight_bits, r->act_bits, 100 * top1, 100 * same);
    assert_true(fabs(top1 - rounded_top1) <= 0.012);
    assert_true(same >= 0.90 && same <= 0.99);
}

static void w8a8_and_w6a6_stay_near_fp32(void **state)
{
    suite *s = *state;
    double fp32 = 0.7994; /* measured by the first test when it ran; the reference value otherwise */
    if (s->fp32 > 0)
        fp32 = s->fp32;
    repq_qmodel *r8, *r6;
    double w8 = default_top1(s, 8, &r8);
    session_agrees(s, r8, 8, w8);
    double w6 = default_top1(s, 6, &r6);
    session_agrees(s, r6, 6, w6);
    /* The bound, on the default pipeline. Measured (docs/accuracy.md) the same on
     * every machine, since calibration and fake quantization sum their products exactly;
     * with sgemm, W6A6 once ranged over 79.60-79.84 with the OpenBLAS kernel the CPU got. */
    assert_true(100 * (fp32 - w8) <= 0.3);
    assert_true(100 * (fp32 - w6) <= 0.3);
    repq_qmodel_free(r8);
    repq_qmodel_free(r6);
}

static void float_weight_logits(suite *s, const repq_qmodel *m, float *out)
{
    assert_int_equal(repq_qmodel_forward_activations(m, &m->float_params, s->test, s->logits), REPQ_OK);
    assert_int_equal(repq_tensor_read(s->logits, out, (size_t)s->n * 10 * sizeof(float)), REPQ_OK);
}

static size_t same_top1(const float *a, const float *b, size_t n)
{
    size_t same = 0;
    for (size_t i = 0; i < n; i++)
        same += argmax(a + i * 10, 10) == argmax(b + i * 10, 10);
    return same;
}

static int argmax_f64(const double *row, int k)
{
    int best = 0;
    for (int j = 1; j < k; j++)
        best = row[j] > row[best] ? j : best;
    return best;
}

static size_t same_top1_f64(const double *a, const double *b, size_t n)
{
    size_t same = 0;
    for (size_t i = 0; i < n; i++)
        same += argmax_f64(a + i * 10, 10) == argmax_f64(b + i * 10, 10);
    return same;
}

/* A deterministic uniform draw in [0, 1). */
static double uniform01(uint64_t *state)
{
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return (double)(*state >> 11) * 0x1.0p-53;
}

/* Test values for quantizer aq (cols of them per row; rows * cols in all): across its
 * whole range and past both ends, zero and negatives included. */
static void quantizer_probe(const repq_act_quant *aq, size_t rows, size_t cols, uint64_t *state, float *x)
{
    for (size_t i = 0; i < rows * cols; i++) {
        const double u = uniform01(state);
        double v;
        if (aq->kind == REPQ_AQ_LOG_SQRT2 || aq->kind == REPQ_AQ_LOG2_PARITY) {
            /* log2(x / s) from 2 above the top level to 4 below the last one; some x <= 0 */
            const double lowest = (double)(1 << aq->log.bits) / (aq->log.base == REPQ_LOG_SQRT2 ? 2.0 : 1.0);
            v = u < 0.05 ? -u : (double)aq->log.scale * exp2(2.0 - (lowest + 6.0) * uniform01(state));
        } else {
            const repq_quant_params *g = aq->kind == REPQ_AQ_UNIFORM_CHANNEL ? &aq->per_channel[i % cols] : &aq->uniform;
            double s = (double)g->scale, z = (double)g->zero_point, top = (double)((1 << g->bits) - 1);
            if (aq->kind == REPQ_AQ_TWO_REGION) {
                s = (double)aq->two.scale;
                z = (double)aq->two.zero_point * ldexp(1.0, -aq->two.neg_shift);
                top = z + (double)((1 << aq->two.bits) - 1 - aq->two.zero_point);
            }
            v = s * ((top + 4.0) * u - z - 2.0); /* codes -2 .. top + 2, before clamping */
        }
        x[i] = (float)v;
    }
}

/* Every activation quantizer of q, applied by the library (float) and by vit_f64.c
 * (double) to the same values, gives the same level, except near a rounding boundary
 * (within 1e-6 relative, more for deep log codes), where float and double may round
 * apart. A level off by one step,
 * a clamp off by one code or a log code read as the zero state fails this. */
static void float64_quantizers_match_library(const repq_qmodel *q)
{
    enum { ROWS = 32, MAX_COLS = 1024 };
    static float x[ROWS * MAX_COLS];
    static double x64[ROWS * MAX_COLS], lo[ROWS * MAX_COLS], hi[ROWS * MAX_COLS];
    uint64_t state = 2026;
    size_t compared = 0, near_boundary = 0, kinds = 0;
    for (size_t a = 0; a < (size_t)q->net->num_slots; a++) {
        const repq_act_quant *aq = &q->acts[a];
        if (aq->kind == REPQ_AQ_NONE)
            continue;
        kinds |= 1u << aq->kind;
        const size_t cols = aq->kind == REPQ_AQ_UNIFORM_CHANNEL ? (size_t)aq->channels : MAX_COLS, n = ROWS * cols;
        assert_true(cols <= MAX_COLS);
        quantizer_probe(aq, ROWS, cols, &state, x);
        const bool is_log = aq->kind == REPQ_AQ_LOG_SQRT2 || aq->kind == REPQ_AQ_LOG2_PARITY;
        for (size_t i = 0; i < n; i++) {
            /* The band around a boundary: 1e-6 relative, wider for log codes, whose
             * log2(x / s) float computes to a few ulps of its own magnitude (7.6e-6 near
             * code 215 at 8 bits). */
            const double l = is_log && x[i] > 0.0f ? fabs(log2((double)x[i] / (double)aq->log.scale)) : 0.0;
            const double band = exp2(1.5e-6 + l * 0x1.0p-19);
            x64[i] = (double)x[i];
            lo[i] = (double)x[i] / band;
            hi[i] = (double)x[i] * band;
        }
        assert_int_equal(repq_act_quant_apply(aq, x, ROWS, cols), REPQ_OK);
        assert_true(vit_f64_fake_quantize(aq, x64, ROWS, cols) && vit_f64_fake_quantize(aq, lo, ROWS, cols) &&
                    vit_f64_fake_quantize(aq, hi, ROWS, cols));
        for (size_t i = 0; i < n; i++) {
            if (lo[i] != x64[i] || hi[i] != x64[i]) {
                near_boundary++;
                continue;
            }
            compared++;
            const double tol = 1e-6 * fmax(fabs(x64[i]), fabs((double)x[i]));
            if (!(fabs((double)x[i] - x64[i]) <= tol))
                fail_msg("quantizer %zu (kind %d): library %.9g, float64 %.9g", a, (int)aq->kind, (double)x[i], x64[i]);
        }
    }
    print_message("float64 quantizers against the library's: %zu values equal, %zu skipped near a boundary, kinds "
                  "0x%zx\n", compared, near_boundary, kinds);
    assert_true(near_boundary * 100 < compared);
}

/* The float64 quantizers that the reparameterization check relies on, on every
 * quantizer of the models calibrated at 4, 6 and 8 bits, before and after
 * reparameterization (every kind, the 8-bit log zero state included). */
static void reparameterization_reference_quantizers(void **state)
{
    suite *s = *state;
    for (int bits = 4; bits <= 8; bits += 2) {
        repq_qmodel *q, *r = calibrated(s, bits, bits, REPQ_METHOD_REPQ, REPQ_POST_GELU_TWO_REGION, &q, NULL, NULL);
        float64_quantizers_match_library(q);
        float64_quantizers_match_library(r);
        repq_qmodel_free(q);
        repq_qmodel_free(r);
    }
}

/* The float64 recomputation (vit_f64.c) is itself checked first: unquantized, against
 * PyTorch's logits of the first 256 test images (float32 on a GPU, so a few 1e-6 off
 * the exact ones). Measured 8.4e-6. */
static void float64_forward_matches_pytorch(const suite *s, const repq_qmodel *q, const double *values,
                                            const uint8_t *pixels)
{
    enum { N_REF = 256 };
    static float ref[N_REF * 10];
    static double ours[N_REF * 10];
    FILE *f = fopen(REF_LOGITS, "rb");
    assert_non_null(f);
    assert_int_equal(fread(ref, sizeof(float), N_REF * 10, f), N_REF * 10);
    fclose(f);
    assert_true(s->n >= N_REF);
    assert_true(vit_f64_forward(&q->arch, &q->float_params, values, NULL, pixels, N_REF, ours));
    double worst = 0.0;
    for (size_t i = 0; i < N_REF * 10; i++)
        worst = fmax(worst, fabs(ours[i] - (double)ref[i]));
    print_message("float64 forward against PyTorch (%d images): max abs logit difference %.2g\n", N_REF, worst);
    assert_true(worst <= 5e-5);
}

/* Reparameterization with the weights held fixed (float) must keep predictions: the
 * fold (method.md, Reparameterization) is an identity for the activation quantizers, and
 * the issue asks for the same top-1 on >= 99.9% of the images. Checked in float64
 * (vit_f64.c), the channel-wise model against
 *   - the fold computed in double (fold_f64.c) to the layer-wise quantizers the library
 *     chose: the identity itself, measured 100.00% at A4 on the 5,000 images, checked
 *     on the first 1,000;
 *   - the library's reparameterized model, its parameters as stored in float32:
 *     measured 99.92%, 4 images, one above the bound: a change that moves two more
 *     fails here on purpose (measured once: the float32 rounding of gamma / r_c and
 *     beta / r_c - b_c alone costs 1 image, that of W r_c and the next bias 3).
 * The library's float32 forward adds its own rounding, which differs between the two
 * parameter sets, flips a few codes per image and with them the predictions of images
 * whose top two logits are that close: 99.80%, short of the target, asserted >= 99.5%
 * (float32 reparameterizations to other targets, equal in exact arithmetic, agree with
 * the standard one on 99.76-99.94%: docs/accuracy.md). */
static void reparameterization_keeps_predictions(void **state)
{
    suite *s = *state;
    repq_qmodel *q, *r;
    quantized_top1(s, 4, REPQ_METHOD_REPQ, &q, &r, NULL);
    /* The fold in double on the first N_UNSEEN images: an identity needs no more to show
     * (any slip in it moves many predictions), and a float64 forward of 5,000 images is
     * two minutes of CPU. */
    const size_t n = (size_t)s->n, n_exact = n < N_UNSEEN ? n : N_UNSEEN;
    static float before[5000 * 10], after[5000 * 10];
    static double before64[5000 * 10], after64[5000 * 10], exact64[5000 * 10];
    static uint8_t pixels[5000 * 3 * 32 * 32];
    const size_t image_bytes = (size_t)q->arch.in_chans * (size_t)q->arch.img_size * (size_t)q->arch.img_size;
    assert_true(n <= 5000 && image_bytes == 3 * 32 * 32);
    assert_int_equal(repq_tensor_read(s->test, pixels, n * image_bytes), REPQ_OK);
    double *original = vit_f64_params(&q->float_params), *stored = vit_f64_params(&r->float_params),
           *exact = vit_f64_params(&r->float_params);
    bool ok = original && stored && exact && fold_f64(q, r, exact);
    if (ok)
        float64_forward_matches_pytorch(s, q, original, pixels);
    ok = ok && vit_f64_forward(&q->arch, &q->float_params, original, q->acts, pixels, n, before64) &&
         vit_f64_forward(&r->arch, &r->float_params, exact, r->acts, pixels, n_exact, exact64) &&
         vit_f64_forward(&r->arch, &r->float_params, stored, r->acts, pixels, n, after64);
    free(original);
    free(stored);
    free(exact);
    assert_true(ok);
    const size_t same_exact = same_top1_f64(before64, exact64, n_exact);
    const size_t same_stored = same_top1_f64(before64, after64, n);
    print_message("A4, float weights, float64: channel-wise vs reparameterized predictions identical on %.2f%% of "
                  "%zu images (fold in double), %.2f%% of %zu (the library's, float32 parameters)\n",
                  100.0 * (double)same_exact / (double)n_exact, n_exact, 100.0 * (double)same_stored / (double)n, n);
    assert_true((double)same_exact >= 0.999 * (double)n_exact);
    assert_true((double)same_stored >= 0.999 * (double)n);
    float_weight_logits(s, q, before);
    float_weight_logits(s, r, after);
    const size_t same32 = same_top1(before, after, n);
    print_message("A4, float weights, float32: channel-wise vs reparameterized predictions identical on %.2f%%\n",
                  100.0 * (double)same32 / (double)n);
    assert_true((double)same32 >= 0.995 * (double)n);
    /* The library's float32 fake quantization against the float64 recomputation of the
     * same quantizers (and the session's GELU, in double): float32 noise only, measured
     * 99.80% / 99.78% same top-1 (99.58% / 99.70% when both used the erf form). Against
     * the erf form in double the session's GELU gave 96.46%: a change of 1e-6 in GELU's
     * value is not noise to this check. A
     * quantizer read differently moves it to 91-93% (checked on 500 images: log codes
     * floored instead of rounded; the two-region negative step taken as s). */
    const float *f32[2] = {before, after};
    const double *f64[2] = {before64, after64};
    for (int m = 0; m < 2; m++) {
        size_t same = 0;
        double mse = 0.0;
        for (size_t i = 0; i < n; i++) {
            same += argmax(f32[m] + i * 10, 10) == argmax_f64(f64[m] + i * 10, 10);
            for (int j = 0; j < 10; j++)
                mse += (f32[m][i * 10 + j] - f64[m][i * 10 + j]) * (f32[m][i * 10 + j] - f64[m][i * 10 + j]);
        }
        print_message("A4, float weights, %s: float32 fake quantization against float64: same top-1 on %.2f%%, "
                      "logit MSE %.4f\n",
                      m ? "reparameterized" : "channel-wise", 100.0 * (double)same / (double)n, mse / (double)n);
        assert_true((double)same >= 0.99 * (double)n);
    }
    repq_qmodel_free(q);
    repq_qmodel_free(r);
}

/* Mean squared logit distance of a from b, and how many top-1 predictions agree. */
static double logit_mse(const float *a, const float *b, size_t n, size_t *same)
{
    double e = 0.0;
    for (size_t i = 0; i < n * 10; i++)
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    *same = same_top1(a, b, n);
    return e / (double)n;
}

/* Optional GPTQ weight reconstruction (docs/method.md) of the W4A4 model whose
 * round-to-nearest logits are `nearest`: reported, and held to the same floor as
 * round-to-nearest. Across eight calibration sets its mean top-1 moved by -0.02 and its
 * logit error against fp32 by 0.81-1.00 times: at A4 the activations dominate
 * (docs/accuracy.md); w4a8_gptq_lowers_the_weight_error checks what GPTQ itself does. */
static void w4a4_gptq_reported(suite *s, repq_calib *c, const repq_qmodel *r, const float *nearest)
{
    static float gptq[5000 * 10];
    size_t n = (size_t)s->n, same_nearest, same_gptq;
    repq_qmodel *g;
    double t0 = now();
    assert_int_equal(repq_calib_reconstruct(c, r, &g), REPQ_OK);
    double secs = now() - t0, top1;
    assert_int_equal(repq_qmodel_forward(g, REPQ_FORWARD_FAKE_QUANT, s->test, s->logits), REPQ_OK);
    assert_int_equal(repq_top1_compute(s->logits, s->labels, &top1), REPQ_OK);
    assert_int_equal(repq_tensor_read(s->logits, gptq, n * 10 * sizeof(float)), REPQ_OK);
    const float *fp32 = fp32_logits(s);
    double mse_nearest = logit_mse(nearest, fp32, n, &same_nearest), mse_gptq = logit_mse(gptq, fp32, n, &same_gptq);
    print_message("| W4A4 | repq + GPTQ | %.2f | reconstruction %.2f s |\n", 100 * top1, secs);
    print_message("W4A4 against fp32: logit MSE %.3f (round to nearest) -> %.3f (GPTQ); same top-1 %.2f%% -> %.2f%%\n",
                  mse_nearest, mse_gptq, 100.0 * (double)same_nearest / (double)n, 100.0 * (double)same_gptq / (double)n);
    assert_true(100 * top1 >= 79.12 - 0.5);
    repq_qmodel_free(g);
}

/* Logit error against fp32 of two qmodels on the first N_UNSEEN test images, which
 * calibration never saw: mean squared error and predictions equal to fp32's. */
typedef struct fidelity {
    double mse[2];
    size_t same[2];
} fidelity;

/* known[i], when set, holds q[i]'s fake-quant logits of every test image (its first
 * N_UNSEEN rows are used); otherwise they are computed here. */
static fidelity against_fp32(suite *s, const repq_qmodel *const q[2], const float *const known[2])
{
    static float quant[N_UNSEEN * 10];
    const float *fp32 = fp32_logits(s);
    repq_tensor *images = NULL, *labels = NULL, *logits = NULL;
    fidelity f;
    for (int i = 0; i < 2; i++) {
        const float *rows = known[i];
        if (!rows) {
            if (!images) {
                int64_t shape[2] = {N_UNSEEN, 10};
                assert_int_equal(repq_cifar_load(NULL, TEST_IMAGES, 0, N_UNSEEN, &images, &labels), REPQ_OK);
                assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &logits), REPQ_OK);
            }
            assert_int_equal(repq_qmodel_forward(q[i], REPQ_FORWARD_FAKE_QUANT, images, logits), REPQ_OK);
            assert_int_equal(repq_tensor_read(logits, quant, sizeof quant), REPQ_OK);
            rows = quant;
        }
        f.mse[i] = logit_mse(rows, fp32, N_UNSEEN, &f.same[i]);
    }
    repq_tensor_free(images);
    repq_tensor_free(labels);
    repq_tensor_free(logits);
    return f;
}

static void print_fidelity(const char *what, const char *a, const char *b, const fidelity *f)
{
    print_message("%s against fp32 (%d images): logit MSE %.3f (%s) -> %.3f (%s); same top-1 %.1f%% -> %.1f%%\n",
                  what, N_UNSEEN, f->mse[0], a, f->mse[1], b, 100.0 * (double)f->same[0] / N_UNSEEN,
                  100.0 * (double)f->same[1] / N_UNSEEN);
}

/* The two-region post-GELU quantizer (MPTQ-ViT's OPT-m) against the reference's single
 * grid at W4A4: the logits must come closer to fp32's. Measured on eight calibration
 * sets over 5,000 images: logit MSE 0.84-0.93 times the single grid's, 0.90 on the
 * standard set (docs/accuracy.md). */
static void two_region_post_gelu_nearer_fp32(void **state)
{
    suite *s = *state;
    const repq_qmodel *q[2] = {calibrated(s, 4, 4, REPQ_METHOD_REPQ, REPQ_POST_GELU_UNIFORM, NULL, NULL, NULL),
                               calibrated(s, 4, 4, REPQ_METHOD_REPQ, REPQ_POST_GELU_TWO_REGION, NULL, NULL, NULL)};
    const float *const computed_here[2] = {NULL, NULL};
    fidelity f = against_fp32(s, q, computed_here);
    print_fidelity("W4A4", "post-GELU uniform", "two regions", &f);
    assert_true(f.mse[1] < 0.95 * f.mse[0]);
    repq_qmodel_free((repq_qmodel *)q[0]);
    repq_qmodel_free((repq_qmodel *)q[1]);
}

/* GPTQ's own effect, where weights dominate the error (W4A8): the logits must come
 * clearly closer to fp32's. Measured on three calibration sets: logit MSE 0.46-0.59
 * times round-to-nearest's, same top-1 as fp32 on 95.9-96.5% -> 97.3-98.7% of the
 * images. */
static void w4a8_gptq_lowers_the_weight_error(void **state)
{
    suite *s = *state;
    repq_calib *c;
    repq_qmodel *g, *r = calibrated(s, 4, 8, REPQ_METHOD_REPQ, REPQ_POST_GELU_TWO_REGION, NULL, &c, NULL);
    assert_int_equal(repq_calib_reconstruct(c, r, &g), REPQ_OK);
    const repq_qmodel *q[2] = {r, g};
    const float *const computed_here[2] = {NULL, NULL};
    fidelity f = against_fp32(s, q, computed_here);
    print_fidelity("W4A8", "round to nearest", "GPTQ", &f);
    assert_true(f.mse[1] < 0.75 * f.mse[0]);
    assert_true(f.same[1] > f.same[0]);
    repq_qmodel_free(g);
    repq_qmodel_free(r);
    repq_calib_free(c);
}

static void w4a4_beats_reference_and_baseline(void **state)
{
    suite *s = *state;
    static float nearest[5000 * 10];
    assert_true((size_t)s->n <= 5000);
    repq_qmodel *q, *r;
    repq_calib *c;
    double repq = quantized_top1(s, 4, REPQ_METHOD_REPQ, &q, &r, &c);
    s->w4a4 = repq;
    assert_int_equal(repq_tensor_read(s->logits, nearest, (size_t)s->n * 10 * sizeof(float)), REPQ_OK);
    session_agrees(s, r, 4, repq);
    unrounded_agrees(s, q, r, repq);
    double minmax = quantized_top1(s, 4, REPQ_METHOD_MINMAX, NULL, NULL, NULL);
    /* The target: the public RepQ-ViT reference reaches 79.12 here (GPU,
     * PyTorch). librepq measures 79.20 with the two-region post-GELU quantizer (79.26
     * before session 14's GELU; 78.94 with the reference's single grid) and 79.78 with
     * the default pipeline, the same on every machine since calibration
     * and fake quantization sum their products exactly. It is one draw of the 32
     * calibration images: over eight disjoint sets the mean is 79.03 (sd 0.17) against
     * 78.94 (0.30) with the single grid (docs/accuracy.md). */
    assert_true(100 * repq >= 79.12);
    assert_true(100 * (repq - minmax) >= 1.0);
    w4a4_gptq_reported(s, c, r, nearest);
    repq_calib_free(c);
    repq_qmodel_free(q);
    repq_qmodel_free(r);
}

/* The default pipeline at W4A4 (SQ-b + RepQ-ViT + GPTQ towards the float model) against
 * RepQ-ViT alone rounded to nearest, standard set: its logits must come clearly nearer
 * fp32's on the 1,000 unseen images, top-1 on all 5,000 must be above both RepQ-ViT
 * alone and the public reference's 79.12, and the integer session agrees with the
 * fake-quant forward as for any qmodel. Over the eight calibration sets of
 * docs/accuracy.md: logit MSE 0.936 against 1.370 (0.68 times), top-1 79.48 against
 * 79.01, the default higher on seven sets of eight. */
static void w4a4_default_nearer_fp32(void **state)
{
    suite *s = *state;
    static float alone_logits[5000 * 10], default_logits[5000 * 10];
    const size_t bytes = (size_t)s->n * 10 * sizeof(float);
    repq_qmodel *g, *alone;
    double alone_top1 = quantized_top1(s, 4, REPQ_METHOD_REPQ, NULL, &alone, NULL);
    assert_int_equal(repq_tensor_read(s->logits, alone_logits, bytes), REPQ_OK);
    double top1 = default_top1(s, 4, &g);
    assert_int_equal(repq_tensor_read(s->logits, default_logits, bytes), REPQ_OK);
    session_agrees(s, g, 4, top1);
    const repq_qmodel *pair[2] = {alone, g};
    const float *const known[2] = {alone_logits, default_logits};
    fidelity f = against_fp32(s, pair, known);
    print_fidelity("W4A4", "RepQ-ViT alone, round to nearest", "default", &f);
    assert_true(f.mse[1] < 0.9 * f.mse[0]);
    assert_true(f.same[1] > f.same[0]);
    assert_true(100 * top1 >= 79.12);
    assert_true(top1 > alone_top1);
    repq_qmodel_free(g);
    repq_qmodel_free(alone);
}

/* Greedy mixed precision at an average of 5 weight bits and 5 activation bits against
 * uniform W4A4 on the standard calibration set, fake quantization, all 5,000 images; the
 * integer session must agree with it as with uniform widths. The targets are
 * over eight calibration sets (+0.5 over W4A4, within 0.3 of W6A6: docs/accuracy.md);
 * one set is one draw, with a standard deviation of 0.2-0.3 points, so the bound
 * asserted on it is looser: +0.2 (measured 79.42 against 79.20; 79.68 against 79.26
 * before session 14's GELU). */
static void w4a4_then_mixed_w5a5_above_it(void **state)
{
    suite *s = *state;
    if (s->w4a4 == 0.0) /* run alone (a filter): measure W4A4 here */
        s->w4a4 = quantized_top1(s, 4, REPQ_METHOD_REPQ, NULL, NULL, NULL);
    repq_options *o;
    repq_calib *c;
    repq_qmodel *q, *r;
    o = options_for(5, 5, REPQ_METHOD_REPQ, REPQ_POST_GELU_TWO_REGION); /* mixed precision alone */
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_MIXED, 1), REPQ_OK);
    assert_int_equal(repq_calib_new(NULL, s->model, o, &c), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, s->calib), REPQ_OK);
    double t0 = now();
    assert_int_equal(repq_calib_finish(c, &q), REPQ_OK);
    assert_int_equal(repq_qmodel_reparameterize(NULL, q, &r), REPQ_OK);
    double secs = now() - t0, top1;
    int64_t mixed = 0;
    assert_int_equal(repq_qmodel_get_int(r, REPQ_QMODEL_MIXED_WIDTHS, &mixed), REPQ_OK);
    assert_int_equal(mixed, 1);
    assert_int_equal(repq_qmodel_forward(r, REPQ_FORWARD_FAKE_QUANT, s->test, s->logits), REPQ_OK);
    assert_int_equal(repq_top1_compute(s->logits, s->labels, &top1), REPQ_OK);
    print_message("| W5A5 mixed | repq | %.2f | calibration + reparameterization %.2f s | uniform W4A4 %.2f |\n",
                  100 * top1, secs, 100 * s->w4a4);
    session_agrees(s, r, 5, top1);
    assert_true(100 * (top1 - s->w4a4) >= 0.2);
    repq_qmodel_free(q);
    repq_qmodel_free(r);
    repq_calib_free(c);
    repq_options_free(o);
}

/* REPQ_CALIB_SETS=N (not set in CI: about three minutes per set): W4A4 calibrated on N
 * disjoint 32-image sets (calibration images 32 i .. 32 i + 31), rounded and unrounded
 * z~ each evaluated on the 5,000 test images; prints the rows of docs/accuracy.md's
 * calibration-set table and the mean and standard deviation of each column. */
static void calibration_sets_study(void **state)
{
    suite *s = *state;
    const char *env = getenv("REPQ_CALIB_SETS");
    int sets = env ? atoi(env) : 0;
    if (sets < 1)
        skip();
    static float rounded[5000 * 10];
    size_t n = (size_t)s->n;
    assert_true(n <= 5000);
    repq_tensor *standard = s->calib;
    double sum[3] = {0}, sq[3] = {0};
    for (int i = 0; i < sets; i++) {
        repq_tensor *labels;
        assert_int_equal(repq_cifar_load(NULL, CALIB_IMAGES, 32 * i, N_CALIB, &s->calib, &labels), REPQ_OK);
        repq_qmodel *q, *r;
        double v[3], same;
        v[0] = quantized_top1(s, 4, REPQ_METHOD_REPQ, &q, &r, NULL);
        assert_int_equal(repq_tensor_read(s->logits, rounded, n * 10 * sizeof(float)), REPQ_OK);
        v[1] = unrounded_top1(s, q, r, rounded, &same);
        v[2] = v[1] - v[0];
        print_message("| %d-%d | %.2f | %.2f | %+.2f | %.1f%% |\n", 32 * i, 32 * i + 31, 100 * v[0], 100 * v[1],
                      100 * v[2], 100 * same);
        for (int j = 0; j < 3; j++) {
            sum[j] += 100 * v[j];
            sq[j] += 1e4 * v[j] * v[j];
        }
        repq_qmodel_free(q);
        repq_qmodel_free(r);
        repq_tensor_free(s->calib);
        repq_tensor_free(labels);
    }
    s->calib = standard;
    for (int j = 0; j < 3; j++) {
        double mean = sum[j] / sets, var = sets > 1 ? (sq[j] - sets * mean * mean) / (sets - 1) : 0.0;
        print_message("%s: mean %.2f, standard deviation %.2f\n", j == 0 ? "rounded" : j == 1 ? "unrounded" : "difference",
                      mean, sqrt(var > 0 ? var : 0));
    }
}

/* Which of meson's accuracy groups (REPQ_TEST_GROUP=1, 2, 3) runs a test: meson runs
 * the groups side by side, so each test is in exactly one of them. Group 0 is in none
 * (a study, not a test, which skips itself unless asked for); without REPQ_TEST_GROUP
 * every test runs. */
typedef struct grouped_test {
    int group;
    struct CMUnitTest test;
} grouped_test;

int main(void)
{
    static const grouped_test all[] = {
        {1, cmocka_unit_test(fp32_matches_reference_accuracy)},
        {1, cmocka_unit_test(two_region_post_gelu_nearer_fp32)},
        {1, cmocka_unit_test(w8a8_and_w6a6_stay_near_fp32)},
        {2, cmocka_unit_test(w4a4_beats_reference_and_baseline)},
        {1, cmocka_unit_test(w4a8_gptq_lowers_the_weight_error)},
        {2, cmocka_unit_test(w4a4_default_nearer_fp32)},
        {2, cmocka_unit_test(w4a4_then_mixed_w5a5_above_it)},
        {3, cmocka_unit_test(reparameterization_reference_quantizers)},
        {3, cmocka_unit_test(reparameterization_keeps_predictions)},
        {0, cmocka_unit_test(calibration_sets_study)},
    };
    enum { COUNT = sizeof all / sizeof all[0] };
    struct CMUnitTest tests[COUNT];
    size_t n = 0;
    const char *group = getenv("REPQ_TEST_GROUP");
    for (size_t i = 0; i < COUNT; i++)
        if (!group || atoi(group) == all[i].group)
            tests[n++] = all[i].test;
    if (n == 0) {
        fprintf(stderr, "REPQ_TEST_GROUP=%s names no group of tests\n", group);
        return 1;
    }
    /* REPQ_TEST_FILTER (a glob) narrows further: one test by name, by hand. */
    if (getenv("REPQ_TEST_FILTER"))
        cmocka_set_test_filter(getenv("REPQ_TEST_FILTER"));
    return _cmocka_run_group_tests("accuracy", tests, n, setup, teardown);
}
