/* Tests of lib/calib's calibrator: stage order, bad input, and that every quantization
 * point gets the quantizer the method prescribes. */
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

#include "calib/float_target.h"
#include "calib/gptq.h"
#include "core/tensor.h"
#include "model/qmodel.h"
#include "vit_layout.h"
#include "repq/repq.h"

#define MODEL_PATH REPQ_TEST_DATA "/vit_tiny_cifar10.safetensors"
#define CALIB_IMAGES REPQ_TEST_DATA "/cifar10_calib.bin"

typedef struct fixture {
    repq_context *ctx;
    repq_model *model;
    repq_tensor *images, *labels;
} fixture;

static int setup(void **state)
{
    static fixture f;
    if (repq_context_new(&f.ctx) || repq_model_load(f.ctx, MODEL_PATH, NULL, &f.model) ||
        repq_cifar_load(f.ctx, CALIB_IMAGES, 0, 8, &f.images, &f.labels))
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    repq_tensor_free(f->images);
    repq_tensor_free(f->labels);
    repq_model_free(f->model);
    repq_context_free(f->ctx);
    return 0;
}

static repq_options *options(int wbits, int abits, int method)
{
    repq_options *o;
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, wbits), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_ACT_BITS, abits), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_METHOD, method), REPQ_OK);
    return o;
}

static void stages_out_of_order_are_refused(void **state)
{
    fixture *f = *state;
    repq_calib *c;
    repq_qmodel *q = (repq_qmodel *)1;
    assert_int_equal(repq_calib_new(f->ctx, f->model, NULL, &c), REPQ_OK);
    assert_int_equal(repq_calib_finish(c, &q), REPQ_ERR_STATE);
    assert_null(q);
    assert_non_null(strstr(repq_last_error(c), "no calibration image"));
    assert_int_equal(repq_calib_feed(c, f->images), REPQ_OK);
    assert_int_equal(repq_calib_finish(c, &q), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, f->images), REPQ_ERR_STATE);
    repq_qmodel *again;
    assert_int_equal(repq_calib_finish(c, &again), REPQ_ERR_STATE);
    assert_non_null(strstr(repq_last_error(c), "already finished"));
    repq_qmodel_free(q);
    repq_calib_free(c);
}

static void bad_arguments_are_refused(void **state)
{
    fixture *f = *state;
    repq_calib *c = (repq_calib *)1;
    assert_int_equal(repq_calib_new(f->ctx, NULL, NULL, &c), REPQ_ERR_INVALID_ARGUMENT);
    assert_null(c);
    assert_int_equal(repq_calib_new(f->ctx, (repq_model *)f->images, NULL, &c), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_calib_new(f->ctx, f->model, (repq_options *)f->images, &c), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_calib_new(f->ctx, f->model, NULL, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_calib_new(f->ctx, f->model, NULL, &c), REPQ_OK);
    int64_t wrong[4] = {2, 3, 224, 224}, flat[2] = {2, 3072};
    repq_tensor *big, *two_d, *nan_img;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_U8, 4, wrong, NULL, &big), REPQ_OK);
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_U8, 2, flat, NULL, &two_d), REPQ_OK);
    int64_t one[4] = {1, 3, 32, 32};
    float pixels[3 * 32 * 32] = {0};
    pixels[77] = INFINITY;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 4, one, pixels, &nan_img), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, big), REPQ_ERR_SHAPE);
    assert_non_null(strstr(repq_last_error(c), "[N, 3, 32, 32]"));
    assert_int_equal(repq_calib_feed(c, two_d), REPQ_ERR_SHAPE);
    assert_int_equal(repq_calib_feed(c, nan_img), REPQ_ERR_NUMERIC);
    assert_int_equal(repq_calib_feed(c, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_calib_feed(NULL, f->images), REPQ_ERR_INVALID_ARGUMENT);
    /* Mixing pixel batches with preprocessed batches would mix two input scales. */
    assert_int_equal(repq_calib_feed(c, f->images), REPQ_OK);
    pixels[77] = 0.0f;
    assert_int_equal(repq_tensor_write(nan_img, pixels, sizeof pixels), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, nan_img), REPQ_ERR_SHAPE);
    repq_tensor_free(big);
    repq_tensor_free(two_d);
    repq_tensor_free(nan_img);
    repq_calib_free(c);
    repq_calib_free(NULL);
}

