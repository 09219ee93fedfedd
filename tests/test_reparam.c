/* Tests of lib/reparam: scale reparameterization changes nothing the model computes,
 * and the layer-wise quantizer it produces sees the same codes as the channel-wise one. */
#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "model/qmodel.h"
#include "vit_layout.h"
#include "reparam/reparam.h"
#include "unrounded_zero_point.h"
#include "repq/repq.h"

#define MODEL_PATH REPQ_TEST_DATA "/vit_tiny_cifar10.safetensors"
#define CALIB_IMAGES REPQ_TEST_DATA "/cifar10_calib.bin"
#define TEST_IMAGES REPQ_TEST_DATA "/cifar10_test_dev.bin"
#define N_TEST 64

typedef struct fixture {
    repq_model *model;
    repq_qmodel *channelwise, *layerwise;
    repq_tensor *test, *labels;
    /* With dual clipping: the same calibration without it, to compare against. */
    repq_qmodel *reference;
} fixture;

/* W4A4, the first 32 calibration images. */
static repq_status calibrate(repq_model *model, repq_tensor *calib, int dual_clip, repq_qmodel **out)
{
    repq_options *o;
    repq_calib *c = NULL;
    repq_status st;
    if ((st = repq_options_new(&o)))
        return st;
    if (!(st = repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, 4)) && !(st = repq_options_set_int(o, REPQ_OPT_ACT_BITS, 4)) &&
        !(st = repq_options_set_int(o, REPQ_OPT_DUAL_CLIP, dual_clip)) && !(st = repq_calib_new(NULL, model, o, &c)) &&
        !(st = repq_calib_feed(c, calib)))
        st = repq_calib_finish(c, out);
    repq_calib_free(c);
    repq_options_free(o);
    return st;
}

static int setup_with(void **state, fixture *f, int dual_clip)
{
    repq_tensor *calib, *calib_labels;
    if (repq_model_load(NULL, MODEL_PATH, NULL, &f->model) ||
        repq_cifar_load(NULL, CALIB_IMAGES, 0, 32, &calib, &calib_labels) ||
        repq_cifar_load(NULL, TEST_IMAGES, 0, N_TEST, &f->test, &f->labels) ||
        calibrate(f->model, calib, dual_clip, &f->channelwise) ||
        (dual_clip && calibrate(f->model, calib, 0, &f->reference)) ||
        repq_qmodel_reparameterize(NULL, f->channelwise, &f->layerwise))
        return -1;
    repq_tensor_free(calib);
    repq_tensor_free(calib_labels);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    static fixture f;
    return setup_with(state, &f, 0);
}

static int setup_dual_clip(void **state)
{
    static fixture f;
    return setup_with(state, &f, 1);
}

static int teardown(void **state)
{
    fixture *f = *state;
    repq_qmodel_free(f->channelwise);
    repq_qmodel_free(f->layerwise);
    repq_qmodel_free(f->reference);
    repq_model_free(f->model);
    repq_tensor_free(f->test);
    repq_tensor_free(f->labels);
    return 0;
}

static void run(repq_tensor *logits, float *out, size_t n)
{
    assert_int_equal(repq_tensor_read(logits, out, n * sizeof(float)), REPQ_OK);
}

static void without_quantization_logits_are_unchanged(void **state)
{
    fixture *f = *state;
    int64_t shape[2] = {N_TEST, 10};
    repq_tensor *a, *b;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &a), REPQ_OK);
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &b), REPQ_OK);
    assert_int_equal(repq_model_forward(f->model, f->test, a), REPQ_OK);
    assert_int_equal(repq_qmodel_forward(f->layerwise, REPQ_FORWARD_FLOAT, f->test, b), REPQ_OK);
    static float x[N_TEST * 10], y[N_TEST * 10];
    run(a, x, N_TEST * 10);
    run(b, y, N_TEST * 10);
    double num = 0, den = 0, worst = 0;
    for (int i = 0; i < N_TEST * 10; i++) {
        num += (double)(x[i] - y[i]) * (x[i] - y[i]);
        den += (double)x[i] * x[i];
        double rel = fabs(x[i] - y[i]) / fmax(1.0, fabs(x[i]));
        worst = rel > worst ? rel : worst;
    }
    print_message("reparameterized float model: relative L2 %.3g, worst element %.3g\n", sqrt(num / den), worst);
    assert_true(sqrt(num / den) <= 1e-4);
    assert_true(worst <= 1e-4);
    repq_tensor_free(a);
    repq_tensor_free(b);
}

