/* Float -> uint8 quantization and GEMM epilogues: scalar references and AVX2 and
 * AVX-512 versions that reproduce them bit for bit (same float operations in the
 * same order: a correctly rounded division, round-half-even, a product then a sum). */
#include "kernels/quantize_f32.h"

#include <math.h>

#include <immintrin.h>

#include "core/vectorize.h"
#include "model/float_ops.h"

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

static inline uint8_t quant_one(float x, float s, float zf, float qmax)
{
    float t = rintf(x / s) + zf;
    return (uint8_t)fminf(fmaxf(t, 0.0f), qmax);
}

/* The values of calib/two_region.c's comparisons: fminf/fmaxf differ from them only
 * for NaN, which never reaches the first branch and leaves the second at -z. */
static inline uint8_t two_region_one(float x, float s, float zf, float top, float p2m)
{
    const float q = x / s;
    float c;
    if (q >= 0.0f)
        c = fminf(rintf(q), top) * p2m;
    else
        c = fmaxf(rintf(q * p2m), -zf);
    return (uint8_t)(c + zf);
}

static inline int32_t exact_one(int32_t acc, int32_t rowsum, int32_t colmul, int32_t colconst)
{
    return acc + colmul * rowsum + colconst;
}

/* ---- scalar references ------------------------------------------------------ */

static void quantize_scalar(size_t n, const float *x, float s, float zf, float qmax, uint8_t *codes)
{
    for (size_t i = 0; i < n; i++)
        codes[i] = quant_one(x[i], s, zf, qmax);
}

static void two_region_scalar(size_t n, const float *x, float s, float zf, float top, float p2m, uint8_t *codes)
{
    for (size_t i = 0; i < n; i++)
        codes[i] = two_region_one(x[i], s, zf, top, p2m);
}

static void correct_scalar(size_t m, size_t n, int32_t *acc, size_t ldacc, const int32_t *rowsum,
                           const int32_t *colmul, const int32_t *colconst)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++)
            acc[i * ldacc + j] = exact_one(acc[i * ldacc + j], rowsum[i], colmul[j], colconst[j]);
}

static void out_f32_scalar(size_t m, size_t n, const int32_t *acc, size_t ldacc, const int32_t *rowsum,
                           const int32_t *colmul, const int32_t *colconst, const float *scale,
                           const float *bias, bool accumulate, float *out, size_t ldout)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float p = (float)exact_one(acc[i * ldacc + j], rowsum[i], colmul[j], colconst[j]) * scale[j];
            float y = p + (bias ? bias[j] : 0.0f);
            if (accumulate)
                out[i * ldout + j] += y;
            else
                out[i * ldout + j] = y;
        }
}

static void out_u8_scalar(size_t m, size_t n, const int32_t *acc, size_t ldacc, const int32_t *rowsum,
                          const int32_t *colmul, const int32_t *colconst, const float *scale,
                          const float *bias, float post, float qs, float zf, float qmax, uint8_t *out,
                          size_t ldout)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float p = (float)exact_one(acc[i * ldacc + j], rowsum[i], colmul[j], colconst[j]) * scale[j];
            float y = p + (bias ? bias[j] : 0.0f);
            out[i * ldout + j] = quant_one(y * post, qs, zf, qmax);
        }
}

/* fc2's input code of a GELU value g, the fused epilogue's rule (quantize_f32.h):
 * w = g (1 / unit), unit = s, or s 2^-shift on the two-region quantizer's negative
 * side (g < 0), clamped to +-limit (past every code, NaN to +limit), rounded half to
 * even. */
typedef struct gelu_recip {
    float pos, neg, limit;
} gelu_recip;

static gelu_recip gelu_recip_of(const repq_gelu_codes *q)
{
    const float inv = 1.0f / q->scale;
    return (gelu_recip){inv, q->two_region ? inv * (float)(1 << q->shift) : inv,
                        fabsf((float)q->zero_point) + (float)(1 << q->bits) + 1.0f};
}

static inline int32_t gelu_w_round(float w, float limit)
{
    w = w < limit ? w : limit;
    w = w > -limit ? w : -limit;
    return (int32_t)rintf(w);
}

static inline uint8_t gelu_code_of_value(float g, const repq_gelu_codes *q, gelu_recip r)
{
    if (q->two_region) {
        if (g < 0.0f) {
            const int32_t c = gelu_w_round(g * r.neg, r.limit);
            return (uint8_t)((c > -q->zero_point ? c : -q->zero_point) + q->zero_point);
        }
        const int32_t c = gelu_w_round(g * r.pos, r.limit);
        return (uint8_t)((c < q->top ? c : q->top) * (1 << q->shift) + q->zero_point);
    }
    const int32_t c = gelu_w_round(g * r.pos, r.limit) + q->zero_point, qmax = (1 << q->bits) - 1;
    return (uint8_t)(c < 0 ? 0 : c > qmax ? qmax : c);
}

static void out_gelu_scalar(size_t m, size_t n, const int32_t *acc, size_t ldacc, const int32_t *rowsum,
                            const int32_t *colmul, const int32_t *colconst, const float *scale, const float *bias,
                            const repq_gelu_codes *q, uint8_t *out, size_t ldout)
{
    const gelu_recip r = gelu_recip_of(q);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float p = (float)exact_one(acc[i * ldacc + j], rowsum[i], colmul[j], colconst[j]) * scale[j];
            out[i * ldout + j] = gelu_code_of_value(repq_gelu_quartic_one(p + (bias ? bias[j] : 0.0f)), q, r);
        }
}


