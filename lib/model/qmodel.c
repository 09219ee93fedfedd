/* The quantized model's storage: allocation, copies, weight quantization. */
#include "model/qmodel.h"
#include "model/model.h"

#include <math.h>
#include <string.h>

float *repq_net_linear_weight(const repq_net *net, const repq_params *p, int32_t id, int32_t *out_rows,
                              int32_t *out_cols)
{
    const repq_net_linear *l = &net->linear[id];
    *out_rows = l->out;
    *out_cols = l->in;
    return repq_net_param_data(net, p->arena, l->weight);
}

float *repq_net_linear_bias(const repq_net *net, const repq_params *p, int32_t id)
{
    const int32_t bias = net->linear[id].bias;
    return bias < 0 ? NULL : repq_net_param_data(net, p->arena, bias);
}

static void release_acts(const repq_allocator *al, repq_act_quant *acts, size_t n)
{
    if (!acts)
        return;
    for (size_t i = 0; i < n; i++)
        repq_mem_free(al, acts[i].per_channel);
    repq_mem_free(al, acts);
}

REPQ_API void repq_qmodel_free(repq_qmodel *q)
{
    if (!repq_object_is(q, REPQ_KIND_QMODEL))
        return;
    repq_allocator al = q->base.allocator;
    q->base.kind = 0;
    pthread_mutex_destroy(&q->shared_lock);
    repq_params_release(&al, &q->float_params);
    repq_params_release(&al, &q->fq_params);
    repq_mem_free(&al, q->linear);
    repq_mem_free(&al, q->code_arena);
    repq_mem_free(&al, q->wq_arena);
    repq_mem_free(&al, q->layer_bits);
    release_acts(&al, q->acts, q->net ? (size_t)q->net->num_slots : 0);
    repq_net_free(&al, q->net);
    repq_mem_free(&al, q);
}

repq_status repq_qmodel_alloc(repq_object *err, const repq_allocator *al, const repq_arch *a,
                              repq_qmodel **out)
{
    *out = NULL;
    repq_qmodel *q = repq_mem_alloc(al, sizeof *q);
    if (!q)
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory for a quantized model");
    if (pthread_mutex_init(&q->shared_lock, NULL)) {
        repq_mem_free(al, q);
        return repq_fail(err, REPQ_ERR_NOMEM, "cannot create a quantized model's lock");
    }
    repq_object_init(&q->base, REPQ_KIND_QMODEL, *al);
    q->arch = *a;
    repq_status st = repq_net_build(err, al, a, &q->net);
    if (st == REPQ_OK)
        st = repq_params_alloc(err, al, q->net, &q->float_params);
    if (st == REPQ_OK)
        st = repq_params_alloc(err, al, q->net, &q->fq_params);
    size_t codes = 0, channels = 0;
    if (st == REPQ_OK) {
        q->num_linear = q->net->num_linear;
        q->linear = repq_mem_alloc(al, (size_t)q->num_linear * sizeof *q->linear);
        q->acts = repq_mem_alloc(al, (size_t)q->net->num_slots * sizeof *q->acts);
        for (int32_t id = 0; id < q->num_linear; id++) {
            codes += (size_t)q->net->linear[id].out * (size_t)q->net->linear[id].in;
            channels += (size_t)q->net->linear[id].out;
        }
        q->code_arena = repq_mem_alloc(al, codes);
        q->wq_arena = repq_mem_alloc(al, channels * sizeof *q->wq_arena);
        q->layer_bits = repq_mem_alloc(al, (size_t)q->num_linear * sizeof *q->layer_bits);
        if (!q->linear || !q->acts || !q->code_arena || !q->wq_arena || !q->layer_bits)
            st = repq_fail(err, REPQ_ERR_NOMEM, "out of memory for a quantized model");
    }
    if (st) {
        repq_qmodel_free(q);
        return st;
    }
    uint8_t *code_at = q->code_arena;
    repq_quant_params *wq_at = q->wq_arena;
    for (int32_t id = 0; id < q->num_linear; id++) {
        repq_qlinear *l = &q->linear[id];
        l->out = q->net->linear[id].out;
        l->in = q->net->linear[id].in;
        l->codes = code_at;
        l->wq = wq_at;
        code_at += (size_t)l->out * (size_t)l->in;
        wq_at += l->out;
    }
    *out = q;
    return REPQ_OK;
}

