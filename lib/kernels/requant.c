/* Requantization, dequantization and row sums: scalar references and SIMD
 * versions that reproduce them bit for bit. */
#include "kernels/requant.h"

#include <math.h>

#include <immintrin.h>

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))

bool repq_requant_multiplier_from_float(double real, int32_t *mult, int32_t *shift)
{
    if (!(real > 0.0) || !(real < 32768.0))
        return false;
    int e;
    const double f = frexp(real, &e); /* real = f * 2^e, f in [0.5, 1) */
    int64_t q = llround(ldexp(f, 31));
    if (q == (INT64_C(1) << 31)) { /* f rounded up to 1.0 */
        q >>= 1;
        e++;
    }
    int32_t s = -e;
    if (s < REPQ_REQUANT_SHIFT_MIN) { /* real rounded up to 2^15 itself */
        q = INT32_MAX;
        s = REPQ_REQUANT_SHIFT_MIN;
    } else if (s > REPQ_REQUANT_SHIFT_MAX) {
        q = llround(ldexp(real, 31 + REPQ_REQUANT_SHIFT_MAX));
        s = REPQ_REQUANT_SHIFT_MAX;
    }
    *mult = (int32_t)q;
    *shift = s;
    return true;
}

int64_t repq_requant_round(int32_t v, int32_t mult, int32_t shift)
{
    const int64_t p = (int64_t)v * mult;
    const int r = 31 + shift;
    /* Rounding the magnitude makes ties go away from zero symmetrically. */
    uint64_t mag = p < 0 ? (uint64_t)0 - (uint64_t)p : (uint64_t)p;
    mag = (mag + (UINT64_C(1) << (r - 1))) >> r;
    return p < 0 ? -(int64_t)mag : (int64_t)mag;
}

static inline uint8_t requant_one(int32_t v, int32_t mult, int32_t shift, int32_t zp, int32_t qmin,
                                  int32_t qmax)
{
    int64_t y = repq_requant_round(v, mult, shift) + zp;
    y = y < qmin ? qmin : y > qmax ? qmax : y;
    return (uint8_t)y;
}

static void requant_u8_scalar(size_t m, size_t n, const int32_t *acc, size_t ldacc, const int32_t *bias,
                              const int32_t *mult, const int32_t *shift, int32_t zp, int32_t qmin,
                              int32_t qmax, uint8_t *out, size_t ldout, size_t j0)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = j0; j < n; j++) {
            const int32_t v = acc[i * ldacc + j] + (bias ? bias[j] : 0);
            out[i * ldout + j] = requant_one(v, mult[j], shift[j], zp, qmin, qmax);
        }
}

/* AVX2 has 32x32->64 multiplies only on even lanes, so the 8 lanes are done as
 * two halves of 4 int64 each; there is no 64-bit abs/min/max, so compares and
 * blends stand in for them. */
__attribute__((target("avx2"))) static inline __m256i avx2_round64(__m256i p, __m256i r, __m256i zmin,
                                                                  __m256i zmax)
{
    const __m256i one = _mm256_set1_epi64x(1);
    const __m256i sign = _mm256_cmpgt_epi64(_mm256_setzero_si256(), p);
    __m256i mag = _mm256_sub_epi64(_mm256_xor_si256(p, sign), sign);
    const __m256i half = _mm256_sllv_epi64(one, _mm256_sub_epi64(r, one));
    mag = _mm256_srlv_epi64(_mm256_add_epi64(mag, half), r);
    __m256i y = _mm256_sub_epi64(_mm256_xor_si256(mag, sign), sign);
    y = _mm256_blendv_epi8(y, zmax, _mm256_cmpgt_epi64(y, zmax));
    y = _mm256_blendv_epi8(y, zmin, _mm256_cmpgt_epi64(zmin, y));
    return y;
}