static repq_qmodel *calibrate_post_gelu(fixture *f, int wbits, int abits, int method, int post_gelu)
{
    repq_options *o = options(wbits, abits, method);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_POST_GELU, post_gelu), REPQ_OK);
    repq_calib *c;
    repq_qmodel *q;
    assert_int_equal(repq_calib_new(f->ctx, f->model, o, &c), REPQ_OK);
    /* Two batches: the calibrator must see them as one calibration set. */
    assert_int_equal(repq_calib_feed(c, f->images), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, f->images), REPQ_OK);
    assert_int_equal(repq_calib_finish(c, &q), REPQ_OK);
    repq_calib_free(c);
    repq_options_free(o);
    return q;
}

static repq_qmodel *calibrate(fixture *f, int wbits, int abits, int method)
{
    return calibrate_post_gelu(f, wbits, abits, method, REPQ_POST_GELU_TWO_REGION);
}

static void repq_method_places_its_quantizers(void **state)
{
    fixture *f = *state;
    repq_qmodel *q = calibrate(f, 4, 6, REPQ_METHOD_REPQ);
    const repq_arch *a = &q->arch;
    int64_t v;
    assert_int_equal(repq_qmodel_get_int(q, REPQ_QMODEL_REPARAMETERIZED, &v), REPQ_OK);
    assert_int_equal(v, 0);
    assert_int_equal(repq_qmodel_get_int(q, REPQ_QMODEL_WEIGHT_BITS, &v), REPQ_OK);
    assert_int_equal(v, 4);
    for (int32_t b = 0; b < a->depth; b++)
        for (int p = REPQ_QP_QKV_IN; p <= REPQ_QP_FC2_IN; p++) {
            const repq_act_quant *aq = &q->acts[vit_act_index(a, b, (repq_qpoint)p)];
            if (p == REPQ_QP_QKV_IN || p == REPQ_QP_FC1_IN) {
                assert_int_equal(aq->kind, REPQ_AQ_UNIFORM_CHANNEL);
                assert_int_equal(aq->channels, a->embed_dim);
                for (int c = 0; c < aq->channels; c++) {
                    assert_int_equal(aq->per_channel[c].bits, 6);
                    assert_int_equal(repq_quant_params_check(&aq->per_channel[c]), REPQ_OK);
                }
            } else if (p == REPQ_QP_ATTN) {
                assert_int_equal(aq->kind, REPQ_AQ_LOG_SQRT2);
                assert_int_equal(aq->log.bits, 6);
                /* Softmax outputs are probabilities: the scale cannot exceed 1. */
                assert_true(aq->log.scale > 0.0f && aq->log.scale <= 1.0f);
            } else if (p == REPQ_QP_FC2_IN && aq->kind == REPQ_AQ_TWO_REGION) {
                assert_int_equal(aq->two.bits, 6);
                assert_int_equal(repq_tworeg_params_check(&aq->two), REPQ_OK);
            } else {
                assert_int_equal(aq->kind, REPQ_AQ_UNIFORM);
                assert_int_equal(aq->uniform.bits, 6);
            }
        }
    const repq_act_quant *patch = &q->acts[vit_act_index(a, -1, REPQ_QP_PATCH_IN)];
    assert_int_equal(patch->kind, REPQ_AQ_UNIFORM);
    assert_int_equal(patch->uniform.bits, 8);
    assert_int_equal(q->acts[vit_act_index(a, -1, REPQ_QP_HEAD_IN)].kind, REPQ_AQ_UNIFORM);
    /* Every weight code is a 4-bit code and dequantizes into fq_params. */
    for (int32_t id = 0; id < q->num_linear; id++) {
        const repq_qlinear *l = &q->linear[id];
        for (size_t i = 0; i < (size_t)l->out * (size_t)l->in; i++)
            assert_true(l->codes[i] < 16);
    }
    repq_qmodel_free(q);
}

/* The post-GELU option changes fc2's input quantizer and nothing before it: at 4 bits
 * the two-region quantizer wins on GELU's negative tail in most blocks (it is kept only
 * where its error is lower), keeps the top of the layer-wise range, and block 0, whose
 * inputs do not depend on the choice, has every other quantizer unchanged. */
