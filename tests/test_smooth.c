/* Tests of lib/calib/smooth: SQ-b's statistics and factors on hand cases, each fold exact
 * with quantization off (ViT and Swin), what the folds do to the smoothed activations,
 * the composition with RepQ-ViT's reparameterization, and the integer session against
 * fake quantization with SQ-b on. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "calib/calib.h"
#include "calib/smooth.h"
#include "model/model.h"
#include "model/qmodel.h"
#include "repq/repq.h"
#include "vit_layout.h"

#define MODEL_PATH REPQ_TEST_DATA "/vit_tiny_cifar10.safetensors"
#define CALIB_IMAGES REPQ_TEST_DATA "/cifar10_calib.bin"
#define TEST_IMAGES REPQ_TEST_DATA "/cifar10_test_dev.bin"
#define SWIN_MODEL REPQ_TEST_DATA "/swin_micro_rand.safetensors"
#define SWIN_INPUTS REPQ_TEST_DATA "/swin_micro_rand_inputs.u8"

enum { N_CALIB = 32, N_TEST = 64, CLASSES = 10 };

typedef struct fixture {
    repq_model *model;
    repq_tensor *calib, *test;
    uint8_t *calib_pixels, *test_pixels;
    /* W4A4 RepQ-ViT without SQ-b, with SQ-b everywhere, with SQ-b on the LayerNorm pairs only. */
    repq_qmodel *plain, *sqb, *norms_only;
} fixture;

static uint8_t *pixels_of(repq_tensor *t)
{
    size_t n;
    if (repq_tensor_nbytes(t, &n))
        return NULL;
    uint8_t *p = malloc(n);
    if (p && repq_tensor_read(t, p, n)) {
        free(p);
        return NULL;
    }
    return p;
}

static repq_status calibrate(const fixture *f, bool smooth, int32_t sites, repq_qmodel **out)
{
    repq_options *o;
    repq_calib *c = NULL;
    repq_qmodel *q = NULL;
    repq_status st = repq_options_new(&o);
    if (!st && !(st = repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, 4)) &&
        !(st = repq_options_set_int(o, REPQ_OPT_ACT_BITS, 4)) &&
        !(st = repq_options_set_int(o, REPQ_OPT_SMOOTH, smooth ? REPQ_SMOOTH_SQB : REPQ_SMOOTH_OFF)) &&
        !(st = repq_calib_new(NULL, f->model, o, &c))) {
        c->smooth_sites = sites;
        if (!(st = repq_calib_feed(c, f->calib)))
            st = repq_calib_finish(c, &q);
    }
    repq_calib_free(c);
    repq_options_free(o);
    *out = q;
    return st;
}

static int setup(void **state)
{
    static fixture f;
    repq_tensor *labels, *test_labels;
    if (repq_model_load(NULL, MODEL_PATH, NULL, &f.model) ||
        repq_cifar_load(NULL, CALIB_IMAGES, 0, N_CALIB, &f.calib, &labels) ||
        repq_cifar_load(NULL, TEST_IMAGES, 0, N_TEST, &f.test, &test_labels))
        return -1;
    repq_tensor_free(labels);
    repq_tensor_free(test_labels);
    f.calib_pixels = pixels_of(f.calib);
    f.test_pixels = pixels_of(f.test);
    if (!f.calib_pixels || !f.test_pixels || calibrate(&f, false, 0, &f.plain) ||
        calibrate(&f, true, REPQ_SQB_ALL, &f.sqb) || calibrate(&f, true, REPQ_SQB_NORMS, &f.norms_only))
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    repq_qmodel_free(f->plain);
    repq_qmodel_free(f->sqb);
    repq_qmodel_free(f->norms_only);
    repq_tensor_free(f->calib);
    repq_tensor_free(f->test);
    free(f->calib_pixels);
    free(f->test_pixels);
    repq_model_free(f->model);
    return 0;
}

/* ---- Statistics and factors on hand cases ------------------------------------------ */

