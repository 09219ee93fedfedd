/* Greedy mixed precision: sensitivities measured on calibration images, then the
 * cheapest narrowing first until the budget is met (mixed.h). */
#include <math.h>
#include <string.h>

#include "calib/mixed.h"
#include "reparam/reparam.h"

const int32_t repq_mixed_widths[REPQ_MIXED_NUM_WIDTHS] = {8, 6, 5, 4};

static void *zalloc(const repq_allocator *al, size_t count, size_t size)
{
    void *p = repq_mem_alloc(al, count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

static double average_width(const repq_mixed_unit *u, size_t n, bool weights)
{
    double bits = 0.0, size = 0.0;
    for (size_t i = 0; i < n; i++)
        if (u[i].weight == weights) {
            bits += u[i].size * repq_mixed_widths[u[i].level];
            size += u[i].size;
        }
    return size > 0.0 ? bits / size : 0.0;
}

repq_status repq_mixed_allocate(repq_mixed_unit *units, size_t n, bool weights, double budget)
{
    if (!units || !(budget >= repq_mixed_widths[REPQ_MIXED_NUM_WIDTHS - 1]))
        return REPQ_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < n; i++)
        if (units[i].weight == weights)
            units[i].level = 0;
    while (average_width(units, n, weights) > budget) {
        size_t best = n;
        double best_rate = INFINITY;
        for (size_t i = 0; i < n; i++) {
            const repq_mixed_unit *u = &units[i];
            if (u->weight != weights || u->level + 1 >= REPQ_MIXED_NUM_WIDTHS || !(u->size > 0.0))
                continue;
            double saved = u->size * (repq_mixed_widths[u->level] - repq_mixed_widths[u->level + 1]);
            double rate = (u->cost[u->level + 1] - u->cost[u->level]) / saved;
            if (best == n || rate < best_rate) {
                best = i;
                best_rate = rate;
            }
        }
        if (best == n)
            return REPQ_ERR_INVALID_ARGUMENT;
        units[best].level++;
    }
    return REPQ_OK;
}

/* The sensitivity forward's hook: the base model's quantizers everywhere except at
 * `slot`, whose quantizer is searched again at `bits` on the data that reaches it. */
typedef struct probe {
    const repq_calib *calib;
    const repq_qmodel *base;
    const repq_allocator *al;
    int32_t slot, bits;
    repq_act_quant trial;
    float *scratch;
    double *slot_size; /* values per image of each slot, filled by the first forward */
    size_t images;
} probe;

static repq_status probe_act(void *user, int32_t slot, float *x, size_t rows, size_t cols)
{
    probe *p = user;
    if (p->slot_size && p->slot_size[slot] == 0.0)
        p->slot_size[slot] = (double)rows * (double)cols / (double)p->images;
    if (slot != p->slot)
        return repq_act_quant_apply(&p->base->acts[slot], x, rows, cols);
    if (p->trial.kind == REPQ_AQ_NONE) {
        repq_status st = repq_calib_search_slot(p->calib, p->base->net, p->al, slot, p->bits, x, rows, cols,
                                                p->scratch, &p->trial);
        if (st)
            return st;
    }
    return repq_act_quant_apply(&p->trial, x, rows, cols);
}

static void trial_clear(probe *p)
{
    repq_mem_free(p->al, p->trial.per_channel);
    memset(&p->trial, 0, sizeof p->trial);
}

static double logit_mse(const float *a, const float *b, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        sum += d * d;
    }
    return sum / (double)n;
}

/* Everything the measurements share. */
typedef struct bench {
    repq_calib *c;
    repq_qmodel *base;  /* reparameterized, every quantizer at the widest width */
    const repq_allocator *al;
    size_t images, nlogits;
    float *base_logits;
    float *logits;
    float **saved;      /* the base forward's stream after each node */
    probe probe;
} bench;