/* ---- AVX-512 ------------------------------------------------------------------- */

static inline __mmask16 tail_mask(size_t left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

/* max(t, 0) returns its second operand when t is NaN, like fmaxf(NaN, 0) = 0. */
AVX512_TARGET static inline __m512i quant_vec(__m512 x, __m512 s, __m512 zf, __m512 qmax)
{
    __m512 t = _mm512_roundscale_ps(_mm512_div_ps(x, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    t = _mm512_add_ps(t, zf);
    t = _mm512_min_ps(_mm512_max_ps(t, _mm512_setzero_ps()), qmax);
    return _mm512_cvttps_epi32(t);
}

/* The quantizer with a product by 1 / s in place of the division, whose throughput
 * bounded these kernels: w = x (1 / s) lies within |x / s| 2^-22 of the rounded
 * quotient, so both round to the same integer unless w lies within that of a
 * half-integer. A vector with such a lane (or a NaN or infinity) takes the division.
 * The allowance is taken at the largest |w| that is not clamped (wmax); beyond it
 * both give the same end code. Off (`on` false) where 1 / s would lose precision. */
/* The largest |x / s| (plus one) whose code is not a clamped end of [0, qmax] under
 * zero point zf: beyond it a rounding difference cannot change the code. */
static float unclamped_wmax(float zf, float qmax)
{
    return fmaxf(fabsf(zf), fabsf(qmax - zf)) + 1.0f;
}

typedef struct quant_recip {
    bool on;
    __m512 inv, limit;
} quant_recip;

AVX512_TARGET static inline quant_recip quant_recip_of(float s, float zf, float qmax)
{
    quant_recip r;
    const float wmax = unclamped_wmax(zf, qmax);
    r.on = s >= 0x1p-120f && s <= 0x1p120f;
    r.inv = _mm512_set1_ps(1.0f / s);
    r.limit = _mm512_set1_ps(0.5f - (wmax + 1.0f) * 0x1p-21f);
    return r;
}

AVX512_TARGET static inline __m512i quant_vec_recip(__m512 x, const quant_recip *r, __m512 s, __m512 zf,
                                                    __m512 qmax)
{
    if (r->on) {
        const __m512 w = _mm512_mul_ps(x, r->inv);
        const __m512 rw = _mm512_roundscale_ps(w, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m512 d = _mm512_abs_ps(_mm512_sub_ps(w, rw));
        if (!_mm512_cmp_ps_mask(d, r->limit, _CMP_NLT_UQ)) {
            const __m512 t = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(rw, zf), _mm512_setzero_ps()), qmax);
            return _mm512_cvttps_epi32(t);
        }
    }
    return quant_vec(x, s, zf, qmax);
}

/* rows x n values (strides ldx, ldcodes); the quantizer's constants are set up once. */
AVX512_TARGET static void quantize_avx512(size_t rows, size_t n, const float *x, size_t ldx, float s, float zf,
                                          float qmax, uint8_t *codes, size_t ldcodes)
{
    const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps(zf), vq = _mm512_set1_ps(qmax);
    const quant_recip rc = quant_recip_of(s, zf, qmax);
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < n; i += 16) {
            const __mmask16 mk = tail_mask(n - i);
            const __m512i c = quant_vec_recip(_mm512_maskz_loadu_ps(mk, x + r * ldx + i), &rc, vs, vz, vq);
            _mm512_mask_cvtepi32_storeu_epi8(codes + r * ldcodes + i, mk, c);
        }
}

/* model/float_ops.c's LayerNorm-to-codes on 16 lanes. The row statistics are its
 * REPQ_LANES partial sums exactly (lane l adds columns l, l + 16, ...; the tail's
 * columns go to lanes 0, 1, ... in order) and the same pairwise total, so mean and
 * 1 / std are the same floats; each value is ((x - mean) inv) g + b, a product, a
 * product and a sum, then the quantizer through 1 / s (quant_vec_recip). One row's
 * sums are a chain of dependent additions, which bounded gcc's clone of the plain
 * loop (2.2-2.4 Gelem/s here): NORM_ROWS rows at a time run side by side. */
#define NORM_ROWS 4
_Static_assert(REPQ_LANES == 16, "one AVX-512 vector holds the REPQ_LANES partial sums");

AVX512_TARGET static float lanes_total512(__m512 v)
{
    float lanes[REPQ_LANES];
    _mm512_storeu_ps(lanes, v);
    return repq_lanes_total(lanes);
}

/* Codes of `rows` (at most NORM_ROWS; a constant where inlined) rows. */
AVX512_TARGET static inline __attribute__((always_inline)) void
norm_rows_avx512(size_t rows, const float *x, size_t d, const float *g, const float *b, float eps,
                 const quant_recip *rc, __m512 vs, __m512 vz, __m512 vq, uint8_t *codes)
{
    const size_t whole = d / 16 * 16;
    const __mmask16 tail = tail_mask(d - whole);
    __m512 acc[NORM_ROWS], mean[NORM_ROWS], inv[NORM_ROWS];
#pragma GCC unroll 4
    for (size_t r = 0; r < rows; r++)
        acc[r] = _mm512_setzero_ps();
    for (size_t c = 0; c < whole; c += 16) {
#pragma GCC unroll 4
        for (size_t r = 0; r < rows; r++)
            acc[r] = _mm512_add_ps(acc[r], _mm512_loadu_ps(x + r * d + c));
    }
#pragma GCC unroll 4
    for (size_t r = 0; r < rows; r++) {
        acc[r] = _mm512_mask_add_ps(acc[r], tail, acc[r], _mm512_maskz_loadu_ps(tail, x + r * d + whole));
        mean[r] = _mm512_set1_ps(lanes_total512(acc[r]) / (float)d);
        acc[r] = _mm512_setzero_ps();
    }
    for (size_t c = 0; c < whole; c += 16) {
#pragma GCC unroll 4
        for (size_t r = 0; r < rows; r++) {
            const __m512 t = _mm512_sub_ps(_mm512_loadu_ps(x + r * d + c), mean[r]);
            acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(t, t));
        }
    }
#pragma GCC unroll 4
    for (size_t r = 0; r < rows; r++) {
        const __m512 t = _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + r * d + whole), mean[r]);
        acc[r] = _mm512_mask_add_ps(acc[r], tail, acc[r], _mm512_mul_ps(t, t));
        inv[r] = _mm512_set1_ps(1.0f / sqrtf(lanes_total512(acc[r]) / (float)d + eps));
    }
    for (size_t c = 0; c < d; c += 16) {
        const __mmask16 mk = tail_mask(d - c);
        const __m512 gc = _mm512_maskz_loadu_ps(mk, g + c), bc = _mm512_maskz_loadu_ps(mk, b + c);
#pragma GCC unroll 4
        for (size_t r = 0; r < rows; r++) {
            const __m512 n = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + r * d + c), mean[r]), inv[r]);
            const __m512 y = _mm512_add_ps(_mm512_mul_ps(n, gc), bc);
            _mm512_mask_cvtepi32_storeu_epi8(codes + r * d + c, mk, quant_vec_recip(y, rc, vs, vz, vq));
        }
    }
}

