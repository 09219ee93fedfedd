/* Tests of lib/calib/mixed.c: the greedy allocation on hand-computed cases, and greedy
 * mixed precision end to end on the bundled ViT and the random Swin. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "calib/mixed.h"
#include "model/qmodel.h"
#include "data_file.h"
#include "repq/repq.h"

#define MODEL_PATH REPQ_TEST_DATA "/vit_tiny_cifar10.safetensors"
#define SWIN_PATH REPQ_TEST_DATA "/swin_micro_rand.safetensors"
#define SWIN_INPUTS REPQ_TEST_DATA "/swin_micro_rand_inputs.u8"
#define CALIB_IMAGES REPQ_TEST_DATA "/cifar10_calib.bin"

static repq_mixed_unit unit(bool weight, double size, double c6, double c5, double c4)
{
    return (repq_mixed_unit){.weight = weight, .size = size, .cost = {0.0, c6, c5, c4}, .level = 3};
}

static int width(const repq_mixed_unit *u)
{
    return repq_mixed_widths[u->level];
}

/* Two weights of equal size, A = {0, 1, 2, 10} and B = {0, 0.5, 5, 6} at 8/6/5/4 bits.
 * Error per bit saved of each next step, by hand:
 *   A: 8->6 1/200, 6->5 1/100, 5->4 8/100;   B: 8->6 0.5/200, 6->5 4.5/100, 5->4 1/100.
 * Cheapest first: B 8->6 (avg 7), A 8->6 (6), A 6->5 (5.5), B 6->5 at 0.045 before A
 * 5->4 at 0.08 (5), then B 5->4 (4.5), A 5->4 (4). */
static void allocation_takes_the_cheapest_bit_first(void **state)
{
    (void)state;
    const struct {
        double budget;
        int a, b;
    } cases[] = {{8, 8, 8}, {7.5, 8, 6}, {7, 8, 6}, {6, 6, 6}, {5.5, 5, 6}, {5, 5, 5}, {4.5, 5, 4}, {4, 4, 4}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        repq_mixed_unit u[2] = {unit(true, 100, 1, 2, 10), unit(true, 100, 0.5, 5, 6)};
        assert_int_equal(repq_mixed_allocate(u, 2, true, cases[i].budget), REPQ_OK);
        if (width(&u[0]) != cases[i].a || width(&u[1]) != cases[i].b)
            fail_msg("budget %.1f: got %d/%d bits, want %d/%d", cases[i].budget, width(&u[0]), width(&u[1]),
                     cases[i].a, cases[i].b);
    }
}

/* The average is weighted by size: with a unit ten times larger, narrowing it alone to
 * 6 bits (avg (10*6 + 8)/11 = 6.18) beats narrowing the small one to 4 (7.64), and the
 * cost per bit saved favours it although its total cost is higher. */
static void allocation_weighs_by_size(void **state)
{
    (void)state;
    repq_mixed_unit u[2] = {unit(false, 1000, 3, 50, 100), unit(false, 100, 1, 2, 4)};
    /* Per bit: large 8->6 3/2000 = 0.0015; small 8->6 1/200 = 0.005. */
    assert_int_equal(repq_mixed_allocate(u, 2, false, 7.0), REPQ_OK);
    assert_int_equal(width(&u[0]), 6);
    assert_int_equal(width(&u[1]), 8);
}

static void allocation_leaves_the_other_kind_alone(void **state)
{
    (void)state;
    repq_mixed_unit u[3] = {unit(true, 10, 1, 2, 3), unit(false, 10, 1, 2, 3), unit(true, 10, 2, 3, 4)};
    u[1].level = 2;
    assert_int_equal(repq_mixed_allocate(u, 3, true, 4.0), REPQ_OK);
    assert_int_equal(width(&u[0]), 4);
    assert_int_equal(width(&u[2]), 4);
    assert_int_equal(u[1].level, 2);
    /* Units of no size never count, and are not narrowed. */
    repq_mixed_unit z[2] = {unit(true, 0, 0, 0, 0), unit(true, 10, 5, 6, 7)};
    assert_int_equal(repq_mixed_allocate(z, 2, true, 6.0), REPQ_OK);
    assert_int_equal(width(&z[0]), 8);
    assert_int_equal(width(&z[1]), 6);
}

static void allocation_refuses_an_impossible_budget(void **state)
{
    (void)state;
    repq_mixed_unit u[1] = {unit(true, 10, 1, 2, 3)};
    assert_int_equal(repq_mixed_allocate(u, 1, true, 3.9), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_mixed_allocate(u, 1, true, NAN), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_mixed_allocate(NULL, 1, true, 5.0), REPQ_ERR_INVALID_ARGUMENT);
    /* Nothing to narrow: any budget >= 4 holds. */
    assert_int_equal(repq_mixed_allocate(u, 1, false, 4.0), REPQ_OK);
}

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

