/* The library's Swin model end to end, against independent references: the float
 * forward against timm's float64 logits and the float64 recomputation of
 * tests/swin_f64.c, the network description against the checkpoint's tensors; and the
 * quantized Swin through reparameterization, fake quantization, the integer session,
 * GPTQ and the file, on images generated here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "core/tensor.h"
#include "infer/session.h"
#include "io/safetensors.h"
#include "kernels/cpu.h"
#include "model/model.h"
#include "model/qmodel.h"
#include "repq/repq.h"
#include "session_checks.h"
#include "data_file.h"
#include "swin_f64.h"
#include "st_edit.h"
#include "swin_small_file.h"

#define SWIN_MODEL REPQ_TEST_DATA "/swin_micro_rand.safetensors"
#define SWIN_INPUTS REPQ_TEST_DATA "/swin_micro_rand_inputs.u8"
#define SWIN_REF REPQ_TEST_DATA "/swin_micro_rand_ref.bin"

enum { N = 4, K = 10, PIXELS = 3 * 224 * 224 };

static repq_tensor *inputs(repq_context *ctx)
{
    static uint8_t images[N * PIXELS];
    data_file_read(SWIN_INPUTS, images, sizeof images);
    const int64_t shape[4] = {N, 3, 224, 224};
    repq_tensor *t;
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, shape, images, &t), REPQ_OK);
    return t;
}

static double max_abs_vs_reference(repq_model *m, repq_tensor *images)
{
    repq_context *ctx = NULL;
    const int64_t shape[2] = {N, K};
    repq_tensor *logits;
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, shape, NULL, &logits), REPQ_OK);
    assert_int_equal(repq_model_forward(m, images, logits), REPQ_OK);
    float got[N * K], want[N * K];
    assert_int_equal(repq_tensor_read(logits, got, sizeof got), REPQ_OK);
    data_file_read(SWIN_REF, want, sizeof want);
    double worst = 0.0;
    for (int i = 0; i < N * K; i++)
        worst = fmax(worst, fabs((double)got[i] - (double)want[i]));
    repq_tensor_free(logits);
    return worst;
}

/* timm's tensor names of before 0.9: patch merging at the end of the stage before,
 * the head without ".fc". */
static void legacy_name(const char *name, char *out, size_t cap)
{
    int stage;
    if (strstr(name, ".downsample.") && sscanf(name, "layers.%d.", &stage) == 1)
        snprintf(out, cap, "layers.%d%s", stage - 1, strchr(name + 7, '.'));
    else if (strncmp(name, "head.fc.", 8) == 0)
        snprintf(out, cap, "head.%s", name + 8);
    else
        snprintf(out, cap, "%s", name);
}

/* The float forward of swin_micro_rand (F16 weights) equals timm's float64 logits; the
 * same weights in the older layout load to the same logits. */
static void float_forward_matches_timm(void **state)
{
    (void)state;
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    repq_tensor *images = inputs(ctx);
    repq_model *m;
    assert_int_equal(repq_model_load(ctx, SWIN_MODEL, NULL, &m), REPQ_OK);
    const double err = max_abs_vs_reference(m, images);
    printf("swin_micro_rand: library float forward vs timm float64, max abs error %.3g\n", err);
    assert_true(err <= 1e-4);

    repq_allocator al = repq_allocator_of(NULL);
    repq_st_file *f;
    assert_int_equal(repq_st_open(NULL, &al, SWIN_MODEL, &f), REPQ_OK);
    repq_st_writer *w;
    assert_int_equal(repq_st_writer_new(NULL, &al, &w), REPQ_OK);
    for (size_t i = 0; i < repq_st_count(f); i++) {
        const repq_st_tensor *t = repq_st_tensor_at(f, i);
        char name[128];
        legacy_name(t->name, name, sizeof name);
        assert_int_equal(repq_st_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data, t->nbytes), REPQ_OK);
    }
    const char *keys[3] = {"format", "architecture", "preprocess"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(repq_st_writer_set_metadata(w, keys[i], repq_st_metadata(f, keys[i])), REPQ_OK);
    char path[] = "/tmp/repq_swin_legacyXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(repq_st_writer_write(w, path), REPQ_OK);
    repq_st_writer_free(w);
    repq_st_close(f);
    repq_model *old;
    assert_int_equal(repq_model_load(ctx, path, NULL, &old), REPQ_OK);
    assert_true(max_abs_vs_reference(old, images) == err);
    repq_model_free(old);
    unlink(path);
    close(fd);

    int64_t v;
    assert_int_equal(repq_model_get_int(m, REPQ_MODEL_DEPTH, &v), REPQ_OK);
    assert_int_equal(v, 8); /* all blocks of the four stages */
    assert_int_equal(repq_model_get_int(m, REPQ_MODEL_NUM_TENSORS, &v), REPQ_OK);
    assert_int_equal(v, 121);
    repq_model_free(m);
    repq_tensor_free(images);
    repq_context_free(ctx);
}

static double *widen(const float *x, size_t n)
{
    double *y = malloc(n * sizeof *y);
    assert_non_null(y);
    for (size_t i = 0; i < n; i++)
        y[i] = x[i];
    return y;
}

/* One swin_tiny block of stage 0 with shifted windows (56 x 56 tokens, window 7, shift
 * 3, 3 heads of 32), random weights with LayerNorm and bias tables away from 1 and 0,
 * against the float64 recomputation. */
static void shifted_block_matches_float64(void **state)
{
    (void)state;
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    repq_model *m;
    assert_int_equal(repq_model_create_random(ctx, "swin_tiny_patch4_window7_224", 0, 11, &m), REPQ_OK);
    const repq_net *net = m->net;
    const repq_net_node *node = NULL;
    for (int32_t i = 0; i < net->num_nodes && !node; i++)
        if (net->nodes[i].op == REPQ_OP_BLOCK && net->nodes[i].unit == 1)
            node = &net->nodes[i];
    assert_non_null(node);
    assert_true(node->windowed && node->window.shift_h == 3 && node->window.win_h == 7);
    float *arena = m->params.arena;
    float *g1 = repq_net_param_data(net, arena, node->norm_weight), *b2 = repq_net_param_data(net, arena, node->norm2_bias);
    float *table = repq_net_param_data(net, arena, node->rel_bias);
    const size_t d = (size_t)node->dim, t = (size_t)node->tokens;
    uint64_t seed = 99;
    for (size_t c = 0; c < d; c++) {
        g1[c] = 0.5f + (float)(c % 7) * 0.25f;
        b2[c] = (float)(c % 5) * 0.1f - 0.2f;
    }
    for (size_t i = 0; i < net->params[node->rel_bias].count; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        table[i] = (float)((double)(seed >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    }
    float *x = malloc(t * d * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < t * d; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 11) * 0x1.0p-53 * 4.0 - 2.0);
    }
    double *x64 = widen(x, t * d);
    repq_allocator al = repq_allocator_of(NULL);
    assert_int_equal(repq_net_block_apply(NULL, &al, net, node, &m->params, x, 1), REPQ_OK);

    const repq_net_linear *qkv = &net->linear[node->linear[0]], *proj = &net->linear[node->linear[1]];
    const repq_net_linear *fc1 = &net->linear[node->linear[2]], *fc2 = &net->linear[node->linear[3]];
    const int32_t ids[15] = {node->norm_weight, node->norm_bias, qkv->weight, qkv->bias, node->rel_bias,
                             proj->weight, proj->bias, node->norm2_weight, node->norm2_bias, fc1->weight,
                             fc1->bias, fc2->weight, fc2->bias, -1, -1};
    double *v[13];
    for (int i = 0; i < 13; i++)
        v[i] = widen(repq_net_param_data(net, arena, ids[i]), net->params[ids[i]].count);
    swin_f64_block bp = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12]};
    assert_true(swin_f64_block_apply(&m->arch.swin, 0, 1, &bp, x64, 1));
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < t * d; i++) {
        num += ((double)x[i] - x64[i]) * ((double)x[i] - x64[i]);
        den += x64[i] * x64[i];
    }
    printf("swin_tiny shifted block vs float64: relative error %.3g\n", sqrt(num / den));
    assert_true(sqrt(num / den) <= 1e-5);
    for (int i = 0; i < 13; i++)
        free(v[i]);
    free(x);
    free(x64);
    repq_model_free(m);
    repq_context_free(ctx);
}

