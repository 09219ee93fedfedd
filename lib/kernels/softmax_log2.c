/* Integer log2 softmax: scalar reference and AVX2 and AVX-512 versions equal to it. */
#include "kernels/softmax_log2.h"

#include <math.h>
#include <string.h>

#include <immintrin.h>

#define T_FRAC 22
#define T_ONE (1u << T_FRAC)
/* t >= 192 yields the sentinel for every s >= 2^-64 and b <= 8 (2t + 2 log2 s >= 256),
 * and keeps 2t + offset below 2^31. */
#define T_CAP (192u << T_FRAC)
#define LN2_2M22 0x1.62e43p-23f /* ln2 * 2^-22 in binary32 */

/* 2^30 * 2^(-i/32) rounded to binary32 */
static const float exp2_tabf[32] = {
    0x1.000000p+30f, 0x1.f50766p+29f, 0x1.ea4afap+29f, 0x1.dfc974p+29f,
    0x1.d5818ep+29f, 0x1.cb720ep+29f, 0x1.c199bep+29f, 0x1.b7f770p+29f,
    0x1.ae89fap+29f, 0x1.a5503cp+29f, 0x1.9c4918p+29f, 0x1.93737cp+29f,
    0x1.8ace54p+29f, 0x1.82589ap+29f, 0x1.7a1148p+29f, 0x1.71f75ep+29f,
    0x1.6a09e6p+29f, 0x1.6247ecp+29f, 0x1.5ab07ep+29f, 0x1.5342b6p+29f,
    0x1.4bfdaep+29f, 0x1.44e086p+29f, 0x1.3dea64p+29f, 0x1.371a74p+29f,
    0x1.306fe0p+29f, 0x1.29e9e0p+29f, 0x1.2387a6p+29f, 0x1.1d4874p+29f,
    0x1.172b84p+29f, 0x1.11301ep+29f, 0x1.0b5586p+29f, 0x1.059b0ep+29f};

__extension__ typedef unsigned __int128 u128;

bool repq_log2softmax_prepare(float in_scale, float s, int bits, repq_log2softmax_params *params)
{
    if (!(in_scale >= 0x1p-40f && in_scale <= 0x1p12f) || !(s >= 0x1p-64f && s <= 1.0f) || bits < 2 ||
        bits > 8)
        return false;
    const double c = (double)in_scale * 1.4426950408889634 * (double)T_ONE;
    int e;
    const double f = frexp(c, &e);
    uint64_t cm = (uint64_t)llround(ldexp(f, 31));
    if (cm == (UINT64_C(1) << 31)) {
        cm >>= 1;
        e++;
    }
    const int cs = 31 - e; /* c = cm * 2^-cs; the range check above keeps cs <= 48 */
    if (cs < 1) {
        /* c >= 2^30 > T_CAP: every d >= 1 is capped. */
        params->cm = T_CAP;
        params->cs = 0;
        params->dcap = 1;
    } else {
        params->cm = (uint32_t)cm;
        params->cs = (uint32_t)cs;
        if (cs >= 34) { /* T_CAP << cs / cm exceeds 2^32: no clamp needed for 32-bit d */
            params->dcap = UINT32_MAX;
        } else {
            /* The smallest d whose t reaches T_CAP; t(dcap) < T_CAP + c < 2^31. */
            const uint64_t cap = (((uint64_t)T_CAP << cs) + cm - 1) / cm;
            params->dcap = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
        }
    }
    params->two_log2_s = (int32_t)lround(2.0 * log2((double)s) * (double)T_ONE);
    params->code_max = (1 << bits) - 1;
    params->sentinel = bits == 8 ? 255 : 1 << bits;
    return true;
}

static inline uint32_t t_q22(const repq_log2softmax_params *p, int32_t xmax, int32_t x)
{
    uint32_t d = (uint32_t)xmax - (uint32_t)x;
    d = d < p->dcap ? d : p->dcap;
    const uint32_t t = (uint32_t)(((uint64_t)d * p->cm) >> p->cs);
    return t < T_CAP ? t : T_CAP;
}