static repq_qmodel *calibrate(repq_context *ctx, repq_model *m, repq_tensor *images, int wbits, int abits, int mixed)
{
    repq_options *o;
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, wbits), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_ACT_BITS, abits), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_MIXED, mixed), REPQ_OK);
    repq_calib *c;
    repq_qmodel *q = NULL;
    assert_int_equal(repq_calib_new(ctx, m, o, &c), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, images), REPQ_OK);
    repq_status st = repq_calib_finish(c, &q);
    if (st)
        fail_msg("calibration: %s", repq_last_error(c));
    repq_calib_free(c);
    repq_options_free(o);
    return q;
}

/* The width of an activation slot's quantizer. */
static int slot_bits(const repq_act_quant *aq)
{
    switch (aq->kind) {
    case REPQ_AQ_UNIFORM_CHANNEL: return aq->per_channel[0].bits;
    case REPQ_AQ_LOG_SQRT2:
    case REPQ_AQ_LOG2_PARITY: return aq->log.bits;
    case REPQ_AQ_TWO_REGION: return aq->two.bits;
    default: return aq->uniform.bits;
    }
}

/* Size-weighted averages of what the qmodel holds, computed here from its quantizers:
 * weights by parameter count, activations by values per image (rows per image from the
 * net's nodes). */
static void averages(const repq_qmodel *q, double *wavg, double *aavg)
{
    const repq_net *net = q->net;
    double wb = 0, ws = 0, ab = 0, as = 0;
    for (int32_t id = 0; id < net->num_linear; id++) {
        const repq_net_linear *l = &net->linear[id];
        int bits = q->linear[id].wq[0].bits;
        for (int32_t r = 1; r < l->out; r++)
            assert_int_equal(q->linear[id].wq[r].bits, bits);
        wb += (double)bits * l->out * l->in;
        ws += (double)l->out * l->in;
    }
    for (int32_t i = 0; i < net->num_nodes; i++) {
        const repq_net_node *nd = &net->nodes[i];
        double t = nd->tokens, d = nd->dim;
        for (int k = 0; k < REPQ_QP_COUNT; k++) {
            int32_t s = nd->slot[k];
            if (s < 0 || k == REPQ_QP_PATCH_IN)
                continue;
            /* Attention probabilities: one row of keys per query, all tokens or the
             * query's window. */
            double keys = nd->windowed ? (double)nd->window.win_h * nd->window.win_w : t;
            double values = k == REPQ_QP_ATTN     ? nd->heads * t * keys
                            : k == REPQ_QP_FC2_IN ? t * nd->hidden
                            : k == REPQ_QP_HEAD_IN ? d
                            : k == REPQ_QP_MERGE_IN ? t * 4 * nd->in_dim
                                                   : t * d;
            ab += slot_bits(&q->acts[s]) * values;
            as += values;
        }
    }
    *wavg = wb / ws;
    *aavg = ab / as;
}

static bool in_width_set(int bits)
{
    for (int i = 0; i < REPQ_MIXED_NUM_WIDTHS; i++)
        if (bits == repq_mixed_widths[i])
            return true;
    return false;
}

static void every_width_is_allowed(const repq_qmodel *q)
{
    for (int32_t id = 0; id < q->net->num_linear; id++)
        assert_true(in_width_set(q->linear[id].wq[0].bits));
    for (int32_t i = 0; i < q->net->num_nodes; i++)
        for (int k = 0; k < REPQ_QP_COUNT; k++)
            if (q->net->nodes[i].slot[k] >= 0)
                assert_true(k == REPQ_QP_PATCH_IN ? slot_bits(&q->acts[q->net->nodes[i].slot[k]]) == 8
                                                  : in_width_set(slot_bits(&q->acts[q->net->nodes[i].slot[k]])));
}

/* A budget of 8 bits narrows nothing and one of 4 narrows everything (the sensitivity
 * measurement of such a kind is skipped): the same quantizers and codes as the uniform
 * widths. */
static void same_as_uniform(fixture *f, int wbits, int abits)
{
    repq_qmodel *m = calibrate(f->ctx, f->model, f->images, wbits, abits, 1);
    repq_qmodel *u = calibrate(f->ctx, f->model, f->images, wbits, abits, 0);
    for (int32_t id = 0; id < u->num_linear; id++) {
        const repq_qlinear *a = &m->linear[id], *b = &u->linear[id];
        assert_memory_equal(a->codes, b->codes, (size_t)a->out * (size_t)a->in);
        assert_memory_equal(a->wq, b->wq, (size_t)a->out * sizeof *a->wq);
    }
    for (int32_t i = 0; i < u->net->num_slots; i++) {
        assert_int_equal(m->acts[i].kind, u->acts[i].kind);
        if (u->acts[i].kind == REPQ_AQ_UNIFORM_CHANNEL)
            assert_memory_equal(m->acts[i].per_channel, u->acts[i].per_channel,
                                (size_t)u->acts[i].channels * sizeof(repq_quant_params));
        else if (u->acts[i].kind != REPQ_AQ_NONE)
            assert_int_equal(slot_bits(&m->acts[i]),
                             u->net->slots[i].point == REPQ_QP_PATCH_IN ? 8 : abits);
    }
    repq_qmodel_free(m);
    repq_qmodel_free(u);
}

