/* Float forward of a quantized model: fake quantization at every quantization point.
 *
 * Products whose operands are fake-quantized are computed from the codes, exactly up to
 * the final roundings, and rounded as the integer session rounds them:
 *   - a linear layer whose input has one (layer-wise) quantizer: the integer
 *     V = sum_k (a - z_a)(w - z_w[n]), then y = (float)V * (s_a * s_w[n]) + b[n], a
 *     product then a sum in float (the residual stream adds y);
 *   - the scores: S = sum (q - z_q)(k - z_k), then (float)S * (s_q s_k / sqrt(hd));
 *   - attention x v: the attention levels times v - z_v summed in double, times s_v,
 *     rounded once to float.
 * The forward's own products (forward.c) sum the products of the dequantized floats,
 * s_a (a - z_a) and s_w (w - z_w) each already rounded to float: 2^-24 relative per
 * operand, as much as sgemm's accumulation error. Such a difference flips a few codes
 * of the next quantizer per image and with them the prediction of the images whose top
 * two logits are close (against the session: 98.7 % / 99.1 % same top-1 at W8A8 / W4A4
 * on 1000 images, 100 % with the sums here). Operands with per-channel quantizers
 * (before reparameterization) and unquantized ones keep the forward's products.
 *
 * The integer sums run as float GEMMs on integer-valued operands when every partial
 * sum stays below 2^24 (4- and 6-bit models, and 8-bit layers of up to 258 inputs),
 * else as float GEMMs over chunks of inputs added in double, or one double GEMM: exact
 * either way while the sum stays below 2^53. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "core/tensor.h"
#include "core/vectorize.h"
#include "model/model.h"
#include "model/qmodel.h"

#define FLOAT_EXACT 16777216.0           /* 2^24 */
#define DOUBLE_EXACT 9007199254740992.0  /* 2^53 */

/* The codes of the last activation seen at one quantization point. */
typedef struct stash {
    uint8_t *codes;
    size_t cap, rows, cols;
    int32_t slot;
    bool valid;
} stash;

enum { BUF_A, BUF_B, BUF_C, BUF_V, BUF_S, BUF_G, BUF_R, BUF_COUNT };

typedef struct fake_quant {
    const repq_qmodel *q;
    const repq_allocator *al;
    stash st[REPQ_QP_COUNT];
    void *buf[BUF_COUNT]; /* product scratch, grown on demand */
    size_t cap[BUF_COUNT];
    /* The score grid of the windowed block whose products run (computed once per block). */
    const repq_net_node *grid_node;
    int grid_shift;
} fake_quant;

/* At least `count` elements of `size` bytes in *p, or NULL (out of memory or overflow). */
static void *reserve(const repq_allocator *al, void **p, size_t *cap, size_t count, size_t size)
{
    size_t bytes;
    if (!repq_size_mul(count, size, &bytes))
        return NULL;
    if (*cap < bytes) {
        repq_mem_free(al, *p);
        *p = repq_mem_alloc(al, bytes ? bytes : 1);
        *cap = *p ? bytes : 0;
    }
    return *p;
}

static void *scratch(fake_quant *fq, int which, size_t count, size_t size)
{
    return reserve(fq->al, &fq->buf[which], &fq->cap[which], count, size);
}


static bool is_log(const repq_act_quant *a)
{
    return a->kind == REPQ_AQ_LOG_SQRT2 || a->kind == REPQ_AQ_LOG2_PARITY;
}

/* x[i] = s (c[i] - z): the same bits as repq_quant_fake (c - z is exact in float). */
VECTORIZED static void dequantize_codes(float *x, const uint8_t *c, size_t n, float s, float zf)
{
    for (size_t i = 0; i < n; i++)
        x[i] = s * ((float)c[i] - zf);
}

/* Keeps the codes of layer-wise and log quantizers for the products and fake-quantizes
 * x in place. */