static void factors_follow_the_formula_on_hand_cases(void **state)
{
    (void)state;
    /* Five channels (columns) over five tokens:
     *   0: one outlier on one side: range [-1, 9], centre 4, half-range 5;
     *   1: constant 3: centre 3, no range, so sigma 1;
     *   2: all zero: centre 0, sigma 1;
     *   3: all negative, [-5, -1]: centre -3, half-range 2;
     *   4: range [1, 3] but a zero weight column: centre 2, sigma 1. */
    const float x[5][5] = {
        {-1.0f, 3.0f, 0.0f, -5.0f, 1.0f},
        {0.0f, 3.0f, 0.0f, -3.0f, 3.0f},
        {0.5f, 3.0f, 0.0f, -1.0f, 2.0f},
        {1.0f, 3.0f, 0.0f, -2.0f, NAN}, /* NaN is ignored */
        {9.0f, 3.0f, 0.0f, -4.0f, 1.5f},
    };
    /* Two output rows: column maxima |W| 0.25, 1, 2, 0.5, 0. */
    const float w[2][5] = {{0.25f, -1.0f, 2.0f, 0.1f, 0.0f}, {-0.1f, 0.5f, -2.0f, -0.5f, 0.0f}};
    float lo[5], hi[5], wmax[5], delta[5], sigma[5];
    for (int c = 0; c < 5; c++) {
        lo[c] = INFINITY;
        hi[c] = -INFINITY;
    }
    repq_smooth_ranges_update(&x[0][0], 3, 5, lo, hi); /* two calls: ranges accumulate */
    repq_smooth_ranges_update(&x[3][0], 2, 5, lo, hi);
    const float want_lo[5] = {-1, 3, 0, -5, 1}, want_hi[5] = {9, 3, 0, -1, 3};
    const float want_wmax[5] = {0.25f, 1.0f, 2.0f, 0.5f, 0.0f};
    repq_smooth_column_max(&w[0][0], 2, 5, wmax);
    for (int c = 0; c < 5; c++) {
        assert_true(lo[c] == want_lo[c]);
        assert_true(hi[c] == want_hi[c]);
        assert_true(wmax[c] == want_wmax[c]);
    }
    /* alpha 0.5: sigma = sqrt(half) / sqrt(wmax); 0: 1 / wmax; 1: half. */
    const double alphas[3] = {0.5, 0.0, 1.0};
    const double want_sigma[3][5] = {
        {sqrt(5.0) / sqrt(0.25), 1, 1, sqrt(2.0) / sqrt(0.5), 1},
        {1.0 / 0.25, 1, 1, 1.0 / 0.5, 1},
        {5.0, 1, 1, 2.0, 1},
    };
    const float want_delta[5] = {4, 3, 0, -3, 2};
    for (int a = 0; a < 3; a++) {
        repq_smooth_factors(lo, hi, wmax, 5, alphas[a], delta, sigma);
        for (int c = 0; c < 5; c++) {
            assert_true(delta[c] == want_delta[c]);
            assert_true(fabs(sigma[c] - want_sigma[a][c]) <= 1e-6 * want_sigma[a][c]);
        }
    }
    /* A channel that no token reached (lo = +inf, hi = -inf) and subnormal ranges keep
     * finite factors: delta 0 or the centre, sigma 1. */
    const float odd_lo[3] = {INFINITY, 1e-40f, -1e-40f}, odd_hi[3] = {-INFINITY, 2e-40f, 1e-40f};
    const float odd_w[3] = {1.0f, 1.0f, 1e-40f};
    repq_smooth_factors(odd_lo, odd_hi, odd_w, 3, 0.5, delta, sigma);
    for (int c = 0; c < 3; c++) {
        assert_true(isfinite(delta[c]));
        assert_true(sigma[c] == 1.0f);
    }
}

/* The two folds on a hand-sized layer, checked in double against the layer before:
 * a producer (2 channels from k = 2 inputs) then a consumer (3 outputs). */