/* Records the post-LayerNorm activation of one block as a float forward sees it. */
typedef struct capture {
    int32_t block;
    repq_qpoint point;
    float *x;
    size_t rows, cols;
    const repq_net *net; /* set by capture_params */
} capture;

static repq_status grab(void *user, int32_t slot, float *x, size_t rows, size_t cols)
{
    capture *c = user;
    if (c->net->slots[slot].unit == c->block && c->net->slots[slot].point == c->point) {
        c->x = malloc(rows * cols * sizeof(float));
        memcpy(c->x, x, rows * cols * sizeof(float));
        c->rows = rows;
        c->cols = cols;
    }
    return REPQ_OK;
}

static void capture_params(const repq_net *net, const repq_params *params, repq_tensor *images, capture *c);

static void capture_point(const repq_qmodel *q, repq_tensor *images, capture *c)
{
    capture_params(q->net, &q->float_params, images, c);
}

static void capture_params(const repq_net *net, const repq_params *params, repq_tensor *images, capture *c)
{
    c->net = net;
    repq_allocator al = repq_allocator_of(NULL);
    repq_hook hook = {grab, c, false, NULL, false};
    float *logits = malloc(N_TEST * 10 * sizeof(float));
    const uint8_t *pixels;
    size_t nbytes;
    assert_int_equal(repq_tensor_nbytes(images, &nbytes), REPQ_OK);
    pixels = malloc(nbytes);
    assert_int_equal(repq_tensor_read(images, (void *)pixels, nbytes), REPQ_OK);
    assert_int_equal(repq_net_forward(NULL, &al, net, params, pixels, true, N_TEST, &hook, logits),
                     REPQ_OK);
    free((void *)pixels);
    free(logits);
}

/* X_c / s_c + z_c must equal X'_c / s~ + z~ (method.md 2.1), so the integer codes of the
 * channel-wise quantizer on X and of the layer-wise one on X' agree except where float
 * rounding puts a value on the other side of a tie. */
static void codes_match(const fixture *f, const repq_qmodel *layerwise)
{
    const repq_arch *a = &f->channelwise->arch;
    const repq_qpoint points[2] = {REPQ_QP_QKV_IN, REPQ_QP_FC1_IN};
    for (int32_t block = 0; block < a->depth; block += 5)
        for (int pi = 0; pi < 2; pi++) {
            capture before = {block, points[pi], NULL, 0, 0, NULL}, after = {block, points[pi], NULL, 0, 0, NULL};
            capture_point(f->channelwise, f->test, &before);
            capture_point(layerwise, f->test, &after);
            assert_non_null(before.x);
            assert_non_null(after.x);
            const repq_act_quant *cq = &f->channelwise->acts[vit_act_index(a, block, points[pi])];
            const repq_act_quant *lq = &layerwise->acts[vit_act_index(a, block, points[pi])];
            assert_int_equal(cq->kind, REPQ_AQ_UNIFORM_CHANNEL);
            assert_int_equal(lq->kind, REPQ_AQ_UNIFORM);
            size_t same = 0, total = before.rows * before.cols;
            for (size_t r = 0; r < before.rows; r++)
                for (size_t c = 0; c < before.cols; c++) {
                    uint8_t q1, q2;
                    repq_quant_quantize(&cq->per_channel[c], &before.x[r * before.cols + c], 1, &q1);
                    repq_quant_quantize(&lq->uniform, &after.x[r * after.cols + c], 1, &q2);
                    assert_true(abs((int)q1 - (int)q2) <= 1);
                    same += q1 == q2;
                }
            print_message("block %d point %d: %.4f%% of codes identical\n", block, points[pi],
                          100.0 * (double)same / (double)total);
            assert_true((double)same >= 0.999 * (double)total);
            free(before.x);
            free(after.x);
        }
}

