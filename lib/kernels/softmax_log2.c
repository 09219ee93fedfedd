/* Integer log2 softmax: scalar reference and an AVX-512 version equal to it. */
#include "kernels/softmax_log2.h"

#include <math.h>

#include <immintrin.h>

#define T_FRAC 16
#define T_CAP (512u << T_FRAC)
/* 2^-f for f in [0,1) (f in Q16): 1 + f*(C1 + f*(C2 + f*C3)), Horner with C3, C2 in
 * Q17 and C1 in Q16 so every intermediate product stays below 2^31; a least
 * squares fit on relative error (max 1.4e-4 after rounding). */
#define EXP_C1 (-45324)
#define EXP_C2 30300
#define EXP_C3 (-5194)

bool repq_log2softmax_prepare(float in_scale, float s, int bits, repq_log2softmax_params *params)
{
    if (!(in_scale >= 0x1p-40f && in_scale <= 0x1p12f) || !(s >= 0x1p-64f && s <= 1.0f) || bits < 2 ||
        bits > 8)
        return false;
    const double c = (double)in_scale * 1.4426950408889634 * (double)(1u << T_FRAC);
    int e;
    const double f = frexp(c, &e);
    uint64_t cm = (uint64_t)llround(ldexp(f, 31));
    if (cm == (UINT64_C(1) << 31)) {
        cm >>= 1;
        e++;
    }
    const int cs = 31 - e; /* c = cm * 2^-cs; the range check above keeps cs in [1, 62] */
    params->cm = (uint32_t)cm;
    params->cs = (uint32_t)cs;
    if (cs >= 38) { /* T_CAP << cs / cm exceeds 2^32: no clamp needed for 32-bit d */
        params->dcap = UINT32_MAX;
    } else {
        const uint64_t cap = ((uint64_t)T_CAP << cs) / cm;
        params->dcap = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
    }
    params->two_log2_s = (int32_t)lround(2.0 * log2((double)s) * (double)(1u << T_FRAC));
    params->code_max = (1 << bits) - 1;
    params->sentinel = bits == 8 ? 255 : 1 << bits;
    return true;
}

/* Q(K) of the exponent sum: as many fraction bits as n terms of at most 1 allow. */
static int sum_frac_bits(size_t n)
{
    int lg = 0;
    while (((size_t)1 << lg) < n)
        lg++;
    return 31 - lg < 30 ? 31 - lg : 30;
}

static inline uint32_t t_q16(const repq_log2softmax_params *p, int32_t xmax, int32_t x)
{
    uint32_t d = (uint32_t)xmax - (uint32_t)x;
    d = d < p->dcap ? d : p->dcap;
    return (uint32_t)(((uint64_t)d * p->cm) >> p->cs);
}

/* 2^-t in Q(k), truncated. */
static inline uint32_t exp2_neg(uint32_t t, int k)
{
    const int32_t f = (int32_t)(t & 0xffff);
    int32_t p = EXP_C2 + ((EXP_C3 * f) >> 16);
    p = EXP_C1 + ((p * f) >> 17);
    const uint32_t e = (uint32_t)((1 << 30) + ((p * (f >> 1)) >> 1));
    const uint32_t sh = (uint32_t)(30 - k) + (t >> 16);
    return sh < 32 ? e >> sh : 0;
}

/* 2*log2(S * 2^-k) + 2*log2(s), Q16. S >= 2^k because the maximum contributes 1. */
static int32_t row_offset(const repq_log2softmax_params *p, uint32_t sum, int k)
{
    const int msb = 31 - __builtin_clz(sum);
    uint64_t x = (uint64_t)sum << (31 - msb); /* mantissa in Q31, [1, 2) */
    int32_t frac = 0;
    for (int i = 0; i < T_FRAC; i++) {
        /* log2(x^2) = 2 log2(x): squaring shifts the next fraction bit into the integer part. */
        x = (x * x) >> 31;
        frac <<= 1;
        if (x >= (UINT64_C(1) << 32)) {
            frac |= 1;
            x >>= 1;
        }
    }
    const int32_t log2_sum = (int32_t)((uint32_t)(msb - k) << T_FRAC) + frac;
    return 2 * log2_sum + p->two_log2_s;
}

static inline uint8_t code_of(const repq_log2softmax_params *p, uint32_t t, int32_t offset)
{
    int32_t v = (int32_t)(2 * t) + offset;
    v = v < 0 ? 0 : v;
    /* Round half to even: add 1/2 - 2^-16, plus 2^-16 when the integer part is odd. */
    const int32_t code = (v + 0x7fff + ((v >> T_FRAC) & 1)) >> T_FRAC;
    return (uint8_t)(code > p->code_max ? p->sentinel : code);
}

static void row_scalar(const repq_log2softmax_params *p, size_t n, const int32_t *x, uint8_t *codes)
{
    int32_t xmax = x[0];
    for (size_t j = 1; j < n; j++)
        xmax = x[j] > xmax ? x[j] : xmax;
    const int k = sum_frac_bits(n);
    uint32_t sum = 0;
    for (size_t j = 0; j < n; j++)
        sum += exp2_neg(t_q16(p, xmax, x[j]), k);
    const int32_t offset = row_offset(p, sum, k);
    for (size_t j = 0; j < n; j++)
        codes[j] = code_of(p, t_q16(p, xmax, x[j]), offset);
}

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))