__attribute__((target("avx2"))) static void requant_u8_avx2(size_t m, size_t n, const int32_t *acc,
                                                            size_t ldacc, const int32_t *bias,
                                                            const int32_t *mult, const int32_t *shift,
                                                            int32_t zp, int32_t qmin, int32_t qmax,
                                                            uint8_t *out, size_t ldout)
{
    /* Clamping before adding zp keeps the 64-bit value in range of the 32-bit add. */
    const __m256i zmin = _mm256_set1_epi64x(qmin - zp), zmax = _mm256_set1_epi64x(qmax - zp);
    const __m256i vzp = _mm256_set1_epi32(zp), k31 = _mm256_set1_epi32(31);
    const size_t nv = n / 8 * 8;
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < nv; j += 8) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(acc + i * ldacc + j));
            if (bias)
                v = _mm256_add_epi32(v, _mm256_loadu_si256((const __m256i *)(bias + j)));
            const __m256i mu = _mm256_loadu_si256((const __m256i *)(mult + j));
            const __m256i r = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(shift + j)), k31);
            const __m256i pe = _mm256_mul_epi32(v, mu);
            const __m256i po = _mm256_mul_epi32(_mm256_srli_epi64(v, 32), _mm256_srli_epi64(mu, 32));
            const __m256i re = _mm256_srli_epi64(_mm256_slli_epi64(r, 32), 32);
            const __m256i ro = _mm256_srli_epi64(r, 32);
            const __m256i ye = avx2_round64(pe, re, zmin, zmax);
            const __m256i yo = avx2_round64(po, ro, zmin, zmax);
            __m256i y = _mm256_blend_epi32(ye, _mm256_slli_epi64(yo, 32), 0xaa);
            y = _mm256_add_epi32(y, vzp);
            const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
            _mm_storel_epi64((__m128i *)(out + i * ldout + j), _mm_packus_epi16(w, w));
        }
    }
    if (nv < n)
        requant_u8_scalar(m, n, acc, ldacc, bias, mult, shift, zp, qmin, qmax, out, ldout, nv);
}

AVX512_TARGET static inline __m512i avx512_round64(__m512i p, __m512i r, __m512i zmin, __m512i zmax)
{
    const __m512i one = _mm512_set1_epi64(1);
    const __mmask8 neg = _mm512_cmplt_epi64_mask(p, _mm512_setzero_si512());
    __m512i mag = _mm512_abs_epi64(p);
    const __m512i half = _mm512_sllv_epi64(one, _mm512_sub_epi64(r, one));
    mag = _mm512_srlv_epi64(_mm512_add_epi64(mag, half), r);
    const __m512i y = _mm512_mask_sub_epi64(mag, neg, _mm512_setzero_si512(), mag);
    return _mm512_max_epi64(_mm512_min_epi64(y, zmax), zmin);
}

AVX512_TARGET static void requant_u8_avx512(size_t m, size_t n, const int32_t *acc, size_t ldacc,
                                            const int32_t *bias, const int32_t *mult, const int32_t *shift,
                                            int32_t zp, int32_t qmin, int32_t qmax, uint8_t *out,
                                            size_t ldout)
{
    const __m512i zmin = _mm512_set1_epi64(qmin - zp), zmax = _mm512_set1_epi64(qmax - zp);
    const __m512i vzp = _mm512_set1_epi32(zp), k31 = _mm512_set1_epi32(31);
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j += 16) {
            const __mmask16 mk = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
            __m512i v = _mm512_maskz_loadu_epi32(mk, acc + i * ldacc + j);
            if (bias)
                v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(mk, bias + j));
            const __m512i mu = _mm512_maskz_loadu_epi32(mk, mult + j);
            /* Masked-off lanes get shift 0 so no shift count is out of range. */
            const __m512i r = _mm512_add_epi32(_mm512_maskz_loadu_epi32(mk, shift + j), k31);
            const __m512i pe = _mm512_mul_epi32(v, mu);
            const __m512i po = _mm512_mul_epi32(_mm512_srli_epi64(v, 32), _mm512_srli_epi64(mu, 32));
            const __m512i re = _mm512_srli_epi64(_mm512_slli_epi64(r, 32), 32);
            const __m512i ro = _mm512_srli_epi64(r, 32);
            const __m512i ye = avx512_round64(pe, re, zmin, zmax);
            const __m512i yo = avx512_round64(po, ro, zmin, zmax);
            __m512i y = _mm512_mask_blend_epi32((__mmask16)0xaaaa, ye, _mm512_slli_epi64(yo, 32));
            y = _mm512_add_epi32(y, vzp);
            _mm512_mask_cvtepi32_storeu_epi8(out + i * ldout + j, mk, y);
        }
    }
}