static void folds_keep_a_small_layer_pair_exact(void **state)
{
    (void)state;
    float pw[2][2] = {{1.5f, -2.0f}, {0.25f, 4.0f}}, pb[2] = {0.5f, -7.0f};
    float cw[3][2] = {{1.0f, 2.0f}, {-3.0f, 0.5f}, {0.0f, 1.0f}}, cb[3] = {0.1f, 0.2f, 0.3f};
    const float pw0[2][2] = {{1.5f, -2.0f}, {0.25f, 4.0f}}, pb0[2] = {0.5f, -7.0f};
    const float cw0[3][2] = {{1.0f, 2.0f}, {-3.0f, 0.5f}, {0.0f, 1.0f}}, cb0[3] = {0.1f, 0.2f, 0.3f};
    const float delta[2] = {-6.5f, 3.0f}, sigma[2] = {4.0f, 0.125f};
    repq_smooth_fold_producer(&pw[0][0], pb, 2, 2, delta, sigma);
    repq_smooth_fold_consumer(&cw[0][0], cb, 3, 2, delta, sigma);
    /* The producer now makes (X - delta) / sigma. */
    assert_true(pw[0][0] == 1.5f / 4.0f && pw[1][1] == 4.0f / 0.125f);
    assert_true(pb[0] == (0.5f + 6.5f) / 4.0f && pb[1] == (-7.0f - 3.0f) / 0.125f);
    const double inputs[3][2] = {{1.0, 2.0}, {-3.0, 0.5}, {10.0, -10.0}};
    for (int t = 0; t < 3; t++) {
        double x0[2], x1[2];
        for (int c = 0; c < 2; c++) {
            x0[c] = pb0[c] + pw0[c][0] * inputs[t][0] + pw0[c][1] * inputs[t][1];
            x1[c] = pb[c] + pw[c][0] * inputs[t][0] + pw[c][1] * inputs[t][1];
        }
        for (int o = 0; o < 3; o++) {
            const double y0 = cb0[o] + cw0[o][0] * x0[0] + cw0[o][1] * x0[1];
            const double y1 = cb[o] + cw[o][0] * x1[0] + cw[o][1] * x1[1];
            assert_true(fabs(y1 - y0) <= 1e-5 * fmax(1.0, fabs(y0)));
        }
    }
}

/* ---- Folds on whole models --------------------------------------------------------- */

static float *float_logits(const repq_net *net, const repq_params *p, const uint8_t *pixels, size_t n)
{
    repq_allocator al = repq_allocator_of(NULL);
    float *logits = malloc(n * (size_t)net->arch.num_classes * sizeof(float));
    assert_non_null(logits);
    assert_int_equal(repq_net_forward(NULL, &al, net, p, pixels, true, n, NULL, logits), REPQ_OK);
    return logits;
}

/* Relative L2 and worst element (relative to max(1, |x|)) of y against x. */
static void assert_logits_close(const char *what, const float *x, const float *y, size_t n, double tol)
{
    double num = 0.0, den = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)x[i] - (double)y[i];
        num += d * d;
        den += (double)x[i] * x[i];
        worst = fmax(worst, fabs(d) / fmax(1.0, fabs(x[i])));
    }
    print_message("%s: relative L2 %.3g, worst element %.3g\n", what, sqrt(num / den), worst);
    assert_true(sqrt(num / den) <= tol);
    assert_true(worst <= tol);
}

/* SQ-b at `sites` on a copy of the model's parameters must leave its float logits on
 * other images unchanged, while actually rewriting the parameters. */
static void fold_keeps_logits(const repq_model *m, int32_t sites, const uint8_t *calib, size_t n_calib,
                              const uint8_t *test, size_t n_test, const char *what)
{
    repq_allocator al = repq_allocator_of(NULL);
    repq_params p;
    assert_int_equal(repq_params_copy(NULL, &al, m->net, &m->params, &p), REPQ_OK);
    const repq_smooth_config cfg = {sites, REPQ_SQB_ALPHA};
    assert_int_equal(repq_smooth_model(NULL, &al, m->net, &p, calib, true, n_calib, &cfg), REPQ_OK);
    size_t changed = 0;
    for (size_t i = 0; i < p.arena_floats; i++)
        changed += p.arena[i] != m->params.arena[i];
    assert_true(changed > 0);
    const size_t floats = n_test * (size_t)m->arch.num_classes;
    float *want = float_logits(m->net, &m->params, test, n_test);
    float *got = float_logits(m->net, &p, test, n_test);
    char label[128];
    snprintf(label, sizeof label, "%s, sites %d (%zu parameters rewritten)", what, (int)sites, changed);
    assert_logits_close(label, want, got, floats, 1e-4);
    free(want);
    free(got);
    repq_params_release(&al, &p);
}