AVX512_TARGET static void layer_norm_codes_avx512(const float *x, size_t rows, size_t d, const float *g,
                                                  const float *b, float eps, float s, float zf, float qmax,
                                                  uint8_t *codes)
{
    const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps(zf), vq = _mm512_set1_ps(qmax);
    const quant_recip rc = quant_recip_of(s, zf, qmax);
    size_t i = 0;
    for (; i + NORM_ROWS <= rows; i += NORM_ROWS)
        norm_rows_avx512(NORM_ROWS, x + i * d, d, g, b, eps, &rc, vs, vz, vq, codes + i * d);
    for (; i < rows; i++)
        norm_rows_avx512(1, x + i * d, d, g, b, eps, &rc, vs, vz, vq, codes + i * d);
}

/* max(t, -z) returns -z when t is NaN, like fmaxf. */
AVX512_TARGET static inline __m512i two_region_vec(__m512 x, __m512 vs, __m512 vz, __m512 vt, __m512 vp, __m512 vnz)
{
    const __m512 q = _mm512_div_ps(x, vs);
    const __mmask16 pos = _mm512_cmp_ps_mask(q, _mm512_setzero_ps(), _CMP_GE_OQ);
    const __m512 cp =
        _mm512_mul_ps(_mm512_min_ps(_mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vt), vp);
    const __m512 cn = _mm512_max_ps(
        _mm512_roundscale_ps(_mm512_mul_ps(q, vp), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vnz);
    return _mm512_cvttps_epi32(_mm512_add_ps(_mm512_mask_blend_ps(pos, cn, cp), vz));
}

AVX512_TARGET static void two_region_avx512(size_t n, const float *x, float s, float zf, float top, float p2m,
                                            uint8_t *codes)
{
    const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps(zf), vt = _mm512_set1_ps(top),
                 vp = _mm512_set1_ps(p2m), vnz = _mm512_set1_ps(-zf);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 mk = tail_mask(n - i);
        _mm512_mask_cvtepi32_storeu_epi8(codes + i, mk,
                                         two_region_vec(_mm512_maskz_loadu_ps(mk, x + i), vs, vz, vt, vp, vnz));
    }
}

AVX512_TARGET static inline __m512i exact_vec(const int32_t *acc, __m512i rs, const int32_t *colmul,
                                              const int32_t *colconst, __mmask16 mk)
{
    __m512i v = _mm512_maskz_loadu_epi32(mk, acc);
    v = _mm512_add_epi32(v, _mm512_mullo_epi32(_mm512_maskz_loadu_epi32(mk, colmul), rs));
    return _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(mk, colconst));
}

AVX512_TARGET static void correct_avx512(size_t m, size_t n, int32_t *acc, size_t ldacc,
                                         const int32_t *rowsum, const int32_t *colmul,
                                         const int32_t *colconst)
{
    for (size_t i = 0; i < m; i++) {
        const __m512i rs = _mm512_set1_epi32(rowsum[i]);
        int32_t *row = acc + i * ldacc;
        for (size_t j = 0; j < n; j += 16) {
            const __mmask16 mk = tail_mask(n - j);
            _mm512_mask_storeu_epi32(row + j, mk, exact_vec(row + j, rs, colmul + j, colconst + j, mk));
        }
    }
}

AVX512_TARGET static inline __m512 y_vec(const int32_t *acc, __m512i rs, const int32_t *colmul,
                                         const int32_t *colconst, const float *scale, const float *bias,
                                         __mmask16 mk)
{
    const __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(exact_vec(acc, rs, colmul, colconst, mk)),
                                   _mm512_maskz_loadu_ps(mk, scale));
    return _mm512_add_ps(p, bias ? _mm512_maskz_loadu_ps(mk, bias) : _mm512_setzero_ps());
}

