/* SQ-b (smooth.h): channel ranges from one float forward, smoothing factors, and their
 * folds into the producer and the consumer of each smoothed activation. */
#include "calib/smooth.h"

#include <float.h>
#include <math.h>

#include "model/qmodel.h"

void repq_smooth_ranges_update(const float *x, size_t rows, size_t cols, float *lo, float *hi)
{
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * cols;
        for (size_t c = 0; c < cols; c++) {
            lo[c] = row[c] < lo[c] ? row[c] : lo[c];
            hi[c] = row[c] > hi[c] ? row[c] : hi[c];
        }
    }
}

void repq_smooth_column_max(const float *w, size_t rows, size_t cols, float *wmax)
{
    for (size_t c = 0; c < cols; c++)
        wmax[c] = 0.0f;
    for (size_t o = 0; o < rows; o++)
        for (size_t c = 0; c < cols; c++) {
            const float a = fabsf(w[o * cols + c]);
            wmax[c] = a > wmax[c] ? a : wmax[c];
        }
}

static bool positive_normal(double v)
{
    return isfinite(v) && v >= FLT_MIN && v <= FLT_MAX;
}

void repq_smooth_factors(const float *lo, const float *hi, const float *wmax, size_t channels, double alpha,
                         float *delta, float *sigma)
{
    for (size_t c = 0; c < channels; c++) {
        const double centre = 0.5 * ((double)lo[c] + (double)hi[c]);
        const double half = 0.5 * ((double)hi[c] - (double)lo[c]);
        delta[c] = isfinite(centre) ? (float)centre : 0.0f;
        double s = 1.0;
        if (positive_normal(half) && positive_normal(wmax[c]))
            s = pow(half, alpha) / pow((double)wmax[c], 1.0 - alpha);
        sigma[c] = positive_normal(s) ? (float)s : 1.0f;
    }
}

void repq_smooth_fold_producer(float *w, float *bias, size_t channels, size_t k, const float *delta,
                               const float *sigma)
{
    for (size_t c = 0; c < channels; c++) {
        const double inv = 1.0 / (double)sigma[c];
        for (size_t j = 0; j < k; j++)
            w[c * k + j] = (float)((double)w[c * k + j] * inv);
        bias[c] = (float)(((double)bias[c] - (double)delta[c]) * inv);
    }
}

void repq_smooth_fold_consumer(float *w, float *bias, size_t rows, size_t cols, const float *delta,
                               const float *sigma)
{
    for (size_t o = 0; o < rows; o++) {
        float *row = w + o * cols;
        double acc = bias[o];
        for (size_t c = 0; c < cols; c++) {
            acc += (double)row[c] * (double)delta[c];
            row[c] = (float)((double)row[c] * (double)sigma[c]);
        }
        bias[o] = (float)acc;
    }
}

/* One smoothed activation: where it is observed, the layer it feeds, and what makes it. */
typedef struct site {
    int32_t slot;        /* activation slot holding the consumer's input */
    int32_t consumer;    /* linear layer whose input channels are smoothed */
    int32_t gamma, beta; /* producer: a LayerNorm (parameter indices), or -1 */
    int32_t values;      /* producer: the qkv layer whose v rows make proj's input, or -1 */
    size_t channels;
    float *lo, *hi;
} site;

typedef struct sites {
    site *list;
    int32_t count;
    int32_t *of_slot; /* [net->num_slots]: the site observed there, or -1 */
} sites;

static site new_site(int32_t slot, int32_t consumer, int32_t gamma, int32_t beta, int32_t channels)
{
    return (site){slot, consumer, gamma, beta, -1, (size_t)channels, NULL, NULL};
}

/* The sites of cfg->sites in `net`, at most one per slot. `list` must hold
 * num_linear + num_nodes entries. */
static int32_t list_sites(const repq_net *net, int32_t which, site *list)
{
    int32_t count = 0;
    if (which & REPQ_SQB_NORMS)
        for (int32_t id = 0; id < net->num_linear; id++) {
            const repq_net_linear *l = &net->linear[id];
            if (l->norm_weight >= 0)
                list[count++] = new_site(l->input, id, l->norm_weight, l->norm_bias, l->in);
        }
    for (int32_t i = 0; i < net->num_nodes; i++) {
        const repq_net_node *node = &net->nodes[i];
        if (node->op == REPQ_OP_BLOCK && (which & REPQ_SQB_VALUES)) {
            const int32_t proj = node->linear[1];
            list[count] = new_site(node->slot[REPQ_QP_PROJ_IN], proj, -1, -1, net->linear[proj].in);
            list[count++].values = node->linear[0];
        }
        /* The head is a LayerNorm pair already when the net describes it as one. */
        if (node->op == REPQ_OP_HEAD && (which & REPQ_SQB_HEAD) && node->norm_weight >= 0 &&
            net->linear[node->linear[0]].norm_weight < 0)
            list[count++] = new_site(node->slot[REPQ_QP_HEAD_IN], node->linear[0], node->norm_weight,
                                      node->norm_bias, net->linear[node->linear[0]].in);
    }
    return count;
}