static repq_status run(bench *b, int32_t first_node, bool save)
{
    const repq_net_resume resume = {first_node, save, b->saved, 0};
    repq_hook hook = {probe_act, &b->probe, false, NULL, false};
    return repq_net_forward_resume(&b->c->base, b->al, b->base->net, &b->base->fq_params, b->c->data,
                                   b->c->pixels_u8, b->images, &hook, &resume, b->logits);
}

/* The error of layer `id`'s weight quantized at `bits` (round to nearest, per output
 * channel, as the calibrator does), the rest as in the base model. */
static repq_status weight_cost(bench *b, repq_mixed_unit *u, int32_t bits, float *keep, float *scratch,
                               repq_quant_params *wq, double *out)
{
    repq_qmodel *q = b->base;
    int32_t rows, cols;
    const float *w = repq_net_linear_weight(q->net, &q->float_params, u->id, &rows, &cols);
    float *fq = repq_net_linear_weight(q->net, &q->fq_params, u->id, &rows, &cols);
    size_t count = (size_t)rows * (size_t)cols;
    repq_range_method range = q->method == REPQ_METHOD_MINMAX ? REPQ_RANGE_MINMAX : REPQ_RANGE_PERCENTILE;
    repq_status st = repq_quant_search_rows(w, (size_t)rows, (size_t)cols, bits, range, scratch, wq);
    if (st)
        return st;
    memcpy(keep, fq, count * sizeof(float));
    memcpy(fq, w, count * sizeof(float));
    for (int32_t r = 0; r < rows && st == REPQ_OK; r++)
        st = repq_quant_fake(&wq[r], fq + (size_t)r * (size_t)cols, (size_t)cols);
    if (st == REPQ_OK)
        st = run(b, u->node, false);
    memcpy(fq, keep, count * sizeof(float));
    if (st == REPQ_OK)
        *out = logit_mse(b->logits, b->base_logits, b->nlogits);
    return st;
}

static repq_status act_cost(bench *b, repq_mixed_unit *u, int32_t bits, double *out)
{
    b->probe.slot = u->id;
    b->probe.bits = bits;
    repq_status st = run(b, u->node, false);
    trial_clear(&b->probe);
    b->probe.slot = -1;
    if (st == REPQ_OK)
        *out = logit_mse(b->logits, b->base_logits, b->nlogits);
    return st;
}

/* The units: every linear layer, every slot but the patch input, with their nodes. */
static size_t list_units(const repq_net *net, const double *slot_size, repq_mixed_unit *u)
{
    size_t n = 0;
    for (int32_t i = 0; i < net->num_nodes; i++) {
        const repq_net_node *node = &net->nodes[i];
        for (int k = 0; k < 4; k++)
            if (node->linear[k] >= 0) {
                const repq_net_linear *l = &net->linear[node->linear[k]];
                u[n++] = (repq_mixed_unit){.weight = true, .id = node->linear[k], .node = i,
                                           .size = (double)l->out * (double)l->in};
            }
        for (int k = 0; k < REPQ_QP_COUNT; k++)
            if (node->slot[k] >= 0 && k != REPQ_QP_PATCH_IN)
                u[n++] = (repq_mixed_unit){.weight = false, .id = node->slot[k], .node = i,
                                           .size = slot_size[node->slot[k]]};
    }
    return n;
}

/* A budget at the widest width narrows nothing, one at the narrowest narrows every unit
 * of its kind: either way the costs cannot change the allocation. */
static bool budget_needs_costs(int32_t budget)
{
    return budget > repq_mixed_widths[REPQ_MIXED_NUM_WIDTHS - 1] && budget < repq_mixed_widths[0];
}

