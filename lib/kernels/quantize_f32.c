/* Float -> uint8 quantization and GEMM epilogues: scalar references and AVX2 and
 * AVX-512 versions that reproduce them bit for bit (same float operations in the
 * same order: a correctly rounded division, round-half-even, a product then a sum). */
#include "kernels/quantize_f32.h"

#include <math.h>

#include <immintrin.h>

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

static inline uint8_t gelu_code_one(float y, const repq_gelu_codes *q)
{
    const float g = repq_gelu_one(y), zf = (float)q->zero_point;
    if (q->two_region)
        return two_region_one(g, q->scale, zf, (float)q->top, (float)(1 << q->shift));
    return quant_one(g, q->scale, zf, (float)((1 << q->bits) - 1));
}

static void out_gelu_scalar(size_t m, size_t n, const int32_t *acc, size_t ldacc, const int32_t *rowsum,
                            const int32_t *colmul, const int32_t *colconst, const float *scale, const float *bias,
                            const repq_gelu_codes *q, uint8_t *out, size_t ldout)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float p = (float)exact_one(acc[i * ldacc + j], rowsum[i], colmul[j], colconst[j]) * scale[j];
            out[i * ldout + j] = gelu_code_one(p + (bias ? bias[j] : 0.0f), q);
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

AVX512_TARGET static void out_u8_avx512(size_t m, size_t n, const int32_t *acc, size_t ldacc,
                                        const int32_t *rowsum, const int32_t *colmul,
                                        const int32_t *colconst, const float *scale, const float *bias,
                                        float post, float qs, float zf, float qmax, uint8_t *out, size_t ldout)
{
    const __m512 vs = _mm512_set1_ps(qs), vz = _mm512_set1_ps(zf), vq = _mm512_set1_ps(qmax);
    const __m512 vpost = _mm512_set1_ps(post);
    const quant_recip rc = quant_recip_of(qs, zf, qmax);
    for (size_t i = 0; i < m; i++) {
        const __m512i rs = _mm512_set1_epi32(rowsum[i]);
        for (size_t j = 0; j < n; j += 16) {
            const __mmask16 mk = tail_mask(n - j);
            const __m512 y = y_vec(acc + i * ldacc + j, rs, colmul + j, colconst + j, scale + j,
                                   bias ? bias + j : NULL, mk);
            _mm512_mask_cvtepi32_storeu_epi8(out + i * ldout + j, mk,
                                             quant_vec_recip(_mm512_mul_ps(y, vpost), &rc, vs, vz, vq));
        }
    }
}

/* repq_gelu_one on 16 lanes: the same operations and constants in the same order,
 * selects where the C has ?:. The loops over constants are unrolled so that no branch
 * or reload stays in them. */
AVX512_TARGET static inline __m512 gelu_vec(__m512 x)
{
    const __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f));
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 t = _mm512_div_ps(one, _mm512_add_ps(one, _mm512_mul_ps(_mm512_set1_ps(0.4f), z)));
    __m512 q = _mm512_set1_ps(repq_gelu_erfc_q[0]);
#pragma GCC unroll 9
    for (int i = 1; i < REPQ_GELU_TERMS; i++)
        q = _mm512_add_ps(_mm512_mul_ps(q, t), _mm512_set1_ps(repq_gelu_erfc_q[i]));
    /* repq_exp_approx(-z z) */
    const __m512 e = _mm512_mul_ps(_mm512_xor_ps(z, _mm512_set1_ps(-0.0f)), z); /* (-z) z */
    const __m512 lo = _mm512_set1_ps(REPQ_EXP_LO), magic = _mm512_set1_ps(REPQ_EXP_ROUND_MAGIC);
    const __mmask16 below = _mm512_cmp_ps_mask(e, lo, _CMP_LT_OQ);
    __m512 xc = _mm512_mask_blend_ps(below, e, lo);
    xc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(xc, _mm512_set1_ps(REPQ_EXP_HI), _CMP_GT_OQ), xc,
                              _mm512_set1_ps(REPQ_EXP_HI));
    const __m512 tt = _mm512_add_ps(_mm512_mul_ps(xc, _mm512_set1_ps(REPQ_EXP_LOG2E)), magic);
    const __m512 nn = _mm512_sub_ps(tt, magic);
    const __m512i bits = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(tt), _mm512_set1_epi32(0x4b400000)),
                         _mm512_set1_epi32(127)),
        23);
    const __m512 r = _mm512_sub_ps(_mm512_sub_ps(xc, _mm512_mul_ps(nn, _mm512_set1_ps(REPQ_EXP_LN2_HI))),
                                   _mm512_mul_ps(nn, _mm512_set1_ps(REPQ_EXP_LN2_LO)));
    __m512 p = _mm512_set1_ps(repq_exp_taylor[0]);