/* y_vec of columns j .. j + 15 of a row. */
AVX512_TARGET static inline __m512 y_at(const int32_t *row, __m512i rs, const int32_t *colmul,
                                        const int32_t *colconst, const float *scale, const float *bias, size_t j,
                                        __mmask16 mk)
{
    return y_vec(row + j, rs, colmul + j, colconst + j, scale + j, bias ? bias + j : NULL, mk);
}

AVX512_TARGET static void out_f32_avx512(size_t m, size_t n, const int32_t *acc, size_t ldacc,
                                         const int32_t *rowsum, const int32_t *colmul,
                                         const int32_t *colconst, const float *scale, const float *bias,
                                         bool accumulate, float *out, size_t ldout)
{
    for (size_t i = 0; i < m; i++) {
        const __m512i rs = _mm512_set1_epi32(rowsum[i]);
        for (size_t j = 0; j < n; j += 16) {
            const __mmask16 mk = tail_mask(n - j);
            __m512 y = y_vec(acc + i * ldacc + j, rs, colmul + j, colconst + j, scale + j,
                             bias ? bias + j : NULL, mk);
            float *o = out + i * ldout + j;
            if (accumulate)
                y = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, o), y);
            _mm512_mask_storeu_ps(o, mk, y);
        }
    }
}

/* A vector's codes from its 16 values y; ctx holds the quantizer's vectors. */
typedef __m512i (*codes_of_fn)(__m512 y, const void *ctx);

/* codes_of(y) of every row's y_vec values, as bytes. Two vectors per step where the row
 * has them: one vector's chain of dependent operations (about 90 cycles from load to
 * store for the GELU) is longer than the core's window holds of the next ones, so two
 * chains side by side keep more of it busy. Inlined with a constant codes_of, whose
 * call is inlined too. */
AVX512_TARGET static inline __attribute__((always_inline)) void
codes_rows_avx512(size_t m, size_t n, const int32_t *acc, size_t ldacc, const int32_t *rowsum,
                  const int32_t *colmul, const int32_t *colconst, const float *scale, const float *bias,
                  codes_of_fn codes_of, const void *ctx, uint8_t *out, size_t ldout)
{
    for (size_t i = 0; i < m; i++) {
        const __m512i rs = _mm512_set1_epi32(rowsum[i]);
        const int32_t *a = acc + i * ldacc;
        uint8_t *o = out + i * ldout;
        size_t j = 0;
        for (; j + 32 <= n; j += 32) {
            const __m512 y0 = y_at(a, rs, colmul, colconst, scale, bias, j, 0xffff);
            const __m512 y1 = y_at(a, rs, colmul, colconst, scale, bias, j + 16, 0xffff);
            const __m512i c0 = codes_of(y0, ctx), c1 = codes_of(y1, ctx);
            _mm512_mask_cvtepi32_storeu_epi8(o + j, 0xffff, c0);
            _mm512_mask_cvtepi32_storeu_epi8(o + j + 16, 0xffff, c1);
        }
        for (; j < n; j += 16) {
            const __mmask16 mk = tail_mask(n - j);
            _mm512_mask_cvtepi32_storeu_epi8(o + j, mk, codes_of(y_at(a, rs, colmul, colconst, scale, bias, j, mk), ctx));
        }
    }
}

/* What out_u8_avx512's codes need, as vectors. */
typedef struct scaled_codes {
    quant_recip rc;
    __m512 vs, vz, vq, vpost;
} scaled_codes;

AVX512_TARGET static inline __attribute__((always_inline)) __m512i scaled_code_vec(__m512 y, const void *ctx)
{
    const scaled_codes *c = ctx;
    return quant_vec_recip(_mm512_mul_ps(y, c->vpost), &c->rc, c->vs, c->vz, c->vq);
}

AVX512_TARGET static void out_u8_avx512(size_t m, size_t n, const int32_t *acc, size_t ldacc,
                                        const int32_t *rowsum, const int32_t *colmul,
                                        const int32_t *colconst, const float *scale, const float *bias,
                                        float post, float qs, float zf, float qmax, uint8_t *out, size_t ldout)
{
    const scaled_codes c = {quant_recip_of(qs, zf, qmax), _mm512_set1_ps(qs), _mm512_set1_ps(zf),
                            _mm512_set1_ps(qmax), _mm512_set1_ps(post)};
    codes_rows_avx512(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, scaled_code_vec, &c, out, ldout);
}

/* The table as the permutes take it: pieces 0-15 and 16-31 of each coefficient. */
AVX512_TARGET static inline void load_fast_coef(__m512 lo[5], __m512 hi[5])
{
    for (int k = 0; k < 5; k++) {
        lo[k] = _mm512_loadu_ps(repq_gelu_quartic_coef[k]);
        hi[k] = _mm512_loadu_ps(repq_gelu_quartic_coef[k] + 16);
    }
}