static repq_status measure(bench *b, repq_mixed_unit *units, size_t n)
{
    const repq_net *net = b->base->net;
    size_t largest = 0, rows = 0, cols = 0;
    for (int32_t id = 0; id < net->num_linear; id++) {
        const repq_net_linear *l = &net->linear[id];
        size_t sz = (size_t)l->out * (size_t)l->in;
        largest = sz > largest ? sz : largest;
        rows = (size_t)l->out > rows ? (size_t)l->out : rows;
        cols = (size_t)l->in > cols ? (size_t)l->in : cols;
    }
    /* A layer's fake-quant weight while it is replaced, the search's row scratch, and
     * the row quantizers. */
    float *keep = repq_mem_alloc(b->al, largest * sizeof(float));
    float *scratch = repq_mem_alloc(b->al, cols * sizeof(float));
    repq_quant_params *wq = repq_mem_alloc(b->al, rows * sizeof *wq);
    repq_status st = keep && scratch && wq ? REPQ_OK : REPQ_ERR_NOMEM;
    /* Measured at the narrowest width only; the wider ones scale with the squared step
     * of a grid over the same range, (2^b - 1)^-2, the additive-noise model. */
    const int32_t narrowest = repq_mixed_widths[REPQ_MIXED_NUM_WIDTHS - 1];
    const double steps_narrowest = (double)((1 << narrowest) - 1);
    const bool weight_costs = budget_needs_costs(b->c->weight_bits), act_costs = budget_needs_costs(b->c->act_bits);
    for (size_t i = 0; i < n && st == REPQ_OK; i++) {
        repq_mixed_unit *u = &units[i];
        if (!(u->weight ? weight_costs : act_costs))
            continue; /* its costs stay 0 */
        double cost = 0.0;
        st = u->weight ? weight_cost(b, u, narrowest, keep, scratch, wq, &cost) : act_cost(b, u, narrowest, &cost);
        for (int w = 0; w < REPQ_MIXED_NUM_WIDTHS; w++) {
            double ratio = steps_narrowest / (double)((1 << repq_mixed_widths[w]) - 1);
            u->cost[w] = w == 0 ? 0.0 : cost * ratio * ratio;
        }
    }
    repq_mem_free(b->al, keep);
    repq_mem_free(b->al, scratch);
    repq_mem_free(b->al, wq);
    return st;
}

/* The base model: one calibration with every quantizer at the widest width, then
 * reparameterized as the final model will be. */
static repq_status calibrate_widest(repq_calib *c, size_t images, repq_qmodel **out)
{
    /* On the probe images only: at the widest width the searches need little data, and
     * the sensitivities are measured on those images anyway. */
    size_t all_images = c->images;
    c->images = images;
    int32_t wb = c->weight_bits, ab = c->act_bits;
    int8_t *layer_bits = c->layer_bits, *slot_bits = c->slot_bits;
    c->weight_bits = c->act_bits = repq_mixed_widths[0];
    c->layer_bits = c->slot_bits = NULL;
    repq_qmodel *q = NULL;
    repq_status st = repq_calib_run(c, &q);
    c->weight_bits = wb;
    c->act_bits = ab;
    c->layer_bits = layer_bits;
    c->slot_bits = slot_bits;
    c->images = all_images;
    if (st)
        return st;
    const repq_reparam_target mean = {1.0, 0};
    st = q->reparameterized ? REPQ_OK : repq_qmodel_reparameterize_with(&c->base, &c->base.allocator, q, &mean, out);
    if (q->reparameterized)
        *out = q;
    else
        repq_qmodel_free(q);
    return st;
}

static void bench_release(bench *b)
{
    const repq_allocator *al = b->al;
    if (b->saved)
        for (int32_t i = 0; b->base && i < b->base->net->num_nodes; i++)
            repq_mem_free(al, b->saved[i]);
    repq_mem_free(al, b->saved);
    repq_mem_free(al, b->base_logits);
    repq_mem_free(al, b->logits);
    repq_mem_free(al, b->probe.scratch);
    repq_mem_free(al, b->probe.slot_size);
    trial_clear(&b->probe);
    repq_qmodel_free(b->base);
}

