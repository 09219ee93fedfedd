/* The weights and tables that the sessions of one qmodel share (shared_weights.h):
 * compiled once from the qmodel's network description, then read-only. */
#include "infer/shared_weights.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attn_log2.h"
#include "kernels/gemm_s8.h"
#include "kernels/gemm_u4.h"
#include "kernels/quantize_f32.h"
#include "model/model.h"

static void *salloc(repq_shared_weights *s, size_t count, size_t size)
{
    return repq_mem_chain_alloc(&s->al, &s->mem, count, size);
}

static void free_all(repq_shared_weights *s)
{
    repq_allocator al = s->al;
    repq_mem_chain_free(&al, &s->mem);
    repq_mem_free(&al, s);
}

static repq_status get_uniform(repq_shared_weights *s, repq_object *err, int32_t slot, aq *out)
{
    const repq_act_quant *a = &s->q->acts[slot];
    if (a->kind != REPQ_AQ_UNIFORM || repq_quant_params_check(&a->uniform))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED,
                         "repq_session_new: quantization point %d of block %d is not a valid layer-wise "
                         "uniform quantizer (kind %d)", (int)s->q->net->slots[slot].point,
                         (int)s->q->net->slots[slot].unit, (int)a->kind);
    out->s = a->uniform.scale;
    out->z = a->uniform.zero_point;
    out->bits = a->uniform.bits;
    out->max_code = (1 << out->bits) - 1;
    return REPQ_OK;
}

/* fc2's input: layer-wise uniform, or two-region (the GEMM then runs on its fine grid). */
static repq_status get_fc2_input(repq_shared_weights *s, repq_object *err, const repq_net_node *node, qblock *b)
{
    const int32_t slot = node->slot[REPQ_QP_FC2_IN], block = node->unit;
    const repq_act_quant *a = &s->q->acts[slot];
    if (a->kind != REPQ_AQ_TWO_REGION) {
        repq_status st = get_uniform(s, err, slot, &b->fc2_in);
        return st ? st : repq_act_quant_gelu_codes(a, &b->fc2_codes);
    }
    repq_quant_params grid;
    if (repq_act_quant_grid(a, &grid, &b->fc2_in.max_code))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "repq_session_new: block %d: fc2's two-region input quantizer "
                         "is not valid", (int)block);
    b->fc2_in.s = grid.scale;
    b->fc2_in.z = grid.zero_point;
    b->fc2_in.bits = grid.bits;
    return repq_act_quant_gelu_codes(a, &b->fc2_codes);
}

/* Largest |sum_p (a_p - za)(w_p - zw)| and of every partial sum the epilogue forms,
 * for k terms, codes a in [0, amax], s8 weights in [wlo, whi] with colmul m and
 * colconst c: the caller refuses the layer when this reaches 2^31. */
static double sum_bound(size_t k, int32_t amax, int32_t wlo, int32_t whi, int32_t za, int64_t m, int64_t c)
{
    double wabs = fmax(fabs((double)wlo), fabs((double)whi));
    double acc = (double)k * amax * wabs;
    double mr = fabs((double)m) * (double)k * amax;
    return acc + mr + fabs((double)c);
}

#define INT32_LIMIT 2147483647.0

/* Pack rows [row0, row0 + n) of linear layer `id` (its codes and per-output-channel
 * quantizers) for inputs quantized by `in`; bias from fq_params. */