/* ---- the quantized Swin ------------------------------------------------------------ */

enum { N_CALIB = 4, N_EVAL = 32, N_SMALL = 4, EVAL_BATCH = 16 };

static double uniform01(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) * 0x1.0p-53;
}

/* `n` side x side images drawn from `seed`, cycling through four kinds: stripes, colour
 * gradients, Gaussian blobs (each with noise of a random strength up to 60 levels) and
 * uniform noise. Image i depends only on seed and i; patterns scale with the side. */
static repq_tensor *generated_images_sized(size_t n, uint64_t seed, int side)
{
    const size_t pixels = 3 * (size_t)side * (size_t)side;
    const double k = 224.0 / side;
    uint8_t *px = malloc(n * pixels);
    assert_non_null(px);
    for (size_t i = 0; i < n; i++) {
        uint64_t s = seed * 1000003u + i;
        for (int j = 0; j < 4; j++)
            uniform01(&s);
        const int kind = (int)(i % 4);
        const double fx = k * (0.01 + 0.14 * uniform01(&s)), fy = k * (0.01 + 0.14 * uniform01(&s));
        const double cx = 224 * uniform01(&s) / k, cy = 224 * uniform01(&s) / k, r = (10 + 60 * uniform01(&s)) / k;
        const double noise = kind == 3 ? 127.5 : 60 * uniform01(&s);
        double phase[3], tint[3];
        for (int c = 0; c < 3; c++) {
            phase[c] = 6.283 * uniform01(&s);
            tint[c] = 0.3 + 0.7 * uniform01(&s);
        }
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < side; y++)
                for (int x = 0; x < side; x++) {
                    double v = 127.5;
                    if (kind == 0)
                        v = 127.5 + 100 * sin(fx * x + fy * y + phase[c]);
                    else if (kind == 1)
                        v = 255 * tint[c] * (fx * x + fy * (side - 1 - y)) / ((side - 1) * (fx + fy));
                    else if (kind == 2)
                        v = 40 + 200 * tint[c] * exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (2 * r * r));
                    v += noise * (2 * uniform01(&s) - 1);
                    px[i * pixels + ((size_t)c * (size_t)side + (size_t)y) * (size_t)side + (size_t)x] =
                        (uint8_t)fmin(255, fmax(0, round(v)));
                }
    }
    const int64_t shape[4] = {(int64_t)n, 3, side, side};
    repq_tensor *t;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_U8, 4, shape, px, &t), REPQ_OK);
    free(px);
    return t;
}

static repq_tensor *generated_images(size_t n, uint64_t seed)
{
    return generated_images_sized(n, seed, 224);
}

typedef struct swin_fixture {
    repq_model *model;
    repq_tensor *calib, *eval, *small; /* small: the first N_SMALL of eval */
    repq_qmodel *raw8, *w8a8, *raw4, *w4a4; /* raw: channel-wise, before reparameterization */
    char dir[64];
    char w8a8_path[96];
} swin_fixture;

static swin_fixture sfx;

static repq_status quantize(repq_model *m, repq_tensor *calib, int bits, int dual_clip, repq_qmodel **raw,
                            repq_qmodel **out)
{
    repq_options *o;
    repq_calib *c;
    repq_status st;
    if ((st = repq_options_new(&o)) || (st = repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, bits)) ||
        (st = repq_options_set_int(o, REPQ_OPT_ACT_BITS, bits)) ||
        (st = repq_options_set_int(o, REPQ_OPT_DUAL_CLIP, dual_clip)) || (st = repq_calib_new(NULL, m, o, &c)))
        return st;
    if (!(st = repq_calib_feed(c, calib)) && !(st = repq_calib_finish(c, raw)))
        st = repq_qmodel_reparameterize(NULL, *raw, out);
    repq_calib_free(c);
    repq_options_free(o);
    return st;
}

static int quant_setup(void **state)
{
    swin_fixture *f = &sfx;
    snprintf(f->dir, sizeof f->dir, "/tmp/repq_swin_XXXXXX");
    if (!mkdtemp(f->dir) || repq_model_load(NULL, SWIN_MODEL, NULL, &f->model))
        return -1;
    f->calib = generated_images(N_CALIB, 1);
    f->eval = generated_images(N_EVAL, 2);
    f->small = generated_images(N_SMALL, 2);
    if (quantize(f->model, f->calib, 8, 0, &f->raw8, &f->w8a8) || quantize(f->model, f->calib, 4, 0, &f->raw4, &f->w4a4))
        return -1;
    if (snprintf(f->w8a8_path, sizeof f->w8a8_path, "%s/w8a8.safetensors", f->dir) >= (int)sizeof f->w8a8_path ||
        repq_qmodel_save(f->w8a8, f->w8a8_path))
        return -1;
    *state = f;
    return 0;
}

static int quant_teardown(void **state)
{
    swin_fixture *f = *state;
    repq_qmodel_free(f->raw8);
    repq_qmodel_free(f->w8a8);
    repq_qmodel_free(f->raw4);
    repq_qmodel_free(f->w4a4);
    repq_tensor_free(f->calib);
    repq_tensor_free(f->eval);
    repq_tensor_free(f->small);
    repq_model_free(f->model);
    unlink(f->w8a8_path);
    rmdir(f->dir);
    return 0;
}

static size_t count_of(const repq_tensor *images)
{
    return (size_t)images->shape[0];
}

static repq_tensor *logits_new(size_t n)
{
    const int64_t shape[2] = {(int64_t)n, K};
    repq_tensor *t;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &t), REPQ_OK);
    return t;
}

/* Images [i0, i0 + n) of a U8 image tensor as a new tensor. */
static repq_tensor *slice(const repq_tensor *images, size_t i0, size_t n)
{
    const int64_t shape[4] = {(int64_t)n, 3, 224, 224};
    repq_tensor *t;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_U8, 4, shape, (const uint8_t *)images->data + i0 * PIXELS, &t),
                     REPQ_OK);
    return t;
}

static void qforward_logits(const repq_qmodel *q, repq_forward_mode mode, repq_tensor *images, float *out)
{
    repq_tensor *y = logits_new(count_of(images));
    assert_int_equal(repq_qmodel_forward(q, mode, images, y), REPQ_OK);
    assert_int_equal(repq_tensor_read(y, out, count_of(images) * K * sizeof(float)), REPQ_OK);
    repq_tensor_free(y);
}