#pragma GCC unroll 8
    for (int i = 1; i < REPQ_EXP_TERMS; i++)
        p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(repq_exp_taylor[i]));
    const __m512 ex = _mm512_maskz_mul_ps((__mmask16)~below, p, _mm512_castsi512_ps(bits));
    const __m512 erfc_z = _mm512_mul_ps(q, ex);
    const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __m512 f = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(2.0f), erfc_z), erfc_z);
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), f);
}

/* A fast GELU for the codes' sake: on [-8, 8), 32 quartics of width 1/2 (in u = y
 * minus the piece's centre; fitted by scripts/fit_gelu_fast.py, Chebyshev
 * interpolation), y above, 0 below. It differs from repq_gelu_one by at most
 * REPQ_GELU_FAST_ERR (tests/test_kernels_extra.c checks a third of that on a dense
 * scan), so a code computed from it is the exact code wherever no quantization
 * boundary lies within REPQ_GELU_FAST_ERR of it; elsewhere the exact path runs. */
static const float gelu_fast_coef[5][32] = {
    {-3.560836386e-14f, -1.510797130e-12f, -4.989773872e-11f, -1.282664641e-09f,
     -2.565749213e-08f, -3.992604150e-07f, -4.831145361e-06f, -4.542623356e-05f,
     -3.315648064e-04f, -1.875331393e-03f, -8.194348775e-03f, -2.750506438e-02f,
     -7.010352612e-02f, -1.320622116e-01f, -1.699705124e-01f, -1.003234163e-01f,
     1.496765763e-01f, 5.800294876e-01f, 1.117937803e+00f, 1.679896474e+00f,
     2.222494841e+00f, 2.741805553e+00f, 3.248124599e+00f, 3.749668360e+00f,
     4.249954700e+00f, 4.749995232e+00f, 5.249999523e+00f, 5.750000000e+00f,
     6.250000000e+00f, 6.750000000e+00f, 7.250000000e+00f, 7.750000000e+00f},
    {-2.665713787e-13f, -1.067639987e-11f, -3.305832830e-10f, -7.909385147e-09f,
     -1.460945214e-07f, -2.080634658e-06f, -2.280405170e-05f, -1.918128110e-04f,
     -1.232997049e-03f, -6.016506348e-03f, -2.202960290e-02f, -5.919846520e-02f,
     -1.109356880e-01f, -1.226539835e-01f, 8.018804947e-04f, 3.046434820e-01f,
     6.953565478e-01f, 9.991981387e-01f, 1.122653961e+00f, 1.110935688e+00f,
     1.059198499e+00f, 1.022029638e+00f, 1.006016493e+00f, 1.001232982e+00f,
     1.000191808e+00f, 1.000022769e+00f, 1.000002027e+00f, 1.000000119e+00f,
     1.000000000e+00f, 1.000000000e+00f, 1.000000000e+00f, 1.000000000e+00f},
    {-1.039836077e-12f, -3.861074654e-11f, -1.103993785e-09f, -2.426438606e-08f,
     -4.089744436e-07f, -5.269456778e-06f, -5.167111885e-05f, -3.831127251e-04f,
     -2.126406645e-03f, -8.687164634e-03f, -2.529323660e-02f, -4.860346764e-02f,
     -4.583234712e-02f, 3.996260464e-02f, 2.164454460e-01f, 3.745750785e-01f,
     3.745750785e-01f, 2.164454460e-01f, 3.996260464e-02f, -4.583234712e-02f,
     -4.860346764e-02f, -2.529323660e-02f, -8.687164634e-03f, -2.126406645e-03f,
     -3.831127251e-04f, -5.167111885e-05f, -5.269456778e-06f, -4.089744436e-07f,
     -2.426438606e-08f, -1.103993785e-09f, -3.861074654e-11f, -1.039836077e-12f},
    {-3.202003549e-12f, -1.072823080e-10f, -2.757333251e-09f, -5.419546767e-08f,
     -8.112668297e-07f, -9.196713108e-06f, -7.831176481e-05f, -4.946733825e-04f,
     -2.269967925e-03f, -7.268911693e-03f, -1.471607387e-02f, -1.208757609e-02f,
     2.420363575e-02f, 9.226570278e-02f, 1.276250780e-01f, 6.235844269e-02f,
     -6.235844269e-02f, -1.276250780e-01f, -9.226570278e-02f, -2.420363575e-02f,
     1.208757609e-02f, 1.471607387e-02f, 7.268911693e-03f, 2.269967925e-03f,
     4.946733825e-04f, 7.831176481e-05f, 9.196713108e-06f, 8.112668297e-07f,
     5.419546767e-08f, 2.757333251e-09f, 1.072823080e-10f, 3.202003549e-12f},
    {-5.480791602e-12f, -1.718557796e-10f, -4.103076545e-09f, -7.423824400e-08f,
     -1.011395057e-06f, -1.028017323e-05f, -7.688149344e-05f, -4.134075425e-04f,
     -1.529814675e-03f, -3.500190098e-03f, -3.014276270e-03f, 7.818349637e-03f,
     2.881139144e-02f, 3.369654343e-02f, -4.941171035e-03f, -5.683917180e-02f,
     -5.683917180e-02f, -4.941171035e-03f, 3.369654343e-02f, 2.881139144e-02f,
     7.818349637e-03f, -3.014276270e-03f, -3.500190098e-03f, -1.529814675e-03f,
     -4.134075425e-04f, -7.688149344e-05f, -1.028017323e-05f, -1.011395057e-06f,
     -7.423824400e-08f, -4.103076545e-09f, -1.718557796e-10f, -5.480791602e-12f},
};