AVX512_TARGET static inline __m512 gelu_fast_vec(__m512 y, const __m512 lo[5], const __m512 hi[5])
{
    /* Below -8 the first piece at its left end (|GELU| < 1e-13 there); max keeps NaN
     * (its second operand), so that a NaN lane is never certain. */
    const __m512 yc = _mm512_max_ps(_mm512_set1_ps(-8.0f), y);
    const __m512 t = _mm512_min_ps(_mm512_fmadd_ps(yc, _mm512_set1_ps(2.0f), _mm512_set1_ps(16.0f)),
                                   _mm512_set1_ps(31.5f));
    const __m512i idx = _mm512_cvttps_epi32(t);
    const __m512 centre = _mm512_fmsub_ps(_mm512_cvtepi32_ps(idx), _mm512_set1_ps(0.5f), _mm512_set1_ps(7.75f));
    const __m512 u = _mm512_sub_ps(yc, centre);
    /* Written out, so that the ten coefficient vectors stay in registers. */
    __m512 p = _mm512_permutex2var_ps(lo[4], idx, hi[4]);
    p = _mm512_fmadd_ps(p, u, _mm512_permutex2var_ps(lo[3], idx, hi[3]));
    p = _mm512_fmadd_ps(p, u, _mm512_permutex2var_ps(lo[2], idx, hi[2]));
    p = _mm512_fmadd_ps(p, u, _mm512_permutex2var_ps(lo[1], idx, hi[1]));
    p = _mm512_fmadd_ps(p, u, _mm512_permutex2var_ps(lo[0], idx, hi[0]));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, _mm512_set1_ps(8.0f), _CMP_GE_OQ), p, y);
}

/* What out_gelu_avx512 needs of the quantizer, as vectors. */
typedef struct gelu_vecs {
    __m512 inv_pos, inv_neg, wlim, nwlim;
    __m512i vz, vnz, vtop, vqmax, shift;
    __m512 lo[5], hi[5];
} gelu_vecs;

/* gelu_code_of_value (repq_gelu_quartic_one(y)) on 16 lanes, two_region fixed per
 * instantiation. */
AVX512_TARGET static inline __attribute__((always_inline)) __m512i gelu_code_vec(__m512 y, const gelu_vecs *v,
                                                                                 bool two_region)
{
    const __m512 g = gelu_fast_vec(y, v->lo, v->hi);
    const __mmask16 neg = two_region ? _mm512_cmp_ps_mask(g, _mm512_setzero_ps(), _CMP_LT_OQ) : 0;
    __m512 w = _mm512_mul_ps(g, two_region ? _mm512_mask_blend_ps(neg, v->inv_pos, v->inv_neg) : v->inv_pos);
    w = _mm512_max_ps(_mm512_min_ps(w, v->wlim), v->nwlim);
    const __m512i c = _mm512_cvt_roundps_epi32(w, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    if (two_region)
        return _mm512_add_epi32(_mm512_mask_blend_epi32(neg, _mm512_sllv_epi32(_mm512_min_epi32(c, v->vtop), v->shift),
                                                        _mm512_max_epi32(c, v->vnz)),
                                v->vz);
    return _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(c, v->vz), _mm512_setzero_si512()), v->vqmax);
}

AVX512_TARGET static inline __attribute__((always_inline)) __m512i gelu_two_region_vec(__m512 y, const void *v)
{
    return gelu_code_vec(y, v, true);
}

AVX512_TARGET static inline __attribute__((always_inline)) __m512i gelu_one_grid_vec(__m512 y, const void *v)
{
    return gelu_code_vec(y, v, false);
}

AVX512_TARGET static void out_gelu_avx512(size_t m, size_t n, const int32_t *acc, size_t ldacc,
                                          const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst,
                                          const float *scale, const float *bias, const repq_gelu_codes *q,
                                          uint8_t *out, size_t ldout)
{
    const gelu_recip r = gelu_recip_of(q);
    gelu_vecs v;
    v.inv_pos = _mm512_set1_ps(r.pos);
    v.inv_neg = _mm512_set1_ps(r.neg);
    v.wlim = _mm512_set1_ps(r.limit);
    v.nwlim = _mm512_set1_ps(-r.limit);
    v.vz = _mm512_set1_epi32(q->zero_point);
    v.vnz = _mm512_set1_epi32(-q->zero_point);
    v.vtop = _mm512_set1_epi32(q->top);
    v.vqmax = _mm512_set1_epi32((1 << q->bits) - 1);
    v.shift = _mm512_set1_epi32(q->shift);
    load_fast_coef(v.lo, v.hi);
    if (q->two_region)
        codes_rows_avx512(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, gelu_two_region_vec, &v, out,
                          ldout);
    else
        codes_rows_avx512(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, gelu_one_grid_vec, &v, out,
                          ldout);
}

/* ---- AVX2: 8 lanes, the last n % 8 columns through the scalar formulas ---------- */

#define AVX2_TARGET __attribute__((target("avx2")))

