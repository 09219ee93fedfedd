/* Float -> uint8 quantization and GEMM epilogues: scalar references and AVX2 and
 * AVX-512 versions that reproduce them bit for bit (same float operations in the
 * same order: a correctly rounded division, round-half-even, a product then a sum). */
#include "kernels/quantize_f32.h"

#include <math.h>

#include <immintrin.h>

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
                          const float *bias, float qs, float zf, float qmax, uint8_t *out, size_t ldout)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float p = (float)exact_one(acc[i * ldacc + j], rowsum[i], colmul[j], colconst[j]) * scale[j];
            float y = p + (bias ? bias[j] : 0.0f);
            out[i * ldout + j] = quant_one(y, qs, zf, qmax);
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

AVX512_TARGET static void quantize_avx512(size_t n, const float *x, float s, float zf, float qmax,
                                          uint8_t *codes)
{
    const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps(zf), vq = _mm512_set1_ps(qmax);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 mk = tail_mask(n - i);
        const __m512i c = quant_vec(_mm512_maskz_loadu_ps(mk, x + i), vs, vz, vq);
        _mm512_mask_cvtepi32_storeu_epi8(codes + i, mk, c);
    }
}

/* max(t, -z) returns -z when t is NaN, like fmaxf. */
AVX512_TARGET static void two_region_avx512(size_t n, const float *x, float s, float zf, float top, float p2m,
                                            uint8_t *codes)
{
    const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps(zf), vt = _mm512_set1_ps(top),
                 vp = _mm512_set1_ps(p2m), vnz = _mm512_set1_ps(-zf);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 mk = tail_mask(n - i);
        const __m512 q = _mm512_div_ps(_mm512_maskz_loadu_ps(mk, x + i), vs);
        const __mmask16 pos = _mm512_cmp_ps_mask(q, _mm512_setzero_ps(), _CMP_GE_OQ);
        const __m512 cp = _mm512_mul_ps(
            _mm512_min_ps(_mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vt), vp);
        const __m512 cn = _mm512_max_ps(
            _mm512_roundscale_ps(_mm512_mul_ps(q, vp), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vnz);
        const __m512 c = _mm512_add_ps(_mm512_mask_blend_ps(pos, cn, cp), vz);
        _mm512_mask_cvtepi32_storeu_epi8(codes + i, mk, _mm512_cvttps_epi32(c));
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
                                        float qs, float zf, float qmax, uint8_t *out, size_t ldout)
{
    const __m512 vs = _mm512_set1_ps(qs), vz = _mm512_set1_ps(zf), vq = _mm512_set1_ps(qmax);
    for (size_t i = 0; i < m; i++) {
        const __m512i rs = _mm512_set1_epi32(rowsum[i]);
        for (size_t j = 0; j < n; j += 16) {
            const __mmask16 mk = tail_mask(n - j);
            const __m512 y = y_vec(acc + i * ldacc + j, rs, colmul + j, colconst + j, scale + j,
                                   bias ? bias + j : NULL, mk);
            _mm512_mask_cvtepi32_storeu_epi8(out + i * ldout + j, mk, quant_vec(y, vs, vz, vq));
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

AVX2_TARGET static void two_region_avx2(size_t n, const float *x, float s, float zf, float top, float p2m,
                                        uint8_t *codes)
{
    const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(zf), vt = _mm256_set1_ps(top),
                 vp = _mm256_set1_ps(p2m), vnz = _mm256_set1_ps(-zf);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 q = _mm256_div_ps(_mm256_loadu_ps(x + i), vs);
        const __m256 pos = _mm256_cmp_ps(q, _mm256_setzero_ps(), _CMP_GE_OQ);
        const __m256 cp = _mm256_mul_ps(
            _mm256_min_ps(_mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vt), vp);
        const __m256 cn = _mm256_max_ps(
            _mm256_round_ps(_mm256_mul_ps(q, vp), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vnz);
        store_codes8(codes + i, _mm256_cvttps_epi32(_mm256_add_ps(_mm256_blendv_ps(cn, cp, pos), vz)));
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
                                    const float *bias, float qs, float zf, float qmax, uint8_t *out, size_t ldout)
{
    const __m256 vs = _mm256_set1_ps(qs), vz = _mm256_set1_ps(zf), vq = _mm256_set1_ps(qmax);
    const size_t n8 = n / 8 * 8;
    for (size_t i = 0; i < m; i++) {
        const __m256i rs = _mm256_set1_epi32(rowsum[i]);
        for (size_t j = 0; j < n8; j += 8)
            store_codes8(out + i * ldout + j, quant_vec8(y_vec8(acc + i * ldacc + j, rs, colmul + j, colconst + j,
                                                                scale + j, bias ? bias + j : NULL),
                                                         vs, vz, vq));
        out_u8_scalar(1, n - n8, acc + i * ldacc + n8, ldacc, rowsum + i, colmul + n8, colconst + n8, scale + n8,
                      bias ? bias + n8 : NULL, qs, zf, qmax, out + i * ldout + n8, ldout);
    }
}

/* ---- dispatch ------------------------------------------------------------------ */

void repq_quantize_f32_u8(repq_kernel_level level, size_t n, const float *x, float scale, int32_t zp,
                          int32_t bits, uint8_t *codes)
{
    const float zf = (float)zp, qmax = (float)((1 << bits) - 1);
    if (level >= REPQ_LEVEL_AVX512VNNI)
        quantize_avx512(n, x, scale, zf, qmax, codes);
    else if (level >= REPQ_LEVEL_AVX2)
        quantize_avx2(n, x, scale, zf, qmax, codes);
    else
        quantize_scalar(n, x, scale, zf, qmax, codes);
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

void repq_gemm_out_u8(repq_kernel_level level, size_t m, size_t n, const int32_t *acc, size_t ldacc,
                      const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst,
                      const float *scale, const float *bias, float qscale, int32_t qzp, int32_t bits,
                      uint8_t *out, size_t ldout)
{
    const float zf = (float)qzp, qmax = (float)((1 << bits) - 1);
    if (level >= REPQ_LEVEL_AVX512VNNI)
        out_u8_avx512(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, qscale, zf, qmax, out, ldout);
    else if (level >= REPQ_LEVEL_AVX2)
        out_u8_avx2(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, qscale, zf, qmax, out, ldout);
    else
        out_u8_scalar(m, n, acc, ldacc, rowsum, colmul, colconst, scale, bias, qscale, zf, qmax, out, ldout);
}