/* The table as the permutes take it: pieces 0-15 and 16-31 of each coefficient. */
AVX512_TARGET static inline void load_fast_coef(__m512 lo[5], __m512 hi[5])
{
    for (int k = 0; k < 5; k++) {
        lo[k] = _mm512_loadu_ps(gelu_fast_coef[k]);
        hi[k] = _mm512_loadu_ps(gelu_fast_coef[k] + 16);
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

/* What the fast codes need besides the quantizer: 1 / unit on each side and, per side,
 * how far from 1/2 the rounding of w = g / unit must stay for the code to be certain:
 * REPQ_GELU_FAST_ERR / unit plus a slack for the float rounding of w here and in the
 * exact path (2^-20 (|w| + 1), taken at |w| = wmax). Lanes beyond wmax clamp to the
 * same end code both ways, so the slack need not cover them. */
typedef struct fast_limits {
    __m512 inv_pos, inv_neg, limit_pos, limit_neg;
} fast_limits;

static float fast_limit(float inv, float wmax)
{
    return 0.5f - (REPQ_GELU_FAST_ERR * inv + (wmax + 1.0f) * 0x1p-20f);
}

AVX512_TARGET static fast_limits fast_limits_of(const repq_gelu_codes *q)
{
    const float inv = 1.0f / q->scale, finer = inv * (float)(1 << q->shift);
    const float z = (float)q->zero_point, qmax = (float)((1 << q->bits) - 1);
    fast_limits l;
    l.inv_pos = _mm512_set1_ps(inv);
    if (q->two_region) {
        const float wmax = (float)(q->top > q->zero_point ? q->top : q->zero_point) + 1.0f;
        l.inv_neg = _mm512_set1_ps(finer);
        l.limit_pos = _mm512_set1_ps(fast_limit(inv, wmax));
        l.limit_neg = _mm512_set1_ps(fast_limit(finer, wmax));
    } else {
        const float wmax = unclamped_wmax(z, qmax);
        l.inv_neg = l.inv_pos;
        l.limit_pos = l.limit_neg = _mm512_set1_ps(fast_limit(inv, wmax));
    }
    return l;
}

/* Codes from the fast GELU g where they are certain: w = g / unit (unit = s, or s 2^-shift
 * on the two-region quantizer's negative side) is rounded to r, and the lane is
 * ambiguous when a half-integer lies within the side's limit of w. With
 * REPQ_GELU_FAST_ERR / unit <= 1/4 on the finer side (checked by the caller), a sign
 * difference between g and the exact GELU near 0 gives code z both ways. */
AVX512_TARGET static inline __m512i fast_codes(__m512 g, const repq_gelu_codes *q, const fast_limits *l,
                                               __m512 vz, __m512 vq, __m512 vt, __m512 vp, __m512 vnz,
                                               __mmask16 *ambiguous)
{
    const __mmask16 neg = q->two_region ? _mm512_cmp_ps_mask(g, _mm512_setzero_ps(), _CMP_LT_OQ) : 0;
    const __m512 w = _mm512_mul_ps(g, q->two_region ? _mm512_mask_blend_ps(neg, l->inv_pos, l->inv_neg) : l->inv_pos);
    const __m512 r = _mm512_roundscale_ps(w, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 d = _mm512_abs_ps(_mm512_sub_ps(w, r));
    const __m512 limit = q->two_region ? _mm512_mask_blend_ps(neg, l->limit_pos, l->limit_neg) : l->limit_pos;
    *ambiguous = _mm512_cmp_ps_mask(d, limit, _CMP_NLT_UQ);
    __m512 c;
    if (q->two_region)
        c = _mm512_mask_blend_ps(neg, _mm512_mul_ps(_mm512_min_ps(r, vt), vp), _mm512_max_ps(r, vnz));
    else
        c = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, vz), _mm512_setzero_ps()), vq);
    return _mm512_cvttps_epi32(q->two_region ? _mm512_add_ps(c, vz) : c);
}