AVX512_TARGET static inline __mmask16 tail_mask(size_t left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

AVX512_TARGET static inline __m512i t_q16_avx512(__m512i xmax, __m512i x, __m512i dcap, __m512i cm,
                                                 __m128i cs)
{
    const __m512i d = _mm512_min_epu32(_mm512_sub_epi32(xmax, x), dcap);
    const __m512i te = _mm512_srl_epi64(_mm512_mul_epu32(d, cm), cs);
    const __m512i to = _mm512_srl_epi64(_mm512_mul_epu32(_mm512_srli_epi64(d, 32), cm), cs);
    return _mm512_mask_blend_epi32((__mmask16)0xaaaa, te, _mm512_slli_epi64(to, 32));
}

AVX512_TARGET static void row_avx512(const repq_log2softmax_params *p, size_t n, const int32_t *x,
                                     uint8_t *codes)
{
    __m512i vmax = _mm512_set1_epi32(INT32_MIN);
    for (size_t j = 0; j < n; j += 16)
        vmax = _mm512_max_epi32(vmax, _mm512_mask_loadu_epi32(vmax, tail_mask(n - j), x + j));
    const __m512i xmax = _mm512_set1_epi32(_mm512_reduce_max_epi32(vmax));
    const __m512i dcap = _mm512_set1_epi32((int32_t)p->dcap), cm = _mm512_set1_epi64(p->cm);
    const __m128i cs = _mm_cvtsi32_si128((int)p->cs);
    const int k = sum_frac_bits(n);
    const __m512i c1 = _mm512_set1_epi32(EXP_C1), c2 = _mm512_set1_epi32(EXP_C2), c3 = _mm512_set1_epi32(EXP_C3);
    const __m512i one30 = _mm512_set1_epi32(1 << 30), lo16 = _mm512_set1_epi32(0xffff);
    const __m512i base_sh = _mm512_set1_epi32(30 - k);
    __m512i sum = _mm512_setzero_si512();
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 mk = tail_mask(n - j);
        const __m512i t = t_q16_avx512(xmax, _mm512_maskz_loadu_epi32(mk, x + j), dcap, cm, cs);
        const __m512i f = _mm512_and_si512(t, lo16);
        __m512i q = _mm512_add_epi32(c2, _mm512_srai_epi32(_mm512_mullo_epi32(c3, f), 16));
        q = _mm512_add_epi32(c1, _mm512_srai_epi32(_mm512_mullo_epi32(q, f), 17));
        const __m512i e = _mm512_add_epi32(
            one30, _mm512_srai_epi32(_mm512_mullo_epi32(q, _mm512_srli_epi32(f, 1)), 1));
        /* vpsrlvd gives 0 for counts >= 32, exactly the scalar's cut-off. */
        const __m512i sh = _mm512_add_epi32(base_sh, _mm512_srli_epi32(t, 16));
        sum = _mm512_mask_add_epi32(sum, mk, sum, _mm512_srlv_epi32(e, sh));
    }
    /* Widened before the horizontal add: the total may be 2^31, which the
     * signed 32-bit reduction helper would overflow. */
    const __m512i wide = _mm512_add_epi64(_mm512_cvtepu32_epi64(_mm512_castsi512_si256(sum)),
                                          _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(sum, 1)));
    const int32_t offset = row_offset(p, (uint32_t)_mm512_reduce_add_epi64(wide), k);
    const __m512i voff = _mm512_set1_epi32(offset), half = _mm512_set1_epi32(0x7fff);
    const __m512i one = _mm512_set1_epi32(1), cmax = _mm512_set1_epi32(p->code_max);
    const __m512i sentinel = _mm512_set1_epi32(p->sentinel);
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 mk = tail_mask(n - j);
        const __m512i t = t_q16_avx512(xmax, _mm512_maskz_loadu_epi32(mk, x + j), dcap, cm, cs);
        __m512i v = _mm512_add_epi32(_mm512_slli_epi32(t, 1), voff);
        v = _mm512_max_epi32(v, _mm512_setzero_si512());
        const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(v, 16), one);
        __m512i code = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(v, half), odd), 16);
        code = _mm512_mask_mov_epi32(code, _mm512_cmpgt_epi32_mask(code, cmax), sentinel);
        _mm512_mask_cvtepi32_storeu_epi8(codes + j, mk, code);
    }
}

void repq_log2softmax_rows(repq_kernel_level level, const repq_log2softmax_params *params, size_t rows,
                           size_t n, const int32_t *x, size_t ldx, uint8_t *codes, size_t ldcodes)
{
    for (size_t i = 0; i < rows; i++) {
        if (level >= REPQ_LEVEL_AVX512VNNI)
            row_avx512(params, n, x + i * ldx, codes + i * ldcodes);
        else
            row_scalar(params, n, x + i * ldx, codes + i * ldcodes);
    }
}
