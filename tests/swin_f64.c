#include "swin_f64.h"

#include "f64_ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* timm's rule for a square grid: window min(grid, target), shifted by target / 2 only
 * where the grid is larger than the window. */
static void window_of(const repq_swin_arch *a, int32_t side, int32_t block, int32_t *win, int32_t *shift)
{
    *win = a->window_h;
    *shift = block % 2 == 1 ? a->window_h / 2 : 0;
    if (side <= *win) {
        *win = side;
        *shift = 0;
    }
}

/* torch.roll(x, (k, k), dims=(0, 1)) of a [side, side, c] grid: out[(y + k) mod side] = x[y]. */
static void roll(const double *x, int32_t side, size_t c, int32_t k, double *out)
{
    for (int32_t y = 0; y < side; y++)
        for (int32_t xx = 0; xx < side; xx++) {
            const int32_t ty = ((y + k) % side + side) % side, tx = ((xx + k) % side + side) % side;
            memcpy(out + ((size_t)ty * (size_t)side + (size_t)tx) * c, x + ((size_t)y * (size_t)side + (size_t)xx) * c,
                   c * sizeof *x);
        }
}

/* window_partition: view(side/w, w, side/w, w, c).permute(0, 2, 1, 3, 4); `reverse` is
 * window_reverse, the same permutation read the other way. */
static void partition(const double *x, int32_t side, int32_t w, size_t c, bool reverse, double *out)
{
    const int32_t nw = side / w;
    size_t o = 0;
    for (int32_t a = 0; a < nw; a++)
        for (int32_t b = 0; b < nw; b++)
            for (int32_t i = 0; i < w; i++)
                for (int32_t j = 0; j < w; j++, o++) {
                    const size_t src = ((size_t)(a * w + i) * (size_t)side + (size_t)(b * w + j)) * c;
                    if (reverse)
                        memcpy(out + src, x + o * c, c * sizeof *x);
                    else
                        memcpy(out + o * c, x + src, c * sizeof *x);
                }
}

/* Python slice bounds of (start, stop) on an axis of n; stop 0 with open means None. */
static void slice_bounds(int32_t n, int32_t start, int32_t stop, bool open, int32_t *lo, int32_t *hi)
{
    *lo = start < 0 ? n + start : start;
    *hi = open ? n : stop < 0 ? n + stop : stop;
}

/* timm's attn_mask [windows, w*w, w*w] of 0 / -100, from img_mask's nine slices;
 * `img` [side * side] and `tmp` [side * side] are scratch. */
static void build_mask(int32_t side, int32_t w, int32_t shift, double *img, double *tmp, double *mask)
{
    const int32_t bounds[3][3] = {{0, -w, 0}, {-w, -shift, 0}, {-shift, 0, 1}};
    double cnt = 0.0;
    for (int s = 0; s < 3; s++)
        for (int t = 0; t < 3; t++, cnt += 1.0) {
            int32_t y0, y1, x0, x1;
            slice_bounds(side, bounds[s][0], bounds[s][1], bounds[s][2] != 0, &y0, &y1);
            slice_bounds(side, bounds[t][0], bounds[t][1], bounds[t][2] != 0, &x0, &x1);
            for (int32_t y = y0; y < y1; y++)
                for (int32_t x = x0; x < x1; x++)
                    img[y * side + x] = cnt;
        }
    partition(img, side, w, 1, false, tmp);
    const size_t area = (size_t)w * (size_t)w, windows = (size_t)(side / w) * (size_t)(side / w);
    for (size_t k = 0; k < windows; k++)
        for (size_t i = 0; i < area; i++)
            for (size_t j = 0; j < area; j++) {
                /* mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2): [k][i][j] = m[j] - m[i]. */
                const double diff = tmp[k * area + j] - tmp[k * area + i];
                mask[(k * area + i) * area + j] = diff != 0.0 ? -100.0 : 0.0;
            }
}