static void each_fold_is_exact_on_the_vit(void **state)
{
    fixture *f = *state;
    const int32_t sites[4] = {REPQ_SQB_NORMS, REPQ_SQB_VALUES, REPQ_SQB_HEAD, REPQ_SQB_ALL};
    for (int i = 0; i < 4; i++)
        fold_keeps_logits(f->model, sites[i], f->calib_pixels, N_CALIB, f->test_pixels, N_TEST, "ViT float logits");
}

static void each_fold_is_exact_on_the_swin(void **state)
{
    (void)state;
    enum { N = 4, PIXELS = 3 * 224 * 224 };
    repq_model *m;
    assert_int_equal(repq_model_load(NULL, SWIN_MODEL, NULL, &m), REPQ_OK);
    uint8_t *images = malloc((size_t)N * PIXELS);
    FILE *fp = fopen(SWIN_INPUTS, "rb");
    assert_non_null(images);
    assert_non_null(fp);
    assert_int_equal(fread(images, 1, (size_t)N * PIXELS, fp), (size_t)N * PIXELS);
    fclose(fp);
    /* Its merge LayerNorm -> reduction pairs are among the LayerNorm pairs. */
    int merges = 0;
    for (int32_t i = 0; i < m->net->num_nodes; i++)
        merges += m->net->nodes[i].op == REPQ_OP_MERGE &&
                  m->net->linear[m->net->nodes[i].linear[0]].norm_weight == m->net->nodes[i].norm_weight;
    assert_true(merges > 0);
    /* Statistics from the first two images, logits of the other two. */
    const int32_t sites[4] = {REPQ_SQB_NORMS, REPQ_SQB_VALUES, REPQ_SQB_HEAD, REPQ_SQB_ALL};
    for (int i = 0; i < 4; i++)
        fold_keeps_logits(m, sites[i], images, 2, images + 2 * (size_t)PIXELS, 2, "Swin float logits");
    free(images);
    repq_model_free(m);
}

/* ---- What the folds do to the activations ----------------------------------------- */

typedef struct ranges {
    const repq_net *net;
    double *lo, *hi; /* [num_slots][widest] */
    size_t widest;
} ranges;

static repq_status record(void *user, int32_t slot, float *x, size_t rows, size_t cols)
{
    ranges *r = user;
    double *lo = r->lo + (size_t)slot * r->widest, *hi = r->hi + (size_t)slot * r->widest;
    for (size_t c = 0; c < cols && c < r->widest; c++) {
        lo[c] = INFINITY;
        hi[c] = -INFINITY;
        for (size_t i = 0; i < rows; i++) {
            lo[c] = fmin(lo[c], x[i * cols + c]);
            hi[c] = fmax(hi[c], x[i * cols + c]);
        }
    }
    return REPQ_OK;
}

static void record_ranges(const repq_net *net, const repq_params *p, const uint8_t *pixels, size_t n, ranges *r)
{
    r->net = net;
    r->widest = 4096;
    r->lo = calloc((size_t)net->num_slots * r->widest, sizeof(double));
    r->hi = calloc((size_t)net->num_slots * r->widest, sizeof(double));
    assert_non_null(r->lo);
    assert_non_null(r->hi);
    repq_allocator al = repq_allocator_of(NULL);
    repq_hook hook = {record, r, false, NULL, false};
    float *logits = malloc(n * (size_t)net->arch.num_classes * sizeof(float));
    assert_int_equal(repq_net_forward(NULL, &al, net, p, pixels, true, n, &hook, logits), REPQ_OK);
    free(logits);
}

/* sigma_c of SQ-b with alpha 0.5, from a range and the layer's weight, in double. */
static double sigma_of(double lo, double hi, const float *w, int32_t rows, int32_t cols, int32_t c)
{
    double wmax = 0.0;
    for (int32_t o = 0; o < rows; o++)
        wmax = fmax(wmax, fabs(w[(size_t)o * (size_t)cols + (size_t)c]));
    const double half = (hi - lo) / 2;
    return half > 0 && wmax > 0 ? sqrt(half) / sqrt(wmax) : 1.0;
}