repq_status repq_act_quant_set_channels(const repq_allocator *al, repq_act_quant *q, int32_t channels)
{
    repq_mem_free(al, q->per_channel);
    q->per_channel = repq_mem_alloc(al, (size_t)channels * sizeof *q->per_channel);
    q->channels = q->per_channel ? channels : 0;
    return q->per_channel ? REPQ_OK : REPQ_ERR_NOMEM;
}

repq_status repq_qmodel_clone(repq_object *err, const repq_allocator *al, const repq_qmodel *src,
                              repq_qmodel **out)
{
    *out = NULL;
    repq_qmodel *q;
    repq_status st = repq_qmodel_alloc(err, al, &src->arch, &q);
    if (st)
        return st;
    q->weight_bits = src->weight_bits;
    q->act_bits = src->act_bits;
    q->patch_input_bits = src->patch_input_bits;
    q->method = src->method;
    q->reparameterized = src->reparameterized;
    q->has_float_weights = src->has_float_weights;
    memcpy(q->float_params.arena, src->float_params.arena, src->float_params.arena_floats * sizeof(float));
    memcpy(q->fq_params.arena, src->fq_params.arena, src->fq_params.arena_floats * sizeof(float));
    size_t codes = (size_t)(q->linear[q->num_linear - 1].codes - q->code_arena) +
                   (size_t)q->linear[q->num_linear - 1].out * (size_t)q->linear[q->num_linear - 1].in;
    size_t channels = (size_t)(q->linear[q->num_linear - 1].wq - q->wq_arena) +
                      (size_t)q->linear[q->num_linear - 1].out;
    memcpy(q->code_arena, src->code_arena, codes);
    memcpy(q->wq_arena, src->wq_arena, channels * sizeof *q->wq_arena);
    memcpy(q->layer_bits, src->layer_bits, (size_t)q->num_linear * sizeof *q->layer_bits);
    for (int32_t i = 0; i < src->net->num_slots; i++) {
        const repq_act_quant *s = &src->acts[i];
        repq_act_quant *d = &q->acts[i];
        *d = *s;
        d->per_channel = NULL;
        d->channels = 0;
        if (s->channels > 0) {
            if (repq_act_quant_set_channels(al, d, s->channels) != REPQ_OK) {
                repq_qmodel_free(q);
                return repq_fail(err, REPQ_ERR_NOMEM, "out of memory copying a quantized model");
            }
            memcpy(d->per_channel, s->per_channel, (size_t)s->channels * sizeof *s->per_channel);
        }
    }
    *out = q;
    return REPQ_OK;
}

repq_status repq_qmodel_dequantize_layer(repq_qmodel *q, int32_t id)
{
    const repq_qlinear *l = &q->linear[id];
    int32_t r, c;
    float *w = repq_net_linear_weight(q->net, &q->fq_params, id, &r, &c);
    repq_status st = REPQ_OK;
    for (int32_t o = 0; o < l->out && st == REPQ_OK; o++)
        st = repq_quant_dequantize(&l->wq[o], l->codes + (size_t)o * (size_t)l->in, (size_t)l->in,
                                   w + (size_t)o * (size_t)l->in);
    return st;
}

void repq_qmodel_rebuild_fq(repq_qmodel *q)
{
    memcpy(q->fq_params.arena, q->float_params.arena, q->float_params.arena_floats * sizeof(float));
    for (int32_t id = 0; id < q->num_linear; id++)
        repq_qmodel_dequantize_layer(q, id);
}

/* Layer `id` at q->layer_bits[id]; scratch holds one row. fq_params is left alone. */
static repq_status search_layer(repq_object *err, repq_qmodel *q, int32_t id, float *scratch)
{
    repq_range_method range = q->method == REPQ_METHOD_MINMAX ? REPQ_RANGE_MINMAX : REPQ_RANGE_PERCENTILE;
    repq_qlinear *l = &q->linear[id];
    int32_t r, c;
    const float *w = repq_net_linear_weight(q->net, &q->float_params, id, &r, &c);
    repq_status st = repq_quant_search_rows(w, (size_t)r, (size_t)c, q->layer_bits[id], range, scratch, l->wq);
    for (int32_t o = 0; o < r && st == REPQ_OK; o++)
        st = repq_quant_quantize(&l->wq[o], w + (size_t)o * (size_t)c, (size_t)c, l->codes + (size_t)o * (size_t)c);
    if (st)
        return repq_fail(err, st, "quantizing the weights of linear layer %d at %d bits failed", (int)id,
                         (int)q->layer_bits[id]);
    return REPQ_OK;
}