static void post_gelu_option_picks_fc2_input_quantizer(void **state)
{
    fixture *f = *state;
    repq_qmodel *u = calibrate_post_gelu(f, 4, 4, REPQ_METHOD_REPQ, REPQ_POST_GELU_UNIFORM);
    repq_qmodel *t = calibrate_post_gelu(f, 4, 4, REPQ_METHOD_REPQ, REPQ_POST_GELU_TWO_REGION);
    const repq_arch *a = &u->arch;
    int two = 0;
    for (int32_t b = 0; b < a->depth; b++) {
        const repq_act_quant *au = &u->acts[vit_act_index(a, b, REPQ_QP_FC2_IN)];
        const repq_act_quant *at = &t->acts[vit_act_index(a, b, REPQ_QP_FC2_IN)];
        assert_int_equal(au->kind, REPQ_AQ_UNIFORM);
        assert_true(at->kind == REPQ_AQ_UNIFORM || at->kind == REPQ_AQ_TWO_REGION);
        if (at->kind != REPQ_AQ_TWO_REGION)
            continue;
        two++;
        const float top = at->two.scale * (float)(15 - at->two.zero_point);
        const float top_uniform = at->uniform.scale * (float)(15 - at->uniform.zero_point);
        assert_true(fabsf(top - top_uniform) <= 1e-6f * top_uniform);
        assert_true(at->two.zero_point >= 1 && at->two.zero_point <= 7);
    }
    assert_true(two >= a->depth / 2);
    int64_t attr_u = -1, attr_t = -1;
    assert_int_equal(repq_qmodel_get_int(u, REPQ_QMODEL_TWO_REGION_BLOCKS, &attr_u), REPQ_OK);
    assert_int_equal(repq_qmodel_get_int(t, REPQ_QMODEL_TWO_REGION_BLOCKS, &attr_t), REPQ_OK);
    assert_int_equal(attr_u, 0);
    assert_int_equal(attr_t, two);
    for (int p = REPQ_QP_QKV_IN; p < REPQ_QP_FC2_IN; p++) {
        const repq_act_quant *au = &u->acts[vit_act_index(a, 0, (repq_qpoint)p)];
        const repq_act_quant *at = &t->acts[vit_act_index(a, 0, (repq_qpoint)p)];
        assert_int_equal(au->kind, at->kind);
        if (au->kind == REPQ_AQ_UNIFORM)
            assert_memory_equal(&au->uniform, &at->uniform, sizeof au->uniform);
    }
    repq_qmodel_free(u);
    repq_qmodel_free(t);
}

static void minmax_method_is_layer_wise_everywhere(void **state)
{
    fixture *f = *state;
    repq_qmodel *q = calibrate(f, 8, 8, REPQ_METHOD_MINMAX);
    const repq_arch *a = &q->arch;
    for (size_t i = 0; i < (size_t)(a->depth + 1) * VIT_ACT_ROW; i++) {
        size_t p = i % VIT_ACT_ROW;
        bool used = i / VIT_ACT_ROW < (size_t)a->depth ? (p != REPQ_QP_PATCH_IN && p != REPQ_QP_HEAD_IN)
                                                         : (p == REPQ_QP_PATCH_IN || p == REPQ_QP_HEAD_IN);
        assert_int_equal(q->acts[i].kind, used ? REPQ_AQ_UNIFORM : REPQ_AQ_NONE);
    }
    int64_t v;
    assert_int_equal(repq_qmodel_get_int(q, REPQ_QMODEL_REPARAMETERIZED, &v), REPQ_OK);
    assert_int_equal(v, 1);
    repq_qmodel_free(q);
}

/* A 2-bit model still runs and gives finite logits (no scale collapses to 0 or inf). */
static void lowest_bit_width_stays_finite(void **state)
{
    fixture *f = *state;
    repq_qmodel *q = calibrate(f, 2, 2, REPQ_METHOD_REPQ);
    int64_t shape[2] = {8, 10};
    repq_tensor *logits;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &logits), REPQ_OK);
    assert_int_equal(repq_qmodel_forward(q, REPQ_FORWARD_FAKE_QUANT, f->images, logits), REPQ_OK);
    float out[80];
    assert_int_equal(repq_tensor_read(logits, out, sizeof out), REPQ_OK);
    for (int i = 0; i < 80; i++)
        assert_true(isfinite(out[i]));
    repq_tensor_free(logits);
    repq_qmodel_free(q);
}

