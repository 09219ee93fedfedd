/* Integer log2 softmax: scalar reference and an AVX-512 version equal to it. */
#include "kernels/softmax_log2.h"

#include <math.h>

#include <immintrin.h>

#define T_FRAC 22
#define T_ONE (1u << T_FRAC)
/* t >= 192 yields the sentinel for every s >= 2^-64 and b <= 8 (2t + 2 log2 s >= 256),
 * and keeps 2t + offset below 2^31. */
#define T_CAP (192u << T_FRAC)
#define LN2_Q27 93032640u        /* round(ln2 * 2^27) */
#define THIRD_Q32 1431655765u    /* floor(2^32 / 3) */

/* round(2^30 * 2^(-i/32)) */
static const uint32_t exp2_tab[32] = {
    1073741824, 1050733751, 1028218693, 1006186087, 984625594, 963527098, 942880699, 922676710,
    902905651,  883558244,  864625413,  846098274,  827968132, 810226483, 792865000, 775875538,
    759250125,  742980960,  727060411,  711481005,  696235434, 681316545, 666717336, 652430958,
    638450708,  624770026,  611382493,  598281827,  585461881, 572916640, 560640218, 548626854};

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

static inline uint32_t mul_shr(uint32_t a, uint32_t b, int sh) { return (uint32_t)(((uint64_t)a * b) >> sh); }

/* 2^-t in Q30, truncated: 2^-(i/32) from the table times 2^-x, x = r * 2^-22 < 1/32,
 * as 1 - u (1 - u/2 (1 - u/3)) with u = x ln2 in Q32 (Taylor to u^3: error below
 * 1e-8), then a right shift by the integer part. */
static inline uint32_t exp2_neg_q30(uint32_t t)
{
    const uint32_t f = t & (T_ONE - 1), i = f >> 17, r = f & 0x1ffff;
    const uint32_t u = mul_shr(r, LN2_Q27, 17);
    const uint32_t b = (1u << 31) - (mul_shr(u, THIRD_Q32, 32) >> 1); /* 1 - u/3, Q31 */
    const uint32_t c = mul_shr(u, b, 32);                              /* u/2 (1 - u/3), Q32 */
    const uint32_t d = (1u << 31) - (c >> 1);                          /* Q31 */
    const uint32_t q = mul_shr(u, d, 31);                              /* 1 - 2^-x, Q32 */
    const uint32_t e = exp2_tab[i] - mul_shr(exp2_tab[i], q, 32);
    const uint32_t sh = t >> T_FRAC;
    return sh < 32 ? e >> sh : 0;
}

/* 2*log2(S * 2^-30) + 2*log2(s), Q22. S >= 2^30 because the maximum contributes 1. */
static int32_t row_offset(const repq_log2softmax_params *p, uint64_t sum)
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
    const int32_t log2_sum = (int32_t)((uint32_t)(msb - 30) << T_FRAC) + frac;
    return 2 * log2_sum + p->two_log2_s;
}

static inline uint8_t code_of(const repq_log2softmax_params *p, uint32_t t, int32_t offset)
{
    int32_t v = (int32_t)(2 * t) + offset;
    v = v < 0 ? 0 : v;
    /* Round half to even: add 1/2 - 2^-22, plus 2^-22 when the integer part is odd. */
    const int32_t code = (v + (int32_t)(T_ONE / 2 - 1) + ((v >> T_FRAC) & 1)) >> T_FRAC;
    return (uint8_t)(code > p->code_max ? p->sentinel : code);
}

static void row_scalar(const repq_log2softmax_params *p, size_t n, const int32_t *x, uint8_t *codes)
{
    int32_t xmax = x[0];
    for (size_t j = 1; j < n; j++)
        xmax = x[j] > xmax ? x[j] : xmax;
    uint64_t sum = 0;
    for (size_t j = 0; j < n; j++)
        sum += exp2_neg_q30(t_q22(p, xmax, x[j]));
    const int32_t offset = row_offset(p, sum);
    for (size_t j = 0; j < n; j++)
        codes[j] = code_of(p, t_q22(p, xmax, x[j]), offset);
}

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))

