#include "vit_f64.h"
#include "vit_layout.h"

#include "f64_ops.h"
#include "model/float_ops.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Images per pass: bounds the activations held (about 70 MB for the bundled model). */
#define CHUNK 64

/* The parameters as doubles, laid out as the float ones. */
typedef struct params64 {
    const double *mem;
    const repq_params *src;
} params64;

static const double *as_double(const params64 *p, const float *f)
{
    return p->mem + (f - p->src->arena);
}

/* ---- quantizers, in double ---- */

/* nearbyint in the default rounding mode (ties to even), without a call into libm: below
 * 2^51 in magnitude, adding and subtracting 1.5 * 2^52 leaves exactly the rounded value
 * (the sum's last bit is the units' bit). Only the sign of a zero result may differ,
 * which no level below depends on. */
static inline double round_even(double v)
{
#if FLT_EVAL_METHOD != 0
    return nearbyint(v); /* the sum could be kept wider than double (x87) */
#else
    if (!(fabs(v) < 0x1p51))
        return nearbyint(v);
    return (v + 0x1.8p52) - 0x1.8p52;
#endif
}

static inline double uniform_level(double scale, double z, double qmax, double x)
{
    double c = round_even(x / scale) + z;
    c = c < 0.0 ? 0.0 : c > qmax ? qmax : c; /* comparisons: gcc calls libm for fmin/fmax */
    return scale * (c - z);
}

static double two_region_level(const repq_tworeg_params *q, double x)
{
    const double s = (double)q->scale, fine = ldexp(1.0, q->neg_shift);
    const double z = (double)q->zero_point, top = (double)((1 << q->bits) - 1) - z;
    const double v = x / s;
    if (v >= 0.0) {
        const double c = round_even(v);
        return s * (c < top ? c : top);
    }
    const double c = round_even(v * fine);
    return s * (c > -z ? c : -z) / fine;
}

/* Log levels s 2^-c (base 2) or s 2^(-c / 2) (base sqrt 2), c = round(-log2(x / s)) or
 * round(-2 log2(x / s)) in [0, 2^b - 1]; beyond the last level, and for x <= 0, the value
 * is 0. */
static double log_level(const repq_logq_params *q, double x)
{
    if (!(x > 0.0))
        return 0.0;
    const bool sqrt2 = q->base == REPQ_LOG_SQRT2;
    const double l = log2(x / (double)q->scale);
    double c = round_even(sqrt2 ? -2.0 * l : -l);
    if (c >= (double)(1 << q->bits))
        return 0.0;
    c = c < 0.0 ? 0.0 : c;
    return (double)q->scale * exp2(sqrt2 ? -c / 2.0 : -c);
}

/* x[i] for first <= i < n, every step-th, to the uniform grid q. */
static void uniform_levels(const repq_quant_params *q, double *x, size_t first, size_t n, size_t step)
{
    const double scale = (double)q->scale, z = (double)q->zero_point, qmax = (double)((1 << q->bits) - 1);
    for (size_t i = first; i < n; i += step)
        x[i] = uniform_level(scale, z, qmax, x[i]);
}

bool vit_f64_fake_quantize(const repq_act_quant *aq, double *x, size_t rows, size_t cols)
{
    const size_t n = rows * cols;
    switch (aq->kind) {
    case REPQ_AQ_NONE:
        return true;
    case REPQ_AQ_UNIFORM:
        uniform_levels(&aq->uniform, x, 0, n, 1);
        return true;
    case REPQ_AQ_UNIFORM_CHANNEL:
        if ((size_t)aq->channels != cols)
            return false;
        for (size_t j = 0; j < cols; j++)
            uniform_levels(&aq->per_channel[j], x, j, n, cols);
        return true;
    case REPQ_AQ_TWO_REGION:
        for (size_t i = 0; i < n; i++)
            x[i] = two_region_level(&aq->two, x[i]);
        return true;
    case REPQ_AQ_LOG_SQRT2:
    case REPQ_AQ_LOG2_PARITY:
        for (size_t i = 0; i < n; i++)
            x[i] = log_level(&aq->log, x[i]);
        return true;
    }
    return false;
}