static void reconstruction_checks_its_inputs(void **state)
{
    fixture *f = *state;
    repq_options *o = options(4, 8, REPQ_METHOD_REPQ);
    repq_calib *c;
    repq_qmodel *q, *r, *g = (repq_qmodel *)1;
    assert_int_equal(repq_calib_new(f->ctx, f->model, o, &c), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, f->images), REPQ_OK);
    assert_int_equal(repq_calib_finish(c, &q), REPQ_OK);
    assert_int_equal(repq_qmodel_reparameterize(f->ctx, q, &r), REPQ_OK);
    assert_int_equal(repq_calib_reconstruct(NULL, r, &g), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_calib_reconstruct(c, r, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_calib_reconstruct(c, (repq_qmodel *)f->images, &g), REPQ_ERR_INVALID_ARGUMENT);
    assert_null(g);
    /* Before reparameterization the post-LN inputs are channel-wise: not what runs. */
    assert_int_equal(repq_calib_reconstruct(c, q, &g), REPQ_ERR_STATE);
    assert_non_null(strstr(repq_last_error(c), "reparameterized"));
    /* A loaded qmodel has no float weights to start from. */
    char path[] = "/tmp/repq_test_calib_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    repq_qmodel *loaded;
    assert_int_equal(repq_qmodel_save(r, path), REPQ_OK);
    assert_int_equal(repq_qmodel_load(f->ctx, path, &loaded), REPQ_OK);
    remove(path);
    assert_int_equal(repq_calib_reconstruct(c, loaded, &g), REPQ_ERR_STATE);
    assert_null(g);
    /* An unfinished calibrator has no pass to repeat. */
    repq_calib *fresh;
    assert_int_equal(repq_calib_new(f->ctx, f->model, o, &fresh), REPQ_OK);
    assert_int_equal(repq_calib_feed(fresh, f->images), REPQ_OK);
    assert_int_equal(repq_calib_reconstruct(fresh, r, &g), REPQ_ERR_STATE);
    assert_non_null(strstr(repq_last_error(fresh), "not finished"));
    repq_calib_free(fresh);
    repq_qmodel_free(loaded);
    repq_qmodel_free(q);
    repq_qmodel_free(r);
    repq_calib_free(c);
    repq_options_free(o);
}

/* Squared distance of the qmodel's fake-quant logits from the float model's on the
 * fixture's images. */
static double logit_error(fixture *f, const repq_qmodel *q, const float *want)
{
    int64_t shape[2] = {8, 10};
    repq_tensor *logits;
    float got[80];
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &logits), REPQ_OK);
    assert_int_equal(repq_qmodel_forward(q, REPQ_FORWARD_FAKE_QUANT, f->images, logits), REPQ_OK);
    assert_int_equal(repq_tensor_read(logits, got, sizeof got), REPQ_OK);
    repq_tensor_free(logits);
    double e = 0.0;
    for (int i = 0; i < 80; i++)
        e += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
    return e;
}

/* Calibrate on the fixture's images, reparameterize and reconstruct (GPTQ); the
 * objects stay alive for the test, which frees them with release_stages. */
typedef struct stages {
    repq_options *o;
    repq_calib *c;
    repq_qmodel *q, *r, *g;
} stages;

static stages run_stages(fixture *f, int wbits, int abits, repq_gptq_target target, repq_progress_fn progress,
                         void *user)
{
    stages st;
    st.o = options(wbits, abits, REPQ_METHOD_REPQ);
    assert_int_equal(repq_options_set_int(st.o, REPQ_OPT_GPTQ_TARGET, target), REPQ_OK);
    assert_int_equal(repq_calib_new(f->ctx, f->model, st.o, &st.c), REPQ_OK);
    assert_int_equal(repq_calib_feed(st.c, f->images), REPQ_OK);
    assert_int_equal(repq_calib_finish(st.c, &st.q), REPQ_OK);
    assert_int_equal(repq_qmodel_reparameterize(f->ctx, st.q, &st.r), REPQ_OK);
    assert_int_equal(repq_calib_set_progress(st.c, progress, user), REPQ_OK);
    assert_int_equal(repq_calib_reconstruct(st.c, st.r, &st.g), REPQ_OK);
    return st;
}