/* Session logits in batches of up to EVAL_BATCH. */
static void session_logits(const repq_qmodel *q, int threads, repq_kernel_level level, const repq_tensor *images,
                           float *out)
{
    repq_options *o;
    repq_session *s;
    const size_t n = count_of(images);
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_THREADS, threads), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_KERNELS, (int64_t)level + 1), REPQ_OK);
    assert_int_equal(repq_session_new(NULL, q, o, EVAL_BATCH, &s), REPQ_OK);
    int64_t kernels = -1;
    assert_int_equal(repq_session_get_int(s, REPQ_SESSION_KERNELS, &kernels), REPQ_OK);
    assert_int_equal(kernels, (int64_t)repq_kernel_level_clamp(repq_cpu_detect(), level) + 1);
    for (size_t i = 0; i < n; i += EVAL_BATCH) {
        const size_t c = n - i < EVAL_BATCH ? n - i : EVAL_BATCH;
        repq_tensor *x = slice(images, i, c), *y = logits_new(c);
        if (repq_session_run(s, x, y))
            fail_msg("session run: %s", repq_last_error(s));
        assert_int_equal(repq_tensor_read(y, out + i * K, c * K * sizeof(float)), REPQ_OK);
        repq_tensor_free(x);
        repq_tensor_free(y);
    }
    repq_session_free(s);
    repq_options_free(o);
}

static size_t argmax(const float *row)
{
    size_t best = 0;
    for (size_t j = 1; j < K; j++)
        best = row[j] > row[best] ? j : best;
    return best;
}

/* Relative L2 distance of b from a over n values, and the worst element relative to
 * max(1, |a|). */
static double relative_rms(const float *a, const float *b, size_t n, double *worst)
{
    double num = 0.0, den = 0.0;
    *worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double e = (double)a[i] - (double)b[i];
        num += e * e;
        den += (double)a[i] * a[i];
        *worst = fmax(*worst, fabs(e) / fmax(1.0, fabs((double)a[i])));
    }
    return sqrt(num / den);
}

/* With quantization off, the reparameterized model (its LayerNorms' affine and the
 * following layers rewritten, patch merging's reduction given a bias) computes what
 * the float model computes: method.md 2.1 is an identity, float rounding aside. */
static void reparameterization_is_exact_without_quantization(void **state)
{
    swin_fixture *f = *state;
    static float want[N_SMALL * K], got[N_SMALL * K];
    repq_tensor *y = logits_new(N_SMALL);
    assert_int_equal(repq_model_forward(f->model, f->small, y), REPQ_OK);
    assert_int_equal(repq_tensor_read(y, want, sizeof want), REPQ_OK);
    repq_tensor_free(y);
    const repq_qmodel *qs[2] = {f->w8a8, f->w4a4};
    const char *names[2] = {"W8A8", "W4A4"};
    for (int m = 0; m < 2; m++) {
        /* The fold is not vacuous: every merge reduction gained a non-zero bias. */
        const repq_net *net = qs[m]->net;
        int merges = 0;
        for (int32_t i = 0; i < net->num_params; i++)
            if (strstr(net->params[i].name, "downsample.reduction.bias")) {
                const float *b = repq_net_param_data(net, qs[m]->float_params.arena, i);
                double norm = 0.0;
                for (size_t k = 0; k < net->params[i].count; k++)
                    norm += fabs(b[k]);
                assert_true(norm > 0.0);
                merges++;
            }
        assert_int_equal(merges, 3);
        qforward_logits(qs[m], REPQ_FORWARD_FLOAT, f->small, got);
        double worst;
        const double rms = relative_rms(want, got, N_SMALL * K, &worst);
        printf("swin_micro_rand %s reparameterized, quantization off: logits relative L2 %.3g, worst element %.3g\n",
               names[m], rms, worst);
        assert_true(rms <= 1e-4);
        assert_true(worst <= 1e-4);
    }
}

/* The post-LayerNorm activations of a float forward, per slot. */
typedef struct slot_capture {
    const repq_net *net;
    float **x;
    size_t *rows, *cols;
} slot_capture;

static bool is_post_ln_slot(const repq_net *net, int32_t slot)
{
    const int32_t l = net->slots[slot].feeds;
    return net->slots[slot].used && l >= 0 && net->linear[l].norm_weight >= 0;
}

static repq_status grab_post_ln(void *user, int32_t slot, float *x, size_t rows, size_t cols)
{
    slot_capture *c = user;
    if (!is_post_ln_slot(c->net, slot))
        return REPQ_OK;
    assert_true(c->x[slot] == NULL || c->cols[slot] == cols);
    c->x[slot] = realloc(c->x[slot], (c->rows[slot] + rows) * cols * sizeof(float));
    assert_non_null(c->x[slot]);
    memcpy(c->x[slot] + c->rows[slot] * cols, x, rows * cols * sizeof(float));
    c->rows[slot] += rows;
    c->cols[slot] = cols;
    return REPQ_OK;
}

static void capture_post_ln(const repq_qmodel *q, const repq_tensor *images, slot_capture *c)
{
    const int32_t n = q->net->num_slots;
    c->net = q->net;
    c->x = calloc((size_t)n, sizeof *c->x);
    c->rows = calloc((size_t)n, sizeof *c->rows);
    c->cols = calloc((size_t)n, sizeof *c->cols);
    assert_true(c->x && c->rows && c->cols);
    repq_allocator al = repq_allocator_of(NULL);
    repq_hook hook = {grab_post_ln, c, false, NULL, false};
    float *logits = malloc(count_of(images) * K * sizeof(float));
    assert_int_equal(repq_net_forward(NULL, &al, q->net, &q->float_params, images->data, true, count_of(images),
                                      &hook, logits),
                     REPQ_OK);
    free(logits);
}

static void capture_free(slot_capture *c)
{
    for (int32_t i = 0; i < c->net->num_slots; i++)
        free(c->x[i]);
    free(c->x);
    free(c->rows);
    free(c->cols);
}

/* X_c / s_c + z_c = X'_c / s~ + z~ (method.md 2.1): the channel-wise quantizer's codes of
 * the original LayerNorm's output equal the layer-wise quantizer's codes of the
 * reparameterized one's, except where float rounding moves a value across a rounding
 * boundary (then by one code). Checked at every post-LayerNorm slot: norm1 -> qkv,
 * norm2 -> fc1 and the patch-merging norm -> reduction. */
static void codes_match(const repq_qmodel *raw, const repq_qmodel *rep, const repq_tensor *images, const char *name)
{
    slot_capture before, after;
    capture_post_ln(raw, images, &before);
    capture_post_ln(rep, images, &after);
    const repq_qpoint kinds[3] = {REPQ_QP_QKV_IN, REPQ_QP_FC1_IN, REPQ_QP_MERGE_IN};
    const char *kind_names[3] = {"norm1 -> qkv", "norm2 -> fc1", "merge norm -> reduction"};
    size_t same[3] = {0}, total[3] = {0}, slots[3] = {0}, off_by_one = 0;
    for (int32_t s = 0; s < raw->net->num_slots; s++) {
        if (!is_post_ln_slot(raw->net, s))
            continue;
        int k = 0;
        while (k < 3 && raw->net->slots[s].point != kinds[k])
            k++;
        assert_true(k < 3);
        assert_non_null(before.x[s]);
        assert_non_null(after.x[s]);
        assert_int_equal(before.rows[s], after.rows[s]);
        const repq_act_quant *cq = &raw->acts[s], *lq = &rep->acts[s];
        assert_int_equal(cq->kind, REPQ_AQ_UNIFORM_CHANNEL);
        assert_int_equal(lq->kind, REPQ_AQ_UNIFORM);
        assert_int_equal(cq->channels, (int32_t)before.cols[s]);
        const size_t cols = before.cols[s];
        for (size_t r = 0; r < before.rows[s]; r++)
            for (size_t c = 0; c < cols; c++) {
                uint8_t q1, q2;
                assert_int_equal(repq_quant_quantize(&cq->per_channel[c], &before.x[s][r * cols + c], 1, &q1), REPQ_OK);
                assert_int_equal(repq_quant_quantize(&lq->uniform, &after.x[s][r * cols + c], 1, &q2), REPQ_OK);
                if (abs((int)q1 - (int)q2) > 1)
                    fail_msg("slot %d row %zu channel %zu: codes %d and %d", (int)s, r, c, q1, q2);
                same[k] += q1 == q2;
                off_by_one += q1 != q2;
            }
        total[k] += before.rows[s] * cols;
        slots[k]++;
    }
    for (int k = 0; k < 3; k++) {
        printf("%s %s: %zu slots, %zu of %zu codes identical (%.5f%%)\n", name, kind_names[k], slots[k], same[k],
               total[k], 100.0 * (double)same[k] / (double)total[k]);
        assert_true(slots[k] > 0);
        assert_true((double)same[k] >= 0.9999 * (double)total[k]);
    }
    capture_free(&before);
    capture_free(&after);
}