AVX2_TARGET static inline __m256i quant_vec8(__m256 x, __m256 s, __m256 zf, __m256 qmax)
{
    __m256 t = _mm256_round_ps(_mm256_div_ps(x, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    t = _mm256_add_ps(t, zf);
    t = _mm256_min_ps(_mm256_max_ps(t, _mm256_setzero_ps()), qmax);
    return _mm256_cvttps_epi32(t);
}

/* Eight int32 lanes in [0, 255] as eight bytes. */
AVX2_TARGET static inline void store_codes8(uint8_t *out, __m256i c)
{
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
    _mm_storel_epi64((__m128i *)(void *)out, _mm_packus_epi16(w, w));
}

AVX2_TARGET static void quantize_avx2(size_t n, const float *x, float s, float zf, float qmax, uint8_t *codes)
{
    const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(zf), vq = _mm256_set1_ps(qmax);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        store_codes8(codes + i, quant_vec8(_mm256_loadu_ps(x + i), vs, vz, vq));
    quantize_scalar(n - i, x + i, s, zf, qmax, codes + i);
}

AVX2_TARGET static inline __m256i two_region_vec8(__m256 x, __m256 vs, __m256 vz, __m256 vt, __m256 vp, __m256 vnz)
{
    const __m256 q = _mm256_div_ps(x, vs);
    const __m256 pos = _mm256_cmp_ps(q, _mm256_setzero_ps(), _CMP_GE_OQ);
    const __m256 cp =
        _mm256_mul_ps(_mm256_min_ps(_mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vt), vp);
    const __m256 cn =
        _mm256_max_ps(_mm256_round_ps(_mm256_mul_ps(q, vp), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vnz);
    return _mm256_cvttps_epi32(_mm256_add_ps(_mm256_blendv_ps(cn, cp, pos), vz));
}

AVX2_TARGET static void two_region_avx2(size_t n, const float *x, float s, float zf, float top, float p2m,
                                        uint8_t *codes)
{
    const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(zf), vt = _mm256_set1_ps(top),
                 vp = _mm256_set1_ps(p2m), vnz = _mm256_set1_ps(-zf);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        store_codes8(codes + i, two_region_vec8(_mm256_loadu_ps(x + i), vs, vz, vt, vp, vnz));
    }
    two_region_scalar(n - i, x + i, s, zf, top, p2m, codes + i);
}

AVX2_TARGET static inline __m256 y_vec8(const int32_t *acc, __m256i rs, const int32_t *colmul,
                                        const int32_t *colconst, const float *scale, const float *bias)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)acc);
    v = _mm256_add_epi32(v, _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(const void *)colmul), rs));
    v = _mm256_add_epi32(v, _mm256_loadu_si256((const __m256i *)(const void *)colconst));
    const __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(scale));
    return _mm256_add_ps(p, bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps());
}

AVX2_TARGET static void out_f32_avx2(size_t m, size_t n, const int32_t *acc, size_t ldacc, const int32_t *rowsum,
                                     const int32_t *colmul, const int32_t *colconst, const float *scale,
                                     const float *bias, bool accumulate, float *out, size_t ldout)
{
    const size_t n8 = n / 8 * 8;
    for (size_t i = 0; i < m; i++) {
        const __m256i rs = _mm256_set1_epi32(rowsum[i]);
        float *o = out + i * ldout;
        for (size_t j = 0; j < n8; j += 8) {
            __m256 y = y_vec8(acc + i * ldacc + j, rs, colmul + j, colconst + j, scale + j, bias ? bias + j : NULL);
            if (accumulate)
                y = _mm256_add_ps(_mm256_loadu_ps(o + j), y);
            _mm256_storeu_ps(o + j, y);
        }
        out_f32_scalar(1, n - n8, acc + i * ldacc + n8, ldacc, rowsum + i, colmul + n8, colconst + n8, scale + n8,
                       bias ? bias + n8 : NULL, accumulate, o + n8, ldout);
    }
}

AVX2_TARGET static void out_u8_avx2(size_t m, size_t n, const int32_t *acc, size_t ldacc, const int32_t *rowsum,
                                    const int32_t *colmul, const int32_t *colconst, const float *scale,
                                    const float *bias, float post, float qs, float zf, float qmax, uint8_t *out,
                                    size_t ldout)
{
    const __m256 vs = _mm256_set1_ps(qs), vz = _mm256_set1_ps(zf), vq = _mm256_set1_ps(qmax);
    const __m256 vpost = _mm256_set1_ps(post);
    const size_t n8 = n / 8 * 8;
    for (size_t i = 0; i < m; i++) {
        const __m256i rs = _mm256_set1_epi32(rowsum[i]);
        for (size_t j = 0; j < n8; j += 8) {
            const __m256 y = y_vec8(acc + i * ldacc + j, rs, colmul + j, colconst + j, scale + j,
                                    bias ? bias + j : NULL);
            store_codes8(out + i * ldout + j, quant_vec8(_mm256_mul_ps(y, vpost), vs, vz, vq));
        }
        out_u8_scalar(1, n - n8, acc + i * ldacc + n8, ldacc, rowsum + i, colmul + n8, colconst + n8, scale + n8,
                      bias ? bias + n8 : NULL, post, qs, zf, qmax, out + i * ldout + n8, ldout);
    }
}

#define AVX2_FMA_TARGET __attribute__((target("avx2,fma")))

/* repq_gelu_quartic_one on 8 lanes, the coefficients gathered. */
AVX2_FMA_TARGET static inline __m256 gelu_fast_vec8(__m256 y)
{
    const __m256 yc = _mm256_max_ps(_mm256_set1_ps(-8.0f), y);
    const __m256 t = _mm256_min_ps(_mm256_fmadd_ps(yc, _mm256_set1_ps(2.0f), _mm256_set1_ps(16.0f)),
                                   _mm256_set1_ps(31.5f));
    const __m256i idx = _mm256_cvttps_epi32(t);
    const __m256 u = _mm256_sub_ps(
        yc, _mm256_fmsub_ps(_mm256_cvtepi32_ps(idx), _mm256_set1_ps(0.5f), _mm256_set1_ps(7.75f)));
    __m256 p = _mm256_i32gather_ps(repq_gelu_quartic_coef[4], idx, 4);
    for (int k = 3; k >= 0; k--)
        p = _mm256_fmadd_ps(p, u, _mm256_i32gather_ps(repq_gelu_quartic_coef[k], idx, 4));
    return _mm256_blendv_ps(p, y, _mm256_cmp_ps(y, _mm256_set1_ps(8.0f), _CMP_GE_OQ));
}

