/* The float forward pass: interprets the nodes of the network description, with
 * hooks at every activation slot. */
#include "model/net.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/vectorize.h"
#include "kernels/cpu.h"
#include "kernels/quantize_f32.h"
#include "model/float_ops.h"
#include "model/qmodel.h"

typedef struct scratch {
    const repq_net *net;
    float *arena; /* the parameter set's */
    float *x, *h, *q, *k, *v, *o, *attn, *mlp, *patches, *cls;
    /* Window attention: gathered q, k, v and output of one window and head, its score
     * bias, and the geometry of the current block. */
    float *win;
    int32_t *rows, *region, *relidx;
    /* Exact products only: A rows (EXACT_ROWS at a time), all of B, C rows, as doubles. */
    double *da, *db, *dc;
    bool exact;
    repq_kernel_level level; /* for the session's GELU, the same bits at every level */
} scratch;

#define EXACT_ROWS 256

static repq_status call_hook(const repq_hook *hook, int32_t slot, float *x, size_t rows, size_t cols)
{
    return hook && hook->act ? hook->act(hook->user, slot, x, rows, cols) : REPQ_OK;
}

static const float *param(const scratch *s, int32_t index)
{
    return repq_net_param_data(s->net, s->arena, index);
}

/* The element-wise loops below are plain C written for the compiler's vectorizer: no
 * calls into libm, no data-dependent branches (selects instead), and reductions over
 * explicit lanes so that the summation order is fixed and needs no -ffast-math. With
 * gcc on x86-64 glibc each such function is cloned for AVX-512, AVX2 and the baseline
 * and the clone is picked at load time; vectorization is asked for per function since
 * gcc's -O2 cost model skips loops of unknown trip count. Elsewhere they are plain
 * functions. The clones give the same results: ISO C mode leaves FMA contraction off
 * and the lane order does not depend on the vector width. */
#define LANES REPQ_LANES

/* y[i, :] = b, or y[i, :] += b when accumulate is set. */
VECTORIZED static void bias_rows(float *y, size_t m, size_t n, const float *b, bool accumulate)
{
    for (size_t i = 0; i < m; i++) {
        float *row = y + i * n;
        if (accumulate)
            for (size_t j = 0; j < n; j++)
                row[j] += b[j];
        else
            for (size_t j = 0; j < n; j++)
                row[j] = b[j];
    }
}

VECTORIZED static void add_inplace(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

/* out[r, :] = x[r, :] as doubles, for `rows` rows of `cols` (stride ldx). */
VECTORIZED static void widen_rows(const float *x, size_t rows, size_t cols, size_t ldx, double *out)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < cols; j++)
            out[r * cols + j] = (double)x[r * ldx + j];
}

/* c = float(sum + bias (+ c)), one rounding; bias may be NULL. */
VECTORIZED static void round_row(const double *sum, size_t n, const float *bias, bool accumulate, float *c)
{
    for (size_t j = 0; j < n; j++) {
        double y = sum[j];
        y += bias ? (double)bias[j] : 0.0;
        y += accumulate ? (double)c[j] : 0.0;
        c[j] = (float)y;
    }
}

/* c[m, n] = alpha * a[m, k] op(b) (+ bias[n]) (+ c when accumulate), op(b) = b^T for
 * b [n, k] when b_trans, else b [k, n]; row strides lda, ldb, ldc.
 * Fast: sgemm (the bias goes in first so that beta = 1 costs no separate pass).
 * Exact: the products of the float operands summed in double (exact products, ~1e-16
 * relative error in the sum), bias and old value added, one rounding to float. */