static void full_budget_is_the_uniform_model(void **state)
{
    same_as_uniform(*state, 8, 8);
}

static void narrowest_weights_are_the_uniform_model(void **state)
{
    same_as_uniform(*state, 4, 8);
}

/* A W5A5 budget: every width in {4, 5, 6, 8}, averages (recomputed here from the
 * quantizers) at most the budget and within one narrowing step of it, some layers
 * wider than 5 and some narrower (a real mix), and a model that reparameterizes, saves
 * and loads with the same widths. */
static void w5a5_budget_is_met_by_a_mix(void **state)
{
    fixture *f = *state;
    repq_qmodel *q = calibrate(f->ctx, f->model, f->images, 5, 5, 1);
    every_width_is_allowed(q);
    double wavg, aavg;
    averages(q, &wavg, &aavg);
    print_message("W5A5 mixed: average weight bits %.3f, activation bits %.3f\n", wavg, aavg);
    assert_true(wavg <= 5.0 + 1e-9 && wavg > 4.9);
    assert_true(aavg <= 5.0 + 1e-9 && aavg > 4.9);
    int narrow = 0, wide = 0;
    for (int32_t id = 0; id < q->num_linear; id++) {
        narrow += q->linear[id].wq[0].bits < 5;
        wide += q->linear[id].wq[0].bits > 5;
    }
    assert_true(narrow > 0 && wide > 0);
    repq_qmodel *r, *loaded;
    assert_int_equal(repq_qmodel_reparameterize(f->ctx, q, &r), REPQ_OK);
    char path[] = "/tmp/repq_mixed_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(repq_qmodel_save(r, path), REPQ_OK);
    assert_int_equal(repq_qmodel_load(f->ctx, path, &loaded), REPQ_OK);
    remove(path);
    for (int32_t id = 0; id < q->num_linear; id++)
        assert_int_equal(loaded->linear[id].wq[0].bits, q->linear[id].wq[0].bits);
    double lw, la;
    averages(loaded, &lw, &la);
    assert_true(lw == wavg && la == aavg);
    repq_qmodel_free(loaded);
    repq_qmodel_free(r);
    repq_qmodel_free(q);
}

static void budget_below_the_narrowest_width_is_refused(void **state)
{
    fixture *f = *state;
    repq_options *o;
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, 3), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_MIXED, 1), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_MIXED, 2), REPQ_ERR_INVALID_ARGUMENT);
    int64_t v;
    assert_int_equal(repq_options_get_int(o, REPQ_OPT_MIXED, &v), REPQ_OK);
    assert_int_equal(v, 1);
    repq_calib *c;
    repq_qmodel *q = (repq_qmodel *)1;
    assert_int_equal(repq_calib_new(f->ctx, f->model, o, &c), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, f->images), REPQ_OK);
    assert_int_equal(repq_calib_finish(c, &q), REPQ_ERR_INVALID_ARGUMENT);
    assert_null(q);
    assert_non_null(strstr(repq_last_error(c), "weight_bits 3"));
    repq_calib_free(c);
    repq_options_free(o);
}

/* The Swin (windows, patch merging, average pooling) through the same search. */
static void swin_takes_a_mix_too(void **state)
{
    fixture *f = *state;
    repq_model *m;
    assert_int_equal(repq_model_load(f->ctx, SWIN_PATH, NULL, &m), REPQ_OK);
    enum { N = 4, PIXELS = 3 * 224 * 224 };
    static uint8_t pixels[N * PIXELS];
    data_file_read(SWIN_INPUTS, pixels, sizeof pixels);
    const int64_t shape[4] = {N, 3, 224, 224};
    repq_tensor *images;
    assert_int_equal(repq_tensor_new(f->ctx, REPQ_DTYPE_U8, 4, shape, pixels, &images), REPQ_OK);
    repq_qmodel *q = calibrate(f->ctx, m, images, 6, 5, 1);
    every_width_is_allowed(q);
    double wavg, aavg;
    averages(q, &wavg, &aavg);
    print_message("Swin W6A5 mixed: average weight bits %.3f, activation bits %.3f\n", wavg, aavg);
    assert_true(wavg <= 6.0 + 1e-9 && aavg <= 5.0 + 1e-9);
    repq_qmodel *r;
    assert_int_equal(repq_qmodel_reparameterize(f->ctx, q, &r), REPQ_OK);
    repq_qmodel_free(r);
    repq_qmodel_free(q);
    repq_tensor_free(images);
    repq_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(allocation_takes_the_cheapest_bit_first),
        cmocka_unit_test(allocation_weighs_by_size),
        cmocka_unit_test(allocation_leaves_the_other_kind_alone),
        cmocka_unit_test(allocation_refuses_an_impossible_budget),
        cmocka_unit_test(full_budget_is_the_uniform_model),
        cmocka_unit_test(narrowest_weights_are_the_uniform_model),
        cmocka_unit_test(w5a5_budget_is_met_by_a_mix),
        cmocka_unit_test(budget_below_the_narrowest_width_is_refused),
        cmocka_unit_test(swin_takes_a_mix_too),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