static repq_status apply(void *user, int32_t slot, float *x, size_t rows, size_t cols)
{
    fake_quant *fq = user;
    const repq_act_quant *a = &fq->q->acts[slot];
    stash *sh = &fq->st[fq->q->net->slots[slot].point];
    sh->valid = false;
    if (a->kind != REPQ_AQ_UNIFORM && a->kind != REPQ_AQ_TWO_REGION && !is_log(a))
        return repq_act_quant_apply(a, x, rows, cols);
    const size_t n = rows * cols; /* the forward's own buffer holds that many floats */
    if (!reserve(fq->al, (void **)&sh->codes, &sh->cap, n, 1))
        return REPQ_ERR_NOMEM;
    repq_status st;
    repq_quant_params grid;
    int32_t max_code;
    if (a->kind == REPQ_AQ_UNIFORM || a->kind == REPQ_AQ_TWO_REGION) {
        if ((st = repq_act_quant_grid(a, &grid, &max_code)))
            return st;
        if (fq->q->net->slots[slot].point == REPQ_QP_FC2_IN) {
            /* GELU's output, rounded as the session's fused epilogue rounds it. */
            repq_gelu_codes gc;
            if ((st = repq_act_quant_gelu_codes(a, &gc)))
                return st;
            if (!repq_gelu_codes_u8(n, x, &gc, sh->codes))
                return REPQ_ERR_NUMERIC;
        } else if ((st = a->kind == REPQ_AQ_UNIFORM ? repq_quant_quantize(&a->uniform, x, n, sh->codes)
                                                    : repq_tworeg_quantize(&a->two, x, n, sh->codes))) {
            return st;
        }
        dequantize_codes(x, sh->codes, n, grid.scale, (float)grid.zero_point);
    } else {
        /* Below 8 bits a code is its level's index, the zero state included: the levels
         * follow from the codes without a second logarithm. At 8 bits code 255 stands
         * for both the last level and the zero state, which fake quantization keeps
         * apart. */
        if ((st = repq_logq_quantize(&a->log, x, n, sh->codes)) ||
            (st = a->log.bits < 8 ? repq_logq_dequantize(&a->log, sh->codes, n, x)
                                  : repq_act_quant_apply(a, x, rows, cols)))
            return st;
    }
    *sh = (stash){sh->codes, sh->cap, rows, cols, slot, true};
    return REPQ_OK;
}

/* The stash of slot `slot` if it holds its codes of a uniform quantizer. */
static const stash *uniform_codes(const fake_quant *fq, int32_t slot)
{
    const stash *sh = &fq->st[fq->q->net->slots[slot].point];
    return fq->q->acts[slot].kind == REPQ_AQ_UNIFORM && sh->valid && sh->slot == slot ? sh : NULL;
}

/* The same for the input of a linear layer, which may also be two-region codes (on
 * their fine grid). */
static const stash *grid_codes(const fake_quant *fq, int32_t slot)
{
    const stash *sh = &fq->st[fq->q->net->slots[slot].point];
    const int32_t kind = fq->q->acts[slot].kind;
    return (kind == REPQ_AQ_UNIFORM || kind == REPQ_AQ_TWO_REGION) && sh->valid && sh->slot == slot ? sh : NULL;
}

/* max |c - z| over codes c in [0, cmax], as a double (no overflow). */
static double reach(int32_t z, int32_t cmax)
{
    return fmax(fabs((double)z), fabs((double)cmax - (double)z));
}

/* out[i][p] = a[i][p] - z[i * zstep] for i < m, p < k (input rows lda apart), exact. */
VECTORIZED static void offsets_f(size_t m, size_t k, const uint8_t *a, size_t lda, const int32_t *z, size_t zstep,
                                 float *out)
{
    for (size_t i = 0; i < m; i++) {
        const float zi = (float)z[i * zstep];
        for (size_t p = 0; p < k; p++)
            out[i * k + p] = (float)a[i * lda + p] - zi;
    }
}

VECTORIZED static void offsets_d(size_t m, size_t k, const uint8_t *a, size_t lda, const int32_t *z, size_t zstep,
                                 double *out)
{
    for (size_t i = 0; i < m; i++) {
        const double zi = (double)z[i * zstep];
        for (size_t p = 0; p < k; p++)
            out[i * k + p] = (double)a[i * lda + p] - zi;
    }
}

