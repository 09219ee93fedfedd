/* Scale reparameterization (method.md section 2): channel-wise post-LayerNorm
 * quantizers become layer-wise by rewriting LayerNorm's affine parameters and the next
 * linear layer; log-sqrt2 post-softmax codes are read as log2 codes with a parity. */
#include <math.h>
#include <string.h>

#include "reparam/reparam.h"

/* Fold the channel-wise quantizer of the input of linear layer `id` into the
 * LayerNorm (gamma, beta) right before it, with layer-wise target t. */
static repq_status fold_layer_norm(repq_object *err, repq_qmodel *q, int32_t id, const repq_reparam_target *t)
{
    const repq_allocator *al = &q->base.allocator;
    const repq_net *net = q->net;
    const repq_net_linear *l = &net->linear[id];
    repq_act_quant *aq = &q->acts[l->input];
    float *gamma = repq_net_param_data(net, q->float_params.arena, l->norm_weight);
    float *beta = repq_net_param_data(net, q->float_params.arena, l->norm_bias);
    int32_t rows, cols;
    float *w = repq_net_linear_weight(net, &q->float_params, id, &rows, &cols);
    float *bias = repq_net_linear_bias(net, &q->float_params, id);
    if (!bias)
        return repq_fail(err, REPQ_ERR_STATE, "reparameterize: layer %d has no bias to fold into", (int)id);
    if (aq->kind != REPQ_AQ_UNIFORM_CHANNEL || aq->channels != cols)
        return repq_fail(err, REPQ_ERR_STATE, "reparameterize: layer %d has no channel-wise input quantizer", (int)id);
    double mean_s = 0.0, mean_z = 0.0;
    for (int32_t c = 0; c < cols; c++) {
        mean_s += aq->per_channel[c].scale;
        mean_z += aq->per_channel[c].zero_point;
    }
    float s_t = (float)(mean_s / cols * t->scale_factor);
    /* An integer zero point for inference; the rounding goes into b exactly. */
    int32_t z_t = (int32_t)lrint(mean_z / cols) + t->zero_offset;
    double *b = repq_mem_alloc(al, (size_t)cols * sizeof *b);
    if (!b)
        return repq_fail(err, REPQ_ERR_NOMEM, "reparameterize: out of memory");
    for (int32_t c = 0; c < cols; c++) {
        double r = (double)aq->per_channel[c].scale / s_t;
        b[c] = (double)s_t * (double)(z_t - aq->per_channel[c].zero_point);
        gamma[c] = (float)(gamma[c] / r);
        beta[c] = (float)(beta[c] / r - b[c]);
        for (int32_t o = 0; o < rows; o++)
            w[(size_t)o * (size_t)cols + (size_t)c] = (float)(w[(size_t)o * (size_t)cols + (size_t)c] * r);
    }
    for (int32_t o = 0; o < rows; o++) {
        double acc = bias[o];
        for (int32_t c = 0; c < cols; c++)
            acc += (double)w[(size_t)o * (size_t)cols + (size_t)c] * b[c];
        bias[o] = (float)acc;
    }
    repq_mem_free(al, b);
    int32_t bits = aq->per_channel[0].bits;
    repq_mem_free(al, aq->per_channel);
    aq->per_channel = NULL;
    aq->channels = 0;
    aq->kind = REPQ_AQ_UNIFORM;
    aq->uniform = (repq_quant_params){s_t, z_t, bits};
    return repq_quant_params_check(&aq->uniform) == REPQ_OK
               ? REPQ_OK
               : repq_fail(err, REPQ_ERR_NUMERIC, "reparameterize: layer %d gives an unusable scale", (int)id);
}

REPQ_API repq_status repq_qmodel_reparameterize(repq_context *ctx, const repq_qmodel *src,
                                                repq_qmodel **out)
{
    const repq_reparam_target mean = {1.0, 0};
    return repq_qmodel_reparameterize_to(ctx, src, &mean, out);
}

repq_status repq_qmodel_reparameterize_to(repq_context *ctx, const repq_qmodel *src, const repq_reparam_target *t,
                                          repq_qmodel **out)
{
    repq_object *err = repq_context_object(ctx);
    if (!out)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_qmodel_reparameterize: out is NULL");
    *out = NULL;
    if (!repq_object_is(src, REPQ_KIND_QMODEL))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_qmodel_reparameterize: not a qmodel");
    if (!t || !(t->scale_factor > 0.0) || !isfinite(t->scale_factor) || t->zero_offset < -255 || t->zero_offset > 255)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_qmodel_reparameterize: bad layer-wise target");
    repq_allocator al = repq_allocator_of(ctx);
    return repq_qmodel_reparameterize_with(err, &al, src, t, out);
}

repq_status repq_qmodel_reparameterize_with(repq_object *err, const repq_allocator *al, const repq_qmodel *src,
                                            const repq_reparam_target *t, repq_qmodel **out)
{
    repq_qmodel *q = NULL;
    repq_status st = repq_qmodel_clone(err, al, src, &q);
    if (st || src->reparameterized) {
        *out = q;
        return st;
    }
    if (!src->has_float_weights) {
        repq_qmodel_free(q);
        return repq_fail(err, REPQ_ERR_STATE, "repq_qmodel_reparameterize: the float weights are not available");
    }
    /* Every LayerNorm -> linear pair of the network. */
    for (int32_t id = 0; id < q->num_linear && st == REPQ_OK; id++)
        if (q->net->linear[id].norm_weight >= 0)
            st = fold_layer_norm(err, q, id, t);
    /* The codes are the same; inference reads them as shifts plus a parity. */
    for (int32_t i = 0; i < q->net->num_slots; i++)
        if (q->net->slots[i].point == REPQ_QP_ATTN && q->acts[i].kind == REPQ_AQ_LOG_SQRT2)
            q->acts[i].kind = REPQ_AQ_LOG2_PARITY;
    /* The rewritten weights get fresh per-output-channel quantizers, as in the
     * reference's second pass (the search needs no data). */
    if (st == REPQ_OK)
        st = repq_qmodel_quantize_weights(err, q, true);
    if (st) {
        repq_qmodel_free(q);
        return st;
    }
    q->reparameterized = 1;
    *out = q;
    return REPQ_OK;
}
