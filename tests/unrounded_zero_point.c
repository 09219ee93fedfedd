/* The reference keeps the layer-wise zero point z~ = mean_c z_c fractional
 * (reference.md): its LayerNorm bias becomes beta / r_c - b_c with b_c = s~ (z~ - z_c),
 * and its quantizer is clamp(round(x / s~) + z~, 0, 2^b - 1), dequantized as (q - z~) s~.
 * librepq rounds z~ (inference needs an integer zero point) and puts the rounding into
 * b_c, which keeps every channel's grid where the channel-wise quantizer had it. With
 * f = z~ - round(z~), the reference's b_c is librepq's plus s~ f: its beta' is librepq's
 * less s~ f, and the next layer's bias gains s~ f sum_c W'[j][c] (W' the rewritten float
 * weights; the reference adds W' b before the weights are quantized again). Its grid is
 * then offset by f steps from the channel-wise one, and a fractional z~ puts its clamp
 * ends between grid points: 2^b + 1 levels instead of 2^b. */
#include "unrounded_zero_point.h"

#include <math.h>

#include "model/model.h"
#include "model/qmodel.h"
#include "vit_layout.h"

typedef struct unrounded {
    const repq_qmodel *r;
    double *frac; /* f of block b's qkv input at [2 b], fc1 input at [2 b + 1] */
} unrounded;

static repq_status apply(void *user, int32_t slot, float *x, size_t rows, size_t cols)
{
    const unrounded *u = user;
    const repq_act_quant *a = &u->r->acts[slot];
    const int32_t block = u->r->net->slots[slot].unit;
    const repq_qpoint point = u->r->net->slots[slot].point;
    if (point != REPQ_QP_QKV_IN && point != REPQ_QP_FC1_IN)
        return repq_act_quant_apply(a, x, rows, cols);
    /* The reference's float32 steps. */
    const float s = a->uniform.scale;
    const float z = (float)((double)a->uniform.zero_point + u->frac[2 * block + (point == REPQ_QP_FC1_IN)]);
    const float top = (float)((1 << a->uniform.bits) - 1);
    for (size_t i = 0; i < rows * cols; i++) {
        if (!isfinite(x[i]))
            return REPQ_ERR_NUMERIC;
        float c = nearbyintf(x[i] / s) + z;
        c = c < 0.0f ? 0.0f : c > top ? top : c;
        x[i] = (c - z) * s;
    }
    return REPQ_OK;
}

/* Moves librepq's rounded fold of one LayerNorm and linear layer to the reference's. */
static void unround(const repq_qmodel *r, const repq_params *rewritten, repq_params *p, int32_t block,
                    int which, double f)
{
    const repq_act_quant *lw =
        &r->acts[vit_act_index(&r->arch, block, which ? REPQ_QP_FC1_IN : REPQ_QP_QKV_IN)];
    const double shift = (double)lw->uniform.scale * f;
    int32_t rows, cols, id = vit_linear_id(block, which ? 2 : 0);
    const float *w = repq_net_linear_weight(r->net, rewritten, id, &rows, &cols);
    float *bias = repq_net_linear_bias(r->net, p, id);
    float *beta = which ? p->blocks[block].norm2_b : p->blocks[block].norm1_b;
    for (int32_t c = 0; c < cols; c++)
        beta[c] = (float)((double)beta[c] - shift);
    for (int32_t o = 0; o < rows; o++) {
        double sum = 0.0;
        for (int32_t c = 0; c < cols; c++)
            sum += w[(size_t)o * (size_t)cols + (size_t)c];
        bias[o] = (float)((double)bias[o] + shift * sum);
    }
}

repq_status unrounded_zero_point_params(const repq_qmodel *channelwise, const repq_qmodel *reparameterized,
                                        const repq_params *base, repq_params *out, double *frac)
{
    const repq_qmodel *q = channelwise, *r = reparameterized;
    const repq_arch *a = &r->arch;
    if (!q->has_float_weights || !r->has_float_weights || !r->reparameterized || q->reparameterized)
        return REPQ_ERR_STATE;
    repq_status st = repq_params_copy(NULL, &r->base.allocator, r->net, base, out);
    for (int32_t b = 0; b < a->depth && !st; b++)
        for (int which = 0; which < 2 && !st; which++) {
            const repq_qpoint pt = which ? REPQ_QP_FC1_IN : REPQ_QP_QKV_IN;
            const repq_act_quant *cw = &q->acts[vit_act_index(a, b, pt)];
            const repq_act_quant *lw = &r->acts[vit_act_index(a, b, pt)];
            if (cw->kind != REPQ_AQ_UNIFORM_CHANNEL || lw->kind != REPQ_AQ_UNIFORM || cw->channels < 1) {
                repq_params_release(&r->base.allocator, out);
                return REPQ_ERR_STATE;
            }
            double sum = 0.0;
            for (int32_t c = 0; c < cw->channels; c++)
                sum += cw->per_channel[c].zero_point;
            frac[2 * b + which] = sum / cw->channels - lw->uniform.zero_point;
            unround(r, &r->float_params, out, b, which, frac[2 * b + which]);
        }
    return st;
}

repq_status unrounded_zero_point_forward(const repq_qmodel *channelwise, const repq_qmodel *reparameterized,
                                         repq_tensor *images, repq_tensor *logits)
{
    const repq_qmodel *r = reparameterized;
    const repq_allocator *al = &r->base.allocator;
    unrounded u = {r, repq_mem_alloc(al, 2 * (size_t)r->arch.depth * sizeof(double))};
    repq_params p;
    if (!u.frac)
        return REPQ_ERR_NOMEM;
    repq_status st = unrounded_zero_point_params(channelwise, r, &r->fq_params, &p, u.frac);
    if (!st) {
        repq_hook hook = {apply, &u, true, NULL, false};
        st = repq_net_forward_tensors(NULL, al, r->net, &p, &hook, images, logits);
        repq_params_release(al, &p);
    }
    repq_mem_free(al, u.frac);
    return st;
}