static void product(const scratch *s, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                    const float *b, size_t ldb, bool b_trans, const float *bias, bool accumulate, float *c,
                    size_t ldc)
{
    if (!s->exact) {
        if (bias)
            for (size_t i = 0; i < m; i++)
                bias_rows(c + i * ldc, 1, n, bias, accumulate);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, b_trans ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n,
                    (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, bias || accumulate ? 1.0f : 0.0f, c,
                    (blasint)ldc);
        return;
    }
    const size_t brows = b_trans ? n : k, bcols = b_trans ? k : n;
    widen_rows(b, brows, bcols, ldb, s->db);
    for (size_t i0 = 0; i0 < m; i0 += EXACT_ROWS) {
        const size_t rows = m - i0 < EXACT_ROWS ? m - i0 : EXACT_ROWS;
        widen_rows(a + i0 * lda, rows, k, lda, s->da);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, b_trans ? CblasTrans : CblasNoTrans, (blasint)rows, (blasint)n,
                    (blasint)k, (double)alpha, s->da, (blasint)k, s->db, (blasint)bcols, 0.0, s->dc, (blasint)n);
        for (size_t i = 0; i < rows; i++)
            round_row(s->dc + i * n, n, bias, accumulate, c + (i0 + i) * ldc);
    }
}

/* y[m, n] = x[m, k] w[n, k]^T + b[n], or y += ... when accumulate is set. */
static void linear(const scratch *s, const float *x, size_t m, size_t k, const float *w, const float *b, size_t n,
                   float *y, bool accumulate)
{
    product(s, m, n, k, 1.0f, x, k, w, k, true, b, accumulate, y, n);
}

/* Offers a product of quantized operands to the hook; *done says whether the hook
 * computed it. */
static repq_status offer(const repq_hook *hook, const repq_product *p, bool *done)
{
    *done = false;
    return hook && hook->product ? hook->product(hook->user, p, done) : REPQ_OK;
}

/* Linear layer `id` of `node` on rows [row0, row0 + m) of its input slot's activation
 * x, output columns [col0, col0 + n): the hook's product if it computes it, else
 * linear(). */
static repq_status qlinear(const scratch *s, const repq_hook *hook, const repq_net_node *node, int32_t id,
                           size_t row0, const float *x, size_t m, size_t col0, size_t n, float *y, bool accumulate)
{
    const repq_net_linear *l = &s->net->linear[id];
    const size_t k = (size_t)l->in;
    const float *w = param(s, l->weight) + col0 * k, *b = param(s, l->bias) + col0;
    repq_product p = {.node = node, .slot = l->input, .in = s->net->slots[l->input].point, .row0 = row0,
                          .rows = m, .col0 = col0, .cols = n, .bias = b, .out = y, .ldout = n,
                          .accumulate = accumulate};
    bool done;
    repq_status st = offer(hook, &p, &done);
    if (st == REPQ_OK && !done)
        linear(s, x, m, k, w, b, n, y, accumulate);
    return st;
}

VECTORIZED static void softmax_rows(float *x, size_t rows, size_t n)
{
    for (size_t i = 0; i < rows; i++) {
        float *r = x + i * n;
        float mx[LANES];
        for (size_t l = 0; l < LANES; l++)
            mx[l] = r[0];
        size_t j = 0;
        for (; j + LANES <= n; j += LANES)
            for (size_t l = 0; l < LANES; l++)
                mx[l] = r[j + l] > mx[l] ? r[j + l] : mx[l];
        for (size_t l = 0; j < n; j++, l++)
            mx[l] = r[j] > mx[l] ? r[j] : mx[l];
        float m = mx[0];
        for (size_t l = 1; l < LANES; l++)
            m = mx[l] > m ? mx[l] : m;
        for (j = 0; j < n; j++)
            r[j] = repq_exp_approx(r[j] - m);
        float acc[LANES] = {0};
        for (j = 0; j + LANES <= n; j += LANES)
            for (size_t l = 0; l < LANES; l++)
                acc[l] += r[j + l];
        for (size_t l = 0; j < n; j++, l++)
            acc[l] += r[j];
        float inv = 1.0f / repq_lanes_total(acc);
        for (j = 0; j < n; j++)
            r[j] *= inv;
    }
}

/* Non-overlapping P x P patches, each flattened as (channel, row, col) like the
 * convolution weight, preprocessing U8 pixels on the way. */