VECTORIZED static void add_to(double *acc, const float *x, size_t n, bool first)
{
    for (size_t i = 0; i < n; i++)
        acc[i] = first ? (double)x[i] : acc[i] + (double)x[i];
}

/* The exact sums V[i][j] = sum_p (a[i][p] - za)(b[j][p] - zb[j]), i < m, j < n, p < k, of
 * codes a in [0, amax] and b in [0, bmax]. With every term at most T in magnitude: one
 * float GEMM when k T < 2^24 (V in *vf), else float GEMMs over chunks of inputs whose sums
 * stay below 2^24, added in double, or (T above 2^20, only for zero points far outside
 * the code range) one double GEMM (V in *vd). Exact while k T < 2^53; beyond, *vf and *vd
 * stay NULL and the caller leaves the product to the forward. */
static repq_status exact_sums(fake_quant *fq, size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                              int32_t za, int32_t amax, const uint8_t *b, size_t ldb, const int32_t *zb,
                              int32_t bmax, const float **vf, const double **vd)
{
    *vf = NULL;
    *vd = NULL;
    double rb = 0.0;
    for (size_t j = 0; j < n; j++)
        rb = fmax(rb, reach(zb[j], bmax));
    const double term = reach(za, amax) * rb;
    if (!((double)k * term < DOUBLE_EXACT))
        return REPQ_OK;
    const size_t kc = term < 1.0 ? k : (size_t)fmin((double)k, floor((FLOAT_EXACT - 1.0) / term));
    const int32_t zero = za;
    if (kc >= k || kc >= 16) {
        float *fa = scratch(fq, BUF_A, m * k, sizeof(float)), *fb = scratch(fq, BUF_B, n * k, sizeof(float));
        float *c = scratch(fq, BUF_C, m * n, sizeof(float));
        double *v = kc < k ? scratch(fq, BUF_V, m * n, sizeof(double)) : NULL;
        if (!fa || !fb || !c || (kc < k && !v))
            return REPQ_ERR_NOMEM;
        offsets_f(m, k, a, lda, &zero, 0, fa);
        offsets_f(n, k, b, ldb, zb, 1, fb);
        for (size_t p0 = 0; p0 < k; p0 += kc) {
            const size_t kk = k - p0 < kc ? k - p0 : kc;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)n, (blasint)kk, 1.0f,
                        fa + p0, (blasint)k, fb + p0, (blasint)k, 0.0f, c, (blasint)n);
            if (v)
                add_to(v, c, m * n, p0 == 0);
        }
        if (v)
            *vd = v;
        else
            *vf = c;
        return REPQ_OK;
    }
    double *da = scratch(fq, BUF_A, m * k, sizeof(double)), *db = scratch(fq, BUF_B, n * k, sizeof(double));
    double *v = scratch(fq, BUF_V, m * n, sizeof(double));
    if (!da || !db || !v)
        return REPQ_ERR_NOMEM;
    offsets_d(m, k, a, lda, &zero, 0, da);
    offsets_d(n, k, b, ldb, zb, 1, db);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)n, (blasint)k, 1.0, da, (blasint)k,
                db, (blasint)k, 0.0, v, (blasint)n);
    *vd = v;
    return REPQ_OK;
}

/* y = (float)V * scale[j] + bias[j], a product then a sum as the session's epilogue;
 * out = y, or out += y (the residual stream). */
VECTORIZED static void linear_out_f(size_t m, size_t n, const float *v, const float *scale, const float *bias,
                                    bool accumulate, float *out, size_t ldout)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float y = v[i * n + j] * scale[j];
            y = y + bias[j];
            out[i * ldout + j] = accumulate ? out[i * ldout + j] + y : y;
        }
}

VECTORIZED static void linear_out_d(size_t m, size_t n, const double *v, const float *scale, const float *bias,
                                    bool accumulate, float *out, size_t ldout)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float y = (float)v[i * n + j] * scale[j];
            y = y + bias[j];
            out[i * ldout + j] = accumulate ? out[i * ldout + j] + y : y;
        }
}