static repq_status bench_init(repq_calib *c, bench *b)
{
    const repq_allocator *al = &c->base.allocator;
    *b = (bench){.c = c, .al = al};
    b->images = c->images < REPQ_MIXED_PROBE_IMAGES ? c->images : REPQ_MIXED_PROBE_IMAGES;
    repq_status st = calibrate_widest(c, b->images, &b->base);
    if (st)
        return st;
    const repq_net *net = b->base->net;
    b->nlogits = b->images * (size_t)net->arch.num_classes;
    b->base_logits = repq_mem_alloc(al, b->nlogits * sizeof(float));
    b->logits = repq_mem_alloc(al, b->nlogits * sizeof(float));
    b->saved = zalloc(al, (size_t)net->num_nodes, sizeof(float *));
    b->probe = (probe){.calib = c, .base = b->base, .al = al, .slot = -1, .images = b->images};
    b->probe.scratch = repq_mem_alloc(al, b->images * repq_net_largest_activation(net) * sizeof(float));
    b->probe.slot_size = zalloc(al, (size_t)net->num_slots, sizeof(double));
    if (!b->base_logits || !b->logits || !b->saved || !b->probe.scratch || !b->probe.slot_size)
        return REPQ_ERR_NOMEM;
    for (int32_t i = 0; i < net->num_nodes; i++) {
        size_t floats = b->images * repq_net_stream_floats(net, i);
        if (floats && !(b->saved[i] = repq_mem_alloc(al, floats * sizeof(float))))
            return REPQ_ERR_NOMEM;
    }
    st = run(b, 0, true);
    if (st == REPQ_OK)
        memcpy(b->base_logits, b->logits, b->nlogits * sizeof(float));
    return st;
}

repq_status repq_mixed_choose(repq_calib *c, int8_t *layer_bits, int8_t *slot_bits)
{
    /* An impossible budget is refused before any measurement. */
    const int32_t narrowest = repq_mixed_widths[REPQ_MIXED_NUM_WIDTHS - 1];
    if (c->weight_bits < narrowest || c->act_bits < narrowest)
        return repq_fail(&c->base, REPQ_ERR_INVALID_ARGUMENT, "mixed precision: %s %d is below the narrowest width %d",
                         c->weight_bits < narrowest ? "weight_bits" : "act_bits",
                         (int)(c->weight_bits < narrowest ? c->weight_bits : c->act_bits), (int)narrowest);
    bench b;
    repq_status st = bench_init(c, &b);
    const repq_net *net = b.base ? b.base->net : NULL;
    repq_mixed_unit *units = NULL;
    size_t n = 0;
    if (st == REPQ_OK) {
        units = zalloc(b.al, (size_t)net->num_linear + (size_t)net->num_slots, sizeof *units);
        st = units ? REPQ_OK : REPQ_ERR_NOMEM;
    }
    if (st == REPQ_OK) {
        n = list_units(net, b.probe.slot_size, units);
        st = measure(&b, units, n);
    }
    if (st == REPQ_OK && (st = repq_mixed_allocate(units, n, true, c->weight_bits)) != REPQ_OK)
        st = repq_fail(&c->base, st, "mixed precision: weight_bits %d is below the narrowest width %d",
                       (int)c->weight_bits, (int)repq_mixed_widths[REPQ_MIXED_NUM_WIDTHS - 1]);
    if (st == REPQ_OK && (st = repq_mixed_allocate(units, n, false, c->act_bits)) != REPQ_OK)
        st = repq_fail(&c->base, st, "mixed precision: act_bits %d is below the narrowest width %d",
                       (int)c->act_bits, (int)repq_mixed_widths[REPQ_MIXED_NUM_WIDTHS - 1]);
    if (st == REPQ_OK) {
        for (int32_t i = 0; i < net->num_linear; i++)
            layer_bits[i] = (int8_t)c->weight_bits;
        for (int32_t i = 0; i < net->num_slots; i++)
            slot_bits[i] = (int8_t)(net->slots[i].point == REPQ_QP_PATCH_IN ? c->patch_input_bits : c->act_bits);
        for (size_t i = 0; i < n; i++)
            (units[i].weight ? layer_bits : slot_bits)[units[i].id] = (int8_t)repq_mixed_widths[units[i].level];
    }
    repq_mem_free(b.al, units);
    bench_release(&b);
    return st;
}