repq_status repq_qmodel_quantize_layer(repq_object *err, repq_qmodel *q, int32_t id, int32_t bits)
{
    if (id < 0 || id >= q->num_linear || bits < REPQ_QUANT_MIN_BITS || bits > REPQ_QUANT_MAX_BITS)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "quantize layer %d at %d bits: no such layer or width",
                         (int)id, (int)bits);
    float *scratch = repq_mem_alloc(&q->base.allocator, (size_t)q->linear[id].in * sizeof(float));
    if (!scratch)
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory for the weight search");
    q->layer_bits[id] = (int8_t)bits;
    repq_status st = search_layer(err, q, id, scratch);
    repq_mem_free(&q->base.allocator, scratch);
    return st ? st : repq_qmodel_dequantize_layer(q, id);
}

repq_status repq_qmodel_quantize_weights(repq_object *err, repq_qmodel *q, bool post_ln_only)
{
    const repq_allocator *al = &q->base.allocator;
    int32_t max_in = 0;
    for (int32_t id = 0; id < q->num_linear; id++)
        max_in = q->linear[id].in > max_in ? q->linear[id].in : max_in;
    float *scratch = repq_mem_alloc(al, (size_t)max_in * sizeof(float));
    if (!scratch)
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory for the weight search");
    repq_status st = REPQ_OK;
    for (int32_t id = 0; id < q->num_linear && st == REPQ_OK; id++)
        if (!post_ln_only || q->net->linear[id].norm_weight >= 0)
            st = search_layer(err, q, id, scratch);
    repq_mem_free(al, scratch);
    if (st == REPQ_OK)
        repq_qmodel_rebuild_fq(q);
    return st;
}

int32_t repq_act_quant_bits(const repq_act_quant *q)
{
    switch (q->kind) {
    case REPQ_AQ_UNIFORM: return q->uniform.bits;
    case REPQ_AQ_UNIFORM_CHANNEL: return q->channels > 0 ? q->per_channel[0].bits : 0;
    case REPQ_AQ_LOG_SQRT2:
    case REPQ_AQ_LOG2_PARITY: return q->log.bits;
    case REPQ_AQ_TWO_REGION: return q->two.bits;
    }
    return 0;
}

bool repq_qmodel_widths_mixed(const repq_qmodel *q)
{
    for (int32_t id = 0; id < q->num_linear; id++)
        if (q->layer_bits[id] != q->weight_bits)
            return true;
    for (int32_t i = 0; i < q->net->num_slots; i++) {
        const repq_net_slot *sl = &q->net->slots[i];
        const int32_t want = sl->point == REPQ_QP_PATCH_IN ? q->patch_input_bits : q->act_bits;
        if (sl->used && repq_act_quant_bits(&q->acts[i]) != want)
            return true;
    }
    return false;
}

repq_status repq_act_quant_apply(const repq_act_quant *q, float *x, size_t rows, size_t cols)
{
    switch (q->kind) {
    case REPQ_AQ_NONE:
        return REPQ_OK;
    case REPQ_AQ_UNIFORM:
        return repq_quant_fake(&q->uniform, x, rows * cols);
    case REPQ_AQ_UNIFORM_CHANNEL:
        if ((size_t)q->channels != cols)
            return REPQ_ERR_SHAPE;
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++) {
                repq_status st = repq_quant_fake(&q->per_channel[c], x + r * cols + c, 1);
                if (st)
                    return st;
            }
        return REPQ_OK;
    case REPQ_AQ_LOG_SQRT2:
    case REPQ_AQ_LOG2_PARITY:
        return repq_logq_fake(&q->log, x, rows * cols);
    case REPQ_AQ_TWO_REGION:
        return repq_tworeg_fake(&q->two, x, rows * cols);
    }
    return REPQ_ERR_FORMAT;
}

repq_status repq_act_quant_grid(const repq_act_quant *q, repq_quant_params *grid, int32_t *max_code)
{
    if (q->kind == REPQ_AQ_TWO_REGION)
        return repq_tworeg_grid(&q->two, grid, max_code);
    if (q->kind != REPQ_AQ_UNIFORM)
        return REPQ_ERR_INVALID_ARGUMENT;
    *grid = q->uniform;
    *max_code = (1 << q->uniform.bits) - 1;
    return REPQ_OK;
}