static repq_status linear_product(fake_quant *fq, const repq_product *p, bool *done)
{
    const repq_qmodel *q = fq->q;
    const stash *a = grid_codes(fq, p->slot);
    const repq_qlinear *l = &q->linear[q->net->slots[p->slot].feeds];
    if (!a || a->cols != (size_t)l->in || p->row0 + p->rows > a->rows || p->col0 + p->cols > (size_t)l->out)
        return REPQ_OK;
    repq_quant_params grid;
    int32_t max_code;
    repq_status st = repq_act_quant_grid(&q->acts[p->slot], &grid, &max_code);
    if (st)
        return st;
    const repq_quant_params *in = &grid, *wq = l->wq + p->col0;
    const size_t m = p->rows, n = p->cols, k = (size_t)l->in;
    /* The weight zero points, then the combined scales s_a * s_w[j] (one float product,
     * as the session's). */
    int32_t *zw = scratch(fq, BUF_S, n, sizeof(int32_t) > sizeof(float) ? sizeof(int32_t) : sizeof(float));
    if (!zw)
        return REPQ_ERR_NOMEM;
    int32_t wmax = 0;
    for (size_t j = 0; j < n; j++) {
        zw[j] = wq[j].zero_point;
        wmax = (1 << wq[j].bits) - 1 > wmax ? (1 << wq[j].bits) - 1 : wmax;
    }
    const float *vf;
    const double *vd;
    st = exact_sums(fq, m, n, k, a->codes + p->row0 * k, k, in->zero_point, max_code,
                                l->codes + p->col0 * k, k, zw, wmax, &vf, &vd);
    if (st || (!vf && !vd))
        return st;
    float *scale = (float *)(void *)zw;
    for (size_t j = 0; j < n; j++)
        scale[j] = in->scale * wq[j].scale;
    if (vf)
        linear_out_f(m, n, vf, scale, p->bias, p->accumulate, p->out, p->ldout);
    else
        linear_out_d(m, n, vd, scale, p->bias, p->accumulate, p->out, p->ldout);
    *done = true;
    return REPQ_OK;
}

/* One head's codes of the rows of an attention product: the image's rows in place
 * (global attention: *ld = d), or a window's rows gathered into `out` (*ld = hd). */
static const uint8_t *head_codes(const stash *sh, const repq_product *p, uint8_t *out, size_t *ld)
{
    const size_t t = (size_t)p->node->tokens, d = (size_t)p->node->dim, hd = d / (size_t)p->node->heads;
    const uint8_t *image = sh->codes + p->image * t * d + p->head * hd;
    if (!p->token_rows) {
        *ld = d;
        return image;
    }
    for (size_t i = 0; i < p->tokens; i++)
        memcpy(out + i * hd, image + (size_t)p->token_rows[i] * d, hd);
    *ld = hd;
    return out;
}

/* Rows of an attention product: the image's tokens, or the window's. */
static size_t product_tokens(const repq_product *p)
{
    return p->token_rows ? p->tokens : (size_t)p->node->tokens;
}

/* Window scores (q quantized after its 1 / sqrt(head_dim)): the exact sums on the
 * session's finer grid plus the bias and mask rounded onto it, scaled once to float. */
static repq_status window_scores(fake_quant *fq, const repq_product *p, const repq_quant_params *qq,
                                 const repq_quant_params *kq, const float *vf, const double *vd)
{
    if (fq->grid_node != p->node) {
        const double table_max = repq_window_bias_max(fq->q->net, &fq->q->fq_params, p->node);
        fq->grid_shift = repq_window_score_shift(qq, kq, p->node->dim / p->node->heads, table_max - REPQ_SWIN_MASK);
        fq->grid_node = p->node;
    }
    const int shift = fq->grid_shift;
    if (shift < 0)
        return REPQ_ERR_UNSUPPORTED;
    const double in_scale = (double)qq->scale * (double)kq->scale;
    const double step = (double)(float)ldexp(in_scale, -shift);
    const int32_t mask = repq_window_score_round(REPQ_SWIN_MASK, in_scale, shift);
    const size_t t = p->tokens;
    double *row = scratch(fq, BUF_R, t, sizeof(double));
    if (!row)
        return REPQ_ERR_NOMEM;
    /* Each row relative to its maximum (softmax does not see a row's constant): what
     * reaches the softmax is the session's integer difference, rounded once. */
    for (size_t i = 0; i < t; i++) {
        double top = -INFINITY;
        for (size_t j = 0; j < t; j++) {
            double x = ldexp(vf ? (double)vf[i * t + j] : vd[i * t + j], shift);
            x += repq_window_score_round(p->score_bias[i * t + j], in_scale, shift);
            x += p->score_mask && p->score_mask[i * t + j] != 0.0f ? mask : 0;
            row[j] = x;
            top = fmax(top, x);
        }
        for (size_t j = 0; j < t; j++)
            p->out[i * p->ldout + j] = (float)((row[j] - top) * step);
    }
    return REPQ_OK;
}