static void im2col(const repq_arch *a, const void *images, bool pixels_u8, size_t n, float *out)
{
    size_t s = (size_t)a->img_size, ps = (size_t)a->patch_size, side = s / ps;
    size_t ch = (size_t)a->in_chans, pd = (size_t)repq_vit_patch_dim(a);
    for (size_t b = 0; b < n; b++)
        for (size_t py = 0; py < side; py++)
            for (size_t px = 0; px < side; px++) {
                float *dst = out + ((b * side + py) * side + px) * pd;
                for (size_t c = 0; c < ch; c++)
                    for (size_t r = 0; r < ps; r++) {
                        size_t src = ((b * ch + c) * s + py * ps + r) * s + px * ps;
                        for (size_t col = 0; col < ps; col++) {
                            float v;
                            if (pixels_u8) {
                                v = (float)((const uint8_t *)images)[src + col] * a->pixel_scale;
                                v = (v - a->mean[c]) / a->std[c];
                            } else {
                                v = ((const float *)images)[src + col];
                            }
                            *dst++ = v;
                        }
                    }
            }
}

static repq_status attention(const repq_net_node *node, size_t n, scratch *s, const repq_hook *hook)
{
    size_t t = (size_t)node->tokens, d = (size_t)node->dim, rows = n * t;
    size_t heads = (size_t)node->heads, hd = d / heads;
    repq_status st;
    /* qkv's output columns are [3][heads][head_dim], so its weight rows split into three
     * contiguous [d, d] blocks: three products write q, k and v in place, no split copy. */
    float *dst[3] = {s->q, s->k, s->v};
    for (size_t part = 0; part < 3; part++)
        if ((st = qlinear(s, hook, node, node->linear[0], 0, s->h, rows, part * d, d, dst[part], false)))
            return st;
    if ((st = call_hook(hook, node->slot[REPQ_QP_Q], s->q, rows, d)) ||
        (st = call_hook(hook, node->slot[REPQ_QP_K], s->k, rows, d)) ||
        (st = call_hook(hook, node->slot[REPQ_QP_V], s->v, rows, d)))
        return st;
    /* The 1 / sqrt(head_dim) scale rides on sgemm's alpha. */
    float scale = 1.0f / sqrtf((float)hd);
    for (size_t b = 0; b < n; b++)
        for (size_t hh = 0; hh < heads; hh++) {
            float *sc = s->attn + (b * heads + hh) * t * t;
            const float *qh = s->q + b * t * d + hh * hd, *kh = s->k + b * t * d + hh * hd;
            repq_product p = {.node = node, .slot = node->slot[REPQ_QP_Q], .in = REPQ_QP_Q, .image = b,
                                  .head = hh, .out = sc, .ldout = t};
            bool done;
            if ((st = offer(hook, &p, &done)))
                return st;
            if (!done)
                product(s, t, t, hd, scale, qh, d, kh, d, true, NULL, false, sc, t);
            softmax_rows(sc, t, t);
        }
    if ((st = call_hook(hook, node->slot[REPQ_QP_ATTN], s->attn, n * heads * t, t)))
        return st;
    for (size_t b = 0; b < n; b++)
        for (size_t hh = 0; hh < heads; hh++) {
            const float *ah = s->attn + (b * heads + hh) * t * t;
            float *oh = s->o + b * t * d + hh * hd;
            repq_product p = {.node = node, .slot = node->slot[REPQ_QP_ATTN], .in = REPQ_QP_ATTN, .image = b,
                                  .head = hh, .out = oh, .ldout = d};
            bool done;
            if ((st = offer(hook, &p, &done)))
                return st;
            if (!done)
                product(s, t, hd, t, 1.0f, ah, t, s->v + b * t * d + hh * hd, d, false, NULL, false, oh, d);
        }
    if ((st = call_hook(hook, node->slot[REPQ_QP_PROJ_IN], s->o, rows, d)))
        return st;
    return qlinear(s, hook, node, node->linear[1], 0, s->o, rows, 0, d, s->x, true);
}