/* What out_gelu_avx2 needs of the quantizer, as vectors set up once (read through q
 * per vector, they would be reloaded: the code stores might alias *q). */
typedef struct gelu_vecs8 {
    bool two_region;
    __m256 inv_pos, inv_neg, wlim, nwlim;
    __m256i vz, vnz, vtop, vqmax, shift;
} gelu_vecs8;

/* gelu_code_of_value on 8 lanes. */
AVX2_FMA_TARGET static inline __attribute__((always_inline)) __m256i gelu_code_vec8(__m256 y, const gelu_vecs8 *v)
{
    const __m256 g = gelu_fast_vec8(y);
    const __m256 neg = _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 w = _mm256_mul_ps(g, v->two_region ? _mm256_blendv_ps(v->inv_pos, v->inv_neg, neg) : v->inv_pos);
    w = _mm256_max_ps(_mm256_min_ps(w, v->wlim), v->nwlim);
    const __m256i c = _mm256_cvttps_epi32(_mm256_round_ps(w, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (v->two_region)
        return _mm256_add_epi32(_mm256_blendv_epi8(_mm256_sllv_epi32(_mm256_min_epi32(c, v->vtop), v->shift),
                                                   _mm256_max_epi32(c, v->vnz), _mm256_castps_si256(neg)),
                                v->vz);
    return _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(c, v->vz), _mm256_setzero_si256()), v->vqmax);
}

/* Two vectors per step where the row has them, as in codes_rows_avx512. */
AVX2_FMA_TARGET static void out_gelu_avx2(size_t m, size_t n, const int32_t *acc, size_t ldacc,
                                          const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst,
                                          const float *scale, const float *bias, const repq_gelu_codes *q,
                                          uint8_t *out, size_t ldout)
{
    const gelu_recip r = gelu_recip_of(q);
    const gelu_vecs8 v = {q->two_region,
                          _mm256_set1_ps(r.pos),
                          _mm256_set1_ps(r.neg),
                          _mm256_set1_ps(r.limit),
                          _mm256_set1_ps(-r.limit),
                          _mm256_set1_epi32(q->zero_point),
                          _mm256_set1_epi32(-q->zero_point),
                          _mm256_set1_epi32(q->top),
                          _mm256_set1_epi32((1 << q->bits) - 1),
                          _mm256_set1_epi32(q->shift)};
    const size_t n8 = n / 8 * 8;
    for (size_t i = 0; i < m; i++) {
        const __m256i rs = _mm256_set1_epi32(rowsum[i]);
        const int32_t *a = acc + i * ldacc;
        uint8_t *o = out + i * ldout;
        size_t j = 0;
        for (; j + 16 <= n8; j += 16) {
            const __m256 y0 = y_vec8(a + j, rs, colmul + j, colconst + j, scale + j, bias ? bias + j : NULL);
            const __m256 y1 =
                y_vec8(a + j + 8, rs, colmul + j + 8, colconst + j + 8, scale + j + 8, bias ? bias + j + 8 : NULL);
            const __m256i c0 = gelu_code_vec8(y0, &v), c1 = gelu_code_vec8(y1, &v);
            store_codes8(o + j, c0);
            store_codes8(o + j + 8, c1);
        }
        for (; j < n8; j += 8)
            store_codes8(o + j, gelu_code_vec8(y_vec8(a + j, rs, colmul + j, colconst + j, scale + j,
                                                      bias ? bias + j : NULL),
                                               &v));
        out_gelu_scalar(1, n - n8, a + n8, ldacc, rowsum + i, colmul + n8, colconst + n8, scale + n8,
                        bias ? bias + n8 : NULL, q, o + n8, ldout);
    }
}

/* ---- dispatch ------------------------------------------------------------------ */

void repq_quantize_f32_u8(repq_kernel_level level, size_t n, const float *x, float scale, int32_t zp,
                          int32_t bits, uint8_t *codes)
{
    repq_quantize_rows_f32_u8(level, 1, n, x, n, scale, zp, bits, codes, n);
}

void repq_quantize_rows_f32_u8(repq_kernel_level level, size_t rows, size_t n, const float *x, size_t ldx,
                               float scale, int32_t zp, int32_t bits, uint8_t *codes, size_t ldcodes)
{
    const float zf = (float)zp, qmax = (float)((1 << bits) - 1);
    if (level >= REPQ_LEVEL_AVX512VNNI) {
        quantize_avx512(rows, n, x, ldx, scale, zf, qmax, codes, ldcodes);
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        if (level >= REPQ_LEVEL_AVX2)
            quantize_avx2(n, x + r * ldx, scale, zf, qmax, codes + r * ldcodes);
        else
            quantize_scalar(n, x + r * ldx, scale, zf, qmax, codes + r * ldcodes);
    }
}

void repq_quantize_f32_two_region_u8(repq_kernel_level level, size_t n, const float *x, float scale, int32_t zp,
                                     int32_t top, int32_t shift, uint8_t *codes)
{
    const float zf = (float)zp, tf = (float)top, p2m = (float)(1 << shift);
    if (level >= REPQ_LEVEL_AVX512VNNI)
        two_region_avx512(n, x, scale, zf, tf, p2m, codes);
    else if (level >= REPQ_LEVEL_AVX2)
        two_region_avx2(n, x, scale, zf, tf, p2m, codes);
    else
        two_region_scalar(n, x, scale, zf, tf, p2m, codes);
}