static void layer_wise_codes_equal_channel_wise_codes(void **state)
{
    swin_fixture *f = *state;
    codes_match(f->raw8, f->w8a8, f->small, "W8A8");
    codes_match(f->raw4, f->w4a4, f->small, "W4A4");
}

/* Same top-1 on >= 99.5% of the N_EVAL images (with 32 images: all of them) and logits
 * within max_rms. The session computes the same integer products as the fake-quant
 * forward (window scores with the bias and mask rounded onto the same 2^-shift grid);
 * the two differ only where the float softmax and the integer softmax put an attention
 * code on different sides of a rounding boundary, and the bounds are those of the ViT
 * (tests/test_infer.c), where such flips were measured at 0.009 / 0.014. */
static void agreement(const repq_qmodel *q, const repq_tensor *images, const char *name, double max_rms)
{
    static float a[N_EVAL * K], b[N_EVAL * K];
    const size_t n = count_of(images);
    assert_true(n <= N_EVAL);
    qforward_logits(q, REPQ_FORWARD_FAKE_QUANT, (repq_tensor *)images, a);
    session_logits(q, 2, repq_kernel_level_best(repq_cpu_detect()), images, b);
    size_t same = 0, identical = 0;
    for (size_t i = 0; i < n; i++) {
        same += argmax(a + i * K) == argmax(b + i * K);
        identical += memcmp(a + i * K, b + i * K, K * sizeof(float)) == 0;
    }
    double worst;
    const double rms = relative_rms(a, b, n * K, &worst);
    printf("swin_micro_rand %s, %zu generated images: same top-1 %.1f%%, logits bit-identical on %zu, "
           "relative RMS %.3g, worst element %.3g\n",
           name, n, 100.0 * (double)same / (double)n, identical, rms, worst);
    assert_true((double)same >= 0.995 * (double)n);
    assert_true(rms <= max_rms);
}

static void session_agrees_with_fake_quant_w8a8(void **state)
{
    swin_fixture *f = *state;
    agreement(f->w8a8, f->eval, "W8A8", 0.02);
}

static void session_agrees_with_fake_quant_w4a4(void **state)
{
    swin_fixture *f = *state;
    agreement(f->w4a4, f->eval, "W4A4", 0.04);
}

/* Dual clipping on all three post-LayerNorm points of a Swin (norm1, norm2, patch
 * merging): the fold stays exact and the session still reproduces the fake quant. */
static void dual_clipping_on_swin(void **state)
{
    swin_fixture *f = *state;
    repq_qmodel *raw, *rep;
    assert_int_equal(quantize(f->model, f->calib, 4, 1, &raw, &rep), REPQ_OK);
    size_t changed = 0;
    for (int32_t slot = 0; slot < raw->net->num_slots; slot++)
        for (int32_t c = 0; raw->acts[slot].kind == REPQ_AQ_UNIFORM_CHANNEL && c < raw->acts[slot].channels; c++)
            changed += memcmp(&raw->acts[slot].per_channel[c], &f->raw4->acts[slot].per_channel[c],
                              sizeof raw->acts[slot].per_channel[c]) != 0;
    assert_true(changed > 0);
    codes_match(raw, rep, f->small, "W4A4, dual clipping");
    agreement(rep, f->eval, "W4A4, dual clipping", 0.04);
    repq_qmodel_free(raw);
    repq_qmodel_free(rep);
}

static void every_level_gives_the_same_bits(void **state)
{
    swin_fixture *f = *state;
    static float ref[N_SMALL * K], got[N_SMALL * K];
    const uint32_t cpu = repq_cpu_detect();
    const repq_kernel_level best = repq_kernel_level_best(cpu);
    const repq_qmodel *qs[2] = {f->w8a8, f->w4a4};
    for (int m = 0; m < 2; m++) {
        session_logits(qs[m], 1, REPQ_LEVEL_SCALAR, f->small, ref);
        for (int lv = REPQ_LEVEL_AVX2; lv <= (int)best; lv++) {
            if (repq_kernel_level_clamp(cpu, (repq_kernel_level)lv) != (repq_kernel_level)lv)
                continue;
            session_logits(qs[m], 1, (repq_kernel_level)lv, f->small, got);
            if (memcmp(ref, got, sizeof ref))
                fail_msg("level %s differs from scalar", repq_kernel_level_name((repq_kernel_level)lv));
        }
    }
    printf("kernel levels compared with scalar:");
    for (int lv = REPQ_LEVEL_AVX2; lv <= (int)REPQ_LEVEL_AMX; lv++)
        printf(" %s%s", repq_kernel_level_name((repq_kernel_level)lv),
               lv <= (int)best && repq_kernel_level_clamp(cpu, (repq_kernel_level)lv) == (repq_kernel_level)lv
                   ? ""
                   : " (not on this CPU: not covered)");
    printf("\n");
}

static void threads_give_the_same_bits(void **state)
{
    swin_fixture *f = *state;
    static float one[N_SMALL * K], other[N_SMALL * K];
    const repq_kernel_level best = repq_kernel_level_best(repq_cpu_detect());
    const repq_qmodel *qs[2] = {f->w8a8, f->w4a4};
    for (int m = 0; m < 2; m++) {
        session_logits(qs[m], 1, best, f->small, one);
        for (int threads = 2; threads <= 3; threads++) {
            session_logits(qs[m], threads, best, f->small, other);
            assert_memory_equal(one, other, sizeof one);
        }
    }
}

/* Every linear weight of the qmodel's fake-quant parameters (fq_params) is its
 * dequantized codes, s (code - z), exactly: what the session multiplies. */
static void fake_quant_weights_are_the_codes(const repq_qmodel *q)
{
    for (int32_t id = 0; id < q->num_linear; id++) {
        const repq_qlinear *l = &q->linear[id];
        int32_t rows, cols;
        const float *w = repq_net_linear_weight(q->net, &q->fq_params, id, &rows, &cols);
        assert_int_equal(rows, l->out);
        assert_int_equal(cols, l->in);
        float *want = malloc((size_t)l->in * sizeof *want);
        assert_non_null(want);
        for (int32_t o = 0; o < l->out; o++) {
            const size_t at = (size_t)o * (size_t)l->in;
            assert_int_equal(repq_quant_dequantize(&l->wq[o], l->codes + at, (size_t)l->in, want), REPQ_OK);
            if (memcmp(want, w + at, (size_t)l->in * sizeof *want))
                fail_msg("linear layer %s row %d: fake-quant weights are not its codes", q->net->linear[id].name, o);
        }
        free(want);
    }
}

/* Relative L2 distance of q's fake-quant logits from the float model's. */
static double error_vs_float(const repq_qmodel *q, const float *want, repq_tensor *images)
{
    static float got[N_CALIB * K];
    double worst;
    qforward_logits(q, REPQ_FORWARD_FAKE_QUANT, images, got);
    return relative_rms(want, got, count_of(images) * K, &worst);
}