/* After SQ-b every smoothed channel, on the images it was computed from, spans
 * [(lo - delta) / sigma, (hi - delta) / sigma] = [-h, h] with h = half / sigma: centred
 * on zero, each channel's reach sqrt(half * max|W_c|), the same balance for every one. */
static void smoothed_channels_are_centred_and_balanced(void **state)
{
    fixture *f = *state;
    repq_allocator al = repq_allocator_of(NULL);
    const repq_net *net = f->model->net;
    repq_params p;
    assert_int_equal(repq_params_copy(NULL, &al, net, &f->model->params, &p), REPQ_OK);
    const repq_smooth_config cfg = {REPQ_SQB_ALL, REPQ_SQB_ALPHA};
    assert_int_equal(repq_smooth_model(NULL, &al, net, &p, f->calib_pixels, true, N_CALIB, &cfg), REPQ_OK);
    ranges before, after;
    record_ranges(net, &f->model->params, f->calib_pixels, N_CALIB, &before);
    record_ranges(net, &p, f->calib_pixels, N_CALIB, &after);
    const repq_arch *a = &f->model->arch;
    /* Each smoothed point with the layer it feeds (whose weight sigma reads). */
    const repq_qpoint points[3] = {REPQ_QP_QKV_IN, REPQ_QP_PROJ_IN, REPQ_QP_FC1_IN};
    double worst = 0.0;
    for (int32_t b = -1; b < a->depth; b++)
        for (int pi = 0; pi < (b < 0 ? 1 : 3); pi++) {
            const repq_qpoint pt = b < 0 ? REPQ_QP_HEAD_IN : points[pi];
            const size_t slot = vit_act_index(a, b, pt);
            const int32_t id = b < 0 ? net->num_linear - 1 : vit_linear_id(b, pt == REPQ_QP_QKV_IN ? 0 : pt == REPQ_QP_PROJ_IN ? 1 : 2);
            assert_int_equal(net->linear[id].input, (int32_t)slot);
            int32_t rows, cols;
            const float *w = repq_net_linear_weight(net, &f->model->params, id, &rows, &cols);
            for (int32_t c = 0; c < cols; c++) {
                const double lo = before.lo[slot * before.widest + (size_t)c], hi = before.hi[slot * before.widest + (size_t)c];
                const double h = (hi - lo) / 2 / sigma_of(lo, hi, w, rows, cols, c);
                const double lo2 = after.lo[slot * after.widest + (size_t)c], hi2 = after.hi[slot * after.widest + (size_t)c];
                const double err = fmax(fabs(lo2 + h), fabs(hi2 - h)) / fmax(h, 1e-3);
                worst = fmax(worst, err);
            }
        }
    print_message("smoothed channels: largest deviation from [-h, h], relative to h: %.3g\n", worst);
    assert_true(worst <= 1e-3);
    free(before.lo);
    free(before.hi);
    free(after.lo);
    free(after.hi);
    repq_params_release(&al, &p);
}

/* ---- With calibration and reparameterization ------------------------------------- */

static void fake_logits(const repq_qmodel *q, repq_forward_mode mode, repq_tensor *images, float *out)
{
    const int64_t shape[2] = {N_TEST, CLASSES};
    repq_tensor *t;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &t), REPQ_OK);
    assert_int_equal(repq_qmodel_forward(q, mode, images, t), REPQ_OK);
    assert_int_equal(repq_tensor_read(t, out, N_TEST * CLASSES * sizeof(float)), REPQ_OK);
    repq_tensor_free(t);
}

static int argmax(const float *x)
{
    int best = 0;
    for (int j = 1; j < CLASSES; j++)
        best = x[j] > x[best] ? j : best;
    return best;
}

static int same_top1(const float *x, const float *y)
{
    int same = 0;
    for (int i = 0; i < N_TEST; i++)
        same += argmax(x + i * CLASSES) == argmax(y + i * CLASSES);
    return same;
}

/* SQ-b's folds, then RepQ-ViT's channel-wise -> layer-wise folds on the same LayerNorm
 * pairs: with quantization off the model still computes the float model's logits. */
