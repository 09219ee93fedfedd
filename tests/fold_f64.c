#include "fold_f64.h"
#include "vit_layout.h"

#include <stdlib.h>

#define AT(layout, values, field) ((values) + ((field) - (layout)->arena))

typedef struct fold_site {
    const float *gamma, *beta, *w, *bias; /* the channel-wise model's */
    const float *gamma2, *beta2, *w2, *bias2; /* where the rewritten ones sit */
    int32_t rows, cols;
} fold_site;

static bool fold_one(const repq_act_quant *cw, const repq_act_quant *lw, const repq_params *layout, double *values,
                     const fold_site *at)
{
    if (cw->kind != REPQ_AQ_UNIFORM_CHANNEL || cw->channels != at->cols || lw->kind != REPQ_AQ_UNIFORM)
        return false;
    const double s = (double)lw->uniform.scale, z = (double)lw->uniform.zero_point;
    double *b = malloc((size_t)at->cols * sizeof *b);
    if (!b)
        return false;
    double *gamma = AT(layout, values, at->gamma2), *beta = AT(layout, values, at->beta2);
    double *w = AT(layout, values, at->w2), *bias = AT(layout, values, at->bias2);
    for (int32_t c = 0; c < at->cols; c++) {
        const double r = (double)cw->per_channel[c].scale / s;
        b[c] = s * (z - (double)cw->per_channel[c].zero_point);
        gamma[c] = (double)at->gamma[c] / r;
        beta[c] = (double)at->beta[c] / r - b[c];
        for (int32_t o = 0; o < at->rows; o++)
            w[(size_t)o * (size_t)at->cols + (size_t)c] = (double)at->w[(size_t)o * (size_t)at->cols + (size_t)c] * r;
    }
    for (int32_t o = 0; o < at->rows; o++) {
        double sum = (double)at->bias[o];
        for (int32_t c = 0; c < at->cols; c++)
            sum += w[(size_t)o * (size_t)at->cols + (size_t)c] * b[c];
        bias[o] = sum;
    }
    free(b);
    return true;
}

bool fold_f64(const repq_qmodel *channelwise, const repq_qmodel *layerwise, double *values)
{
    const repq_arch *a = &channelwise->arch;
    const int32_t d = a->embed_dim, hid = a->mlp_hidden;
    const repq_params *layout = &layerwise->float_params;
    bool ok = true;
    for (int32_t bi = 0; ok && bi < a->depth; bi++) {
        const repq_block_params *src = &channelwise->float_params.blocks[bi], *dst = &layout->blocks[bi];
        const fold_site attn = {src->norm1_w, src->norm1_b, src->qkv_w, src->qkv_b,
                                dst->norm1_w, dst->norm1_b, dst->qkv_w, dst->qkv_b, 3 * d, d};
        const fold_site mlp = {src->norm2_w, src->norm2_b, src->fc1_w, src->fc1_b,
                               dst->norm2_w, dst->norm2_b, dst->fc1_w, dst->fc1_b, hid, d};
        const size_t qkv = vit_act_index(a, bi, REPQ_QP_QKV_IN), fc1 = vit_act_index(a, bi, REPQ_QP_FC1_IN);
        ok = fold_one(&channelwise->acts[qkv], &layerwise->acts[qkv], layout, values, &attn) &&
             fold_one(&channelwise->acts[fc1], &layerwise->acts[fc1], layout, values, &mlp);
    }
    return ok;
}