static repq_status scores_product(fake_quant *fq, const repq_product *p, bool *done)
{
    const int32_t k_slot = p->node->slot[REPQ_QP_K];
    const stash *qs = uniform_codes(fq, p->slot), *ks = uniform_codes(fq, k_slot);
    if (!qs || !ks)
        return REPQ_OK;
    const size_t t = product_tokens(p), hd = (size_t)p->node->dim / (size_t)p->node->heads;
    const repq_quant_params *qq = &fq->q->acts[p->slot].uniform, *kq = &fq->q->acts[k_slot].uniform;
    int32_t *zk = scratch(fq, BUF_S, t, sizeof(int32_t));
    uint8_t *gathered = p->token_rows ? scratch(fq, BUF_G, 2 * t * hd, 1) : NULL;
    if (!zk || (p->token_rows && !gathered))
        return REPQ_ERR_NOMEM;
    for (size_t j = 0; j < t; j++)
        zk[j] = kq->zero_point;
    size_t ldq, ldk;
    const uint8_t *qc = head_codes(qs, p, gathered, &ldq);
    const uint8_t *kc = head_codes(ks, p, gathered ? gathered + t * hd : NULL, &ldk);
    const float *vf;
    const double *vd;
    repq_status st = exact_sums(fq, t, t, hd, qc, ldq, qq->zero_point, (1 << qq->bits) - 1, kc, ldk, zk,
                                (1 << kq->bits) - 1, &vf, &vd);
    if (st || (!vf && !vd))
        return st;
    *done = true;
    if (p->score_bias)
        return window_scores(fq, p, qq, kq, vf, vd);
    /* The real score scale, rounded once: the session's softmax takes the same float. */
    const float c = (float)((double)qq->scale * (double)kq->scale / sqrt((double)hd));
    for (size_t i = 0; i < t; i++)
        for (size_t j = 0; j < t; j++)
            p->out[i * p->ldout + j] = (vf ? vf[i * t + j] : (float)vd[i * t + j]) * c;
    return REPQ_OK;
}

/* Attention x v from the attention codes (log or uniform) and the v codes. */
static repq_status attn_v_product(fake_quant *fq, const repq_product *p, bool *done)
{
    const repq_qmodel *q = fq->q;
    const int32_t v_slot = p->node->slot[REPQ_QP_V];
    const repq_act_quant *at = &q->acts[p->slot];
    const stash *as = &fq->st[REPQ_QP_ATTN], *vs = uniform_codes(fq, v_slot);
    if (!vs || !as->valid || as->slot != p->slot)
        return REPQ_OK;
    const size_t t = product_tokens(p), d = (size_t)p->node->dim, heads = (size_t)p->node->heads;
    const size_t hd = d / heads, windows = (size_t)p->node->tokens / t;
    const uint8_t *codes = as->codes + ((p->image * heads + p->head) * windows + p->window) * t * t;
    uint8_t *gathered = p->token_rows ? scratch(fq, BUF_G, t * hd, 1) : NULL;
    if (p->token_rows && !gathered)
        return REPQ_ERR_NOMEM;
    size_t ldv;
    const uint8_t *vc = head_codes(vs, p, gathered, &ldv);
    const repq_quant_params *vq = &q->acts[v_slot].uniform;
    float *lev = scratch(fq, BUF_S, t * t, sizeof(float));
    double *da = scratch(fq, BUF_A, t * t, sizeof(double)), *dv = scratch(fq, BUF_B, t * hd, sizeof(double));
    double *c = scratch(fq, BUF_C, t * hd, sizeof(double));
    if (!lev || !da || !dv || !c)
        return REPQ_ERR_NOMEM;
    /* The attention operand as its fake-quantized values (a log code in the zero state
     * is 0), v as integers: each product is exact in double and their sum within a few
     * double roundings of the exact one. */
    repq_status st = is_log(at) ? repq_logq_dequantize(&at->log, codes, t * t, lev)
                                : repq_quant_dequantize(&at->uniform, codes, t * t, lev);
    if (st)
        return st;
    for (size_t i = 0; i < t * t; i++)
        da[i] = (double)lev[i];
    offsets_d(t, hd, vc, ldv, &vq->zero_point, 0, dv);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)t, (blasint)hd, (blasint)t, 1.0, da, (blasint)t,
                dv, (blasint)hd, 0.0, c, (blasint)hd);
    for (size_t i = 0; i < t; i++)
        for (size_t j = 0; j < hd; j++)
            p->out[i * p->ldout + j] = (float)((double)vq->scale * c[i * hd + j]);
    *done = true;
    return REPQ_OK;
}