typedef struct forward64 {
    const repq_arch *a;
    const repq_act_quant *acts;
    size_t n, t, d, heads, hd, hid;
    double *x, *h, *qkv, *o, *scores, *mlp, *patches;
} forward64;

static bool quantize_at(const forward64 *f, int32_t block, repq_qpoint pt, double *x, size_t rows, size_t cols)
{
    return !f->acts || vit_f64_fake_quantize(&f->acts[vit_act_index(f->a, block, pt)], x, rows, cols);
}

static void softmax_row(double *r, size_t n)
{
    double mx = r[0], sum = 0.0;
    for (size_t j = 1; j < n; j++)
        mx = r[j] > mx ? r[j] : mx;
    for (size_t j = 0; j < n; j++)
        sum += r[j] = exp(r[j] - mx);
    for (size_t j = 0; j < n; j++)
        r[j] /= sum;
}

static bool attention(const forward64 *f, const params64 *p, const repq_block_params *blk, int32_t bi)
{
    const size_t t = f->t, d = f->d, rows = f->n * t, hd = f->hd;
    f64_layer_norm(f->x, rows, d, as_double(p, blk->norm1_w), as_double(p, blk->norm1_b), (double)f->a->norm_eps, f->h);
    if (!quantize_at(f, bi, REPQ_QP_QKV_IN, f->h, rows, d))
        return false;
    f64_linear(f->h, rows, d, as_double(p, blk->qkv_w), as_double(p, blk->qkv_b), 3 * d, f->qkv, false);
    /* q, k, v are the column blocks [0, d), [d, 2d), [2d, 3d) of qkv's output; each is
     * quantized as its own [rows, d] tensor. */
    double *part = f->h; /* free again: one part at a time */
    const repq_qpoint pts[3] = {REPQ_QP_Q, REPQ_QP_K, REPQ_QP_V};
    for (size_t q = 0; q < 3; q++) {
        for (size_t r = 0; r < rows; r++)
            memcpy(part + r * d, f->qkv + r * 3 * d + q * d, d * sizeof *part);
        if (!quantize_at(f, bi, pts[q], part, rows, d))
            return false;
        for (size_t r = 0; r < rows; r++)
            memcpy(f->qkv + r * 3 * d + q * d, part + r * d, d * sizeof *part);
    }
    const double scale = 1.0 / sqrt((double)hd);
    for (size_t b = 0; b < f->n; b++)
        for (size_t hh = 0; hh < f->heads; hh++) {
            const double *q = f->qkv + b * t * 3 * d + hh * hd, *k = q + d;
            double *sc = f->scores + (b * f->heads + hh) * t * t;
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)t, (blasint)t, (blasint)hd, scale, q,
                        (blasint)(3 * d), k, (blasint)(3 * d), 0.0, sc, (blasint)t);
            for (size_t i = 0; i < t; i++)
                softmax_row(sc + i * t, t);
        }
    if (!quantize_at(f, bi, REPQ_QP_ATTN, f->scores, f->n * f->heads * t, t))
        return false;
    for (size_t b = 0; b < f->n; b++)
        for (size_t hh = 0; hh < f->heads; hh++)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)t, (blasint)hd, (blasint)t, 1.0,
                        f->scores + (b * f->heads + hh) * t * t, (blasint)t,
                        f->qkv + b * t * 3 * d + 2 * d + hh * hd, (blasint)(3 * d), 0.0,
                        f->o + b * t * d + hh * hd, (blasint)d);
    if (!quantize_at(f, bi, REPQ_QP_PROJ_IN, f->o, rows, d))
        return false;
    f64_linear(f->o, rows, d, as_double(p, blk->proj_w), as_double(p, blk->proj_b), d, f->x, true);
    return true;
}