/* 2^-t in Q30, truncated: 2^-(i/32) from the table (i the top 5 fraction bits) times
 * 2^-x, x = r * 2^-22 < 1/32, as 1 - u + u^2/2 - u^3/6 with u = x ln2 (Taylor error
 * below 1e-8), in binary32 with fused multiply-adds only (IEEE-exact, so every CPU
 * and level gives the same bits; relative error ~2e-7), then a right shift by the
 * integer part. */
static inline uint32_t exp2_neg_q30(uint32_t t)
{
    const uint32_t f = t & (T_ONE - 1), i = f >> 17, r = f & 0x1ffff;
    const float u = (float)r * LN2_2M22;
    const float p = fmaf(fmaf(fmaf(-1.0f / 6.0f, u, 0.5f), u, -1.0f), u, 1.0f);
    const uint32_t e = (uint32_t)(int32_t)(exp2_tabf[i] * p);
    const uint32_t sh = t >> T_FRAC;
    return sh < 32 ? e >> sh : 0;
}

int32_t repq_log2_q22_reference(uint64_t sum)
{
    const int msb = 63 - __builtin_clzll(sum);
    uint64_t x = sum << (62 - msb); /* mantissa in Q62, [1, 2) */
    int32_t frac = 0;
    for (int i = 0; i < T_FRAC; i++) {
        /* log2(x^2) = 2 log2(x): squaring shifts the next fraction bit into the integer part. */
        x = (uint64_t)(((u128)x * x) >> 62);
        frac <<= 1;
        if (x >= (UINT64_C(1) << 63)) {
            frac |= 1;
            x >>= 1;
        }
    }
    return (int32_t)((uint32_t)(msb - 30) << T_FRAC) + frac;
}

int32_t repq_log2_q22(uint64_t sum)
{
    /* The double log2 is within ~1e-7 of a Q22 unit of the truth and the squaring
     * within ~2^-38, so away from a unit boundary both floor to the same integer;
     * near one (about 0.2% of sums), and where the sum is not exact in a double,
     * the squaring decides. libm's last bit may differ between systems, but only
     * inside the margin, so the result does not. */
    if (sum < (UINT64_C(1) << 53)) {
        const double y = (log2((double)sum) - 30.0) * (double)T_ONE;
        const double f = floor(y);
        if (y - f > 1e-3 && y - f < 1.0 - 1e-3)
            return (int32_t)f;
    }
    return repq_log2_q22_reference(sum);
}

/* 2*log2(S * 2^-30) + 2*log2(s), Q22, from log2_s = log2(S * 2^-30) in Q22. S >= 2^30
 * because the maximum contributes 1. */
static int32_t row_offset(const repq_log2softmax_params *p, int32_t log2_s)
{
    return 2 * log2_s + p->two_log2_s;
}

static inline uint8_t code_of(const repq_log2softmax_params *p, uint32_t t, int32_t offset)
{
    int32_t v = (int32_t)(2 * t) + offset;
    v = v < 0 ? 0 : v;
    /* Round half to even: add 1/2 - 2^-22, plus 2^-22 when the integer part is odd. */
    const int32_t code = (v + (int32_t)(T_ONE / 2 - 1) + ((v >> T_FRAC) & 1)) >> T_FRAC;
    return (uint8_t)(code > p->code_max ? p->sentinel : code);
}

static inline int32_t score(const int32_t *x, const int32_t *bias, size_t j)
{
    return bias ? (int32_t)((uint32_t)x[j] + (uint32_t)bias[j]) : x[j];
}

static void row_scalar(const repq_log2softmax_params *p, size_t n, const int32_t *x, const int32_t *bias,
                       uint8_t *codes)
{
    int32_t xmax = score(x, bias, 0);
    for (size_t j = 1; j < n; j++)
        xmax = score(x, bias, j) > xmax ? score(x, bias, j) : xmax;
    uint64_t sum = 0;
    for (size_t j = 0; j < n; j++)
        sum += exp2_neg_q30(t_q22(p, xmax, score(x, bias, j)));
    const int32_t offset = row_offset(p, repq_log2_q22(sum));
    for (size_t j = 0; j < n; j++)
        codes[j] = code_of(p, t_q22(p, xmax, score(x, bias, j)), offset);
}

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

/* Scores per call whose t the AVX-512 rows keep between their passes (16 KB of stack),
 * in groups of up to ROW_GROUP rows that share one vector log2; rows longer than
 * T_KEPT compute t twice. */
