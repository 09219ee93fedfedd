/* Log2-code attention times V: scalar reference and AVX-512 version. */
#include "kernels/attn_log2.h"

#include <immintrin.h>

#include "kernels/requant.h"

int repq_attn_v_frac_bits_max(size_t tokens)
{
    for (int f = 24; f >= 0; f--) {
        const double bound = 1.4142135623730951 * (double)tokens * 255.0 * (double)(1u << f);
        if (bound < 2147483647.0)
            return f;
    }
    return -1;
}

static void accumulate_scalar(size_t rows, size_t tokens, size_t dim, const uint8_t *codes,
                              size_t ldcodes, int32_t sentinel, const uint8_t *v, size_t ldv, int32_t zv,
                              int frac_bits, int32_t *e, int32_t *d, size_t ldacc)
{
    for (size_t i = 0; i < rows; i++) {
        int32_t *er = e + i * ldacc, *dr = d + i * ldacc;
        for (size_t j = 0; j < dim; j++)
            er[j] = dr[j] = 0;
        for (size_t t = 0; t < tokens; t++) {
            const int32_t c = codes[i * ldcodes + t];
            const int32_t h = (c + 1) >> 1;
            if (c >= sentinel || h > frac_bits)
                continue;
            const int32_t w = (int32_t)(1u << (frac_bits - h));
            int32_t *acc = (c & 1) ? dr : er;
            for (size_t j = 0; j < dim; j++)
                acc[j] += ((int32_t)v[t * ldv + j] - zv) * w;
        }
    }
}

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))

/* 64 output columns per pass: 4 registers each for E and D stay live while all
 * tokens stream by; v rows of one head fit in L1 and are reused by every row. */
AVX512_TARGET static void accumulate_avx512(size_t rows, size_t tokens, size_t dim, const uint8_t *codes,
                                            size_t ldcodes, int32_t sentinel, const uint8_t *v, size_t ldv,
                                            int32_t zv, int frac_bits, int32_t *e, int32_t *d, size_t ldacc)
{
    const __m512i vzv = _mm512_set1_epi32(zv);
    for (size_t i = 0; i < rows; i++) {
        const uint8_t *cr = codes + i * ldcodes;
        for (size_t j0 = 0; j0 < dim; j0 += 64) {
            const size_t left = dim - j0;
            const __mmask64 mk = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
            __m512i ea[4], da[4];
            for (int u = 0; u < 4; u++)
                ea[u] = da[u] = _mm512_setzero_si512();
            for (size_t t = 0; t < tokens; t++) {
                const int32_t c = cr[t];
                const int32_t h = (c + 1) >> 1;
                if (c >= sentinel || h > frac_bits)
                    continue;
                const __m128i sh = _mm_cvtsi32_si128(frac_bits - h);
                const __m512i bytes = _mm512_maskz_loadu_epi8(mk, v + t * ldv + j0);
                __m512i x[4];
                x[0] = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(bytes));
                x[1] = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(bytes, 1));
                x[2] = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(bytes, 2));
                x[3] = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(bytes, 3));
                __m512i *acc = (c & 1) ? da : ea;
                for (int u = 0; u < 4; u++)
                    acc[u] = _mm512_add_epi32(acc[u], _mm512_sll_epi32(_mm512_sub_epi32(x[u], vzv), sh));
            }
            for (int u = 0; u < 4; u++) {
                const size_t off = j0 + 16 * (size_t)u;
                if (off >= dim)
                    break;
                const __mmask16 m16 = dim - off >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (dim - off)) - 1);
                _mm512_mask_storeu_epi32(e + i * ldacc + off, m16, ea[u]);
                _mm512_mask_storeu_epi32(d + i * ldacc + off, m16, da[u]);
            }
        }
    }
}

void repq_attn_v_accumulate(repq_kernel_level level, size_t rows, size_t tokens, size_t dim,
                            const uint8_t *codes, size_t ldcodes, int32_t sentinel, const uint8_t *v,
                            size_t ldv, int32_t zv, int frac_bits, int32_t *e, int32_t *d, size_t ldacc)
{
    if (level >= REPQ_LEVEL_AVX512VNNI)
        accumulate_avx512(rows, tokens, dim, codes, ldcodes, sentinel, v, ldv, zv, frac_bits, e, d, ldacc);
    else
        accumulate_scalar(rows, tokens, dim, codes, ldcodes, sentinel, v, ldv, zv, frac_bits, e, d, ldacc);
}

#define CHUNK 64

static void combine_scalar(size_t n, const int32_t *e, const int32_t *d, int32_t *y)
{
    for (size_t j = 0; j < n; j++)
        y[j] = e[j] + (int32_t)(((int64_t)d[j] * REPQ_SQRT2_Q30 + (INT64_C(1) << 29)) >> 30);
}

AVX512_TARGET static void combine_avx512(size_t n, const int32_t *e, const int32_t *d, int32_t *y)
{
    const __m512i s2 = _mm512_set1_epi64(REPQ_SQRT2_Q30), half = _mm512_set1_epi64(INT64_C(1) << 29);
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 mk = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        const __m512i dv = _mm512_maskz_loadu_epi32(mk, d + j);
        const __m512i pe = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mul_epi32(dv, s2), half), 30);
        const __m512i po =
            _mm512_srai_epi64(_mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(dv, 32), s2), half), 30);
        const __m512i p = _mm512_mask_blend_epi32((__mmask16)0xaaaa, pe, _mm512_slli_epi64(po, 32));
        _mm512_mask_storeu_epi32(y + j, mk, _mm512_add_epi32(_mm512_maskz_loadu_epi32(mk, e + j), p));
    }
}

void repq_attn_v_finish(repq_kernel_level level, size_t rows, size_t dim, const int32_t *e,
                        const int32_t *d, size_t ldacc, int32_t mult, int32_t shift, int32_t zp,
                        uint8_t *out, size_t ldout)
{
    /* The requantizer takes per-column constants; one chunk of them on the stack
     * serves every row, so nothing is allocated. */
    int32_t y[CHUNK], mults[CHUNK], shifts[CHUNK];
    for (int j = 0; j < CHUNK; j++) {
        mults[j] = mult;
        shifts[j] = shift;
    }
    for (size_t i = 0; i < rows; i++)
        for (size_t j0 = 0; j0 < dim; j0 += CHUNK) {
            const size_t nc = dim - j0 < CHUNK ? dim - j0 : CHUNK;
            if (level >= REPQ_LEVEL_AVX512VNNI)
                combine_avx512(nc, e + i * ldacc + j0, d + i * ldacc + j0, y);
            else
                combine_scalar(nc, e + i * ldacc + j0, d + i * ldacc + j0, y);
            repq_requant_u8(level, 1, nc, y, CHUNK, NULL, mults, shifts, zp, 0, 255, out + i * ldout + j0, ldout);
        }
}
