/* u8 x s8 -> s32 GEMM: packing, the scalar reference and AVX-512 VNNI
 * (AVX2 and AVX-VNNI are in gemm_s8_avx2.c, AMX-INT8 in gemm_s8_amx.c). */
#include "kernels/gemm_s8.h"

#include <string.h>

#include <immintrin.h>

#define GROUP 16 /* output columns per packed group */
#define QUAD 4   /* consecutive k bytes per column in a packed block */
#define BLOCK (GROUP * QUAD)
#define TILE_SLACK (15 * BLOCK) /* see gemm_s8.h */

static size_t div_up(size_t a, size_t b) { return (a + b - 1) / b; }

size_t repq_gemm_u8s8_packed_size(size_t n, size_t k)
{
    return div_up(n, GROUP) * div_up(k, QUAD) * BLOCK + TILE_SLACK;
}

void repq_gemm_u8s8_pack(size_t n, size_t k, const int8_t *b, size_t ldb, void *packed)
{
    const size_t kq = div_up(k, QUAD), groups = div_up(n, GROUP);
    int8_t *out = packed;
    memset(out, 0, groups * kq * BLOCK + TILE_SLACK);
    for (size_t j = 0; j < n; j++) {
        const size_t g = j / GROUP, jj = j % GROUP;
        for (size_t p = 0; p < k; p++)
            out[(g * kq + p / QUAD) * BLOCK + jj * QUAD + p % QUAD] = b[j * ldb + p];
    }
}

void repq_gemm_u8s8_scalar(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                           const void *packed, int32_t *c, size_t ldc)
{
    const size_t kq = div_up(k, QUAD);
    const int8_t *bp = packed;
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) {
            const int8_t *col = bp + (j / GROUP) * kq * BLOCK + (j % GROUP) * QUAD;
            int32_t sum = 0;
            for (size_t p = 0; p < k; p++)
                sum += (int32_t)a[i * lda + p] * col[(p / QUAD) * BLOCK + p % QUAD];
            c[i * ldc + j] = sum;
        }
    }
}

/* Four A bytes as one little-endian word; only `avail` of them are read so the
 * last quad of the last row never touches memory past the matrix (the matching
 * packed B bytes are zero, so the filler does not matter). */
static inline int32_t load_quad(const uint8_t *p, size_t avail)
{
    uint32_t w = 0;
    memcpy(&w, p, avail < QUAD ? avail : QUAD);
    return (int32_t)w;
}

/* ---- AVX-512 VNNI ------------------------------------------------------
 * One vpdpbusd per (row, group, quad): A's quad broadcast to all 16 lanes,
 * the packed block as the signed operand. vpdpbusd adds the four products
 * without intermediate saturation, so the sums are exact. A register tile of
 * VNNI_MR rows x VNNI_NG groups keeps 24 accumulators live; K is split into
 * chunks so the B panel of one tile column stays in L1/L2 while all rows of A
 * stream past it. */

#define VNNI_MR 6
#define VNNI_NG 4
#define VNNI_KC 256 /* quads per K chunk: 64 KiB of B per 4-group panel */

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

VNNI_TARGET static inline __attribute__((always_inline)) void
vnni_tile(int mr, int ng, const uint8_t *a, size_t lda, size_t q0, size_t nq, size_t k,
          const int8_t *b, size_t gstride, int32_t *c, size_t ldc, int first, __mmask16 last_mask)
{
    __m512i acc[VNNI_MR][VNNI_NG];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int g = 0; g < ng; g++) {
            const __mmask16 mk = g == ng - 1 ? last_mask : (__mmask16)0xffff;
            acc[r][g] = first ? _mm512_setzero_si512()
                              : _mm512_maskz_loadu_epi32(mk, c + (size_t)r * ldc + (size_t)g * GROUP);
        }
    size_t qend = q0 + nq;
    /* The last quad may be partial; it is done after the loop with a safe load. */
    const size_t qfull = qend * QUAD > k ? qend - 1 : qend;
    for (size_t q = q0; q < qfull; q++) {
        const int8_t *blk = b + q * BLOCK;
        __m512i w[VNNI_NG];
#pragma GCC unroll 8
        for (int g = 0; g < ng; g++)
            w[g] = _mm512_loadu_si512((const void *)(blk + (size_t)g * gstride));
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            int32_t quad;
            memcpy(&quad, a + (size_t)r * lda + q * QUAD, sizeof quad);
            const __m512i x = _mm512_set1_epi32(quad);
#pragma GCC unroll 8
            for (int g = 0; g < ng; g++)
                acc[r][g] = _mm512_dpbusd_epi32(acc[r][g], x, w[g]);
        }
    }
    if (qfull < qend) {
        const int8_t *blk = b + qfull * BLOCK;
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            const __m512i x = _mm512_set1_epi32(load_quad(a + (size_t)r * lda + qfull * QUAD, k - qfull * QUAD));
#pragma GCC unroll 8
            for (int g = 0; g < ng; g++)
                acc[r][g] = _mm512_dpbusd_epi32(acc[r][g], x,
                                                _mm512_loadu_si512((const void *)(blk + (size_t)g * gstride)));
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int g = 0; g < ng; g++) {
            const __mmask16 mk = g == ng - 1 ? last_mask : (__mmask16)0xffff;
            _mm512_mask_storeu_epi32(c + (size_t)r * ldc + (size_t)g * GROUP, mk, acc[r][g]);
        }
}