static void release_stages(stages *st)
{
    repq_qmodel_free(st->g);
    repq_qmodel_free(st->r);
    repq_qmodel_free(st->q);
    repq_calib_free(st->c);
    repq_options_free(st->o);
}

/* GPTQ changes only weight codes (a fair share of them), and on the images it saw the
 * model's logits come closer to the float model's than with round-to-nearest codes. */
static void reconstruction_changes_only_codes_and_lowers_the_error(void **state)
{
    fixture *f = *state;
    stages st = run_stages(f, 4, 8, REPQ_GPTQ_TARGET_QUANTIZED_INPUT, NULL, NULL);
    const repq_qmodel *r = st.r, *g = st.g;
    int64_t v;
    assert_int_equal(repq_qmodel_get_int(g, REPQ_QMODEL_REPARAMETERIZED, &v), REPQ_OK);
    assert_int_equal(v, 1);
    assert_memory_equal(g->float_params.arena, r->float_params.arena, r->float_params.arena_floats * sizeof(float));
    for (size_t i = 0; i < (size_t)(r->arch.depth + 1) * VIT_ACT_ROW; i++) {
        assert_int_equal(g->acts[i].kind, r->acts[i].kind);
        assert_memory_equal(&g->acts[i].uniform, &r->acts[i].uniform, sizeof r->acts[i].uniform);
        assert_memory_equal(&g->acts[i].log, &r->acts[i].log, sizeof r->acts[i].log);
    }
    for (int32_t id = 0; id < r->num_linear; id++) {
        const repq_qlinear *lr = &r->linear[id], *lg = &g->linear[id];
        size_t n = (size_t)lr->out * (size_t)lr->in, changed = 0;
        assert_memory_equal(lg->wq, lr->wq, (size_t)lr->out * sizeof *lr->wq);
        for (size_t i = 0; i < n; i++) {
            assert_true(lg->codes[i] < 16);
            changed += lg->codes[i] != lr->codes[i];
        }
        if (id == 0 || id == r->num_linear - 1)
            print_message("linear layer %d: %.1f%% of the codes changed\n", (int)id, 100.0 * (double)changed / (double)n);
        if (changed * 100 < n || changed * 100 > 60 * n)
            fail_msg("linear layer %d: %zu of %zu codes changed", (int)id, changed, n);
    }
    int64_t shape[2] = {8, 10};
    repq_tensor *logits;
    float want[80];
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &logits), REPQ_OK);
    assert_int_equal(repq_model_forward(f->model, f->images, logits), REPQ_OK);
    assert_int_equal(repq_tensor_read(logits, want, sizeof want), REPQ_OK);
    repq_tensor_free(logits);
    double e_nearest = logit_error(f, r, want), e_gptq = logit_error(f, g, want);
    print_message("W4A8 logit error against the float model: GPTQ %.4g, round-to-nearest %.4g\n", e_gptq, e_nearest);
    if (!(e_gptq < e_nearest))
        fail_msg("logit error with GPTQ %.6g, with round-to-nearest %.6g", e_gptq, e_nearest);
    release_stages(&st);
}

/* Records, during a forward that applies a qmodel's activation quantizers, the quantized
 * input of one point. */
typedef struct recorder {
    const repq_qmodel *q;
    bool quantize; /* false: record the float model's input (no quantizer applied) */
    int32_t block;
    repq_qpoint point;
    float *x;
    size_t rows, cols;
} recorder;

static repq_status record(void *user, int32_t slot, float *x, size_t rows, size_t cols)
{
    recorder *rec = user;
    repq_status st = rec->quantize ? repq_act_quant_apply(&rec->q->acts[slot], x, rows, cols) : REPQ_OK;
    if (st == REPQ_OK && slot == (int32_t)vit_act_index(&rec->q->arch, rec->block, rec->point)) {
        rec->x = malloc(rows * cols * sizeof(float));
        memcpy(rec->x, x, rows * cols * sizeof(float));
        rec->rows = rows;
        rec->cols = cols;
    }
    return st;
}

/* The input of one point in a forward over `p` (g's fake-quant parameters with its
 * quantizers applied, or its float parameters without). */