/* Window attention (Swin): q, k, v of each window gathered through the window-order
 * row map, the relative position bias and mask added to the scores, the output
 * scattered back to the token rows. */
static repq_status window_attention(const repq_net_node *node, size_t n, scratch *s, const repq_hook *hook)
{
    const repq_swin_window *wg = &node->window;
    const size_t t = (size_t)node->tokens, d = (size_t)node->dim, rows = n * t;
    const size_t heads = (size_t)node->heads, hd = d / heads;
    const size_t area = (size_t)repq_swin_window_area(wg), windows = (size_t)repq_swin_window_count(wg);
    const bool shifted = repq_swin_window_shifted(wg);
    const float *table = param(s, node->rel_bias);
    float *qw = s->win, *kw = qw + area * hd, *vw = kw + area * hd, *ow = vw + area * hd, *bias = ow + area * hd;
    float *mask = bias + area * area;
    repq_status st;
    repq_swin_window_rows(wg, s->rows);
    repq_swin_window_regions(wg, s->region);
    repq_swin_relative_position_index(wg->win_h, wg->win_w, s->relidx);
    float *dst[3] = {s->q, s->k, s->v};
    for (size_t part = 0; part < 3; part++)
        if ((st = qlinear(s, hook, node, node->linear[0], 0, s->h, rows, part * d, d, dst[part], false)))
            return st;
    /* timm scales q before the product; the reference quantizes it after. */
    const float scale = 1.0f / sqrtf((float)hd);
    for (size_t i = 0; i < rows * d; i++)
        s->q[i] *= scale;
    if ((st = call_hook(hook, node->slot[REPQ_QP_Q], s->q, rows, d)) ||
        (st = call_hook(hook, node->slot[REPQ_QP_K], s->k, rows, d)) ||
        (st = call_hook(hook, node->slot[REPQ_QP_V], s->v, rows, d)))
        return st;
    for (size_t b = 0; b < n; b++)
        for (size_t hh = 0; hh < heads; hh++)
            for (size_t w = 0; w < windows; w++) {
                const int32_t *wr = s->rows + w * area, *reg = s->region + w * area;
                float *sc = s->attn + ((b * heads + hh) * windows + w) * area * area;
                for (size_t i = 0; i < area; i++) {
                    const size_t src = (b * t + (size_t)wr[i]) * d + hh * hd;
                    memcpy(qw + i * hd, s->q + src, hd * sizeof(float));
                    memcpy(kw + i * hd, s->k + src, hd * sizeof(float));
                    for (size_t j = 0; j < area; j++) {
                        bias[i * area + j] = table[(size_t)s->relidx[i * area + j] * heads + hh];
                        mask[i * area + j] = reg[i] != reg[j] ? (float)REPQ_SWIN_MASK : 0.0f;
                    }
                }
                repq_product p = {.node = node, .slot = node->slot[REPQ_QP_Q], .in = REPQ_QP_Q, .image = b,
                                  .head = hh, .window = w, .tokens = area, .token_rows = wr, .score_bias = bias,
                                  .score_mask = shifted ? mask : NULL, .out = sc, .ldout = area};
                bool done;
                if ((st = offer(hook, &p, &done)))
                    return st;
                if (!done) {
                    product(s, area, area, hd, 1.0f, qw, hd, kw, hd, true, NULL, false, sc, area);
                    add_inplace(sc, bias, area * area);
                    if (shifted)
                        add_inplace(sc, mask, area * area);
                }
                softmax_rows(sc, area, area);
            }
    if ((st = call_hook(hook, node->slot[REPQ_QP_ATTN], s->attn, n * heads * windows * area, area)))
        return st;
    for (size_t b = 0; b < n; b++)
        for (size_t hh = 0; hh < heads; hh++)
            for (size_t w = 0; w < windows; w++) {
                const int32_t *wr = s->rows + w * area;
                const float *ah = s->attn + ((b * heads + hh) * windows + w) * area * area;
                for (size_t i = 0; i < area; i++)
                    memcpy(vw + i * hd, s->v + (b * t + (size_t)wr[i]) * d + hh * hd, hd * sizeof(float));
                repq_product p = {.node = node, .slot = node->slot[REPQ_QP_ATTN], .in = REPQ_QP_ATTN, .image = b,
                                  .head = hh, .window = w, .tokens = area, .token_rows = wr, .out = ow, .ldout = hd};
                bool done;
                if ((st = offer(hook, &p, &done)))
                    return st;
                if (!done)
                    product(s, area, hd, area, 1.0f, ah, area, vw, hd, false, NULL, false, ow, hd);
                for (size_t i = 0; i < area; i++)
                    memcpy(s->o + (b * t + (size_t)wr[i]) * d + hh * hd, ow + i * hd, hd * sizeof(float));
            }
    if ((st = call_hook(hook, node->slot[REPQ_QP_PROJ_IN], s->o, rows, d)))
        return st;
    return qlinear(s, hook, node, node->linear[1], 0, s->o, rows, 0, d, s->x, true);
}