#define T_KEPT 4096
#define ROW_GROUP 16

AVX512_TARGET static inline __mmask16 tail_mask(size_t left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

AVX512_TARGET static inline __m512i t_q22_avx512(__m512i xmax, __m512i x, __m512i dcap, __m512i cm,
                                                 __m128i cs, __m512i tcap)
{
    const __m512i d = _mm512_min_epu32(_mm512_sub_epi32(xmax, x), dcap);
    const __m512i te = _mm512_srl_epi64(_mm512_mul_epu32(d, cm), cs);
    const __m512i to = _mm512_srl_epi64(_mm512_mul_epu32(_mm512_srli_epi64(d, 32), cm), cs);
    return _mm512_min_epu32(_mm512_mask_blend_epi32((__mmask16)0xaaaa, te, _mm512_slli_epi64(to, 32)), tcap);
}

/* Scores j .. j + 15 (masked), plus the column bias when there is one. */
AVX512_TARGET static inline __m512i load_scores(const int32_t *x, const int32_t *bias, size_t j, __mmask16 mk)
{
    const __m512i v = _mm512_maskz_loadu_epi32(mk, x + j);
    return bias ? _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(mk, bias + j)) : v;
}

AVX512_TARGET static int32_t row_max_avx512(size_t n, const int32_t *x, const int32_t *bias)
{
    __m512i vmax = _mm512_set1_epi32(INT32_MIN);
    for (size_t j = 0; j < n; j += 16)
        vmax = _mm512_mask_max_epi32(vmax, tail_mask(n - j), vmax, load_scores(x, bias, j, tail_mask(n - j)));
    return _mm512_reduce_max_epi32(vmax);
}

/* The constants of exp2_neg_q30_vec. */
typedef struct exp2_vecs {
    __m512 tab_lo, tab_hi;
    __m512i fmask, rmask;
    __m512 ln2, one_f, c3, c2, c1;
} exp2_vecs;

/* exp2_neg_q30 of 16 t (lanes outside mk give 0). */
AVX512_TARGET static inline __attribute__((always_inline)) __m512i exp2_neg_q30_vec(__m512i t, const exp2_vecs *c,
                                                                                    __mmask16 mk)
{
    const __m512i f = _mm512_and_si512(t, c->fmask);
    const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(f, c->rmask)), c->ln2);
    const __m512 poly = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_fmadd_ps(c->c3, u, c->c2), u, c->c1), u, c->one_f);
    const __m512 tab = _mm512_permutex2var_ps(c->tab_lo, _mm512_srli_epi32(f, 17), c->tab_hi);
    const __m512i e = _mm512_cvttps_epi32(_mm512_mul_ps(tab, poly));
    /* vpsrlvd gives 0 for counts >= 32, exactly the scalar's cut-off. */
    return _mm512_maskz_srlv_epi32(mk, e, _mm512_srli_epi32(t, T_FRAC));
}