void repq_requant_u8(repq_kernel_level level, size_t m, size_t n, const int32_t *acc, size_t ldacc,
                     const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t zp,
                     int32_t qmin, int32_t qmax, uint8_t *out, size_t ldout)
{
    if (level >= REPQ_LEVEL_AVX512VNNI)
        requant_u8_avx512(m, n, acc, ldacc, bias, mult, shift, zp, qmin, qmax, out, ldout);
    else if (level >= REPQ_LEVEL_AVX2)
        requant_u8_avx2(m, n, acc, ldacc, bias, mult, shift, zp, qmin, qmax, out, ldout);
    else
        requant_u8_scalar(m, n, acc, ldacc, bias, mult, shift, zp, qmin, qmax, out, ldout, 0);
}

/* ---- dequantization to float ------------------------------------------ */

static void dequant_scalar(size_t m, size_t n, const int32_t *acc, size_t ldacc, const int32_t *bias,
                           const float *scale, float *out, size_t ldout, size_t j0)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = j0; j < n; j++)
            out[i * ldout + j] = (float)(acc[i * ldacc + j] + (bias ? bias[j] : 0)) * scale[j];
}

__attribute__((target("avx2"))) static void dequant_avx2(size_t m, size_t n, const int32_t *acc,
                                                         size_t ldacc, const int32_t *bias,
                                                         const float *scale, float *out, size_t ldout)
{
    const size_t nv = n / 8 * 8;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < nv; j += 8) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(acc + i * ldacc + j));
            if (bias)
                v = _mm256_add_epi32(v, _mm256_loadu_si256((const __m256i *)(bias + j)));
            _mm256_storeu_ps(out + i * ldout + j, _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(scale + j)));
        }
    if (nv < n)
        dequant_scalar(m, n, acc, ldacc, bias, scale, out, ldout, nv);
}

AVX512_TARGET static void dequant_avx512(size_t m, size_t n, const int32_t *acc, size_t ldacc,
                                         const int32_t *bias, const float *scale, float *out, size_t ldout)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j += 16) {
            const __mmask16 mk = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
            __m512i v = _mm512_maskz_loadu_epi32(mk, acc + i * ldacc + j);
            if (bias)
                v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(mk, bias + j));
            const __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_maskz_loadu_ps(mk, scale + j));
            _mm512_mask_storeu_ps(out + i * ldout + j, mk, y);
        }
}

void repq_dequant_f32(repq_kernel_level level, size_t m, size_t n, const int32_t *acc, size_t ldacc,
                      const int32_t *bias, const float *scale, float *out, size_t ldout)
{
    if (level >= REPQ_LEVEL_AVX512VNNI)
        dequant_avx512(m, n, acc, ldacc, bias, scale, out, ldout);
    else if (level >= REPQ_LEVEL_AVX2)
        dequant_avx2(m, n, acc, ldacc, bias, scale, out, ldout);
    else
        dequant_scalar(m, n, acc, ldacc, bias, scale, out, ldout, 0);
}

/* ---- row sums ----------------------------------------------------------- */

static int32_t row_sum_scalar(const uint8_t *a, size_t k)
{
    int32_t s = 0;
    for (size_t p = 0; p < k; p++)
        s += a[p];
    return s;
}

/* vpsadbw against zero sums 8 bytes into each 64-bit lane without overflow. */
__attribute__((target("avx2"))) static int32_t row_sum_avx2(const uint8_t *a, size_t k)
{
    __m256i acc = _mm256_setzero_si256();
    size_t p = 0;
    for (; p + 32 <= k; p += 32)
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_loadu_si256((const __m256i *)(a + p)),
                                                    _mm256_setzero_si256()));
    __m128i s = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
    return (int32_t)_mm_cvtsi128_si64(s) + row_sum_scalar(a + p, k - p);
}

AVX512_TARGET static int32_t row_sum_avx512(const uint8_t *a, size_t k)
{
    __m512i acc = _mm512_setzero_si512();
    for (size_t p = 0; p < k; p += 64) {
        const __mmask64 mk = k - p >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (k - p)) - 1);
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_maskz_loadu_epi8(mk, a + p), _mm512_setzero_si512()));
    }
    return (int32_t)_mm512_reduce_add_epi64(acc);
}

void repq_row_sums_u8(repq_kernel_level level, size_t m, size_t k, const uint8_t *a, size_t lda,
                      int32_t *sums)
{
    for (size_t i = 0; i < m; i++) {
        if (level >= REPQ_LEVEL_AVX512VNNI)
            sums[i] = row_sum_avx512(a + i * lda, k);
        else if (level >= REPQ_LEVEL_AVX2)
            sums[i] = row_sum_avx2(a + i * lda, k);
        else
            sums[i] = row_sum_scalar(a + i * lda, k);
    }
}