static recorder input_of(fixture *f, const repq_qmodel *g, const repq_params *p, bool quantize, int32_t block,
                         repq_qpoint point)
{
    repq_allocator al = repq_allocator_of(NULL);
    recorder rec = {g, quantize, block, point, NULL, 0, 0};
    repq_hook hook = {record, &rec, true, NULL, false};
    float logits[8 * 10];
    assert_int_equal(repq_net_forward(NULL, &al, g->net, p, f->images->data, true, 8, &hook, logits), REPQ_OK);
    assert_non_null(rec.x);
    return rec;
}

/* GPTQ codes of linear layer `id` of g, recomputed here from the input that layer gets
 * in g itself (activations quantized, every earlier layer with g's weights); with
 * `float_target`, of the weights repq_float_target_weights makes from that input and
 * the float model's. */
static uint8_t *gptq_codes_of(fixture *f, const repq_qmodel *g, int32_t block, repq_qpoint point, int32_t id,
                              bool float_target, bool *corrected)
{
    recorder rec = input_of(f, g, &g->fq_params, true, block, point);
    const repq_qlinear *l = &g->linear[id];
    assert_int_equal(rec.cols, (size_t)l->in);
    size_t in = (size_t)l->in, out = (size_t)l->out;
    double *h = calloc(in * in, sizeof *h), *scratch = malloc(256 * in * sizeof *scratch);
    double *work = malloc(repq_gptq_work_doubles(out, in) * sizeof *work);
    uint8_t *codes = malloc(out * in);
    repq_gptq_gram_add(rec.x, rec.rows, in, scratch, 256, h);
    int32_t r, c;
    const float *w = repq_net_linear_weight(g->net, &g->float_params, id, &r, &c);
    float *target = NULL;
    if (float_target) {
        recorder fl = input_of(f, g, &g->float_params, false, block, point);
        assert_int_equal(fl.rows, rec.rows);
        repq_allocator al = repq_allocator_of(NULL);
        double lambda;
        target = malloc(out * in * sizeof *target);
        assert_int_equal(repq_float_target_weights(&al, w, out, in, rec.x, fl.x, 8, rec.rows / 8, target, &lambda),
                         REPQ_OK);
        print_message("linear layer %d: lambda %g of the mean diagonal\n", (int)id, lambda);
        *corrected = *corrected || lambda > 0.0;
        w = target;
        free(fl.x);
    }
    assert_int_equal(repq_gptq_quantize(w, out, in, h, REPQ_GPTQ_DAMPING, l->wq, work, codes), REPQ_OK);
    free(rec.x), free(h), free(scratch), free(work), free(target);
    return codes;
}

typedef struct progress_log {
    int32_t calls, last, total;
    bool monotone;
} progress_log;

static void log_progress(void *user, int32_t done, int32_t total)
{
    progress_log *p = user;
    p->monotone = p->monotone && done >= p->last && (p->calls == 0 || total == p->total);
    p->calls++;
    p->last = done;
    p->total = total;
}

/* The reconstructed model is what its definition says: every layer's fake-quant weights
 * are its codes, and a layer's codes are GPTQ's for the quantized input it receives in
 * the reconstructed model. Checked for the first layer (patch embedding, 8-bit input) and
 * the last (head, after every other layer was reconstructed): a reconstruction that
 * skipped the activation quantizers, or left earlier layers' weights unchanged for the
 * rest of its pass, gives other codes. */
static void reconstruction_is_gptq_on_the_quantized_inputs(void **state)
{
    fixture *f = *state;
    progress_log progress = {0, 0, 0, true};
    stages st = run_stages(f, 4, 4, REPQ_GPTQ_TARGET_QUANTIZED_INPUT, log_progress, &progress);
    const repq_qmodel *r = st.r, *g = st.g;
    /* One step per block and one for the head, as calibration counts them. */
    assert_true(progress.monotone);
    assert_int_equal(progress.calls, r->arch.depth + 1);
    assert_int_equal(progress.total, r->arch.depth + 1);
    assert_int_equal(progress.last, progress.total);
    for (int32_t id = 0; id < g->num_linear; id++) {
        const repq_qlinear *l = &g->linear[id];
        int32_t rows, cols;
        const float *fq = repq_net_linear_weight(g->net, &g->fq_params, id, &rows, &cols);
        float *deq = malloc((size_t)rows * (size_t)cols * sizeof *deq);
        for (int32_t o2 = 0; o2 < rows; o2++)
            assert_int_equal(repq_quant_dequantize(&l->wq[o2], l->codes + (size_t)o2 * (size_t)cols, (size_t)cols,
                                                   deq + (size_t)o2 * (size_t)cols),
                             REPQ_OK);
        assert_memory_equal(fq, deq, (size_t)rows * (size_t)cols * sizeof *deq);
        free(deq);
    }
    const struct { int32_t block; repq_qpoint point; int32_t id; } layers[] = {
        {-1, REPQ_QP_PATCH_IN, 0}, {-1, REPQ_QP_HEAD_IN, g->num_linear - 1}};
    for (size_t i = 0; i < 2; i++) {
        bool corrected = false;
        uint8_t *codes = gptq_codes_of(f, g, layers[i].block, layers[i].point, layers[i].id, false, &corrected);
        const repq_qlinear *l = &g->linear[layers[i].id];
        assert_memory_equal(codes, l->codes, (size_t)l->out * (size_t)l->in);
        free(codes);
    }
    release_stages(&st);
}