static repq_status product(void *user, const repq_product *p, bool *done)
{
    fake_quant *fq = user;
    *done = false;
    switch (p->in) {
    case REPQ_QP_Q: return scores_product(fq, p, done);
    case REPQ_QP_ATTN: return attn_v_product(fq, p, done);
    case REPQ_QP_PATCH_IN:
    case REPQ_QP_QKV_IN:
    case REPQ_QP_PROJ_IN:
    case REPQ_QP_FC1_IN:
    case REPQ_QP_FC2_IN:
    case REPQ_QP_MERGE_IN:
    case REPQ_QP_HEAD_IN: return linear_product(fq, p, done);
    default: return REPQ_OK;
    }
}

static repq_status apply_only(void *user, int32_t slot, float *x, size_t rows, size_t cols)
{
    const repq_qmodel *q = user;
    return repq_act_quant_apply(&q->acts[slot], x, rows, cols);
}

repq_status repq_qmodel_forward_activations(const repq_qmodel *q, const repq_params *p, repq_tensor *images,
                                            repq_tensor *logits)
{
    repq_hook hook = {apply_only, (void *)q, true, NULL, true};
    return repq_net_forward_tensors(NULL, &q->base.allocator, q->net, p, &hook, images, logits);
}

REPQ_API repq_status repq_qmodel_forward(const repq_qmodel *q, repq_forward_mode mode,
                                         repq_tensor *images, repq_tensor *logits)
{
    /* Messages go to the caller's logits tensor: the qmodel is shared read-only between
     * threads, the logits belong to this call. */
    repq_object *err = repq_object_is(logits, REPQ_KIND_TENSOR) ? &logits->base : NULL;
    repq_clear_error(err);
    if (!repq_object_is(q, REPQ_KIND_QMODEL))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_qmodel_forward: not a qmodel");
    if (mode != REPQ_FORWARD_FAKE_QUANT && mode != REPQ_FORWARD_FLOAT)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_qmodel_forward: unknown mode %d", (int)mode);
    if (mode == REPQ_FORWARD_FLOAT && !q->has_float_weights)
        return repq_fail(err, REPQ_ERR_STATE, "repq_qmodel_forward: REPQ_FORWARD_FLOAT needs the float weights, "
                         "which a qmodel loaded from a file does not have (use REPQ_FORWARD_FAKE_QUANT)");
    fake_quant fq = {.q = q, .al = &q->base.allocator};
    repq_hook hook = {apply, &fq, true, product, true};
    bool fake = mode == REPQ_FORWARD_FAKE_QUANT;
    repq_status st = repq_net_forward_tensors(err, &q->base.allocator, q->net,
                                              fake ? &q->fq_params : &q->float_params, fake ? &hook : NULL, images,
                                              logits);
    for (int i = 0; i < REPQ_QP_COUNT; i++)
        repq_mem_free(fq.al, fq.st[i].codes);
    for (int i = 0; i < BUF_COUNT; i++)
        repq_mem_free(fq.al, fq.buf[i]);
    return repq_fail_default(err, st, "repq_qmodel_forward");
}