/* get_relative_position_index for a w x w window, literally: coords (2, w*w) from
 * meshgrid(ij), pairwise differences, shifted by w - 1, the row one scaled by 2w - 1. */
static void relative_index(int32_t w, int32_t *index)
{
    const int32_t area = w * w;
    for (int32_t i = 0; i < area; i++)
        for (int32_t j = 0; j < area; j++) {
            int32_t rel[2] = {i / w - j / w, i % w - j % w};
            rel[0] += w - 1;
            rel[1] += w - 1;
            rel[0] *= 2 * w - 1;
            index[i * area + j] = rel[0] + rel[1];
        }
}

/* Window attention of one image: x [T, d] (windows in window order), out [T, d]. */
static void window_attention(const double *xw, size_t windows, size_t area, size_t d, int32_t heads,
                             const swin_f64_block *bp, const int32_t *rpi, const double *mask, double *qkv,
                             double *scores, double *out)
{
    const size_t T = windows * area, hd = d / (size_t)heads;
    f64_linear(xw, T, d, bp->qkv_w, bp->qkv_b, 3 * d, qkv, false);
    const double scale = 1.0 / sqrt((double)hd);
    for (size_t k = 0; k < windows; k++)
        for (size_t h = 0; h < (size_t)heads; h++) {
            const double *base = qkv + k * area * 3 * d;
            for (size_t i = 0; i < area; i++) {
                double *row = scores + i * area;
                double top = -INFINITY;
                for (size_t j = 0; j < area; j++) {
                    double dot = 0.0;
                    for (size_t e = 0; e < hd; e++)
                        dot += base[i * 3 * d + h * hd + e] * scale * base[j * 3 * d + d + h * hd + e];
                    dot += bp->rel_table[(size_t)rpi[i * area + j] * (size_t)heads + h];
                    if (mask)
                        dot += mask[(k * area + i) * area + j];
                    row[j] = dot;
                    top = dot > top ? dot : top;
                }
                double sum = 0.0;
                for (size_t j = 0; j < area; j++) {
                    row[j] = exp(row[j] - top);
                    sum += row[j];
                }
                for (size_t e = 0; e < hd; e++) {
                    double acc = 0.0;
                    for (size_t j = 0; j < area; j++)
                        acc += row[j] / sum * base[j * 3 * d + 2 * d + h * hd + e];
                    out[(k * area + i) * d + h * hd + e] = acc;
                }
            }
        }
}

bool swin_f64_block_apply(const repq_swin_arch *a, int32_t stage, int32_t block, const swin_f64_block *bp,
                          double *x, size_t n)
{
    if (stage < 0 || stage >= a->stages || block < 0 || block >= a->depths[stage])
        return false;
    const int32_t side = (a->img_size / a->patch_size) >> stage;
    int32_t w, shift;
    window_of(a, side, block, &w, &shift);
    const size_t T = (size_t)side * (size_t)side, d = (size_t)a->embed_dim << stage;
    const size_t hid = (size_t)a->mlp_hidden[stage], area = (size_t)w * (size_t)w, windows = T / area;
    double *mem = malloc((6 * T * d + T * hid + area * area + windows * area * area + 2 * T) * sizeof *mem);
    int32_t *rpi = malloc(area * area * sizeof *rpi);
    if (!mem || !rpi) {
        free(mem);
        free(rpi);
        return false;
    }
    double *xn = mem, *rolled = xn + T * d, *xw = rolled + T * d, *qkv = xw + T * d; /* qkv: 3 T d */
    double *hidden = qkv + 3 * T * d, *scores = hidden + T * hid, *mask = scores + area * area;
    double *img = mask + windows * area * area, *tmp = img + T;
    double *attn = xn; /* xn is dead once partitioned */
    relative_index(w, rpi);
    if (shift > 0)
        build_mask(side, w, shift, img, tmp, mask);
    for (size_t im = 0; im < n; im++) {
        double *xi = x + im * T * d;
        f64_layer_norm(xi, T, d, bp->norm1_w, bp->norm1_b, (double)a->norm_eps, xn);
        if (shift > 0)
            roll(xn, side, d, -shift, rolled);
        else
            memcpy(rolled, xn, T * d * sizeof *xn);
        partition(rolled, side, w, d, false, xw);
        window_attention(xw, windows, area, d, a->num_heads[stage], bp, rpi, shift > 0 ? mask : NULL, qkv,
                         scores, attn);
        f64_linear(attn, T, d, bp->proj_w, bp->proj_b, d, xw, false);
        partition(xw, side, w, d, true, rolled);
        if (shift > 0)
            roll(rolled, side, d, shift, xn);
        else
            memcpy(xn, rolled, T * d * sizeof *xn);
        for (size_t i = 0; i < T * d; i++)
            xi[i] += xn[i];
        f64_layer_norm(xi, T, d, bp->norm2_w, bp->norm2_b, (double)a->norm_eps, xn);
        f64_linear(xn, T, d, bp->fc1_w, bp->fc1_b, hid, hidden, false);
        for (size_t i = 0; i < T * hid; i++)
            hidden[i] = 0.5 * hidden[i] * (1.0 + erf(hidden[i] / sqrt(2.0)));
        f64_linear(hidden, T, hid, bp->fc2_w, bp->fc2_b, d, xn, false);
        for (size_t i = 0; i < T * d; i++)
            xi[i] += xn[i];
    }
    free(mem);
    free(rpi);
    return true;
}