static void layer_wise_codes_equal_channel_wise_codes(void **state)
{
    fixture *f = *state;
    codes_match(f, f->layerwise);
}

/* The identity holds for any s~ > 0 and integer z~ (reparam/reparam.h): other targets
 * give the same codes, a different scale and zero point, and bad targets are refused. */
static void any_layer_wise_target_keeps_the_codes(void **state)
{
    fixture *f = *state;
    const repq_reparam_target targets[3] = {{1.0 + 1.0 / 1024, 0}, {0.5, 1}, {3.0, -2}};
    const repq_arch *a = &f->channelwise->arch;
    const size_t at = vit_act_index(a, 0, REPQ_QP_QKV_IN);
    for (int i = 0; i < 3; i++) {
        repq_qmodel *r;
        assert_int_equal(repq_qmodel_reparameterize_to(NULL, f->channelwise, &targets[i], &r), REPQ_OK);
        const repq_quant_params *want = &f->layerwise->acts[at].uniform, *got = &r->acts[at].uniform;
        assert_true(fabs(got->scale - targets[i].scale_factor * want->scale) <= 1e-6 * want->scale);
        assert_int_equal(got->zero_point, want->zero_point + targets[i].zero_offset);
        codes_match(f, r);
        repq_qmodel_free(r);
    }
    const repq_reparam_target bad[5] = {{0.0, 0}, {-1.0, 0}, {NAN, 0}, {INFINITY, 0}, {1.0, 256}};
    for (int i = 0; i < 5; i++) {
        repq_qmodel *r = (repq_qmodel *)1;
        assert_int_equal(repq_qmodel_reparameterize_to(NULL, f->channelwise, &bad[i], &r), REPQ_ERR_INVALID_ARGUMENT);
        assert_null(r);
    }
}

static void softmax_codes_are_read_as_log2_with_parity(void **state)
{
    fixture *f = *state;
    const repq_arch *a = &f->layerwise->arch;
    for (int32_t b = 0; b < a->depth; b++) {
        const repq_act_quant *before = &f->channelwise->acts[vit_act_index(a, b, REPQ_QP_ATTN)];
        const repq_act_quant *after = &f->layerwise->acts[vit_act_index(a, b, REPQ_QP_ATTN)];
        assert_int_equal(before->kind, REPQ_AQ_LOG_SQRT2);
        assert_int_equal(after->kind, REPQ_AQ_LOG2_PARITY);
        /* x^ = s 2^-ceil(q/2) (1 + p (sqrt2 - 1)) is s 2^(-q/2): same levels, same scale. */
        assert_memory_equal(&before->log, &after->log, sizeof before->log);
        for (int32_t code = 0; code < 16; code++) {
            double want = after->log.scale * pow(2.0, -code / 2.0);
            double got = repq_logq_level(&after->log, code);
            assert_true(fabs(got - want) <= 1e-6 * want);
        }
    }
}

/* The identity of method.md 2.1 holds for the activation quantizers with the weights
 * each model multiplies by fixed; the reference then re-quantizes the rewritten weights,
 * a separate (4-bit: visible) change. So the comparison runs both models with float
 * weights (float_params) and every activation quantizer on. */
static void fake_quant_predictions_survive_reparameterization(void **state)
{
    fixture *f = *state;
    const repq_qmodel *before = f->channelwise, *after = f->layerwise;
    int64_t shape[2] = {N_TEST, 10};
    repq_tensor *a, *b;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &a), REPQ_OK);
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &b), REPQ_OK);
    assert_int_equal(repq_qmodel_forward_activations(before, &before->float_params, f->test, a), REPQ_OK);
    assert_int_equal(repq_qmodel_forward_activations(after, &after->float_params, f->test, b), REPQ_OK);
    static float x[N_TEST * 10], y[N_TEST * 10];
    run(a, x, N_TEST * 10);
    run(b, y, N_TEST * 10);
    int same = 0;
    for (int i = 0; i < N_TEST; i++) {
        int ia = 0, ib = 0;
        for (int j = 1; j < 10; j++) {
            ia = x[i * 10 + j] > x[i * 10 + ia] ? j : ia;
            ib = y[i * 10 + j] > y[i * 10 + ib] ? j : ib;
        }
        same += ia == ib;
    }
    print_message("A4 fake quant, channel-wise vs reparameterized: %d of %d predictions identical\n", same, N_TEST);
    /* At 4 bits one code flipped by float rounding can tip a borderline image; the
     * accuracy suite measures the agreement on all 5,000 test images against what float
     * rounding alone does. */
    assert_true(same >= N_TEST - 2);
    repq_tensor_free(a);
    repq_tensor_free(b);
}