/* The integer session's GELU (model/float_ops.h's quartic pieces), in double: what a
 * quantized forward computes before fc2's input quantizer. */
static double gelu_quartic(double y)
{
    if (y >= 8.0)
        return y;
    const double yc = y < -8.0 ? -8.0 : y;
    const double at = 2.0 * yc + 16.0;
    const int piece = (int)(at < 31.5 ? at : 31.5); /* a comparison: gcc calls libm for fmin */
    const double u = yc - (0.5 * piece - 7.75);
    double g = repq_gelu_quartic_coef[4][piece];
    for (int k = 3; k >= 0; k--)
        g = g * u + repq_gelu_quartic_coef[k][piece];
    return g;
}

static bool mlp(const forward64 *f, const params64 *p, const repq_block_params *blk, int32_t bi)
{
    const size_t rows = f->n * f->t, d = f->d, hid = f->hid;
    f64_layer_norm(f->x, rows, d, as_double(p, blk->norm2_w), as_double(p, blk->norm2_b), (double)f->a->norm_eps, f->h);
    if (!quantize_at(f, bi, REPQ_QP_FC1_IN, f->h, rows, d))
        return false;
    f64_linear(f->h, rows, d, as_double(p, blk->fc1_w), as_double(p, blk->fc1_b), hid, f->mlp, false);
    for (size_t i = 0; i < rows * hid; i++)
        f->mlp[i] = f->acts ? gelu_quartic(f->mlp[i]) : 0.5 * f->mlp[i] * (1.0 + erf(f->mlp[i] / sqrt(2.0)));
    if (!quantize_at(f, bi, REPQ_QP_FC2_IN, f->mlp, rows, hid))
        return false;
    f64_linear(f->mlp, rows, hid, as_double(p, blk->fc2_w), as_double(p, blk->fc2_b), d, f->x, true);
    return true;
}

/* Patches flattened as (channel, row, column), the convolution weight's order. */
static void patches_of(const repq_arch *a, const uint8_t *images, size_t n, double *out)
{
    const size_t s = (size_t)a->img_size, ps = (size_t)a->patch_size, side = s / ps, ch = (size_t)a->in_chans;
    for (size_t b = 0; b < n; b++)
        for (size_t py = 0; py < side; py++)
            for (size_t px = 0; px < side; px++)
                for (size_t c = 0; c < ch; c++)
                    for (size_t r = 0; r < ps; r++)
                        for (size_t col = 0; col < ps; col++) {
                            const uint8_t u = images[((b * ch + c) * s + py * ps + r) * s + px * ps + col];
                            const double v = (double)u * (double)a->pixel_scale;
                            *out++ = (v - (double)a->mean[c]) / (double)a->std[c];
                        }
}

static bool forward_chunk(forward64 *f, const params64 *p, const uint8_t *images, double *logits)
{
    const repq_arch *a = f->a;
    const repq_params *src = p->src;
    const size_t t = f->t, d = f->d, np = t - 1, pd = (size_t)repq_vit_patch_dim(a), k = (size_t)a->num_classes;
    patches_of(a, images, f->n, f->patches);
    if (!quantize_at(f, -1, REPQ_QP_PATCH_IN, f->patches, f->n * np, pd))
        return false;
    const double *pos = as_double(p, src->pos_embed), *cls = as_double(p, src->cls_token);
    for (size_t b = 0; b < f->n; b++) {
        double *xb = f->x + b * t * d;
        f64_linear(f->patches + b * np * pd, np, pd, as_double(p, src->patch_w), as_double(p, src->patch_b), d, xb + d,
               false);
        for (size_t j = 0; j < d; j++)
            xb[j] = cls[j];
        for (size_t j = 0; j < t * d; j++)
            xb[j] += pos[j];
    }
    for (int32_t bi = 0; bi < a->depth; bi++)
        if (!attention(f, p, &src->blocks[bi], bi) || !mlp(f, p, &src->blocks[bi], bi))
            return false;
    for (size_t b = 0; b < f->n; b++)
        memcpy(f->o + b * d, f->x + b * t * d, d * sizeof *f->o);
    f64_layer_norm(f->o, f->n, d, as_double(p, src->norm_w), as_double(p, src->norm_b), (double)a->norm_eps, f->h);
    if (!quantize_at(f, -1, REPQ_QP_HEAD_IN, f->h, f->n, d))
        return false;
    f64_linear(f->h, f->n, d, as_double(p, src->head_w), as_double(p, src->head_b), k, logits, false);
    return true;
}