/* With the float-model target: a layer's codes are GPTQ's for the weights
 * repq_float_target_weights makes from the input the layer gets in the reconstructed
 * model and the float model's input (checked for the first layer, the last block's four
 * and the head, at least one of them corrected: a pass that paired a layer with another
 * layer's or another node's float input gives other codes); only codes change; and the
 * progress is reported as for GPTQ's target. */
static void float_target_reconstruction_is_gptq_of_the_corrected_weights(void **state)
{
    fixture *f = *state;
    progress_log progress = {0, 0, 0, true};
    stages st = run_stages(f, 4, 4, REPQ_GPTQ_TARGET_FLOAT_MODEL, log_progress, &progress);
    stages classic = run_stages(f, 4, 4, REPQ_GPTQ_TARGET_QUANTIZED_INPUT, NULL, NULL);
    const repq_qmodel *r = st.r, *g = st.g;
    assert_true(progress.monotone);
    assert_int_equal(progress.calls, r->arch.depth + 1);
    assert_int_equal(progress.last, progress.total);
    assert_memory_equal(g->float_params.arena, r->float_params.arena, r->float_params.arena_floats * sizeof(float));
    size_t differ = 0;
    for (int32_t id = 0; id < r->num_linear; id++) {
        const repq_qlinear *lr = &r->linear[id], *lg = &g->linear[id], *lc = &classic.g->linear[id];
        assert_memory_equal(lg->wq, lr->wq, (size_t)lr->out * sizeof *lr->wq);
        for (size_t i = 0; i < (size_t)lr->out * (size_t)lr->in; i++)
            differ += lg->codes[i] != lc->codes[i];
    }
    assert_true(differ > 0);
    const int32_t last = g->arch.depth - 1;
    const struct { int32_t block; repq_qpoint point; } layers[] = {
        {-1, REPQ_QP_PATCH_IN}, {last, REPQ_QP_QKV_IN}, {last, REPQ_QP_PROJ_IN},
        {last, REPQ_QP_FC1_IN}, {last, REPQ_QP_FC2_IN}, {-1, REPQ_QP_HEAD_IN}};
    bool corrected = false;
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        const int32_t id = g->net->slots[vit_act_index(&g->arch, layers[i].block, layers[i].point)].feeds;
        uint8_t *codes = gptq_codes_of(f, g, layers[i].block, layers[i].point, id, true, &corrected);
        const repq_qlinear *l = &g->linear[id];
        assert_memory_equal(codes, l->codes, (size_t)l->out * (size_t)l->in);
        free(codes);
    }
    assert_true(corrected);
    release_stages(&classic);
    release_stages(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stages_out_of_order_are_refused),
        cmocka_unit_test(bad_arguments_are_refused),
        cmocka_unit_test(repq_method_places_its_quantizers),
        cmocka_unit_test(post_gelu_option_picks_fc2_input_quantizer),
        cmocka_unit_test(minmax_method_is_layer_wise_everywhere),
        cmocka_unit_test(lowest_bit_width_stays_finite),
        cmocka_unit_test(reconstruction_checks_its_inputs),
        cmocka_unit_test(reconstruction_changes_only_codes_and_lowers_the_error),
        cmocka_unit_test(reconstruction_is_gptq_on_the_quantized_inputs),
        cmocka_unit_test(float_target_reconstruction_is_gptq_of_the_corrected_weights),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