void repq_gemm_correct_s32(repq_kernel_level level, size_t m, size_t n, int32_t *acc, size_t ldacc,
                           const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst)
{
    if (level >= REPQ_LEVEL_AVX512VNNI)
        correct_avx512(m, n, acc, ldacc, rowsum, colmul, colconst);
    else
        correct_scalar(m, n, acc, ldacc, rowsum, colmul, colconst);
}

void repq_gemm_out_f32(repq_kernel_level level, size_t m, size_t n, const int32_t *acc, size_t ldacc,
                       const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst,
                       const float *scale, const float *bias, bool accumulate, float *out, size_t ldout)
{
    if (level >= REPQ_LEVEL_AVX512VNNI)
        out_f32_avx512(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, accumulate, out, ldout);
    else if (level >= REPQ_LEVEL_AVX2)
        out_f32_avx2(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, accumulate, out, ldout);
    else
        out_f32_scalar(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, accumulate, out, ldout);
}

void repq_gemm_out_scaled_u8(repq_kernel_level level, size_t m, size_t n, const int32_t *acc, size_t ldacc,
                             const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst,
                             const float *scale, const float *bias, float post, float qscale, int32_t qzp,
                             int32_t bits, uint8_t *out, size_t ldout)
{
    const float zf = (float)qzp, qmax = (float)((1 << bits) - 1);
    if (level >= REPQ_LEVEL_AVX512VNNI)
        out_u8_avx512(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, post, qscale, zf, qmax, out, ldout);
    else if (level >= REPQ_LEVEL_AVX2)
        out_u8_avx2(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, post, qscale, zf, qmax, out, ldout);
    else
        out_u8_scalar(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, post, qscale, zf, qmax, out, ldout);
}

void repq_gemm_out_u8(repq_kernel_level level, size_t m, size_t n, const int32_t *acc, size_t ldacc,
                      const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst,
                      const float *scale, const float *bias, float qscale, int32_t qzp, int32_t bits,
                      uint8_t *out, size_t ldout)
{
    /* y * 1 is y for every float, so this is the plain epilogue. */
    repq_gemm_out_scaled_u8(level, m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, 1.0f, qscale, qzp, bits,
                            out, ldout);
}

void repq_gemm_out_gelu_u8(repq_kernel_level level, size_t m, size_t n, const int32_t *acc, size_t ldacc,
                           const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst,
                           const float *scale, const float *bias, const repq_gelu_codes *q, uint8_t *out,
                           size_t ldout)
{
    if (level >= REPQ_LEVEL_AVX512VNNI)
        out_gelu_avx512(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, q, out, ldout);
    else if (level >= REPQ_LEVEL_AVX2)
        out_gelu_avx2(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, q, out, ldout);
    else
        out_gelu_scalar(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, q, out, ldout);
}

AVX512_TARGET static void gelu_fast_avx512(size_t n, const float *y, float *out)
{
    __m512 lo[5], hi[5];
    load_fast_coef(lo, hi);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 mk = tail_mask(n - i);
        _mm512_mask_storeu_ps(out + i, mk, gelu_fast_vec(_mm512_maskz_loadu_ps(mk, y + i), lo, hi));
    }
}

/* gelu_code_of_value over n values, both sides computed and one selected, so that gcc
 * vectorizes the loop (the fake-quant forward's fc2 input). */
VECTORIZED static bool gelu_codes_all(size_t n, const float *g, const repq_gelu_codes *q, uint8_t *codes)
{
    const gelu_recip r = gelu_recip_of(q);
    const int32_t z = q->zero_point;
    int finite = 1; /* a bool reduction is not vectorized */
    if (q->two_region) {
        const int32_t top = q->top, step = 1 << q->shift;
        for (size_t i = 0; i < n; i++) {
            finite &= repq_finite_lane(g[i]);
            const bool below = g[i] < 0.0f;
            const int32_t c = gelu_w_round(g[i] * (below ? r.neg : r.pos), r.limit);
            const int32_t neg = (c > -z ? c : -z) + z, pos = (c < top ? c : top) * step + z;
            codes[i] = (uint8_t)(below ? neg : pos);
        }
    } else {
        const int32_t qmax = (1 << q->bits) - 1;
        for (size_t i = 0; i < n; i++) {
            finite &= repq_finite_lane(g[i]);
            const int32_t c = gelu_w_round(g[i] * r.pos, r.limit) + z;
            codes[i] = (uint8_t)(c < 0 ? 0 : c > qmax ? qmax : c);
        }
    }
    return finite;
}

bool repq_gelu_codes_u8(size_t n, const float *g, const repq_gelu_codes *q, uint8_t *codes)
{
    return gelu_codes_all(n, g, q, codes);
}

void repq_gelu_fast_f32(repq_kernel_level level, size_t n, const float *y, float *out)
{
    if (level >= REPQ_LEVEL_AVX512VNNI) {
        gelu_fast_avx512(n, y, out);
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = repq_gelu_quartic_one(y[i]);
}

void repq_layer_norm_codes_u8(repq_kernel_level level, const float *x, size_t rows, size_t d, const float *g,
                              const float *b, float eps, float scale, int32_t zp, int32_t bits, uint8_t *codes)
{
    if (level >= REPQ_LEVEL_AVX512VNNI && d > 0)
        layer_norm_codes_avx512(x, rows, d, g, b, eps, scale, (float)zp, (float)((1 << bits) - 1), codes);
    else
        repq_float_layer_norm_codes(x, rows, d, g, b, eps, scale, zp, bits, codes);
}