static repq_status qlin_init(repq_shared_weights *s, repq_object *err, int32_t id, size_t row0, size_t n,
                             const aq *in, const float *bias, int8_t *tmp, qlin *out)
{
    const repq_qlinear *l = &s->q->linear[id];
    size_t k = (size_t)l->in;
    if (k > REPQ_GEMM_U8S8_MAX_K)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "repq_session_new: layer %d has %zu inputs (max %d)",
                         (int)id, k, REPQ_GEMM_U8S8_MAX_K);
    out->n = n;
    out->k = k;
    out->bias = bias;
    out->nibbles = !s->nibbles_unpacked;
    for (size_t j = 0; j < n && out->nibbles; j++)
        out->nibbles = l->wq[row0 + j].bits <= 4;
    if (out->nibbles && k > s->nibble_k)
        s->nibble_k = k;
    const size_t unpacked = repq_gemm_u8s8_packed_size(n, k);
    if (out->nibbles && unpacked > s->nibble_unpacked)
        s->nibble_unpacked = unpacked;
    out->packed = salloc(s, out->nibbles ? repq_gemm_u8u4_packed_size(n, k) : unpacked, 1);
    out->colmul = salloc(s, n, sizeof(int32_t));
    out->colconst = salloc(s, n, sizeof(int32_t));
    out->scale = salloc(s, n, sizeof(float));
    if (!out->packed || !out->colmul || !out->colconst || !out->scale)
        return repq_fail(err, REPQ_ERR_NOMEM, "repq_session_new: cannot allocate layer %d", (int)id);
    const int32_t amax = in->max_code;
    for (size_t j = 0; j < n; j++) {
        const repq_quant_params *wq = &l->wq[row0 + j];
        if (repq_quant_params_check(wq))
            return repq_fail(err, REPQ_ERR_UNSUPPORTED, "repq_session_new: bad weight quantizer, layer %d row %zu",
                             (int)id, row0 + j);
        const int32_t off = wq->bits == 8 ? 128 : 0;
        const uint8_t *w = l->codes + (row0 + j) * k;
        int64_t colsum = 0;
        for (size_t p = 0; p < k; p++) {
            tmp[j * k + p] = (int8_t)((int32_t)w[p] - off);
            colsum += tmp[j * k + p];
        }
        const int64_t m = (int64_t)off - wq->zero_point;
        const int64_t c = -(int64_t)in->z * colsum - (int64_t)k * in->z * m;
        const int32_t wlo = -off, whi = (1 << wq->bits) - 1 - off;
        /* The true sum is bounded through |a - za| and |w - zw| as well. */
        double amax_c = fmax(fabs((double)in->z), fabs((double)(amax - in->z)));
        double wmax_c = fmax(fabs((double)wq->zero_point), fabs((double)((1 << wq->bits) - 1 - wq->zero_point)));
        if (sum_bound(k, amax, wlo, whi, in->z, m, c) >= INT32_LIMIT ||
            (double)k * amax_c * wmax_c >= INT32_LIMIT)
            return repq_fail(err, REPQ_ERR_UNSUPPORTED,
                             "repq_session_new: layer %d output %zu could overflow int32 (zero points %d, %d)",
                             (int)id, row0 + j, (int)in->z, (int)wq->zero_point);
        out->colmul[j] = (int32_t)m;
        out->colconst[j] = (int32_t)c;
        out->scale[j] = in->s * wq->scale;
    }
    if (out->nibbles)
        repq_gemm_u8u4_pack(n, k, tmp, k, out->packed);
    else
        repq_gemm_u8s8_pack(n, k, tmp, k, out->packed);
    return REPQ_OK;
}

/* Window attention: the row map, the mask regions, and the relative position bias of
 * every head on a score grid 2^-shift of s_q s_k (the largest shift keeping scores,
 * column terms and bias, and the mask below them, within int32). */
static repq_status window_init(repq_shared_weights *s, repq_object *err, const repq_net_node *node, qblock *b,
                               double in_scale)
{
    const repq_swin_window *w = &node->window;
    const size_t area = b->area, heads = b->heads;
    b->rows = salloc(s, b->t, sizeof(int32_t));
    b->region = repq_swin_window_shifted(w) ? salloc(s, b->t, sizeof(int32_t)) : NULL;
    b->bias = salloc(s, heads * area * area, sizeof(int32_t));
    int32_t *index = salloc(s, area * area, sizeof(int32_t));
    if (!b->rows || (repq_swin_window_shifted(w) && !b->region) || !b->bias || !index)
        return repq_fail(err, REPQ_ERR_NOMEM, "repq_session_new: cannot allocate window tables");
    repq_swin_window_rows(w, b->rows);
    if (b->region)
        repq_swin_window_regions(w, b->region);
    repq_swin_relative_position_index(w->win_h, w->win_w, index);
    const float *table = repq_net_param_data(s->q->net, s->q->fq_params.arena, node->rel_bias);
    const double table_max = repq_window_bias_max(s->q->net, &s->q->fq_params, node);
    const repq_quant_params qp = {b->q.s, b->q.z, b->q.bits}, kp = {b->k.s, b->k.z, b->k.bits};
    const int shift = repq_window_score_shift(&qp, &kp, (int32_t)b->hd, table_max - REPQ_SWIN_MASK);
    if (shift < 0)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "repq_session_new: block %d: the relative position bias "
                         "(up to %g) is too large for the score scale %g", (int)node->unit, table_max, in_scale);
    b->score_shift = shift;
    b->mask = repq_window_score_round(REPQ_SWIN_MASK, in_scale, shift);
    for (size_t h = 0; h < heads; h++)
        for (size_t i = 0; i < area * area; i++)
            b->bias[h * area * area + i] =
                repq_window_score_round((double)table[(size_t)index[i] * heads + h], in_scale, shift);
    return REPQ_OK;
}