static repq_status observe(void *user, int32_t slot, float *x, size_t rows, size_t cols)
{
    const sites *s = user;
    const int32_t i = s->of_slot[slot];
    if (i < 0)
        return REPQ_OK;
    const site *st = &s->list[i];
    if (cols != st->channels)
        return REPQ_ERR_SHAPE;
    repq_smooth_ranges_update(x, rows, cols, st->lo, st->hi);
    return REPQ_OK;
}

/* Folds one site's factors into p. `wmax`, `delta`, `sigma`: channels floats each. */
static repq_status fold_site(repq_object *err, const repq_net *net, repq_params *p, const site *st, double alpha,
                             float *wmax, float *delta, float *sigma)
{
    int32_t rows, cols;
    float *w = repq_net_linear_weight(net, p, st->consumer, &rows, &cols);
    float *bias = repq_net_linear_bias(net, p, st->consumer);
    if (!bias)
        return repq_fail(err, REPQ_ERR_STATE, "SQ-b: layer %s has no bias to take the shift",
                         net->linear[st->consumer].name);
    repq_smooth_column_max(w, (size_t)rows, (size_t)cols, wmax);
    repq_smooth_factors(st->lo, st->hi, wmax, st->channels, alpha, delta, sigma);
    if (st->values >= 0) {
        int32_t qkv_rows, qkv_cols;
        float *qkv_w = repq_net_linear_weight(net, p, st->values, &qkv_rows, &qkv_cols);
        float *qkv_b = repq_net_linear_bias(net, p, st->values);
        if (!qkv_b || qkv_rows != 3 * cols)
            return repq_fail(err, REPQ_ERR_STATE, "SQ-b: layer %s has no v bias to take the shift",
                             net->linear[st->values].name);
        /* qkv's output rows are [3][channels]: v is the last third. */
        const size_t v0 = 2 * (size_t)cols;
        repq_smooth_fold_producer(qkv_w + v0 * (size_t)qkv_cols, qkv_b + v0, st->channels, (size_t)qkv_cols, delta,
                                  sigma);
    } else {
        repq_smooth_fold_producer(repq_net_param_data(net, p->arena, st->gamma),
                                  repq_net_param_data(net, p->arena, st->beta), st->channels, 1, delta, sigma);
    }
    repq_smooth_fold_consumer(w, bias, (size_t)rows, (size_t)cols, delta, sigma);
    return REPQ_OK;
}

repq_status repq_smooth_model(repq_object *err, const repq_allocator *al, const repq_net *net, repq_params *p,
                              const void *images, bool pixels_u8, size_t n, const repq_smooth_config *cfg)
{
    if (!cfg || !(cfg->alpha >= 0.0 && cfg->alpha <= 1.0) || (cfg->sites & ~REPQ_SQB_ALL))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "SQ-b: bad configuration");
    sites s = {NULL, 0, NULL};
    s.list = repq_mem_alloc(al, (size_t)(net->num_linear + net->num_nodes) * sizeof *s.list);
    s.of_slot = repq_mem_alloc(al, (size_t)net->num_slots * sizeof *s.of_slot);
    if (!s.list || !s.of_slot) {
        repq_mem_free(al, s.list);
        repq_mem_free(al, s.of_slot);
        return repq_fail(err, REPQ_ERR_NOMEM, "SQ-b: out of memory");
    }
    s.count = list_sites(net, cfg->sites, s.list);
    size_t floats = 0, widest = 0;
    for (int32_t i = 0; i < s.count; i++) {
        floats += 2 * s.list[i].channels;
        widest = s.list[i].channels > widest ? s.list[i].channels : widest;
    }
    float *ranges = repq_mem_alloc(al, (floats + 3 * widest) * sizeof(float));
    float *logits = repq_mem_alloc(al, n * (size_t)net->arch.num_classes * sizeof(float));
    repq_status st = ranges && logits ? REPQ_OK : repq_fail(err, REPQ_ERR_NOMEM, "SQ-b: out of memory");
    if (st == REPQ_OK) {
        for (int32_t i = 0; i < net->num_slots; i++)
            s.of_slot[i] = -1;
        float *at = ranges;
        for (int32_t i = 0; i < s.count; i++) {
            site *si = &s.list[i];
            si->lo = at;
            si->hi = at + si->channels;
            at += 2 * si->channels;
            for (size_t c = 0; c < si->channels; c++) {
                si->lo[c] = INFINITY;
                si->hi[c] = -INFINITY;
            }
            s.of_slot[si->slot] = i;
        }
        repq_hook hook = {observe, &s, false, NULL, false};
        st = repq_net_forward(err, al, net, p, images, pixels_u8, n, &hook, logits);
        if (st)
            st = repq_fail_default(err, st, "SQ-b: the float forward");
        /* Every site is folded only after the forward: its statistics are those of the
         * original model. */
        float *wmax = at, *delta = at + widest, *sigma = at + 2 * widest;
        for (int32_t i = 0; i < s.count && st == REPQ_OK; i++)
            st = fold_site(err, net, p, &s.list[i], cfg->alpha, wmax, delta, sigma);
    }
    repq_mem_free(al, logits);
    repq_mem_free(al, ranges);
    repq_mem_free(al, s.list);
    repq_mem_free(al, s.of_slot);
    return st;
}