/* Patch merging: 2x2 groups of tokens concatenated, LayerNorm, reduction; x becomes
 * the next stage's tokens. */
static repq_status merge_forward(const repq_net_node *node, size_t n, scratch *s, const repq_hook *hook)
{
    const size_t tin = (size_t)node->grid * (size_t)node->grid, tout = (size_t)node->tokens;
    const size_t din = (size_t)node->in_dim, wide = 4 * din, d = (size_t)node->dim;
    repq_swin_merge_rows(node->grid, node->grid, s->rows);
    for (size_t b = 0; b < n; b++)
        for (size_t r = 0; r < 4 * tout; r++)
            memcpy(s->q + (b * tout * 4 + r) * din, s->x + (b * tin + (size_t)s->rows[r]) * din, din * sizeof(float));
    repq_float_layer_norm(s->q, n * tout, wide, param(s, node->norm_weight), param(s, node->norm_bias),
                          s->net->arch.norm_eps, s->h);
    repq_status st = call_hook(hook, node->slot[REPQ_QP_MERGE_IN], s->h, n * tout, wide);
    return st ? st : qlinear(s, hook, node, node->linear[0], 0, s->h, n * tout, 0, d, s->x, false);
}

static repq_status block_forward(const repq_net_node *node, size_t n, scratch *s, const repq_hook *hook)
{
    size_t t = (size_t)node->tokens, d = (size_t)node->dim, rows = n * t;
    size_t hid = (size_t)node->hidden;
    const float eps = s->net->arch.norm_eps;
    repq_status st;
    repq_float_layer_norm(s->x, rows, d, param(s, node->norm_weight), param(s, node->norm_bias), eps, s->h);
    if ((st = call_hook(hook, node->slot[REPQ_QP_QKV_IN], s->h, rows, d)) ||
        (st = node->windowed ? window_attention(node, n, s, hook) : attention(node, n, s, hook)))
        return st;
    repq_float_layer_norm(s->x, rows, d, param(s, node->norm2_weight), param(s, node->norm2_bias), eps, s->h);
    if ((st = call_hook(hook, node->slot[REPQ_QP_FC1_IN], s->h, rows, d)) ||
        (st = qlinear(s, hook, node, node->linear[2], 0, s->h, rows, 0, hid, s->mlp, false)))
        return st;
    if (hook && hook->session_gelu)
        repq_gelu_fast_f32(s->level, rows * hid, s->mlp, s->mlp);
    else
        repq_float_gelu(s->mlp, rows * hid);
    if ((st = call_hook(hook, node->slot[REPQ_QP_FC2_IN], s->mlp, rows, hid)))
        return st;
    return qlinear(s, hook, node, node->linear[3], 0, s->mlp, rows, 0, d, s->x, true);
}