static repq_status block_init(repq_shared_weights *s, repq_object *err, const repq_net_node *node, int8_t *tmp)
{
    const int32_t bi = node->unit;
    qblock *b = &s->blocks[bi];
    const repq_block_params *p = &s->q->fq_params.blocks[bi];
    const size_t d = (size_t)node->dim;
    const int32_t *slot = node->slot, *lin = node->linear;
    repq_status st;
    b->p = p;
    b->t = (size_t)node->tokens;
    b->d = d;
    b->heads = (size_t)node->heads;
    b->hd = d / b->heads;
    b->hidden = (size_t)node->hidden;
    b->windowed = node->windowed;
    b->q_scaled = node->q_scaled;
    b->area = node->windowed ? (size_t)repq_swin_window_area(&node->window) : b->t;
    b->windows = b->t / b->area;
    if ((st = get_uniform(s, err, slot[REPQ_QP_QKV_IN], &b->qkv_in)) ||
        (st = get_uniform(s, err, slot[REPQ_QP_Q], &b->q)) || (st = get_uniform(s, err, slot[REPQ_QP_K], &b->k)) ||
        (st = get_uniform(s, err, slot[REPQ_QP_V], &b->v)) ||
        (st = get_uniform(s, err, slot[REPQ_QP_PROJ_IN], &b->proj_in)) ||
        (st = get_uniform(s, err, slot[REPQ_QP_FC1_IN], &b->fc1_in)) ||
        (st = get_fc2_input(s, err, node, b)))
        return st;
    if ((st = qlin_init(s, err, lin[0], 0, d, &b->qkv_in, p->qkv_b, tmp, &b->lq)) ||
        (st = qlin_init(s, err, lin[0], d, d, &b->qkv_in, p->qkv_b + d, tmp, &b->lk)) ||
        (st = qlin_init(s, err, lin[0], 2 * d, d, &b->qkv_in, p->qkv_b + 2 * d, tmp, &b->lv)) ||
        (st = qlin_init(s, err, lin[1], 0, d, &b->proj_in, p->proj_b, tmp, &b->proj)) ||
        (st = qlin_init(s, err, lin[2], 0, b->hidden, &b->fc1_in, p->fc1_b, tmp, &b->fc1)) ||
        (st = qlin_init(s, err, lin[3], 0, d, &b->fc2_in, p->fc2_b, tmp, &b->fc2)))
        return st;

    /* q k^T over head_dim terms: q codes against k codes made s8. */
    const int32_t hd = (int32_t)b->hd;
    b->koff = b->k.bits == 8 ? 128 : 0;
    const int64_t m = (int64_t)b->koff - b->k.z;
    const int64_t cmax = (int64_t)llabs(b->q.z) * hd * 255 + (int64_t)hd * llabs(b->q.z) * llabs(m);
    double qa = fmax(fabs((double)b->q.z), fabs((double)((1 << b->q.bits) - 1 - b->q.z)));
    double ka = fmax(fabs((double)b->k.z), fabs((double)((1 << b->k.bits) - 1 - b->k.z)));
    if (sum_bound(b->hd, (1 << b->q.bits) - 1, -128, 255, b->q.z, m, cmax) >= INT32_LIMIT ||
        (double)hd * qa * ka >= INT32_LIMIT)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "repq_session_new: block %d: q k^T could overflow int32 "
                         "(zero points %d, %d)", (int)bi, (int)b->q.z, (int)b->k.z);
    b->qk_colmul = (int32_t)m;
    b->qk_const = (int32_t)(-(int64_t)hd * b->q.z * m);

    const repq_act_quant *at = &s->q->acts[slot[REPQ_QP_ATTN]];
    if (at->kind != REPQ_AQ_LOG2_PARITY || at->log.base != REPQ_LOG_SQRT2 || repq_logq_params_check(&at->log))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED,
                         "repq_session_new: block %d: the attention quantizer is not log2-with-parity (kind %d); "
                         "integer inference needs method repq", (int)bi, (int)at->kind);
    double in_scale = (double)b->q.s * (double)b->k.s / (b->q_scaled ? 1.0 : sqrt((double)hd));
    if (b->windowed && (st = window_init(s, err, node, b, in_scale)))
        return st;
    in_scale = ldexp(in_scale, -b->score_shift);
    if (!repq_log2softmax_prepare((float)in_scale, at->log.scale, at->log.bits, &b->sm))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED,
                         "repq_session_new: block %d: softmax constants out of range (score scale %g, "
                         "attention scale %g, %d bits)", (int)bi, in_scale, (double)at->log.scale, (int)at->log.bits);
    /* Attention x V: |v - zv| may exceed 255 when zv is outside the code range, so the
     * fraction bits are chosen for the actual bound. */
    const double vabs = fmax(fabs((double)b->v.z), fabs((double)((1 << b->v.bits) - 1 - b->v.z)));
    int f = repq_attn_v_frac_bits_max(b->area);
    while (f >= 0 && 1.4142135623730951 * (double)b->area * vabs * ldexp(1.0, f) >= INT32_LIMIT)
        f--;
    if (f < 0)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "repq_session_new: block %d: attention x V cannot be "
                         "accumulated in int32 (v zero point %d)", (int)bi, (int)b->v.z);
    b->frac_bits = f;
    /* The attention levels s_attn 2^-h and (float(sqrt2) s_attn) 2^-h, from the
     * quantizer itself (level 1 is the odd level at 2^-1), so the result is the
     * fake-quant forward's sum of levels times v. */
    const double odd = 2.0 * (double)repq_logq_level(&at->log, 1);
    b->av_even = (double)repq_logq_level(&at->log, 0) * (double)b->v.s * ldexp(1.0, -2 * f);
    b->av_odd = odd * (double)b->v.s * ldexp(1.0, -2 * f);
    return REPQ_OK;
}