/* PatchMerging of one image: x [side, side, c] -> [side/2, side/2, 2c] through the
 * concat of x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2], norm, reduction. */
static void merge(const repq_swin_arch *a, const swin_f64_stage *st, const double *x, int32_t side, size_t c,
                  double *cat, double *out)
{
    const int32_t half = side / 2;
    const int32_t offsets[4][2] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}};
    for (int32_t y = 0; y < half; y++)
        for (int32_t xx = 0; xx < half; xx++)
            for (int part = 0; part < 4; part++) {
                const size_t src = (size_t)(2 * y + offsets[part][0]) * (size_t)side + (size_t)(2 * xx + offsets[part][1]);
                memcpy(cat + ((size_t)(y * half + xx) * 4 + (size_t)part) * c, x + src * c, c * sizeof *x);
            }
    const size_t T = (size_t)half * (size_t)half;
    f64_layer_norm(cat, T, 4 * c, st->merge_norm_w, st->merge_norm_b, (double)a->norm_eps, cat);
    f64_linear(cat, T, 4 * c, st->merge_reduction_w, NULL, 2 * c, out, false);
}

bool swin_f64_forward(const repq_swin_arch *a, const swin_f64_params *p, const uint8_t *images, size_t n,
                      double *logits)
{
    const int32_t side0 = a->img_size / a->patch_size, P = a->patch_size, img = a->img_size;
    const size_t T0 = (size_t)side0 * (size_t)side0, c0 = (size_t)a->embed_dim, pd = 3 * (size_t)P * (size_t)P;
    /* Every stage holds T0 * c0 / 2^s values at most; merging needs T0 * c0 for its concat. */
    double *x = malloc(T0 * c0 * sizeof *x), *buf = malloc(T0 * (pd > c0 ? pd : c0) * sizeof *buf);
    if (!x || !buf) {
        free(x);
        free(buf);
        return false;
    }
    bool ok = true;
    for (size_t im = 0; im < n && ok; im++) {
        const uint8_t *pix = images + im * 3 * (size_t)img * (size_t)img;
        /* Patches as rows (c, ky, kx), the order of the conv weight. */
        for (int32_t ty = 0; ty < side0; ty++)
            for (int32_t tx = 0; tx < side0; tx++)
                for (int32_t c = 0; c < 3; c++)
                    for (int32_t ky = 0; ky < P; ky++)
                        for (int32_t kx = 0; kx < P; kx++) {
                            const double v = pix[((size_t)c * (size_t)img + (size_t)(ty * P + ky)) * (size_t)img +
                                                 (size_t)(tx * P + kx)];
                            buf[(size_t)(ty * side0 + tx) * pd + ((size_t)c * (size_t)P + (size_t)ky) * (size_t)P +
                                (size_t)kx] = (v * (double)a->pixel_scale - (double)a->mean[c]) / (double)a->std[c];
                        }
        f64_linear(buf, T0, pd, p->patch_w, p->patch_b, c0, x, false);
        f64_layer_norm(x, T0, c0, p->patch_norm_w, p->patch_norm_b, (double)a->norm_eps, x);
        int32_t side = side0;
        size_t c = c0;
        for (int32_t s = 0; s < a->stages && ok; s++) {
            if (s > 0) {
                merge(a, &p->stages[s], x, side, c, buf, x);
                side /= 2;
                c *= 2;
            }
            for (int32_t b = 0; b < a->depths[s] && ok; b++)
                ok = swin_f64_block_apply(a, s, b, &p->stages[s].blocks[b], x, 1);
        }
        const size_t T = (size_t)side * (size_t)side;
        f64_layer_norm(x, T, c, p->norm_w, p->norm_b, (double)a->norm_eps, x);
        for (size_t i = 0; i < c; i++) {
            double sum = 0.0;
            for (size_t t = 0; t < T; t++)
                sum += x[t * c + i];
            buf[i] = sum / (double)T;
        }
        f64_linear(buf, 1, c, p->head_w, p->head_b, (size_t)a->num_classes, logits + im * (size_t)a->num_classes, false);
    }
    free(x);
    free(buf);
    return ok;
}