/* Patches of the images into the token rows of x, after the class token. */
static repq_status patch_embed(const repq_net_node *node, const void *images, bool pixels_u8, size_t n, scratch *s,
                               const repq_hook *hook)
{
    const repq_arch *a = &s->net->arch;
    const size_t t = (size_t)node->tokens, d = (size_t)node->dim;
    const size_t np = (size_t)repq_vit_patches(a), pd = (size_t)repq_vit_patch_dim(a);
    repq_status st;
    im2col(a, images, pixels_u8, n, s->patches);
    if ((st = call_hook(hook, node->slot[REPQ_QP_PATCH_IN], s->patches, n * np, pd)))
        return st;
    if (node->cls_token < 0) {
        /* Swin: the patches are the tokens, through a LayerNorm. */
        if ((st = qlinear(s, hook, node, node->linear[0], 0, s->patches, n * np, 0, d, s->h, false)))
            return st;
        repq_float_layer_norm(s->h, n * np, d, param(s, node->norm_weight), param(s, node->norm_bias),
                              s->net->arch.norm_eps, s->x);
        return REPQ_OK;
    }
    const float *cls = param(s, node->cls_token), *pos = param(s, node->pos_embed);
    for (size_t b = 0; b < n; b++) {
        float *xb = s->x + b * t * d;
        for (size_t c = 0; c < d; c++)
            xb[c] = cls[c] + pos[c];
        if ((st = qlinear(s, hook, node, node->linear[0], b * np, s->patches + b * np * pd, np, 0, d, xb + d,
                          false)))
            return st;
        add_inplace(xb + d, pos + d, (t - 1) * d);
    }
    return REPQ_OK;
}

/* Average pooling (Swin): the final norm of every token, then the mean per channel
 * (repq_float_mean_rows: within float rounding of torch's mean). */
static void norm_average(const repq_net_node *node, size_t n, scratch *s)
{
    const size_t t = (size_t)node->tokens, d = (size_t)node->dim;
    repq_float_layer_norm(s->x, n * t, d, param(s, node->norm_weight), param(s, node->norm_bias),
                          s->net->arch.norm_eps, s->h);
    for (size_t b = 0; b < n; b++)
        repq_float_mean_rows(s->h + b * t * d, t, d, s->cls + b * d);
}

/* Final norm and pooling (the class token's row, or the average of all tokens), head. */
static repq_status head_forward(const repq_net_node *node, size_t n, scratch *s, const repq_hook *hook,
                                float *logits)
{
    const size_t t = (size_t)node->tokens, d = (size_t)node->dim;
    const size_t k = (size_t)s->net->linear[node->linear[0]].out;
    if (node->avg_pool) {
        norm_average(node, n, s);
    } else {
        for (size_t b = 0; b < n; b++)
            memcpy(s->h + b * d, s->x + b * t * d, d * sizeof(float));
        repq_float_layer_norm(s->h, n, d, param(s, node->norm_weight), param(s, node->norm_bias),
                              s->net->arch.norm_eps, s->cls);
    }
    repq_status st = call_hook(hook, node->slot[REPQ_QP_HEAD_IN], s->cls, n, d);
    return st ? st : qlinear(s, hook, node, node->linear[0], 0, s->cls, n, 0, k, logits, false);
}

/* The largest extents of any node, which size the scratch (per image). */
typedef struct extents {
    size_t t, d, hd;                  /* most tokens, channels, head channels */
    size_t td, th, attn;              /* tokens x channels, x hidden, heads x tokens x keys */
    size_t tokens_max, window_max;    /* index maps: tokens of a grid, window area */
} extents;

static extents net_extents(const repq_net *net)
{
    extents e;
    memset(&e, 0, sizeof e);
    for (int32_t i = 0; i < net->num_nodes; i++) {
        const repq_net_node *node = &net->nodes[i];
        const size_t t = (size_t)node->tokens, d = (size_t)node->dim, h = (size_t)node->heads;
        const size_t keys = node->windowed ? (size_t)repq_swin_window_area(&node->window) : t;
        const size_t tin = node->op == REPQ_OP_MERGE ? (size_t)node->grid * (size_t)node->grid : t;
        const size_t td = node->op == REPQ_OP_MERGE ? tin * (size_t)node->in_dim : t * d;
        e.t = t > e.t ? t : e.t;
        e.d = d > e.d ? d : e.d;
        e.td = td > e.td ? td : e.td;
        e.th = t * (size_t)node->hidden > e.th ? t * (size_t)node->hidden : e.th;
        e.attn = h * t * keys > e.attn ? h * t * keys : e.attn;
        if (h > 0 && d / h > e.hd)
            e.hd = d / h;
        e.tokens_max = tin > e.tokens_max ? tin : e.tokens_max;
        if (node->windowed && keys > e.window_max)
            e.window_max = keys;
    }
    return e;
}