/* Every node of the network compiled: layers packed, quantizers and tables. */
static repq_status build(repq_object *err, repq_shared_weights *s)
{
    const repq_qmodel *q = s->q;
    const repq_arch *a = &q->arch;
    size_t max_w = 0;
    for (int32_t i = 0; i < q->num_linear; i++) {
        size_t sz = (size_t)q->linear[i].out * (size_t)q->linear[i].in;
        max_w = sz > max_w ? sz : max_w;
    }
    const size_t dim = (size_t)a->embed_dim, classes = (size_t)a->num_classes;
    int8_t *tmp = repq_mem_alloc(&s->al, max_w);
    s->blocks = salloc(s, (size_t)a->depth, sizeof(qblock));
    s->pixel_codes = salloc(s, (size_t)a->in_chans * 256, 1);
    const size_t merges = a->family == REPQ_FAMILY_SWIN ? (size_t)a->swin.stages : 1;
    s->merge_nodes = salloc(s, merges, sizeof *s->merge_nodes);
    s->merge_in = salloc(s, merges, sizeof *s->merge_in);
    s->merge = salloc(s, merges, sizeof *s->merge);
    s->merge_rows = salloc(s, merges, sizeof *s->merge_rows);
    repq_status st = REPQ_OK;
    if (!tmp || !s->blocks || !s->pixel_codes || !s->merge_nodes || !s->merge_in || !s->merge || !s->merge_rows)
        st = repq_fail(err, REPQ_ERR_NOMEM, "repq_session_new: cannot allocate layer tables");
    for (int32_t i = 0; !st && i < q->net->num_nodes; i++) {
        const repq_net_node *node = &q->net->nodes[i];
        switch (node->op) {
        case REPQ_OP_PATCH_EMBED:
            if (!(st = get_uniform(s, err, node->slot[REPQ_QP_PATCH_IN], &s->patch_in)))
                st = qlin_init(s, err, node->linear[0], 0, dim, &s->patch_in, q->fq_params.patch_b, tmp, &s->patch);
            break;
        case REPQ_OP_BLOCK: st = block_init(s, err, node, tmp); break;
        case REPQ_OP_MERGE: {
            const size_t k = (size_t)node->unit;
            const int32_t id = node->linear[0];
            s->merge_nodes[k] = node;
            s->merge_rows[k] = salloc(s, (size_t)node->grid * (size_t)node->grid, sizeof(int32_t));
            if (!s->merge_rows[k]) {
                st = repq_fail(err, REPQ_ERR_NOMEM, "repq_session_new: cannot allocate layer tables");
                break;
            }
            repq_swin_merge_rows(node->grid, node->grid, s->merge_rows[k]);
            if (!(st = get_uniform(s, err, node->slot[REPQ_QP_MERGE_IN], &s->merge_in[k])))
                st = qlin_init(s, err, id, 0, (size_t)node->dim, &s->merge_in[k],
                               repq_net_linear_bias(q->net, &q->fq_params, id), tmp, &s->merge[k]);
            break;
        }
        case REPQ_OP_HEAD:
            if (!(st = get_uniform(s, err, node->slot[REPQ_QP_HEAD_IN], &s->head_in)))
                st = qlin_init(s, err, node->linear[0], 0, classes, &s->head_in, q->fq_params.head_b, tmp, &s->head);
            break;
        }
    }
    repq_mem_free(&s->al, tmp);
    if (st)
        return st;
    /* U8 pixels: the code of every value per channel, computed as the float forward
     * preprocesses and the quantizer rounds. */
    float v[256];
    for (int32_t c = 0; c < a->in_chans; c++) {
        for (int i = 0; i < 256; i++) {
            v[i] = (float)i * a->pixel_scale;
            v[i] = (v[i] - a->mean[c]) / a->std[c];
        }
        repq_quantize_f32_u8(REPQ_LEVEL_SCALAR, 256, v, s->patch_in.s, s->patch_in.z, s->patch_in.bits,
                             s->pixel_codes + (size_t)c * 256);
    }
    return REPQ_OK;
}