repq_status repq_act_quant_gelu_codes(const repq_act_quant *q, repq_gelu_codes *out)
{
    if (q->kind == REPQ_AQ_TWO_REGION) {
        repq_status st = repq_tworeg_params_check(&q->two);
        if (st)
            return st;
        *out = (repq_gelu_codes){q->two.scale, q->two.zero_point, q->two.bits, true,
                                 (1 << q->two.bits) - 1 - q->two.zero_point, q->two.neg_shift};
        return REPQ_OK;
    }
    if (q->kind != REPQ_AQ_UNIFORM)
        return REPQ_ERR_INVALID_ARGUMENT;
    *out = (repq_gelu_codes){q->uniform.scale, q->uniform.zero_point, q->uniform.bits, false, 0, 0};
    return REPQ_OK;
}

int32_t repq_qmodel_two_region_blocks(const repq_qmodel *q)
{
    int32_t n = 0;
    for (int32_t i = 0; i < q->net->num_slots; i++)
        n += q->net->slots[i].point == REPQ_QP_FC2_IN && q->acts[i].kind == REPQ_AQ_TWO_REGION;
    return n;
}

REPQ_API repq_status repq_qmodel_get_int(const repq_qmodel *q, int32_t attr, int64_t *out_value)
{
    if (!repq_object_is(q, REPQ_KIND_QMODEL) || !out_value)
        return REPQ_ERR_INVALID_ARGUMENT;
    switch (attr) {
    case REPQ_QMODEL_WEIGHT_BITS: *out_value = q->weight_bits; return REPQ_OK;
    case REPQ_QMODEL_ACT_BITS: *out_value = q->act_bits; return REPQ_OK;
    case REPQ_QMODEL_METHOD: *out_value = q->method; return REPQ_OK;
    case REPQ_QMODEL_REPARAMETERIZED: *out_value = q->reparameterized; return REPQ_OK;
    case REPQ_QMODEL_TWO_REGION_BLOCKS: *out_value = repq_qmodel_two_region_blocks(q); return REPQ_OK;
    case REPQ_QMODEL_NUM_LAYERS: *out_value = q->num_linear; return REPQ_OK;
    case REPQ_QMODEL_MIXED_WIDTHS: *out_value = repq_qmodel_widths_mixed(q); return REPQ_OK;
    case REPQ_QMODEL_NUM_ACTIVATIONS: *out_value = q->net->num_activations; return REPQ_OK;
    }
    return repq_net_attr(q->net, attr, out_value);
}

REPQ_API repq_status repq_qmodel_get_layer_int(const repq_qmodel *q, int32_t layer, repq_layer_attr attr,
                                               int64_t *out_value)
{
    if (!repq_object_is(q, REPQ_KIND_QMODEL) || layer < 0 || layer >= q->num_linear || !out_value)
        return REPQ_ERR_INVALID_ARGUMENT;
    switch (attr) {
    case REPQ_LAYER_WEIGHT_BITS: *out_value = q->layer_bits[layer]; return REPQ_OK;
    case REPQ_LAYER_INPUT_BITS: *out_value = repq_act_quant_bits(&q->acts[q->net->linear[layer].input]); return REPQ_OK;
    case REPQ_LAYER_OUT_FEATURES: *out_value = q->linear[layer].out; return REPQ_OK;
    case REPQ_LAYER_IN_FEATURES: *out_value = q->linear[layer].in; return REPQ_OK;
    }
    return REPQ_ERR_INVALID_ARGUMENT;
}

REPQ_API repq_status repq_qmodel_get_layer_name(const repq_qmodel *q, int32_t layer, const char **out_name)
{
    if (!repq_object_is(q, REPQ_KIND_QMODEL) || layer < 0 || layer >= q->num_linear || !out_name)
        return REPQ_ERR_INVALID_ARGUMENT;
    *out_name = q->net->linear[layer].name;
    return REPQ_OK;
}

static int64_t activation_kind(const repq_act_quant *a)
{
    switch (a->kind) {
    case REPQ_AQ_UNIFORM_CHANNEL: return REPQ_ACTIVATION_CHANNELS;
    case REPQ_AQ_LOG_SQRT2:
    case REPQ_AQ_LOG2_PARITY: return REPQ_ACTIVATION_LOG;
    case REPQ_AQ_TWO_REGION: return REPQ_ACTIVATION_TWO_REGION;
    case REPQ_AQ_UNIFORM: return REPQ_ACTIVATION_UNIFORM;
    }
    return 0;
}