static void sqb_then_reparameterization_is_exact(void **state)
{
    fixture *f = *state;
    repq_qmodel *r;
    assert_int_equal(repq_qmodel_reparameterize(NULL, f->sqb, &r), REPQ_OK);
    static float want[N_TEST * CLASSES], got[N_TEST * CLASSES], channelwise[N_TEST * CLASSES];
    const int64_t shape[2] = {N_TEST, CLASSES};
    repq_tensor *t;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &t), REPQ_OK);
    assert_int_equal(repq_model_forward(f->model, f->test, t), REPQ_OK);
    assert_int_equal(repq_tensor_read(t, want, sizeof want), REPQ_OK);
    repq_tensor_free(t);
    fake_logits(f->sqb, REPQ_FORWARD_FLOAT, f->test, channelwise);
    fake_logits(r, REPQ_FORWARD_FLOAT, f->test, got);
    assert_logits_close("SQ-b only, quantization off", want, channelwise, N_TEST * CLASSES, 1e-4);
    assert_logits_close("SQ-b then reparameterization, quantization off", want, got, N_TEST * CLASSES, 1e-4);
    repq_qmodel_free(r);
}

/* The composition with RepQ-ViT on a LayerNorm pair (docs/method.md, "SQ-b"): the
 * percentile search is affine-equivariant, so on X' = (X - delta) / sigma it finds the
 * channel scales s_c / sigma_c, and the reparameterized weights W' r' = sigma W r' are
 * RepQ's W r times one constant per layer. Block 0's qkv sees the same LayerNorm input
 * with and without SQ-b (nothing quantized before it differs), so there it holds channel
 * by channel, except where the shift moved the grid enough to change which percentile
 * candidate has the least error. What the shift does change is the grid's alignment:
 * RepQ's grid has 0 on it, SQ-b's has delta_c, so zero points round differently. */
static void composition_with_reparameterization_on_block_0(void **state)
{
    fixture *f = *state;
    const repq_net *net = f->model->net;
    const repq_arch *a = &f->model->arch;
    const size_t slot = vit_act_index(a, 0, REPQ_QP_QKV_IN);
    const repq_act_quant *plain = &f->plain->acts[slot], *smooth = &f->norms_only->acts[slot];
    assert_int_equal(plain->kind, REPQ_AQ_UNIFORM_CHANNEL);
    assert_int_equal(smooth->kind, REPQ_AQ_UNIFORM_CHANNEL);
    ranges before;
    record_ranges(net, &f->model->params, f->calib_pixels, N_CALIB, &before);
    const int32_t qkv = vit_linear_id(0, 0);
    int32_t rows, cols;
    const float *w = repq_net_linear_weight(net, &f->model->params, qkv, &rows, &cols);
    repq_qmodel *rp, *rs;
    assert_int_equal(repq_qmodel_reparameterize(NULL, f->plain, &rp), REPQ_OK);
    assert_int_equal(repq_qmodel_reparameterize(NULL, f->norms_only, &rs), REPQ_OK);
    const float *wp = repq_net_linear_weight(net, &rp->float_params, qkv, &rows, &cols);
    const float *ws = repq_net_linear_weight(net, &rs->float_params, qkv, &rows, &cols);
    /* The layer's constant: mean s' / mean s, from the channels where the same candidate won. */
    int same = 0;
    bool *kept = calloc((size_t)cols, sizeof *kept);
    double ratio_sum = 0.0;
    for (int32_t c = 0; c < cols; c++) {
        const double lo = before.lo[slot * before.widest + (size_t)c], hi = before.hi[slot * before.widest + (size_t)c];
        const double sigma = sigma_of(lo, hi, w, rows, cols, c);
        const double predicted = plain->per_channel[c].scale / sigma;
        kept[c] = fabs(smooth->per_channel[c].scale - predicted) <= 1e-4 * predicted;
        same += kept[c];
    }
    for (int32_t c = 0; c < cols; c++)
        if (kept[c])
            ratio_sum += ws[c] / (double)wp[c];
    const double k = ratio_sum / same;
    double worst = 0.0;
    for (int32_t o = 0; o < rows; o++)
        for (int32_t c = 0; c < cols; c++)
            if (kept[c] && fabs(wp[(size_t)o * (size_t)cols + (size_t)c]) > 1e-3)
                worst = fmax(worst, fabs(ws[(size_t)o * (size_t)cols + (size_t)c] / (k * wp[(size_t)o * (size_t)cols + (size_t)c]) - 1.0));
    print_message("block 0 qkv: %d of %d channel scales are RepQ's / sigma; on them the reparameterized "
                  "weights are RepQ's times %.4g to within %.2g\n", same, (int)cols, k, worst);
    assert_true(same >= cols * 9 / 10);
    assert_true(worst <= 1e-4);
    /* Over the whole model the two are different 4-bit quantizations (the calibration
     * pass also runs qkv and fc1 with their smoothed weights quantized before the fold),
     * which agree on most predictions. */
    static float x[N_TEST * CLASSES], y[N_TEST * CLASSES];
    fake_logits(rp, REPQ_FORWARD_FAKE_QUANT, f->test, x);
    fake_logits(rs, REPQ_FORWARD_FAKE_QUANT, f->test, y);
    const int agree = same_top1(x, y);
    print_message("W4A4, RepQ-ViT with and without SQ-b on the LayerNorm pairs: %d of %d predictions equal\n", agree,
                  N_TEST);
    assert_true(agree >= N_TEST * 8 / 10);
    free(kept);
    free(before.lo);
    free(before.hi);
    repq_qmodel_free(rp);
    repq_qmodel_free(rs);
}