/* GPTQ on a Swin: it changes weight codes only (quantizers and float weights stay), the
 * fake-quant weights are the new codes, the result runs in a session with the same top-1
 * as its fake-quant forward, and on the images it saw its logits come closer to the
 * float model's than round-to-nearest's. */
static void reconstruction_runs_on_swin(void **state)
{
    swin_fixture *f = *state;
    repq_options *o;
    repq_calib *c;
    repq_qmodel *q, *r, *g;
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, 4), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_ACT_BITS, 8), REPQ_OK);
    assert_int_equal(repq_calib_new(NULL, f->model, o, &c), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, f->calib), REPQ_OK);
    assert_int_equal(repq_calib_finish(c, &q), REPQ_OK);
    assert_int_equal(repq_qmodel_reparameterize(NULL, q, &r), REPQ_OK);
    if (repq_calib_reconstruct(c, r, &g))
        fail_msg("reconstruct: %s", repq_last_error(c));
    int64_t v;
    assert_int_equal(repq_qmodel_get_int(g, REPQ_QMODEL_REPARAMETERIZED, &v), REPQ_OK);
    assert_int_equal(v, 1);
    assert_memory_equal(g->float_params.arena, r->float_params.arena, r->float_params.arena_floats * sizeof(float));
    for (int32_t s = 0; s < r->net->num_slots; s++) {
        assert_int_equal(g->acts[s].kind, r->acts[s].kind);
        assert_memory_equal(&g->acts[s].uniform, &r->acts[s].uniform, sizeof r->acts[s].uniform);
    }
    size_t changed = 0, total = 0, merge_changed = 0;
    for (int32_t id = 0; id < r->num_linear; id++) {
        const repq_qlinear *lr = &r->linear[id], *lg = &g->linear[id];
        const size_t n = (size_t)lr->out * (size_t)lr->in;
        assert_memory_equal(lg->wq, lr->wq, (size_t)lr->out * sizeof *lr->wq);
        size_t c_id = 0;
        for (size_t i = 0; i < n; i++) {
            assert_true(lg->codes[i] < 16);
            c_id += lg->codes[i] != lr->codes[i];
        }
        changed += c_id;
        total += n;
        if (strstr(r->net->linear[id].name, "downsample"))
            merge_changed += c_id;
    }
    fake_quant_weights_are_the_codes(g);
    fake_quant_weights_are_the_codes(r);

    static float want[N_CALIB * K];
    repq_tensor *y = logits_new(N_CALIB);
    assert_int_equal(repq_model_forward(f->model, f->calib, y), REPQ_OK);
    assert_int_equal(repq_tensor_read(y, want, sizeof want), REPQ_OK);
    repq_tensor_free(y);
    const double e_nearest = error_vs_float(r, want, f->calib), e_gptq = error_vs_float(g, want, f->calib);
    printf("W4A8 GPTQ on swin_micro_rand: %.1f%% of the weight codes changed (%zu in patch merging); logit error "
           "against the float model on the calibration images: GPTQ %.4g, round-to-nearest %.4g\n",
           100.0 * (double)changed / (double)total, merge_changed, e_gptq, e_nearest);
    assert_true(changed * 100 >= total && changed * 100 <= 60 * total);
    assert_true(merge_changed > 0);
    assert_true(e_gptq < e_nearest);

    static float fake[N_SMALL * K], integer[N_SMALL * K];
    qforward_logits(g, REPQ_FORWARD_FAKE_QUANT, f->small, fake);
    session_logits(g, 1, repq_kernel_level_best(repq_cpu_detect()), f->small, integer);
    size_t same = 0;
    for (size_t i = 0; i < N_SMALL; i++)
        same += argmax(fake + i * K) == argmax(integer + i * K);
    double worst;
    printf("GPTQ qmodel: session vs fake quant on %d images: same top-1 %zu, relative RMS %.3g\n", N_SMALL, same,
           relative_rms(fake, integer, N_SMALL * K, &worst));
    assert_int_equal(same, N_SMALL);
    repq_qmodel_free(g);
    repq_qmodel_free(r);
    repq_qmodel_free(q);
    repq_calib_free(c);
    repq_options_free(o);
}

/* A Swin session allocates everything it needs (window gathers, merge buffers, scores)
 * when it is made: running it, with full and partial batches, at 1 and 2 threads,
 * allocates nothing. */
static void session_run_allocates_nothing(void **state)
{
    swin_fixture *f = *state;
    repq_tensor *x1 = slice(f->small, 0, 1);
    session_runs_allocate_nothing(f->w4a4, f->small, x1, K);
    repq_tensor_free(x1);
}

/* ---- the file ---------------------------------------------------------------------- */