/* The qmodel is immutable to its users; its shared-weights slot is the one field
 * written after creation, always under its lock. */
repq_status repq_shared_weights_acquire(repq_object *err, const repq_qmodel *q, bool unpack_nibbles,
                                        const repq_shared_weights **out)
{
    repq_qmodel *mq = (repq_qmodel *)q;
    *out = NULL;
    pthread_mutex_lock(&mq->shared_lock);
    repq_shared_weights *s = mq->shared;
    repq_status st = REPQ_OK;
    if (!s) {
        repq_allocator al = q->base.allocator;
        s = repq_mem_alloc(&al, sizeof *s);
        if (!s) {
            st = repq_fail(err, REPQ_ERR_NOMEM, "repq_session_new: cannot allocate the shared weights");
        } else {
            memset(s, 0, sizeof *s);
            s->q = q;
            s->al = al;
            s->nibbles_unpacked = unpack_nibbles;
            if ((st = build(err, s)))
                free_all(s);
            else
                mq->shared = s;
        }
    }
    if (!st) {
        s->users++;
        *out = s;
    }
    pthread_mutex_unlock(&mq->shared_lock);
    return st;
}

size_t repq_shared_weights_bytes(const repq_shared_weights *w)
{
    return sizeof *w + w->mem.bytes;
}

void repq_shared_weights_release(const repq_shared_weights *w)
{
    if (!w)
        return;
    repq_qmodel *mq = (repq_qmodel *)w->q;
    pthread_mutex_lock(&mq->shared_lock);
    repq_shared_weights *s = mq->shared;
    if (--s->users == 0) {
        mq->shared = NULL;
        free_all(s);
    }
    pthread_mutex_unlock(&mq->shared_lock);
}