AVX512_TARGET static inline __mmask16 tail_mask(size_t left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

/* (a * b) >> sh per 32-bit lane, from the exact 64-bit products (result < 2^32). */
AVX512_TARGET static inline __m512i mul_shr_avx512(__m512i a, __m512i b, int sh)
{
    const __m512i pe = _mm512_srli_epi64(_mm512_mul_epu32(a, b), (unsigned)sh);
    const __m512i po =
        _mm512_srli_epi64(_mm512_mul_epu32(_mm512_srli_epi64(a, 32), _mm512_srli_epi64(b, 32)), (unsigned)sh);
    return _mm512_mask_blend_epi32((__mmask16)0xaaaa, pe, _mm512_slli_epi64(po, 32));
}

/* Bits half, half + 2, half + 4, ... of a 16-lane mask: its even or odd lanes. */
static inline __mmask8 lane_bits(__mmask16 mk, int half)
{
    if (mk == 0xffff)
        return 0xff;
    unsigned r = 0;
    for (int i = 0; i < 8; i++)
        r |= (((unsigned)mk >> (2 * i + half)) & 1u) << i;
    return (__mmask8)r;
}

AVX512_TARGET static inline __m512i t_q22_avx512(__m512i xmax, __m512i x, __m512i dcap, __m512i cm,
                                                 __m128i cs, __m512i tcap)
{
    const __m512i d = _mm512_min_epu32(_mm512_sub_epi32(xmax, x), dcap);
    const __m512i te = _mm512_srl_epi64(_mm512_mul_epu32(d, cm), cs);
    const __m512i to = _mm512_srl_epi64(_mm512_mul_epu32(_mm512_srli_epi64(d, 32), cm), cs);
    return _mm512_min_epu32(_mm512_mask_blend_epi32((__mmask16)0xaaaa, te, _mm512_slli_epi64(to, 32)), tcap);
}

AVX512_TARGET static void row_avx512(const repq_log2softmax_params *p, size_t n, const int32_t *x,
                                     uint8_t *codes)
{
    __m512i vmax = _mm512_set1_epi32(INT32_MIN);
    for (size_t j = 0; j < n; j += 16)
        vmax = _mm512_max_epi32(vmax, _mm512_mask_loadu_epi32(vmax, tail_mask(n - j), x + j));
    const __m512i xmax = _mm512_set1_epi32(_mm512_reduce_max_epi32(vmax));
    const __m512i dcap = _mm512_set1_epi32((int32_t)p->dcap), cm = _mm512_set1_epi64(p->cm);
    const __m512i tcap = _mm512_set1_epi64(T_CAP), tcap32 = _mm512_set1_epi32((int32_t)T_CAP);
    const __m128i cs = _mm_cvtsi32_si128((int)p->cs);
    const __m512i tab_lo = _mm512_loadu_si512((const void *)exp2_tab);
    const __m512i tab_hi = _mm512_loadu_si512((const void *)(exp2_tab + 16));
    const __m512i fmask = _mm512_set1_epi32((int32_t)(T_ONE - 1)), rmask = _mm512_set1_epi32(0x1ffff);
    const __m512i ln2 = _mm512_set1_epi32((int32_t)LN2_Q27), third = _mm512_set1_epi32((int32_t)THIRD_Q32);
    const __m512i one31 = _mm512_set1_epi64(INT64_C(1) << 31);
    const __m512i lo32 = _mm512_set1_epi64(0xffffffff);
    __m512i sum = _mm512_setzero_si512();
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 mk = tail_mask(n - j);
        const __m512i xv = _mm512_maskz_loadu_epi32(mk, x + j);
        const __m512i dd = _mm512_min_epu32(_mm512_sub_epi32(xmax, xv), dcap);
        /* Even and odd lanes as 64-bit lanes: every product below is one vpmuludq. */
        for (int half = 0; half < 2; half++) {
            const __m512i dh = half ? _mm512_srli_epi64(dd, 32) : _mm512_and_si512(dd, lo32);
            const __m512i t = _mm512_min_epu64(_mm512_srl_epi64(_mm512_mul_epu32(dh, cm), cs), tcap);
            const __m512i f = _mm512_and_si512(t, fmask);
            const __m512i r = _mm512_and_si512(f, rmask);
            const __m512i u = _mm512_srli_epi64(_mm512_mul_epu32(r, ln2), 17);
            const __m512i b = _mm512_sub_epi64(one31, _mm512_srli_epi64(_mm512_mul_epu32(u, third), 33));
            const __m512i c = _mm512_srli_epi64(_mm512_mul_epu32(u, b), 32);
            const __m512i d = _mm512_sub_epi64(one31, _mm512_srli_epi64(c, 1));
            const __m512i q = _mm512_srli_epi64(_mm512_mul_epu32(u, d), 31);
            /* Table entries land in the low dword of each 64-bit lane, zeros above. */
            const __m512i tab =
                _mm512_maskz_permutex2var_epi32((__mmask16)0x5555, tab_lo, _mm512_srli_epi64(f, 17), tab_hi);
            const __m512i e = _mm512_sub_epi64(tab, _mm512_srli_epi64(_mm512_mul_epu32(tab, q), 32));
            /* vpsrlvq gives 0 for counts >= 64; e < 2^31, so counts >= 32 give 0 as in the scalar. */
            const __m512i v = _mm512_srlv_epi64(e, _mm512_srli_epi64(t, T_FRAC));
            sum = _mm512_mask_add_epi64(sum, lane_bits(mk, half), sum, v);
        }
    }
    const int32_t offset = row_offset(p, (uint64_t)_mm512_reduce_add_epi64(sum));
    const __m512i voff = _mm512_set1_epi32(offset), half = _mm512_set1_epi32((int32_t)(T_ONE / 2 - 1));
    const __m512i one = _mm512_set1_epi32(1), cmax = _mm512_set1_epi32(p->code_max);
    const __m512i sentinel = _mm512_set1_epi32(p->sentinel);
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 mk = tail_mask(n - j);
        const __m512i t = t_q22_avx512(xmax, _mm512_maskz_loadu_epi32(mk, x + j), dcap, cm, cs, tcap32);
        __m512i v = _mm512_add_epi32(_mm512_slli_epi32(t, 1), voff);
        v = _mm512_max_epi32(v, _mm512_setzero_si512());
        const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(v, T_FRAC), one);
        __m512i code = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(v, half), odd), T_FRAC);
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