/* Doubles the exact products need: [EXACT_ROWS, max k], the largest B, [EXACT_ROWS, max n]. */
static void exact_sizes(const repq_net *net, size_t sizes[3])
{
    const extents e = net_extents(net);
    const size_t t = e.t, d = e.d, hd = e.hd;
    size_t max_k = d, max_n = d, max_b = d * d;
    for (int32_t i = 0; i < net->num_linear; i++) {
        const size_t out = (size_t)net->linear[i].out, in = (size_t)net->linear[i].in;
        max_k = in > max_k ? in : max_k;
        max_n = out > max_n ? out : max_n;
        max_b = out * in > max_b ? out * in : max_b;
    }
    const size_t ks[] = {t, hd}, ns[] = {t, hd};
    for (size_t i = 0; i < 2; i++) {
        max_k = ks[i] > max_k ? ks[i] : max_k;
        max_n = ns[i] > max_n ? ns[i] : max_n;
    }
    max_b = t * hd > max_b ? t * hd : max_b;
    sizes[0] = EXACT_ROWS * max_k;
    sizes[1] = max_b;
    sizes[2] = EXACT_ROWS * max_n;
}

/* Scratch for a batch of n images; every product is checked since n comes from callers. */
static repq_status scratch_alloc(repq_object *err, const repq_allocator *al, const repq_net *net, size_t n,
                                 bool exact, scratch *s, float **out_mem)
{
    const repq_arch *a = &net->arch;
    const extents e = net_extents(net);
    size_t np = (size_t)repq_vit_patches(a), pd = (size_t)repq_vit_patch_dim(a);
    size_t sz_td = 0, sz_mlp = 0, sz_attn = 0, sz_patch = 0, sz_cls = 0, total = 0;
    bool ok = repq_size_mul(n, e.td, &sz_td) && repq_size_mul(n, e.th, &sz_mlp) && repq_size_mul(n, e.attn, &sz_attn) &&
              repq_size_mul(n, np * pd, &sz_patch) && repq_size_mul(n, e.d, &sz_cls);
    /* Window attention: four [area, head_dim] windows and the [area, area] bias; the
     * index maps (int32, in float-sized units): rows and regions of a grid, the relative
     * position index. */
    const size_t area = e.window_max;
    const size_t sz_win = 4 * area * e.hd + 2 * area * area, sz_maps[3] = {e.tokens_max, e.tokens_max, area * area};
    size_t parts[14] = {sz_td, sz_td, sz_td, sz_td, sz_td, sz_td, sz_attn, sz_mlp, sz_patch, sz_cls, sz_win,
                        sz_maps[0], sz_maps[1], sz_maps[2]};
    for (int i = 0; ok && i < 14; i++)
        ok = repq_size_add(total, (parts[i] + 15) / 16 * 16, &total);
    /* The doubles of exact products follow, in units of two floats (architectures are
     * validated at load, so these sizes are far from overflowing). */
    size_t dparts[3] = {0, 0, 0};
    if (exact)
        exact_sizes(net, dparts);
    for (int i = 0; ok && i < 3; i++)
        ok = repq_size_add(total, 2 * ((dparts[i] + 7) / 8 * 8), &total);
    size_t bytes;
    if (!ok || !repq_size_mul(total, sizeof(float), &bytes))
        return repq_fail(err, REPQ_ERR_OVERFLOW, "forward: a batch of %zu images overflows the scratch size", n);
    float *mem = repq_mem_alloc(al, bytes);
    if (!mem)
        return repq_fail(err, REPQ_ERR_NOMEM, "forward: cannot allocate %zu bytes of scratch", bytes);
    float *maps[3];
    float **slots[14] = {&s->x, &s->h, &s->q, &s->k, &s->v, &s->o, &s->attn, &s->mlp, &s->patches, &s->cls, &s->win,
                         &maps[0], &maps[1], &maps[2]};
    float *at = mem;
    for (int i = 0; i < 14; i++) {
        *slots[i] = at;
        at += (parts[i] + 15) / 16 * 16;
    }
    s->rows = (int32_t *)(void *)maps[0];
    s->region = (int32_t *)(void *)maps[1];
    s->relidx = (int32_t *)(void *)maps[2];
    double **dslots[3] = {&s->da, &s->db, &s->dc};
    for (int i = 0; i < 3; i++) {
        *dslots[i] = exact ? (double *)(void *)at : NULL;
        at += 2 * ((dparts[i] + 7) / 8 * 8);
    }
    s->exact = exact;
    s->net = net;
    s->level = repq_kernel_level_best(repq_cpu_detect());
    *out_mem = mem;
    return REPQ_OK;
}