static void reparameterizing_twice_changes_nothing(void **state)
{
    fixture *f = *state;
    repq_qmodel *again;
    assert_int_equal(repq_qmodel_reparameterize(NULL, f->layerwise, &again), REPQ_OK);
    assert_memory_equal(again->fq_params.arena, f->layerwise->fq_params.arena,
                        again->fq_params.arena_floats * sizeof(float));
    repq_qmodel_free(again);
    repq_qmodel *out = (repq_qmodel *)1;
    assert_int_equal(repq_qmodel_reparameterize(NULL, NULL, &out), REPQ_ERR_INVALID_ARGUMENT);
    assert_null(out);
    assert_int_equal(repq_qmodel_reparameterize(NULL, f->layerwise, NULL), REPQ_ERR_INVALID_ARGUMENT);
}

/* The accuracy suite compares librepq with the reference's unrounded z~ as rebuilt in
 * unrounded_zero_point.c. That rebuild must be the reference's fold: its LayerNorm output
 * X~ satisfies X~ / s~ + z~ = X / s_c + z_c with the fractional z~ = round(z~) + f
 * (before rounding; the codes then differ, which is the point). A wrong sign of the
 * shift would be off by 2 f. */
static void unrounded_rebuild_is_the_reference_fold(void **state)
{
    fixture *f = *state;
    const repq_qmodel *q = f->channelwise, *r = f->layerwise;
    const repq_arch *a = &r->arch;
    double *frac = calloc(2 * (size_t)a->depth, sizeof(double));
    assert_non_null(frac);
    repq_params p;
    assert_int_equal(unrounded_zero_point_params(q, r, &r->float_params, &p, frac), REPQ_OK);
    const repq_qpoint points[2] = {REPQ_QP_QKV_IN, REPQ_QP_FC1_IN};
    double largest_f = 0.0;
    for (int32_t block = 0; block < a->depth; block += 5)
        for (int pi = 0; pi < 2; pi++) {
            capture before = {block, points[pi], NULL, 0, 0, NULL}, after = {block, points[pi], NULL, 0, 0, NULL};
            capture_point(q, f->test, &before);
            capture_params(r->net, &p, f->test, &after);
            assert_non_null(before.x);
            assert_non_null(after.x);
            const repq_act_quant *cq = &q->acts[vit_act_index(a, block, points[pi])];
            const repq_quant_params *lq = &r->acts[vit_act_index(a, block, points[pi])].uniform;
            const double fr = frac[2 * block + pi], z = lq->zero_point + fr;
            assert_true(fabs(fr) <= 0.5);
            largest_f = fmax(largest_f, fabs(fr));
            double worst = 0.0;
            for (size_t i = 0; i < before.rows; i++)
                for (size_t c = 0; c < before.cols; c++) {
                    const repq_quant_params *pc = &cq->per_channel[c];
                    double want = before.x[i * before.cols + c] / pc->scale + pc->zero_point;
                    double got = after.x[i * after.cols + c] / lq->scale + z;
                    worst = fmax(worst, fabs(got - want) / fmax(1.0, fabs(want)));
                }
            print_message("block %d point %d: f = %+.3f, largest deviation %.2g\n", block, points[pi], fr, worst);
            assert_true(worst <= 1e-4);
            free(before.x);
            free(after.x);
        }
    /* The check means something only where f is not ~0. */
    assert_true(largest_f >= 0.05);
    repq_params_release(&r->base.allocator, &p);
    free(frac);
}

/* Dual clipping changes the post-LayerNorm channel quantizers and keeps their kind (and
 * every other point's kind). The points before the first LayerNorm see the same data
 * and keep their quantizers; later ones calibrate on activations that the changed
 * quantizers produced, so they may move too. */