/* The row's sum S of 2^-t in Q30; t kept in `kept` unless it is NULL. */
AVX512_TARGET static uint64_t row_sum_avx512(const repq_log2softmax_params *p, size_t n, const int32_t *x,
                                             const int32_t *bias, int32_t row_max, uint32_t *kept)
{
    const __m512i xmax = _mm512_set1_epi32(row_max);
    const __m512i dcap = _mm512_set1_epi32((int32_t)p->dcap), cm = _mm512_set1_epi64(p->cm);
    const __m512i tcap32 = _mm512_set1_epi32((int32_t)T_CAP);
    const __m128i cs = _mm_cvtsi32_si128((int)p->cs);
    const exp2_vecs c = {_mm512_loadu_ps(exp2_tabf),          _mm512_loadu_ps(exp2_tabf + 16),
                         _mm512_set1_epi32((int32_t)(T_ONE - 1)), _mm512_set1_epi32(0x1ffff),
                         _mm512_set1_ps(LN2_2M22),                _mm512_set1_ps(1.0f),
                         _mm512_set1_ps(-1.0f / 6.0f),            _mm512_set1_ps(0.5f),
                         _mm512_set1_ps(-1.0f)};
    /* Two vectors per step with their own sums (integer, so the order does not change
     * the total): one vector's chain of dependent operations is longer than the
     * core's window holds of the next ones. */
    __m512i sum_lo = _mm512_setzero_si512(), sum_hi = _mm512_setzero_si512();
    __m512i sum_lo1 = _mm512_setzero_si512(), sum_hi1 = _mm512_setzero_si512();
    size_t j = 0;
    for (; j + 32 <= n; j += 32) {
        const __m512i t0 = t_q22_avx512(xmax, load_scores(x, bias, j, 0xffff), dcap, cm, cs, tcap32);
        const __m512i t1 = t_q22_avx512(xmax, load_scores(x, bias, j + 16, 0xffff), dcap, cm, cs, tcap32);
        if (kept) {
            _mm512_storeu_si512(kept + j, t0);
            _mm512_storeu_si512(kept + j + 16, t1);
        }
        const __m512i v0 = exp2_neg_q30_vec(t0, &c, 0xffff), v1 = exp2_neg_q30_vec(t1, &c, 0xffff);
        sum_lo = _mm512_add_epi64(sum_lo, _mm512_cvtepu32_epi64(_mm512_castsi512_si256(v0)));
        sum_hi = _mm512_add_epi64(sum_hi, _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(v0, 1)));
        sum_lo1 = _mm512_add_epi64(sum_lo1, _mm512_cvtepu32_epi64(_mm512_castsi512_si256(v1)));
        sum_hi1 = _mm512_add_epi64(sum_hi1, _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(v1, 1)));
    }
    for (; j < n; j += 16) {
        const __mmask16 mk = tail_mask(n - j);
        const __m512i t = t_q22_avx512(xmax, load_scores(x, bias, j, mk), dcap, cm, cs, tcap32);
        if (kept)
            _mm512_mask_storeu_epi32(kept + j, mk, t);
        const __m512i v = exp2_neg_q30_vec(t, &c, mk);
        sum_lo = _mm512_add_epi64(sum_lo, _mm512_cvtepu32_epi64(_mm512_castsi512_si256(v)));
        sum_hi = _mm512_add_epi64(sum_hi, _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(v, 1)));
    }
    sum_lo = _mm512_add_epi64(sum_lo, sum_lo1);
    sum_hi = _mm512_add_epi64(sum_hi, sum_hi1);
    return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(sum_lo, sum_hi));
}

/* The codes of a row from its kept t, or from the scores again when kept is NULL. */
AVX512_TARGET static void row_codes_avx512(const repq_log2softmax_params *p, size_t n, const int32_t *x,
                                           const int32_t *bias, int32_t row_max, const uint32_t *kept,
                                           int32_t offset, uint8_t *codes)
{
    const __m512i xmax = _mm512_set1_epi32(row_max);
    const __m512i dcap = _mm512_set1_epi32((int32_t)p->dcap), cm = _mm512_set1_epi64(p->cm);
    const __m512i tcap32 = _mm512_set1_epi32((int32_t)T_CAP);
    const __m128i cs = _mm_cvtsi32_si128((int)p->cs);
    const __m512i voff = _mm512_set1_epi32(offset), half = _mm512_set1_epi32((int32_t)(T_ONE / 2 - 1));
    const __m512i one = _mm512_set1_epi32(1), cmax = _mm512_set1_epi32(p->code_max);
    const __m512i sentinel = _mm512_set1_epi32(p->sentinel);
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 mk = tail_mask(n - j);
        const __m512i t = kept ? _mm512_maskz_loadu_epi32(mk, kept + j)
                               : t_q22_avx512(xmax, load_scores(x, bias, j, mk), dcap, cm, cs, tcap32);
        __m512i v = _mm512_add_epi32(_mm512_slli_epi32(t, 1), voff);
        v = _mm512_max_epi32(v, _mm512_setzero_si512());
        const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(v, T_FRAC), one);
        __m512i code = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(v, half), odd), T_FRAC);
        code = _mm512_mask_mov_epi32(code, _mm512_cmpgt_epi32_mask(code, cmax), sentinel);
        _mm512_mask_cvtepi32_storeu_epi8(codes + j, mk, code);
    }
}