static void session_agrees_with_fake_quant_with_sqb(void **state)
{
    fixture *f = *state;
    repq_qmodel *r;
    assert_int_equal(repq_qmodel_reparameterize(NULL, f->sqb, &r), REPQ_OK);
    static float fake[N_TEST * CLASSES], integer[N_TEST * CLASSES];
    fake_logits(r, REPQ_FORWARD_FAKE_QUANT, f->test, fake);
    repq_session *s;
    const int64_t shape[2] = {N_TEST, CLASSES};
    repq_tensor *t;
    assert_int_equal(repq_session_new(NULL, r, NULL, N_TEST, &s), REPQ_OK);
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &t), REPQ_OK);
    assert_int_equal(repq_session_run(s, f->test, t), REPQ_OK);
    assert_int_equal(repq_tensor_read(t, integer, sizeof integer), REPQ_OK);
    const int agree = same_top1(fake, integer);
    print_message("W4A4 with SQ-b: session and fake quantization agree on %d of %d predictions\n", agree, N_TEST);
    assert_int_equal(agree, N_TEST);
    repq_tensor_free(t);
    repq_session_free(s);
    repq_qmodel_free(r);
}

static void the_option_is_checked(void **state)
{
    (void)state;
    repq_options *o;
    int64_t v = -1;
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_SMOOTH, &v), REPQ_OK);
    assert_int_equal(v, REPQ_SMOOTH_SQB); /* part of the best measured combination */
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_SMOOTH, REPQ_SMOOTH_OFF), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_SMOOTH, 2), REPQ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(repq_last_error(o), "smooth"));
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_SMOOTH, -1), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_SMOOTH, &v), REPQ_OK);
    assert_int_equal(v, REPQ_SMOOTH_OFF);
    repq_options_free(o);
    const repq_smooth_config bad[3] = {{REPQ_SQB_ALL, -0.1}, {REPQ_SQB_ALL, NAN}, {8, 0.5}};
    repq_model *m = NULL;
    assert_int_equal(repq_model_load(NULL, MODEL_PATH, NULL, &m), REPQ_OK);
    repq_allocator al = repq_allocator_of(NULL);
    for (int i = 0; i < 3; i++)
        assert_int_equal(repq_smooth_model(NULL, &al, m->net, &m->params, NULL, true, 0, &bad[i]),
                         REPQ_ERR_INVALID_ARGUMENT);
    repq_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(factors_follow_the_formula_on_hand_cases),
        cmocka_unit_test(folds_keep_a_small_layer_pair_exact),
        cmocka_unit_test(the_option_is_checked),
        cmocka_unit_test(each_fold_is_exact_on_the_vit),
        cmocka_unit_test(each_fold_is_exact_on_the_swin),
        cmocka_unit_test(smoothed_channels_are_centred_and_balanced),
        cmocka_unit_test(sqb_then_reparameterization_is_exact),
        cmocka_unit_test(composition_with_reparameterization_on_block_0),
        cmocka_unit_test(session_agrees_with_fake_quant_with_sqb),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