REPQ_API repq_status repq_qmodel_get_activation_int(const repq_qmodel *q, int32_t activation,
                                                    repq_activation_attr attr, int64_t *out_value)
{
    if (!repq_object_is(q, REPQ_KIND_QMODEL) || !out_value)
        return REPQ_ERR_INVALID_ARGUMENT;
    const int32_t slot = repq_net_activation_slot(q->net, activation);
    if (slot < 0)
        return REPQ_ERR_INVALID_ARGUMENT;
    switch (attr) {
    case REPQ_ACTIVATION_BITS: *out_value = repq_act_quant_bits(&q->acts[slot]); return REPQ_OK;
    case REPQ_ACTIVATION_VALUES: *out_value = q->net->slots[slot].values; return REPQ_OK;
    case REPQ_ACTIVATION_KIND: *out_value = activation_kind(&q->acts[slot]); return REPQ_OK;
    }
    return REPQ_ERR_INVALID_ARGUMENT;
}

REPQ_API repq_status repq_qmodel_get_activation_name(const repq_qmodel *q, int32_t activation, const char **out_name)
{
    if (!repq_object_is(q, REPQ_KIND_QMODEL) || !out_name)
        return REPQ_ERR_INVALID_ARGUMENT;
    const int32_t slot = repq_net_activation_slot(q->net, activation);
    if (slot < 0)
        return REPQ_ERR_INVALID_ARGUMENT;
    *out_name = q->net->slots[slot].name;
    return REPQ_OK;
}

int repq_window_score_shift(const repq_quant_params *q, const repq_quant_params *k, int32_t head_dim, double bias_max)
{
    const double in_scale = (double)q->scale * (double)k->scale;
    const double koff = k->bits == 8 ? 128.0 : 0.0;
    const double qz = fabs((double)q->zero_point), m = fabs(koff - (double)k->zero_point);
    /* |sum q (k - koff)| and the column term z_q (colsum(k) - koff hd). */
    const double score_max = (double)head_dim * 255.0 * 255.0 + qz * head_dim * (255.0 + m) + 1.0;
    for (int shift = 12; shift >= 0; shift--)
        if (ldexp(score_max, shift) + ldexp(bias_max / in_scale, shift) + 2.0 < 0x1p30)
            return shift;
    return -1;
}

int32_t repq_window_score_round(double value, double in_scale, int shift)
{
    return (int32_t)lrint(ldexp(value / in_scale, shift));
}

REPQ_API repq_status repq_qmodel_get_stage_int(const repq_qmodel *q, int32_t stage, repq_stage_attr attr,
                                               int64_t *out_value)
{
    if (!repq_object_is(q, REPQ_KIND_QMODEL) || !out_value)
        return REPQ_ERR_INVALID_ARGUMENT;
    return repq_net_stage_attr(q->net, stage, (int32_t)attr, out_value);
}

double repq_window_bias_max(const repq_net *net, const repq_params *p, const repq_net_node *node)
{
    const float *table = repq_net_param_data(net, p->arena, node->rel_bias);
    double m = 0.0;
    for (size_t i = 0; i < net->params[node->rel_bias].count; i++)
        m = fmax(m, fabs((double)table[i]));
    return m;
}

repq_status repq_qmodel_check_windows(repq_object *err, repq_status code, const repq_qmodel *q)
{
    for (int32_t i = 0; i < q->net->num_nodes; i++) {
        const repq_net_node *node = &q->net->nodes[i];
        if (!node->windowed)
            continue;
        const repq_act_quant *qa = &q->acts[node->slot[REPQ_QP_Q]], *ka = &q->acts[node->slot[REPQ_QP_K]];
        if (qa->kind != REPQ_AQ_UNIFORM || ka->kind != REPQ_AQ_UNIFORM)
            continue; /* not layer-wise yet: nothing runs on the score grid */
        const double bias = repq_window_bias_max(q->net, &q->fq_params, node);
        if (repq_window_score_shift(&qa->uniform, &ka->uniform, node->dim / node->heads, bias - REPQ_SWIN_MASK) < 0)
            return repq_fail(err, code, "block %d: its relative position bias (up to %g) does not fit the score grid "
                             "of its q and k quantizers", (int)node->unit, bias);
    }
    return REPQ_OK;
}