/* repq_log2_q22 of up to 8 sums in double lanes: sum = 2^e m with m in [sqrt(1/2),
 * sqrt(2)), log2 m = (2 / ln 2) atanh(r), r = (m - 1) / (m + 1), |r| < 0.1716, by
 * its odd series to r^13 (the rest is below 7e-13, a few millionths of a Q22 unit).
 * Lanes whose sum is 2^52 or more, or whose value lies within 1e-3 of a Q22 unit
 * boundary, take the definition, as the scalar function does. */
AVX512_TARGET static void log2_q22_avx512(size_t count, const uint64_t *sum, int32_t *out)
{
    static const double series[7] = {2.0 / 0.6931471805599453, 2.0 / (3 * 0.6931471805599453),
                                     2.0 / (5 * 0.6931471805599453), 2.0 / (7 * 0.6931471805599453),
                                     2.0 / (9 * 0.6931471805599453), 2.0 / (11 * 0.6931471805599453),
                                     2.0 / (13 * 0.6931471805599453)};
    const __mmask8 mk = (__mmask8)((1u << count) - 1);
    const __m512i s = _mm512_maskz_loadu_epi64(mk, sum);
    const __m512d magic = _mm512_set1_pd(0x1p52);
    const __mmask8 wide = _mm512_mask_cmpge_epu64_mask(mk, s, _mm512_set1_epi64((int64_t)(UINT64_C(1) << 52)));
    /* Exact for s < 2^52: the integer in a double's mantissa, minus 2^52. Masked-off
     * lanes read 0 and give -inf and NaN below, which only reach discarded lanes. */
    const __m512d x = _mm512_sub_pd(_mm512_castsi512_pd(_mm512_or_si512(s, _mm512_castpd_si512(magic))), magic);
    __m512d e = _mm512_getexp_pd(x);
    __m512d m = _mm512_getmant_pd(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src);
    const __mmask8 high = _mm512_cmp_pd_mask(m, _mm512_set1_pd(1.4142135623730951), _CMP_GT_OQ);
    m = _mm512_mask_mul_pd(m, high, m, _mm512_set1_pd(0.5));
    e = _mm512_mask_add_pd(e, high, e, _mm512_set1_pd(1.0));
    const __m512d one = _mm512_set1_pd(1.0);
    const __m512d r = _mm512_div_pd(_mm512_sub_pd(m, one), _mm512_add_pd(m, one));
    const __m512d r2 = _mm512_mul_pd(r, r);
    __m512d poly = _mm512_set1_pd(series[6]);
    for (int k = 5; k >= 0; k--)
        poly = _mm512_fmadd_pd(poly, r2, _mm512_set1_pd(series[k]));
    const __m512d y = _mm512_mul_pd(_mm512_fmadd_pd(r, poly, _mm512_sub_pd(e, _mm512_set1_pd(30.0))),
                                    _mm512_set1_pd((double)T_ONE));
    const __m512d f = _mm512_roundscale_pd(y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512d frac = _mm512_sub_pd(y, f);
    const __mmask8 safe = _mm512_cmp_pd_mask(frac, _mm512_set1_pd(1e-3), _CMP_GT_OQ) &
                          _mm512_cmp_pd_mask(frac, _mm512_set1_pd(1.0 - 1e-3), _CMP_LT_OQ) & mk & (__mmask8)~wide;
    _mm256_mask_storeu_epi32(out, safe, _mm512_cvttpd_epi32(f));
    for (unsigned left = mk & (__mmask8)~safe; left; left &= left - 1) {
        const int lane = __builtin_ctz(left);
        out[lane] = repq_log2_q22_reference(sum[lane]);
    }
}

/* Rows in groups: for each row its maximum and sum (t kept), one vector log2 for the
 * group's sums, then each row's codes. */
AVX512_TARGET static void rows_avx512(const repq_log2softmax_params *p, size_t rows, size_t n, const int32_t *x,
                                      size_t ldx, const int32_t *bias, uint8_t *codes, size_t ldcodes)
{
    uint32_t kept[T_KEPT];
    const size_t fit = T_KEPT / n, group = fit < 1 ? 1 : fit > ROW_GROUP ? ROW_GROUP : fit;
    for (size_t i0 = 0; i0 < rows; i0 += group) {
        const size_t g = rows - i0 < group ? rows - i0 : group;
        int32_t row_max[ROW_GROUP], log2_s[ROW_GROUP];
        uint64_t sum[ROW_GROUP];
        for (size_t r = 0; r < g; r++) {
            const int32_t *xr = x + (i0 + r) * ldx;
            row_max[r] = row_max_avx512(n, xr, bias);
            sum[r] = row_sum_avx512(p, n, xr, bias, row_max[r], fit ? kept + r * n : NULL);
        }
        repq_log2_q22_batch(REPQ_LEVEL_AVX512VNNI, g, sum, log2_s);
        for (size_t r = 0; r < g; r++)
            row_codes_avx512(p, n, x + (i0 + r) * ldx, bias, row_max[r], fit ? kept + r * n : NULL,
                             row_offset(p, log2_s[r]), codes + (i0 + r) * ldcodes);
    }
}

/* ---- AVX2 + FMA: the AVX-512 row on 8 lanes (a gather for the table) ------------- */

#define AVX2_TARGET __attribute__((target("avx2,fma")))

AVX2_TARGET static inline __m256i tail_mask8(size_t left)
{
    const int32_t l = left >= 8 ? 8 : (int32_t)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(l), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2_TARGET static inline __m256i load_scores8(const int32_t *x, const int32_t *bias, size_t j, __m256i mk)
{
    const __m256i v = _mm256_maskload_epi32((const int *)(x + j), mk);
    return bias ? _mm256_add_epi32(v, _mm256_maskload_epi32((const int *)(bias + j), mk)) : v;
}

AVX2_TARGET static inline __m256i t_q22_avx2(__m256i xmax, __m256i x, __m256i dcap, __m256i cm, __m128i cs,
                                             __m256i tcap)
{
    const __m256i d = _mm256_min_epu32(_mm256_sub_epi32(xmax, x), dcap);
    const __m256i te = _mm256_srl_epi64(_mm256_mul_epu32(d, cm), cs);
    const __m256i to = _mm256_srl_epi64(_mm256_mul_epu32(_mm256_srli_epi64(d, 32), cm), cs);
    return _mm256_min_epu32(_mm256_blend_epi32(te, _mm256_slli_epi64(to, 32), 0xaa), tcap);
}

AVX2_TARGET static void row_avx2(const repq_log2softmax_params *p, size_t n, const int32_t *x, const int32_t *bias,
                                 uint8_t *codes)
{
    const __m256i lowest = _mm256_set1_epi32(INT32_MIN);
    __m256i vmax = lowest;
    for (size_t j = 0; j < n; j += 8) {
        const __m256i mk = tail_mask8(n - j);
        vmax = _mm256_max_epi32(vmax, _mm256_blendv_epi8(lowest, load_scores8(x, bias, j, mk), mk));
    }
    __m128i m4 = _mm_max_epi32(_mm256_castsi256_si128(vmax), _mm256_extracti128_si256(vmax, 1));
    m4 = _mm_max_epi32(m4, _mm_shuffle_epi32(m4, 0x4e));
    m4 = _mm_max_epi32(m4, _mm_shuffle_epi32(m4, 0xb1));
    const __m256i xmax = _mm256_set1_epi32(_mm_cvtsi128_si32(m4));
    const __m256i dcap = _mm256_set1_epi32((int32_t)p->dcap), cm = _mm256_set1_epi64x((int64_t)p->cm);
    const __m256i tcap32 = _mm256_set1_epi32((int32_t)T_CAP);
    const __m128i cs = _mm_cvtsi32_si128((int)p->cs);
    const __m256i fmask = _mm256_set1_epi32((int32_t)(T_ONE - 1)), rmask = _mm256_set1_epi32(0x1ffff);
    const __m256 ln2 = _mm256_set1_ps(LN2_2M22), one_f = _mm256_set1_ps(1.0f);
    const __m256 c3 = _mm256_set1_ps(-1.0f / 6.0f), c2 = _mm256_set1_ps(0.5f), c1 = _mm256_set1_ps(-1.0f);
    __m256i sum_lo = _mm256_setzero_si256(), sum_hi = _mm256_setzero_si256();
    for (size_t j = 0; j < n; j += 8) {
        const __m256i mk = tail_mask8(n - j);
        const __m256i t = t_q22_avx2(xmax, load_scores8(x, bias, j, mk), dcap, cm, cs, tcap32);
        const __m256i f = _mm256_and_si256(t, fmask);
        const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(f, rmask)), ln2);
        const __m256 poly = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_fmadd_ps(c3, u, c2), u, c1), u, one_f);
        const __m256 tab = _mm256_i32gather_ps(exp2_tabf, _mm256_srli_epi32(f, 17), 4);
        const __m256i e = _mm256_cvttps_epi32(_mm256_mul_ps(tab, poly));
        /* vpsrlvd gives 0 for counts >= 32, exactly the scalar's cut-off. */
        const __m256i v = _mm256_and_si256(_mm256_srlv_epi32(e, _mm256_srli_epi32(t, T_FRAC)), mk);
        sum_lo = _mm256_add_epi64(sum_lo, _mm256_cvtepu32_epi64(_mm256_castsi256_si128(v)));
        sum_hi = _mm256_add_epi64(sum_hi, _mm256_cvtepu32_epi64(_mm256_extracti128_si256(v, 1)));
    }
    const __m256i sum4 = _mm256_add_epi64(sum_lo, sum_hi);
    const __m128i sum2 = _mm_add_epi64(_mm256_castsi256_si128(sum4), _mm256_extracti128_si256(sum4, 1));
    const uint64_t sum = (uint64_t)_mm_cvtsi128_si64(sum2) + (uint64_t)_mm_extract_epi64(sum2, 1);
    const int32_t offset = row_offset(p, repq_log2_q22(sum));
    const __m256i voff = _mm256_set1_epi32(offset), half = _mm256_set1_epi32((int32_t)(T_ONE / 2 - 1));
    const __m256i one = _mm256_set1_epi32(1), cmax = _mm256_set1_epi32(p->code_max);
    const __m256i sentinel = _mm256_set1_epi32(p->sentinel);
    for (size_t j = 0; j < n; j += 8) {
        const __m256i mk = tail_mask8(n - j);
        const __m256i t = t_q22_avx2(xmax, load_scores8(x, bias, j, mk), dcap, cm, cs, tcap32);
        __m256i v = _mm256_add_epi32(_mm256_slli_epi32(t, 1), voff);
        v = _mm256_max_epi32(v, _mm256_setzero_si256());
        const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(v, T_FRAC), one);
        __m256i code = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(v, half), odd), T_FRAC);
        code = _mm256_blendv_epi8(code, sentinel, _mm256_cmpgt_epi32(code, cmax));
        const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
        const __m128i b = _mm_packus_epi16(w, w);
        if (n - j >= 8) {
            _mm_storel_epi64((__m128i *)(void *)(codes + j), b);
        } else {
            uint8_t tmp[16];
            _mm_storeu_si128((__m128i *)(void *)tmp, b);
            memcpy(codes + j, tmp, n - j);
        }
    }
}