/* The exact steps for one vector, out of line: the fast path's loop keeps its
 * coefficient and constant vectors in registers only without this code inside it. */
AVX512_TARGET __attribute__((noinline)) static __m512i exact_gelu_codes(__m512 y, const repq_gelu_codes *q)
{
    const __m512 vs = _mm512_set1_ps(q->scale), vz = _mm512_set1_ps((float)q->zero_point);
    const __m512 g = gelu_vec(y);
    if (!q->two_region)
        return quant_vec(g, vs, vz, _mm512_set1_ps((float)((1 << q->bits) - 1)));
    return two_region_vec(g, vs, vz, _mm512_set1_ps((float)q->top), _mm512_set1_ps((float)(1 << q->shift)),
                          _mm512_set1_ps(-(float)q->zero_point));
}

AVX512_TARGET static void out_gelu_avx512(size_t m, size_t n, const int32_t *acc, size_t ldacc,
                                          const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst,
                                          const float *scale, const float *bias, const repq_gelu_codes *q,
                                          uint8_t *out, size_t ldout)
{
    const __m512 vz = _mm512_set1_ps((float)q->zero_point);
    const __m512 vq = _mm512_set1_ps((float)((1 << q->bits) - 1)), vt = _mm512_set1_ps((float)q->top);
    const __m512 vp = _mm512_set1_ps((float)(1 << q->shift)), vnz = _mm512_set1_ps(-(float)q->zero_point);
    const float inv_s = 1.0f / q->scale;
    const fast_limits limits = fast_limits_of(q);
    /* The fast path needs the error to stay within a quarter step of the finer grid. */
    const bool fast = REPQ_GELU_FAST_ERR * inv_s * (float)(q->two_region ? 1 << q->shift : 1) <= 0.25f;
    __m512 lo[5], hi[5];
    load_fast_coef(lo, hi);
    for (size_t i = 0; i < m; i++) {
        const __m512i rs = _mm512_set1_epi32(rowsum[i]);
        for (size_t j = 0; j < n; j += 16) {
            const __mmask16 mk = tail_mask(n - j);
            const __m512 y = y_vec(acc + i * ldacc + j, rs, colmul + j, colconst + j, scale + j,
                                   bias ? bias + j : NULL, mk);
            __mmask16 ambiguous = 0xffff;
            __m512i c = _mm512_setzero_si512();
            if (fast)
                c = fast_codes(gelu_fast_vec(y, lo, hi), q, &limits, vz, vq, vt, vp, vnz, &ambiguous);
            if (ambiguous & mk)
                c = exact_gelu_codes(y, q);
            _mm512_mask_cvtepi32_storeu_epi8(out + i * ldout + j, mk, c);
        }
    }
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

/* gelu_vec on 8 lanes. */
AVX2_TARGET static inline __m256 gelu_vec8(__m256 x)
{
    const __m256 z = _mm256_mul_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), _mm256_set1_ps(0.70710678118654752f));
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 t = _mm256_div_ps(one, _mm256_add_ps(one, _mm256_mul_ps(_mm256_set1_ps(0.4f), z)));
    __m256 q = _mm256_set1_ps(repq_gelu_erfc_q[0]);