static uint8_t *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    const long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    uint8_t *b = malloc((size_t)n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

/* Saved, loaded and saved again: the same bytes; the loaded qmodel's fake-quant and
 * session logits are the original's, bit for bit. */
static void files_round_trip_bit_identically(void **state)
{
    swin_fixture *f = *state;
    const repq_qmodel *qs[2] = {f->w8a8, f->w4a4};
    char first[128], second[128];
    snprintf(first, sizeof first, "%s/first.safetensors", f->dir);
    snprintf(second, sizeof second, "%s/second.safetensors", f->dir);
    for (int m = 0; m < 2; m++) {
        repq_qmodel *loaded;
        assert_int_equal(repq_qmodel_save((repq_qmodel *)qs[m], first), REPQ_OK);
        assert_int_equal(repq_qmodel_load(NULL, first, &loaded), REPQ_OK);
        assert_int_equal(repq_qmodel_save(loaded, second), REPQ_OK);
        size_t n1, n2;
        uint8_t *b1 = read_all(first, &n1), *b2 = read_all(second, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(b1, b2, n1);
        static float a[N_SMALL * K], b[N_SMALL * K];
        qforward_logits(qs[m], REPQ_FORWARD_FAKE_QUANT, f->small, a);
        qforward_logits(loaded, REPQ_FORWARD_FAKE_QUANT, f->small, b);
        assert_memory_equal(a, b, sizeof a);
        const repq_kernel_level best = repq_kernel_level_best(repq_cpu_detect());
        session_logits(qs[m], 1, best, f->small, a);
        session_logits(loaded, 1, best, f->small, b);
        assert_memory_equal(a, b, sizeof a);
        printf("swin_micro_rand W%dA%d file: %zu bytes, saved again identically\n", m ? 4 : 8, m ? 4 : 8, n1);
        free(b1);
        free(b2);
        repq_qmodel_free(loaded);
    }
    unlink(first);
    unlink(second);
}

/* Load `src` with the edit applied, as a qmodel or a float model; the status, with a
 * message naming `needle` when it fails. */
static repq_status load_edited(const char *dir, const char *src, const st_edit *e, bool qmodel, const char *needle)
{
    char dst[128];
    snprintf(dst, sizeof dst, "%s/edited.safetensors", dir);
    st_edit_write(src, dst, e);
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    repq_qmodel *q = (repq_qmodel *)&q;
    repq_model *m = (repq_model *)&m;
    const repq_status st = qmodel ? repq_qmodel_load(ctx, dst, &q) : repq_model_load(ctx, dst, NULL, &m);
    if (st != REPQ_OK) {
        if (qmodel)
            assert_null(q);
        else
            assert_null(m);
        if (needle && !strstr(repq_last_error(ctx), needle))
            fail_msg("message '%s' does not mention '%s'", repq_last_error(ctx), needle);
        printf("  refused (%s): %s\n", repq_status_string(st), repq_last_error(ctx));
    }
    if (qmodel)
        repq_qmodel_free(st ? NULL : q);
    else
        repq_model_free(st ? NULL : m);
    repq_context_free(ctx);
    unlink(dst);
    return st;
}

/* The "architecture" entry of `path` with the fields of the JSON object `fields` set
 * (free with free()). */
static char *arch_with(const char *path, const char *fields)
{
    repq_allocator al = repq_allocator_of(NULL);
    repq_st_file *f;
    assert_int_equal(repq_st_open(NULL, &al, path, &f), REPQ_OK);
    json_t *root = json_loads(repq_st_metadata(f, "architecture"), 0, NULL), *set = json_loads(fields, 0, NULL);
    assert_non_null(root);
    assert_non_null(set);
    assert_int_equal(json_object_update(root, set), 0);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    json_decref(set);
    repq_st_close(f);
    return s;
}

static repq_status load_arch_edit(const char *dir, const char *src, bool qmodel, const char *fields, const char *needle)
{
    char *a = arch_with(src, fields);
    const st_edit e = {.key = "architecture", .value = a};
    printf("architecture with %s\n", fields);
    const repq_status st = load_edited(dir, src, &e, qmodel, needle);
    free(a);
    return st;
}

/* The "quant" entry of `path` with its activation table one entry shorter (grow
 * false) or longer. */
static char *quant_table_resized(const char *path, bool grow)
{
    repq_allocator al = repq_allocator_of(NULL);
    repq_st_file *f;
    assert_int_equal(repq_st_open(NULL, &al, path, &f), REPQ_OK);
    json_t *root = json_loads(repq_st_metadata(f, "quant"), 0, NULL);
    json_t *acts = json_object_get(root, "activations");
    assert_true(json_is_array(acts) && json_array_size(acts) > 1);
    if (grow)
        assert_int_equal(json_array_append(acts, json_array_get(acts, 1)), 0);
    else
        assert_int_equal(json_array_remove(acts, json_array_size(acts) - 1), 0);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    repq_st_close(f);
    return s;
}

static bool refused(repq_status st)
{
    return st == REPQ_ERR_FORMAT || st == REPQ_ERR_UNSUPPORTED;
}

static void huge_first_float(uint8_t *bytes, size_t n)
{
    const float v = 1e37f;
    if (n >= sizeof v)
        memcpy(bytes, &v, sizeof v);
}

/* Edited Swin qmodel files: each refused with an error naming what is wrong, nothing
 * leaked (ASan). */
static void hostile_qmodel_files_are_refused(void **state)
{
    swin_fixture *f = *state;
    const char *src = f->w8a8_path, *dir = f->dir;
    const st_edit none = {0};
    assert_int_equal(load_edited(dir, src, &none, true, NULL), REPQ_OK);
    const st_edit v2 = {.key = "format_version", .value = "2"};
    assert_int_equal(load_edited(dir, src, &v2, true, "format_version"), REPQ_ERR_FORMAT);

    /* Architectures no Swin can have. */
    assert_int_equal(load_arch_edit(dir, src, true, "{\"num_heads\": [1, 2, 3, 8]}", "num_heads"), REPQ_ERR_UNSUPPORTED);
    assert_int_equal(load_arch_edit(dir, src, true, "{\"window_size\": 64}", "larger"), REPQ_ERR_UNSUPPORTED);
    assert_int_equal(load_arch_edit(dir, src, true, "{\"window_size\": 6}", "tile"), REPQ_ERR_UNSUPPORTED);
    assert_int_equal(load_arch_edit(dir, src, true, "{\"img_size\": 200, \"window_size\": 5}", "halve"),
                     REPQ_ERR_UNSUPPORTED);
    assert_int_equal(load_arch_edit(dir, src, true, "{\"depths\": [2, 2, 2]}", NULL), REPQ_ERR_FORMAT);
    static const char *const absurd[] = {
        "{\"embed_dim\": 1000000000}", "{\"depths\": [2, 2, 2, 100000]}", "{\"num_classes\": -1}",
        "{\"img_size\": 0}", "{\"patch_size\": 0}", "{\"window_size\": [7, 0]}", "{\"mlp_ratio\": 1e30}",
        "{\"depths\": [], \"num_heads\": []}", "{\"depths\": [1, 1, 1, 1, 1, 1, 1, 1, 1]}", "{\"num_heads\": \"x\"}",
        "{\"img_size\": 1099511627776}", "{\"norm_eps\": -1}", "{\"mlp_ratio\": 3.3}", "{\"family\": \"swim\"}",
        "{\"family\": \"vit\"}", "{\"ape\": true}", "{\"global_pool\": \"token\"}", "{\"patch_norm\": false}",
        "{\"depths\": [2, 2, 2, 3]}", "{\"num_classes\": 11}", "{\"in_chans\": 1}", "{\"window_size\": [7, 7, 7]}",
        "{\"num_heads\": [1, 2, 4]}", "{\"act\": \"relu\"}", "{\"depths\": [2, 2, 2, -2]}",
    };
    for (size_t i = 0; i < sizeof absurd / sizeof absurd[0]; i++) {
        const repq_status st = load_arch_edit(dir, src, true, absurd[i], NULL);
        if (!refused(st))
            fail_msg("architecture %s: status %s", absurd[i], repq_status_string(st));
    }

    /* Tensors and tables of the wrong size. */
    const st_edit tensors[] = {
        {.tensor = "layers.1.blocks.0.attn.relative_position_bias_table", .dtype = REPQ_ST_F32, .ndim = 2,
         .shape = {168, 2}},
        {.tensor = "layers.1.blocks.0.attn.relative_position_bias_table", .dtype = REPQ_ST_F32, .ndim = 2,
         .shape = {169, 3}},
        {.tensor = "layers.1.blocks.1.attn.relative_position_bias_table", .drop = true},
        {.tensor = "layers.1.downsample.reduction.bias", .drop = true},
        {.tensor = "layers.1.downsample.reduction.bias", .dtype = REPQ_ST_F32, .ndim = 1, .shape = {63}},
        {.tensor = "layers.2.downsample.norm.weight", .dtype = REPQ_ST_F32, .ndim = 1, .shape = {64}},
        {.tensor = "layers.3.downsample.reduction.weight.codes", .dtype = REPQ_ST_U8, .ndim = 2, .shape = {256, 255}},
    };
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++) {
        printf("tensor %s %s\n", tensors[i].tensor, tensors[i].drop ? "dropped" : "reshaped");
        assert_int_equal(load_edited(dir, src, &tensors[i], true, tensors[i].tensor), REPQ_ERR_FORMAT);
    }
    /* A relative position bias no score grid of the block's q and k quantizers can hold
     * (the session would refuse the block, fake quantization could not run it). */
    const st_edit huge = {.tensor = "layers.0.blocks.1.attn.relative_position_bias_table", .patch = huge_first_float};
    assert_int_equal(load_edited(dir, src, &huge, true, "relative position bias"), REPQ_ERR_FORMAT);
    for (int grow = 0; grow < 2; grow++) {
        char *q = quant_table_resized(src, grow);
        const st_edit e = {.key = "quant", .value = q};
        printf("activation table one entry %s\n", grow ? "longer" : "shorter");
        assert_int_equal(load_edited(dir, src, &e, true, "activations"), REPQ_ERR_FORMAT);
        free(q);
    }
}

/* Float Swin checkpoints (the small one of swin_small_file.h) with a tensor of the wrong
 * shape, a missing tensor, or timm's old buffers with wrong content: refused, naming the
 * tensor. The buffers as timm computes them are accepted. */
static void hostile_float_checkpoints_are_refused(void **state)
{
    swin_fixture *f = *state;
    char src[128];
    snprintf(src, sizeof src, "%s/small.safetensors", f->dir);
    assert_int_equal(swin_small_write(src, SWIN_SMALL_ARCH, 5, false), REPQ_OK);
    const st_edit none = {0};
    assert_int_equal(load_edited(f->dir, src, &none, false, NULL), REPQ_OK);

    float *mask = swin_timm_attn_mask(16, 4, 2), *wrong = swin_timm_attn_mask(16, 4, 1);
    int64_t *index = swin_timm_relative_index(4);
    const char *mask1 = "layers.0.blocks.1.attn_mask", *index0 = "layers.0.blocks.0.attn.relative_position_index";
    const st_edit good[] = {
        {.tensor = mask1, .dtype = REPQ_ST_F32, .ndim = 3, .shape = {16, 16, 16}, .data = mask},
        {.tensor = index0, .dtype = REPQ_ST_I64, .ndim = 2, .shape = {16, 16}, .data = index},
    };
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(load_edited(f->dir, src, &good[i], false, NULL), REPQ_OK);
    /* Every buffer of every block, as swin_small_write writes them. */
    char with_buffers[128];
    snprintf(with_buffers, sizeof with_buffers, "%s/buffers.safetensors", f->dir);
    assert_int_equal(swin_small_write(with_buffers, SWIN_SMALL_ARCH, 5, true), REPQ_OK);
    assert_int_equal(load_edited(f->dir, with_buffers, &none, false, NULL), REPQ_OK);
    unlink(with_buffers);
    const st_edit bad[] = {
        {.tensor = "layers.0.blocks.1.attn.relative_position_bias_table", .dtype = REPQ_ST_F32, .ndim = 2, .shape = {48, 1}},
        {.tensor = "layers.1.blocks.0.attn.relative_position_bias_table", .dtype = REPQ_ST_F32, .ndim = 2, .shape = {49, 1}},
        {.tensor = "layers.1.blocks.1.attn.relative_position_bias_table", .dtype = REPQ_ST_F32, .ndim = 1, .shape = {98}},
        {.tensor = "layers.1.blocks.1.mlp.fc2.weight", .drop = true},
        {.tensor = "layers.1.downsample.reduction.weight", .drop = true},
        {.tensor = "layers.1.downsample.reduction.weight", .dtype = REPQ_ST_F32, .ndim = 2, .shape = {16, 16}},
        {.tensor = mask1, .dtype = REPQ_ST_F32, .ndim = 3, .shape = {16, 16, 16}},                   /* all zero */
        {.tensor = mask1, .dtype = REPQ_ST_F32, .ndim = 3, .shape = {16, 16, 16}, .data = wrong},     /* shift 1 */
        {.tensor = mask1, .dtype = REPQ_ST_F32, .ndim = 3, .shape = {16, 16, 15}, .data = mask},
        {.tensor = mask1, .dtype = REPQ_ST_I32, .ndim = 3, .shape = {16, 16, 16}},
        {.tensor = "layers.0.blocks.0.attn_mask", .dtype = REPQ_ST_F32, .ndim = 3, .shape = {16, 16, 16}, .data = mask},
        {.tensor = index0, .dtype = REPQ_ST_I64, .ndim = 2, .shape = {16, 16}},
        {.tensor = index0, .dtype = REPQ_ST_I64, .ndim = 2, .shape = {16, 15}, .data = index},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        printf("float checkpoint: %s %s\n", bad[i].tensor, bad[i].drop ? "dropped" : "replaced");
        /* A buffer of a dtype that does not convert to float is UNSUPPORTED, the rest FORMAT. */
        const repq_status st = load_edited(f->dir, src, &bad[i], false, bad[i].tensor);
        assert_int_equal(st, bad[i].dtype == REPQ_ST_I32 ? REPQ_ERR_UNSUPPORTED : REPQ_ERR_FORMAT);
    }
    assert_int_equal(load_arch_edit(f->dir, src, false, "{\"window_size\": 32}", "larger"), REPQ_ERR_UNSUPPORTED);
    assert_int_equal(load_arch_edit(f->dir, src, false, "{\"depths\": [2, 3]}", "layers.1.blocks.2"), REPQ_ERR_FORMAT);
    free(mask);
    free(wrong);
    free(index);
    unlink(src);
}

/* A second geometry, the small Swin of swin_small_file.h: windows of 4 shifted by 2 in
 * both stages (swin_micro_rand's last stage has one window, unshifted), 3 classes.
 * Calibrated on 8 and evaluated on 64 generated 32x32 images at W8A8 and W4A4: the
 * session agrees with the fake-quant forward as in `agreement`. Its W4A4 file is a seed
 * of fuzz_qmodel (written to $REPQ_WRITE_CORPUS when set). */
static void small_swin_session_agrees_with_fake_quant(void **state)
{
    swin_fixture *f = *state;
    enum { CLASSES = 3, N_IMAGES = 64 };
    char path[128];
    snprintf(path, sizeof path, "%s/small_float.safetensors", f->dir);
    assert_int_equal(swin_small_write(path, SWIN_SMALL_ARCH, 9, false), REPQ_OK);
    repq_model *m;
    assert_int_equal(repq_model_load(NULL, path, NULL, &m), REPQ_OK);
    unlink(path);
    repq_tensor *calib = generated_images_sized(8, 3, 32), *images = generated_images_sized(N_IMAGES, 4, 32);
    const int64_t shape[2] = {N_IMAGES, CLASSES};
    repq_tensor *y;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &y), REPQ_OK);
    for (int bits = 8; bits >= 4; bits -= 4) {
        repq_qmodel *raw, *q;
        assert_int_equal(quantize(m, calib, bits, 0, &raw, &q), REPQ_OK);
        static float a[N_IMAGES * CLASSES], b[N_IMAGES * CLASSES];
        assert_int_equal(repq_qmodel_forward(q, REPQ_FORWARD_FAKE_QUANT, images, y), REPQ_OK);
        assert_int_equal(repq_tensor_read(y, a, sizeof a), REPQ_OK);
        repq_session *s;
        assert_int_equal(repq_session_new(NULL, q, NULL, N_IMAGES, &s), REPQ_OK);
        assert_int_equal(repq_session_run(s, images, y), REPQ_OK);
        assert_int_equal(repq_tensor_read(y, b, sizeof b), REPQ_OK);
        repq_session_free(s);
        size_t same = 0, identical = 0, predicted[CLASSES] = {0};
        for (size_t i = 0; i < N_IMAGES; i++) {
            size_t ta = 0, tb = 0;
            for (size_t j = 1; j < CLASSES; j++) {
                ta = a[i * CLASSES + j] > a[i * CLASSES + ta] ? j : ta;
                tb = b[i * CLASSES + j] > b[i * CLASSES + tb] ? j : tb;
            }
            same += ta == tb;
            predicted[ta]++;
            identical += memcmp(a + i * CLASSES, b + i * CLASSES, CLASSES * sizeof(float)) == 0;
        }
        double worst;
        const double rms = relative_rms(a, b, N_IMAGES * CLASSES, &worst);
        printf("small Swin W%dA%d, %d generated 32x32 images (classes %zu/%zu/%zu): same top-1 %.1f%%, logits "
               "bit-identical on %zu, relative RMS %.3g, worst element %.3g\n",
               bits, bits, N_IMAGES, predicted[0], predicted[1], predicted[2], 100.0 * (double)same / N_IMAGES,
               identical, rms, worst);
        assert_true((double)same >= 0.995 * N_IMAGES);
        assert_true(rms <= (bits == 8 ? 0.02 : 0.04));
        const char *corpus = getenv("REPQ_WRITE_CORPUS");
        if (corpus && bits == 4) {
            char seed[256];
            snprintf(seed, sizeof seed, "%s/swin_small_w4a4.safetensors", corpus);
            assert_int_equal(repq_qmodel_save(q, seed), REPQ_OK);
        }
        repq_qmodel_free(raw);
        repq_qmodel_free(q);
    }
    repq_tensor_free(y);
    repq_tensor_free(calib);
    repq_tensor_free(images);
    repq_model_free(m);
}