/* ---- parameters from a file ---- */

typedef struct loader {
    const repq_st_file *file;
    double *next;
    bool ok;
} loader;

static const double *take(loader *l, size_t count, const char *fmt, int32_t i, int32_t j)
{
    char name[128];
    snprintf(name, sizeof name, fmt, i, j);
    const repq_st_tensor *t = repq_st_find(l->file, name);
    if (!l->ok)
        return NULL;
    if (!t || t->numel != count) {
        fprintf(stderr, "swin_f64: %s is %s\n", name, t ? "of the wrong size" : "missing");
        l->ok = false;
        return NULL;
    }
    double *out = l->next;
    for (size_t k = 0; k < count; k++) {
        uint16_t h;
        float f;
        double v;
        switch (t->dtype) {
        case REPQ_ST_F16:
            memcpy(&h, t->data + 2 * k, 2);
            out[k] = repq_st_f16_to_f32(h);
            break;
        case REPQ_ST_BF16:
            memcpy(&h, t->data + 2 * k, 2);
            out[k] = repq_st_bf16_to_f32(h);
            break;
        case REPQ_ST_F32:
            memcpy(&f, t->data + 4 * k, 4);
            out[k] = f;
            break;
        case REPQ_ST_F64:
            memcpy(&v, t->data + 8 * k, 8);
            out[k] = v;
            break;
        default:
            fprintf(stderr, "swin_f64: %s has dtype %s\n", name, repq_st_dtype_name(t->dtype));
            l->ok = false;
            return NULL;
        }
    }
    l->next += count;
    return out;
}