static void dual_clipping_moves_post_layer_norm_channels(void **state)
{
    fixture *f = *state;
    const repq_qmodel *d = f->channelwise, *r = f->reference;
    size_t changed = 0, channels = 0;
    bool before_first = true;
    for (int32_t slot = 0; slot < d->net->num_slots; slot++) {
        const repq_act_quant *a = &d->acts[slot], *b = &r->acts[slot];
        assert_int_equal(a->kind, b->kind);
        if (a->kind != REPQ_AQ_UNIFORM_CHANNEL) {
            if (before_first)
                assert_memory_equal(&a->uniform, &b->uniform, sizeof a->uniform);
            continue;
        }
        before_first = false;
        for (int32_t c = 0; c < a->channels; c++)
            changed += memcmp(&a->per_channel[c], &b->per_channel[c], sizeof a->per_channel[c]) != 0;
        channels += (size_t)a->channels;
    }
    print_message("dual clipping changed %zu of %zu post-LayerNorm channel quantizers\n", changed, channels);
    assert_true(changed >= channels / 10);
}

/* The reparameterized dual-clipped model saves and loads back unchanged: the same
 * quantizers and the same fake-quant logits. */
static void dual_clipped_model_saves_and_loads(void **state)
{
    fixture *f = *state;
    char dir[] = "/tmp/repq_dual_clip_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/w4a4.repq", dir);
    repq_qmodel *loaded;
    assert_int_equal(repq_qmodel_save(f->layerwise, path), REPQ_OK);
    assert_int_equal(repq_qmodel_load(NULL, path, &loaded), REPQ_OK);
    for (int32_t slot = 0; slot < f->layerwise->net->num_slots; slot++) {
        const repq_act_quant *a = &loaded->acts[slot], *b = &f->layerwise->acts[slot];
        assert_int_equal(a->kind, b->kind);
        if (a->kind == REPQ_AQ_UNIFORM)
            assert_memory_equal(&a->uniform, &b->uniform, sizeof a->uniform);
    }
    int64_t shape[2] = {N_TEST, 10};
    repq_tensor *a, *b;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &a), REPQ_OK);
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &b), REPQ_OK);
    assert_int_equal(repq_qmodel_forward(f->layerwise, REPQ_FORWARD_FAKE_QUANT, f->test, a), REPQ_OK);
    assert_int_equal(repq_qmodel_forward(loaded, REPQ_FORWARD_FAKE_QUANT, f->test, b), REPQ_OK);
    static float x[N_TEST * 10], y[N_TEST * 10];
    run(a, x, N_TEST * 10);
    run(b, y, N_TEST * 10);
    assert_memory_equal(x, y, sizeof x);
    repq_tensor_free(a);
    repq_tensor_free(b);
    repq_qmodel_free(loaded);
    assert_int_equal(remove(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(without_quantization_logits_are_unchanged),
        cmocka_unit_test(layer_wise_codes_equal_channel_wise_codes),
        cmocka_unit_test(any_layer_wise_target_keeps_the_codes),
        cmocka_unit_test(unrounded_rebuild_is_the_reference_fold),
        cmocka_unit_test(softmax_codes_are_read_as_log2_with_parity),
        cmocka_unit_test(fake_quant_predictions_survive_reparameterization),
        cmocka_unit_test(reparameterizing_twice_changes_nothing),
    };
    /* The fold is the same for any per-channel (s, z): with dual clipping it is exact too. */
    const struct CMUnitTest dual_clip_tests[] = {
        cmocka_unit_test(dual_clipping_moves_post_layer_norm_channels),
        cmocka_unit_test(without_quantization_logits_are_unchanged),
        cmocka_unit_test(layer_wise_codes_equal_channel_wise_codes),
        cmocka_unit_test(fake_quant_predictions_survive_reparameterization),
        cmocka_unit_test(dual_clipped_model_saves_and_loads),
    };
    int failed = cmocka_run_group_tests_name("reference clipping", tests, setup, teardown);
    return failed + cmocka_run_group_tests_name("dual clipping", dual_clip_tests, setup_dual_clip, teardown);
}