double *vit_f64_params(const repq_params *p)
{
    double *values = malloc(p->arena_floats * sizeof *values);
    if (values)
        for (size_t i = 0; i < p->arena_floats; i++)
            values[i] = (double)p->arena[i];
    return values;
}

static void forward64_free(forward64 *f)
{
    double *bufs[] = {f->x, f->h, f->qkv, f->o, f->scores, f->mlp, f->patches};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
}

/* Buffers for up to `images` images at a time; false when out of memory (nothing held). */
static bool forward64_alloc(forward64 *f, const repq_arch *a, const repq_act_quant *acts, size_t images)
{
    const size_t t = (size_t)repq_vit_tokens(a), d = (size_t)a->embed_dim, heads = (size_t)a->num_heads;
    const size_t hid = (size_t)a->mlp_hidden, rows = images * t, pd = (size_t)repq_vit_patch_dim(a);
    *f = (forward64){a, acts, 0, t, d, heads, d / heads, hid,
                     malloc(rows * d * sizeof(double)), malloc(rows * d * sizeof(double)),
                     malloc(rows * 3 * d * sizeof(double)), malloc(rows * d * sizeof(double)),
                     malloc(images * heads * t * t * sizeof(double)), malloc(rows * hid * sizeof(double)),
                     malloc(images * (t - 1) * pd * sizeof(double))};
    if (f->x && f->h && f->qkv && f->o && f->scores && f->mlp && f->patches)
        return true;
    forward64_free(f);
    return false;
}

bool vit_f64_forward(const repq_arch *a, const repq_params *layout, const double *values,
                     const repq_act_quant *acts, const uint8_t *images, size_t n, double *logits)
{
    const params64 p64 = {values, layout};
    const size_t image_bytes = (size_t)a->in_chans * (size_t)a->img_size * (size_t)a->img_size;
    forward64 f;
    if (!forward64_alloc(&f, a, acts, CHUNK))
        return false;
    /* One OpenBLAS thread: the per-head products are too small to share, and handing
     * them between threads cost more CPU than it saved (500 images: 57 s wall, 113 s
     * CPU with two threads; 67 s, 67 s with one), which matters when the accuracy groups
     * run side by side. */
    const int threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    bool ok = true;
    for (size_t i0 = 0; ok && i0 < n; i0 += CHUNK) {
        f.n = n - i0 < CHUNK ? n - i0 : CHUNK;
        ok = forward_chunk(&f, &p64, images + i0 * image_bytes, logits + i0 * (size_t)a->num_classes);
    }
    openblas_set_num_threads(threads);
    forward64_free(&f);
    return ok;
}

bool vit_f64_block(const repq_arch *a, const repq_params *layout, const double *values, int32_t block,
                   double *x, size_t n)
{
    const params64 p64 = {values, layout};
    forward64 f;
    if (block < 0 || block >= a->depth || !forward64_alloc(&f, a, NULL, n))
        return false;
    f.n = n;
    const size_t bytes = n * f.t * f.d * sizeof *x;
    memcpy(f.x, x, bytes);
    const bool ok = attention(&f, &p64, &layout->blocks[block], block) && mlp(&f, &p64, &layout->blocks[block], block);
    memcpy(x, f.x, bytes);
    forward64_free(&f);
    return ok;
}