bool swin_f64_params_load(const repq_swin_arch *a, const repq_st_file *file, bool legacy, swin_f64_params *p)
{
    memset(p, 0, sizeof *p);
    size_t total = 0, blocks = 0;
    for (size_t i = 0; i < repq_st_count(file); i++)
        total += repq_st_tensor_at(file, i)->numel; /* an upper bound of what is read */
    for (int32_t s = 0; s < a->stages; s++)
        blocks += (size_t)a->depths[s];
    p->owned = malloc(total * sizeof *p->owned);
    p->owned_blocks = calloc(blocks, sizeof *p->owned_blocks);
    if (!p->owned || !p->owned_blocks) {
        swin_f64_params_free(p);
        return false;
    }
    loader l = {file, p->owned, true};
    const size_t c0 = (size_t)a->embed_dim, P = (size_t)a->patch_size;
    p->patch_w = take(&l, c0 * 3 * P * P, "patch_embed.proj.weight", 0, 0);
    p->patch_b = take(&l, c0, "patch_embed.proj.bias", 0, 0);
    p->patch_norm_w = take(&l, c0, "patch_embed.norm.weight", 0, 0);
    p->patch_norm_b = take(&l, c0, "patch_embed.norm.bias", 0, 0);
    swin_f64_block *next_block = p->owned_blocks;
    for (int32_t s = 0; s < a->stages; s++) {
        const size_t d = c0 << s, hid = (size_t)a->mlp_hidden[s], heads = (size_t)a->num_heads[s];
        swin_f64_stage *st = &p->stages[s];
        if (s > 0) {
            const int32_t at = legacy ? s - 1 : s;
            st->merge_norm_w = take(&l, 2 * d, "layers.%d.downsample.norm.weight", at, 0);
            st->merge_norm_b = take(&l, 2 * d, "layers.%d.downsample.norm.bias", at, 0);
            st->merge_reduction_w = take(&l, d * 2 * d, "layers.%d.downsample.reduction.weight", at, 0);
        }
        st->blocks = next_block;
        next_block += a->depths[s];
        const int32_t side = (a->img_size / a->patch_size) >> s;
        for (int32_t b = 0; b < a->depths[s]; b++) {
            int32_t w, shift;
            window_of(a, side, b, &w, &shift);
            const size_t table = (size_t)(2 * w - 1) * (size_t)(2 * w - 1);
            swin_f64_block *bp = &st->blocks[b];
            bp->norm1_w = take(&l, d, "layers.%d.blocks.%d.norm1.weight", s, b);
            bp->norm1_b = take(&l, d, "layers.%d.blocks.%d.norm1.bias", s, b);
            bp->qkv_w = take(&l, 3 * d * d, "layers.%d.blocks.%d.attn.qkv.weight", s, b);
            if (a->qkv_bias)
                bp->qkv_b = take(&l, 3 * d, "layers.%d.blocks.%d.attn.qkv.bias", s, b);
            bp->rel_table = take(&l, table * heads, "layers.%d.blocks.%d.attn.relative_position_bias_table", s, b);
            bp->proj_w = take(&l, d * d, "layers.%d.blocks.%d.attn.proj.weight", s, b);
            bp->proj_b = take(&l, d, "layers.%d.blocks.%d.attn.proj.bias", s, b);
            bp->norm2_w = take(&l, d, "layers.%d.blocks.%d.norm2.weight", s, b);
            bp->norm2_b = take(&l, d, "layers.%d.blocks.%d.norm2.bias", s, b);
            bp->fc1_w = take(&l, hid * d, "layers.%d.blocks.%d.mlp.fc1.weight", s, b);
            bp->fc1_b = take(&l, hid, "layers.%d.blocks.%d.mlp.fc1.bias", s, b);
            bp->fc2_w = take(&l, d * hid, "layers.%d.blocks.%d.mlp.fc2.weight", s, b);
            bp->fc2_b = take(&l, d, "layers.%d.blocks.%d.mlp.fc2.bias", s, b);
        }
    }
    const size_t dl = c0 << (a->stages - 1), K = (size_t)a->num_classes;
    p->norm_w = take(&l, dl, "norm.weight", 0, 0);
    p->norm_b = take(&l, dl, "norm.bias", 0, 0);
    p->head_w = take(&l, K * dl, legacy ? "head.weight" : "head.fc.weight", 0, 0);
    p->head_b = take(&l, K, legacy ? "head.bias" : "head.fc.bias", 0, 0);
    if (!l.ok)
        swin_f64_params_free(p);
    return l.ok;
}

void swin_f64_params_free(swin_f64_params *p)
{
    free(p->owned);
    free(p->owned_blocks);
    memset(p, 0, sizeof *p);
}