/* ---- many threads, one qmodel ------------------------------------------------------ */

/* Eight threads, each with its own session over one shared Swin qmodel, at once:
 * the same logits as one session alone (run it under ThreadSanitizer with
 * REPQ_TEST_FILTER=sessions_share_one_qmodel). */
static void sessions_share_one_qmodel(void **state)
{
    swin_fixture *f = *state;
    static float ref[N_SMALL * K];
    session_logits(f->w4a4, 1, repq_kernel_level_best(repq_cpu_detect()), f->small, ref);
    sessions_on_threads(f->w4a4, f->small, 8, ref, N_SMALL * K);
}

/* The presets' stages are timm's (swin_tiny: depths 2, 2, 6, 2, widths 96 to 768, heads
 * 3 to 24, 56x56 tokens halving to 7x7, window 7 throughout), the family-neutral
 * attributes read as documented, and out-of-range requests are refused. */
static void stage_attributes_are_timms(void **state)
{
    (void)state;
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    repq_model *m, *vit;
    assert_int_equal(repq_model_create_random(ctx, "swin_tiny_patch4_window7_224", 0, 1, &m), REPQ_OK);
    int64_t v;
    const struct { repq_model_attr attr; int64_t want; } model[] = {
        {REPQ_MODEL_FAMILY, REPQ_FAMILY_SWIN}, {REPQ_MODEL_NUM_STAGES, 4}, {REPQ_MODEL_WINDOW_SIZE, 7},
        {REPQ_MODEL_DEPTH, 12}, {REPQ_MODEL_EMBED_DIM, 96}, {REPQ_MODEL_NUM_HEADS, 3},
        {REPQ_MODEL_MLP_HIDDEN, 384}, {REPQ_MODEL_NUM_TOKENS, 3136}, {REPQ_MODEL_NUM_CLASSES, 1000},
        {REPQ_MODEL_NUM_PARAMS, 28288354}};
    for (size_t i = 0; i < sizeof model / sizeof model[0]; i++) {
        assert_int_equal(repq_model_get_int(m, model[i].attr, &v), REPQ_OK);
        assert_int_equal(v, model[i].want);
    }
    const int64_t want[4][6] = {{2, 96, 3, 384, 3136, 7}, {2, 192, 6, 768, 784, 7},
                                {6, 384, 12, 1536, 196, 7}, {2, 768, 24, 3072, 49, 7}};
    const repq_stage_attr attrs[6] = {REPQ_STAGE_DEPTH, REPQ_STAGE_EMBED_DIM, REPQ_STAGE_NUM_HEADS,
                                      REPQ_STAGE_MLP_HIDDEN, REPQ_STAGE_NUM_TOKENS, REPQ_STAGE_WINDOW_SIZE};
    for (int32_t stage = 0; stage < 4; stage++)
        for (int k = 0; k < 6; k++) {
            assert_int_equal(repq_model_get_stage_int(m, stage, attrs[k], &v), REPQ_OK);
            assert_int_equal(v, want[stage][k]);
        }
    assert_int_equal(repq_model_get_stage_int(m, 4, REPQ_STAGE_DEPTH, &v), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_model_get_stage_int(m, -1, REPQ_STAGE_DEPTH, &v), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_model_get_stage_int(m, 0, (repq_stage_attr)99, &v), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_model_get_stage_int(m, 0, REPQ_STAGE_DEPTH, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_model_get_stage_int(NULL, 0, REPQ_STAGE_DEPTH, &v), REPQ_ERR_INVALID_ARGUMENT);
    /* A ViT is one stage of global attention. */
    assert_int_equal(repq_model_create_random(ctx, "deit_tiny_patch16_224", 0, 1, &vit), REPQ_OK);
    assert_int_equal(repq_model_get_int(vit, REPQ_MODEL_NUM_STAGES, &v), REPQ_OK);
    assert_int_equal(v, 1);
    assert_int_equal(repq_model_get_stage_int(vit, 0, REPQ_STAGE_NUM_TOKENS, &v), REPQ_OK);
    assert_int_equal(v, 197);
    assert_int_equal(repq_model_get_stage_int(vit, 0, REPQ_STAGE_WINDOW_SIZE, &v), REPQ_OK);
    assert_int_equal(v, 0);
    assert_int_equal(repq_model_get_stage_int(vit, 1, REPQ_STAGE_DEPTH, &v), REPQ_ERR_INVALID_ARGUMENT);
#ifdef REPQ_HAVE_IMAGES
    /* timm evaluates its Swins at crop_pct 0.9, bicubic: 224 / 0.9 -> 248 (DeiT: 0.875 -> 256). */
    repq_image_loader *l;
    assert_int_equal(repq_image_loader_new(ctx, m, &l), REPQ_OK);
    assert_int_equal(repq_image_loader_get_int(l, REPQ_IMAGE_RESIZE_SIZE, &v), REPQ_OK);
    assert_int_equal(v, 248);
    assert_int_equal(repq_image_loader_get_int(l, REPQ_IMAGE_INTERPOLATION, &v), REPQ_OK);
    assert_int_equal(v, REPQ_INTERPOLATION_BICUBIC);
    repq_image_loader_free(l);
    assert_int_equal(repq_image_loader_new(ctx, vit, &l), REPQ_OK);
    assert_int_equal(repq_image_loader_get_int(l, REPQ_IMAGE_RESIZE_SIZE, &v), REPQ_OK);
    assert_int_equal(v, 256);
    repq_image_loader_free(l);
#endif
    repq_model_free(vit);
    repq_model_free(m);
    repq_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest float_tests[] = {
        cmocka_unit_test(stage_attributes_are_timms),
        cmocka_unit_test(float_forward_matches_timm),
        cmocka_unit_test(shifted_block_matches_float64),
    };
    const struct CMUnitTest quant_tests[] = {
        cmocka_unit_test(reparameterization_is_exact_without_quantization),
        cmocka_unit_test(layer_wise_codes_equal_channel_wise_codes),
        cmocka_unit_test(session_agrees_with_fake_quant_w8a8),
        cmocka_unit_test(session_agrees_with_fake_quant_w4a4),
        cmocka_unit_test(dual_clipping_on_swin),
        cmocka_unit_test(every_level_gives_the_same_bits),
        cmocka_unit_test(threads_give_the_same_bits),
        cmocka_unit_test(session_run_allocates_nothing),
        cmocka_unit_test(reconstruction_runs_on_swin),
        cmocka_unit_test(files_round_trip_bit_identically),
        cmocka_unit_test(hostile_qmodel_files_are_refused),
        cmocka_unit_test(hostile_float_checkpoints_are_refused),
        cmocka_unit_test(small_swin_session_agrees_with_fake_quant),
        cmocka_unit_test(sessions_share_one_qmodel),
    };
    /* REPQ_TEST_FILTER runs only the tests whose names match (e.g. the threaded one under
     * ThreadSanitizer). */
    if (getenv("REPQ_TEST_FILTER"))
        cmocka_set_test_filter(getenv("REPQ_TEST_FILTER"));
    const int failed = cmocka_run_group_tests_name("swin float", float_tests, NULL, NULL);
    return failed + cmocka_run_group_tests_name("swin quantized", quant_tests, quant_setup, quant_teardown);
}