#pragma GCC unroll 9
    for (int i = 1; i < REPQ_GELU_TERMS; i++)
        q = _mm256_add_ps(_mm256_mul_ps(q, t), _mm256_set1_ps(repq_gelu_erfc_q[i]));
    const __m256 e = _mm256_mul_ps(_mm256_xor_ps(z, _mm256_set1_ps(-0.0f)), z); /* (-z) z */
    const __m256 lo = _mm256_set1_ps(REPQ_EXP_LO), hi = _mm256_set1_ps(REPQ_EXP_HI);
    const __m256 magic = _mm256_set1_ps(REPQ_EXP_ROUND_MAGIC);
    const __m256 below = _mm256_cmp_ps(e, lo, _CMP_LT_OQ);
    __m256 xc = _mm256_blendv_ps(e, lo, below);
    xc = _mm256_blendv_ps(xc, hi, _mm256_cmp_ps(xc, hi, _CMP_GT_OQ));
    const __m256 tt = _mm256_add_ps(_mm256_mul_ps(xc, _mm256_set1_ps(REPQ_EXP_LOG2E)), magic);
    const __m256 nn = _mm256_sub_ps(tt, magic);
    const __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_sub_epi32(_mm256_castps_si256(tt), _mm256_set1_epi32(0x4b400000)),
                         _mm256_set1_epi32(127)),
        23);
    const __m256 r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(nn, _mm256_set1_ps(REPQ_EXP_LN2_HI))),
                                   _mm256_mul_ps(nn, _mm256_set1_ps(REPQ_EXP_LN2_LO)));
    __m256 p = _mm256_set1_ps(repq_exp_taylor[0]);
#pragma GCC unroll 8
    for (int i = 1; i < REPQ_EXP_TERMS; i++)
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(repq_exp_taylor[i]));
    const __m256 ex = _mm256_andnot_ps(below, _mm256_mul_ps(p, _mm256_castsi256_ps(bits)));
    const __m256 erfc_z = _mm256_mul_ps(q, ex);
    const __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 f = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(2.0f), erfc_z), erfc_z, neg);
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), f);
}

AVX2_TARGET static void out_gelu_avx2(size_t m, size_t n, const int32_t *acc, size_t ldacc, const int32_t *rowsum,
                                      const int32_t *colmul, const int32_t *colconst, const float *scale,
                                      const float *bias, const repq_gelu_codes *q, uint8_t *out, size_t ldout)
{
    const __m256 vs = _mm256_set1_ps(q->scale), vz = _mm256_set1_ps((float)q->zero_point);
    const __m256 vq = _mm256_set1_ps((float)((1 << q->bits) - 1)), vt = _mm256_set1_ps((float)q->top);
    const __m256 vp = _mm256_set1_ps((float)(1 << q->shift)), vnz = _mm256_set1_ps(-(float)q->zero_point);
    const size_t n8 = n / 8 * 8;
    for (size_t i = 0; i < m; i++) {
        const __m256i rs = _mm256_set1_epi32(rowsum[i]);
        for (size_t j = 0; j < n8; j += 8) {
            const __m256 g = gelu_vec8(
                y_vec8(acc + i * ldacc + j, rs, colmul + j, colconst + j, scale + j, bias ? bias + j : NULL));
            const __m256i c = q->two_region ? two_region_vec8(g, vs, vz, vt, vp, vnz) : quant_vec8(g, vs, vz, vq);
            store_codes8(out + i * ldout + j, c);
        }
        out_gelu_scalar(1, n - n8, acc + i * ldacc + n8, ldacc, rowsum + i, colmul + n8, colconst + n8, scale + n8,
                        bias ? bias + n8 : NULL, q, out + i * ldout + n8, ldout);
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

bool repq_gelu_fast_f32(repq_kernel_level level, size_t n, const float *y, float *out)
{
    if (level < REPQ_LEVEL_AVX512VNNI)
        return false;
    gelu_fast_avx512(n, y, out);
    return true;
}

void repq_layer_norm_codes_u8(repq_kernel_level level, const float *x, size_t rows, size_t d, const float *g,
                              const float *b, float eps, float scale, int32_t zp, int32_t bits, uint8_t *codes)
{
    if (level >= REPQ_LEVEL_AVX512VNNI && d > 0)
        layer_norm_codes_avx512(x, rows, d, g, b, eps, scale, (float)zp, (float)((1 << bits) - 1), codes);
    else
        repq_float_layer_norm_codes(x, rows, d, g, b, eps, scale, zp, bits, codes);
}