repq_status repq_net_block_apply(repq_object *err, const repq_allocator *al, const repq_net *net,
                                 const repq_net_node *node, const repq_params *p, float *x, size_t n)
{
    scratch s;
    float *mem;
    repq_status st = scratch_alloc(err, al, net, n, false, &s, &mem);
    if (st)
        return st;
    s.arena = p->arena;
    size_t bytes = n * (size_t)node->tokens * (size_t)node->dim * sizeof(float);
    memcpy(s.x, x, bytes);
    st = block_forward(node, n, &s, NULL);
    memcpy(x, s.x, bytes);
    repq_mem_free(al, mem);
    return st;
}

size_t repq_net_stream_floats(const repq_net *net, int32_t node)
{
    const repq_net_node *nd = &net->nodes[node];
    return nd->op == REPQ_OP_HEAD ? 0 : (size_t)nd->tokens * (size_t)nd->dim;
}

repq_status repq_net_forward_resume(repq_object *err, const repq_allocator *al, const repq_net *net,
                                    const repq_params *p, const void *images, bool pixels_u8, size_t n,
                                    const repq_hook *hook, const repq_net_resume *resume, float *logits)
{
    scratch s;
    float *mem;
    repq_status st = scratch_alloc(err, al, net, n, hook && hook->exact_products, &s, &mem);
    if (st)
        return st;
    s.arena = p->arena;
    int32_t first = resume ? resume->first_node : 0;
    int32_t end = resume && resume->end_node > 0 && resume->end_node < net->num_nodes ? resume->end_node
                                                                                      : net->num_nodes;
    if (first > 0)
        memcpy(s.x, resume->saved[first - 1], n * repq_net_stream_floats(net, first - 1) * sizeof(float));
    for (int32_t i = first; i < end && st == REPQ_OK; i++) {
        const repq_net_node *node = &net->nodes[i];
        switch (node->op) {
        case REPQ_OP_PATCH_EMBED: st = patch_embed(node, images, pixels_u8, n, &s, hook); break;
        case REPQ_OP_BLOCK: st = block_forward(node, n, &s, hook); break;
        case REPQ_OP_HEAD: st = head_forward(node, n, &s, hook, logits); break;
        case REPQ_OP_MERGE: st = merge_forward(node, n, &s, hook); break;
        }
        if (st == REPQ_OK && resume && resume->save && resume->saved[i])
            memcpy(resume->saved[i], s.x, n * repq_net_stream_floats(net, i) * sizeof(float));
    }
    repq_mem_free(al, mem);
    return st;
}

repq_status repq_net_forward(repq_object *err, const repq_allocator *al, const repq_net *net,
                             const repq_params *p, const void *images, bool pixels_u8, size_t n,
                             const repq_hook *hook, float *logits)
{
    return repq_net_forward_resume(err, al, net, p, images, pixels_u8, n, hook, NULL, logits);
}