void repq_log2_q22_batch(repq_kernel_level level, size_t count, const uint64_t *sum, int32_t *out)
{
    size_t i = 0;
    if (level >= REPQ_LEVEL_AVX512VNNI)
        for (; i < count; i += 8)
            log2_q22_avx512(count - i < 8 ? count - i : 8, sum + i, out + i);
    for (; i < count; i++)
        out[i] = repq_log2_q22(sum[i]);
}

void repq_log2softmax_rows_bias(repq_kernel_level level, const repq_log2softmax_params *params, size_t rows,
                                size_t n, const int32_t *x, size_t ldx, const int32_t *colbias, uint8_t *codes,
                                size_t ldcodes)
{
    if (level >= REPQ_LEVEL_AVX512VNNI) {
        rows_avx512(params, rows, n, x, ldx, colbias, codes, ldcodes);
        return;
    }
    for (size_t i = 0; i < rows; i++) {
        if (level >= REPQ_LEVEL_AVX2)
            row_avx2(params, n, x + i * ldx, colbias, codes + i * ldcodes);
        else
            row_scalar(params, n, x + i * ldx, colbias, codes + i * ldcodes);
    }
}

void repq_log2softmax_rows(repq_kernel_level level, const repq_log2softmax_params *params, size_t rows,
                           size_t n, const int32_t *x, size_t ldx, uint8_t *codes, size_t ldcodes)
{
    repq_log2softmax_rows_bias(level, params, rows, n, x, ldx, NULL, codes, ldcodes);
}