/* The full 6x4 tile with the 24 accumulators as named variables: GCC does not
 * scalarize a 24-register array and would otherwise keep it on the stack. */
#define ACC_ROW(r) __m512i r##_0, r##_1, r##_2, r##_3
#define FOR_ROWS(X) X(a0, 0) X(a1, 1) X(a2, 2) X(a3, 3) X(a4, 4) X(a5, 5)
VNNI_TARGET static void vnni_tile_full(const uint8_t *a, size_t lda, size_t q0, size_t nq, size_t k,
                                       const int8_t *b, size_t gstride, int32_t *c, size_t ldc, int first,
                                       __mmask16 last_mask)
{
    ACC_ROW(a0); ACC_ROW(a1); ACC_ROW(a2); ACC_ROW(a3); ACC_ROW(a4); ACC_ROW(a5);
#define INIT(r, i)                                                                          \
    r##_0 = first ? _mm512_setzero_si512() : _mm512_loadu_si512(c + (i) * ldc);              \
    r##_1 = first ? _mm512_setzero_si512() : _mm512_loadu_si512(c + (i) * ldc + 16);         \
    r##_2 = first ? _mm512_setzero_si512() : _mm512_loadu_si512(c + (i) * ldc + 32);         \
    r##_3 = first ? _mm512_setzero_si512() : _mm512_maskz_loadu_epi32(last_mask, c + (i) * ldc + 48);
    FOR_ROWS(INIT)
#undef INIT
    const size_t qend = q0 + nq;
    const size_t qfull = qend * QUAD > k ? qend - 1 : qend;
    const uint8_t *ap = a + q0 * QUAD;
    for (size_t q = q0; q < qfull; q++, ap += QUAD) {
        const int8_t *blk = b + q * BLOCK;
        const __m512i w0 = _mm512_loadu_si512((const void *)blk);
        const __m512i w1 = _mm512_loadu_si512((const void *)(blk + gstride));
        const __m512i w2 = _mm512_loadu_si512((const void *)(blk + 2 * gstride));
        const __m512i w3 = _mm512_loadu_si512((const void *)(blk + 3 * gstride));
#define STEP(r, i)                                                        \
    {                                                                     \
        int32_t quad;                                                     \
        memcpy(&quad, ap + (i) * lda, sizeof quad);                       \
        const __m512i x = _mm512_set1_epi32(quad);                        \
        r##_0 = _mm512_dpbusd_epi32(r##_0, x, w0);                        \
        r##_1 = _mm512_dpbusd_epi32(r##_1, x, w1);                        \
        r##_2 = _mm512_dpbusd_epi32(r##_2, x, w2);                        \
        r##_3 = _mm512_dpbusd_epi32(r##_3, x, w3);                        \
    }
        FOR_ROWS(STEP)
#undef STEP
    }
    if (qfull < qend) {
        const int8_t *blk = b + qfull * BLOCK;
        const __m512i w0 = _mm512_loadu_si512((const void *)blk);
        const __m512i w1 = _mm512_loadu_si512((const void *)(blk + gstride));
        const __m512i w2 = _mm512_loadu_si512((const void *)(blk + 2 * gstride));
        const __m512i w3 = _mm512_loadu_si512((const void *)(blk + 3 * gstride));
#define STEP(r, i)                                                                         \
    {                                                                                      \
        const __m512i x = _mm512_set1_epi32(load_quad(a + (i) * lda + qfull * QUAD, k - qfull * QUAD)); \
        r##_0 = _mm512_dpbusd_epi32(r##_0, x, w0);                                         \
        r##_1 = _mm512_dpbusd_epi32(r##_1, x, w1);                                         \
        r##_2 = _mm512_dpbusd_epi32(r##_2, x, w2);                                         \
        r##_3 = _mm512_dpbusd_epi32(r##_3, x, w3);                                         \
    }
        FOR_ROWS(STEP)
#undef STEP
    }
#define STORE(r, i)                                                     \
    _mm512_storeu_si512(c + (i) * ldc, r##_0);                          \
    _mm512_storeu_si512(c + (i) * ldc + 16, r##_1);                     \
    _mm512_storeu_si512(c + (i) * ldc + 32, r##_2);                     \
    _mm512_mask_storeu_epi32(c + (i) * ldc + 48, last_mask, r##_3);
    FOR_ROWS(STORE)
#undef STORE
}
#undef ACC_ROW
#undef FOR_ROWS

#define VNNI_TILE_FN(MR, NG)                                                                         \
    VNNI_TARGET static void vnni_tile_##MR##_##NG(const uint8_t *a, size_t lda, size_t q0, size_t nq, \
                                                  size_t k, const int8_t *b, size_t gstride, int32_t *c, \
                                                  size_t ldc, int first, __mmask16 last_mask)        \
    {                                                                                                \
        vnni_tile(MR, NG, a, lda, q0, nq, k, b, gstride, c, ldc, first, last_mask);                 \
    }
#define VNNI_TILE_ROW(MR) VNNI_TILE_FN(MR, 1) VNNI_TILE_FN(MR, 2) VNNI_TILE_FN(MR, 3) VNNI_TILE_FN(MR, 4)
VNNI_TILE_ROW(1)
VNNI_TILE_ROW(2)
VNNI_TILE_ROW(3)
VNNI_TILE_ROW(4)
VNNI_TILE_ROW(5)
VNNI_TILE_ROW(6)

typedef void (*vnni_tile_fn)(const uint8_t *, size_t, size_t, size_t, size_t, const int8_t *, size_t,
                             int32_t *, size_t, int, __mmask16);

#define VNNI_TILE_PTRS(MR) {vnni_tile_##MR##_1, vnni_tile_##MR##_2, vnni_tile_##MR##_3, vnni_tile_##MR##_4}
static const vnni_tile_fn vnni_tiles[VNNI_MR][VNNI_NG] = {
    VNNI_TILE_PTRS(1), VNNI_TILE_PTRS(2), VNNI_TILE_PTRS(3),
    VNNI_TILE_PTRS(4), VNNI_TILE_PTRS(5), VNNI_TILE_PTRS(6),
};

VNNI_TARGET void repq_gemm_u8s8_avx512vnni(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                                           const void *packed, int32_t *c, size_t ldc)
{
    const size_t kq = div_up(k, QUAD), groups = div_up(n, GROUP);
    const size_t gstride = kq * BLOCK;
    const int8_t *bp = packed;
    for (size_t q0 = 0; q0 < kq; q0 += VNNI_KC) {
        const size_t nq = kq - q0 < VNNI_KC ? kq - q0 : VNNI_KC;
        for (size_t g0 = 0; g0 < groups; g0 += VNNI_NG) {
            const size_t ng = groups - g0 < VNNI_NG ? groups - g0 : VNNI_NG;
            const size_t last_cols = n - (g0 + ng - 1) * GROUP;
            const __mmask16 last_mask =
                last_cols >= GROUP ? (__mmask16)0xffff : (__mmask16)((1u << last_cols) - 1);
            for (size_t i = 0; i < m; i += VNNI_MR) {
                const size_t mr = m - i < VNNI_MR ? m - i : VNNI_MR;
                const vnni_tile_fn fn = mr == VNNI_MR && ng == VNNI_NG ? vnni_tile_full : vnni_tiles[mr - 1][ng - 1];
                fn(a + i * lda, lda, q0, nq, k, bp + g0 * gstride, gstride,
                                           c + i * ldc + g0 * GROUP, ldc, q0 == 0, last_mask);
            }
        }
    }
}

void repq_gemm_u8s8(repq_kernel_level level, size_t m, size_t n, size_t k, const uint8_t *a,
                    size_t lda, const void *packed, int32_t *c, size_t ldc)
{
    switch (level) {
    case REPQ_LEVEL_AMX:
        repq_gemm_u8s8_amx(m, n, k, a, lda, packed, c, ldc);
        return;
    case REPQ_LEVEL_AVX512VNNI:
        repq_gemm_u8s8_avx512vnni(m, n, k, a, lda, packed, c, ldc);
        return;
    case REPQ_LEVEL_AVXVNNI:
        repq_gemm_u8s8_avxvnni(m, n, k, a, lda, packed, c, ldc);
        return;
    case REPQ_LEVEL_AVX2:
        repq_gemm_u8s8_avx2(m, n, k, a, lda, packed, c, ldc);
        return;
    case REPQ_LEVEL_SCALAR:
        break;
    }
    repq_gemm_u8s8_scalar(m, n, k, a, lda, packed, c, ldc);
}
