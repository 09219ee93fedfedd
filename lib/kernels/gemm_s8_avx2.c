/* u8 x s8 -> s32 GEMM with 256-bit registers: AVX-VNNI (vpdpbusd, VEX form) and
 * plain AVX2, over the packed layout of gemm_s8.h.
 *
 * A packed block (16 columns x 4 k bytes) is two ymm operands: bytes 0-31 are
 * columns 0-7, bytes 32-63 columns 8-15. One register tile is TILE_MR rows x one
 * column group: 2 * TILE_MR int32 accumulators (12 of the 16 ymm registers), the
 * block's two halves and one broadcast A quad.
 *
 * AVX2 has no u8 x s8 dot product that cannot saturate (vpmaddubsw saturates its
 * int16 pair sums), so it forms the same 4-term sums from even and odd bytes:
 * vpmaddwd(a even bytes, b even bytes sign-extended) + vpmaddwd(odd, odd), each
 * product at most 255 * 128 and each pair sum exact in int32. Both kernels give
 * the scalar reference's bits. */
#include "kernels/gemm_s8.h"

#include <string.h>

#include <immintrin.h>

#define GROUP 16
#define QUAD 4
#define BLOCK (GROUP * QUAD)
#define TILE_MR 6

/* Four A bytes as one word, reading only those inside the row. */
static inline int32_t quad_at(const uint8_t *p, size_t avail)
{
    uint32_t w = 0;
    memcpy(&w, p, avail < QUAD ? avail : QUAD);
    return (int32_t)w;
}

/* ---- the two dot products: acc += 4-term sums of one A quad (broadcast) and a
 * half block, per int32 lane. The B half is prepared once per k step and shared by
 * all rows of the tile. */

typedef struct bhalf_vnni {
    __m256i w;
} bhalf_vnni;

__attribute__((target("avx2,avxvnni"))) static inline bhalf_vnni prep_vnni(const int8_t *p)
{
    bhalf_vnni h = {_mm256_loadu_si256((const __m256i *)(const void *)p)};
    return h;
}

__attribute__((target("avx2,avxvnni"))) static inline __m256i dot_vnni(__m256i acc, __m256i a, bhalf_vnni b)
{
    return _mm256_dpbusd_avx_epi32(acc, a, b.w);
}

typedef struct bhalf_avx2 {
    __m256i even, odd; /* b bytes 0, 2 and 1, 3 of each lane, sign-extended to int16 */
} bhalf_avx2;

__attribute__((target("avx2"))) static inline bhalf_avx2 prep_avx2(const int8_t *p)
{
    const __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)p);
    bhalf_avx2 h = {_mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8), _mm256_srai_epi16(w, 8)};
    return h;
}

__attribute__((target("avx2"))) static inline __m256i dot_avx2(__m256i acc, __m256i a, bhalf_avx2 b)
{
    const __m256i lo_bytes = _mm256_set1_epi16(0x00ff);
    const __m256i a_even = _mm256_and_si256(a, lo_bytes), a_odd = _mm256_srli_epi16(a, 8);
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a_even, b.even));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a_odd, b.odd));
}

/* Stores 16 columns (cols of them valid) of one row. */
__attribute__((target("avx2"))) static inline void store_row(int32_t *c, __m256i lo, __m256i hi, size_t cols)
{
    if (cols == GROUP) {
        _mm256_storeu_si256((__m256i *)(void *)c, lo);
        _mm256_storeu_si256((__m256i *)(void *)(c + 8), hi);
    } else {
        int32_t tmp[GROUP];
        _mm256_storeu_si256((__m256i *)(void *)tmp, lo);
        _mm256_storeu_si256((__m256i *)(void *)(tmp + 8), hi);
        memcpy(c, tmp, cols * sizeof *c);
    }
}

/* One tile of mr rows (a compile-time constant where it is inlined) over all of k
 * for one column group. The last quad may be partial and is read with quad_at. */
#define DEFINE_TILE(NAME, TARGET, BHALF, PREP, DOT)                                                    \
    TARGET static inline __attribute__((always_inline)) void NAME(                                    \
        int mr, const uint8_t *a, size_t lda, size_t k, const int8_t *bg, int32_t *c, size_t ldc,     \
        size_t cols)                                                                                   \
    {                                                                                                  \
        __m256i lo[TILE_MR], hi[TILE_MR];                                                              \
        _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++) lo[r] = hi[r] = _mm256_setzero_si256();   \
        const size_t kq = (k + QUAD - 1) / QUAD, kfull = k / QUAD;                                     \
        for (size_t q = 0; q < kq; q++) {                                                              \
            const BHALF b0 = PREP(bg + q * BLOCK), b1 = PREP(bg + q * BLOCK + BLOCK / 2);              \
            _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++)                                       \
            {                                                                                          \
                const uint8_t *ap = a + (size_t)r * lda + q * QUAD;                                    \
                int32_t quad;                                                                          \
                if (q < kfull)                                                                         \
                    memcpy(&quad, ap, sizeof quad);                                                    \
                else                                                                                   \
                    quad = quad_at(ap, k - q * QUAD);                                                  \
                const __m256i x = _mm256_set1_epi32(quad);                                             \
                lo[r] = DOT(lo[r], x, b0);                                                             \
                hi[r] = DOT(hi[r], x, b1);                                                             \
            }                                                                                          \
        }                                                                                              \
        _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++) store_row(c + (size_t)r * ldc, lo[r], hi[r], cols); \
    }

#define VNNI_TARGET __attribute__((target("avx2,avxvnni")))
#define AVX2_TARGET __attribute__((target("avx2")))
DEFINE_TILE(tile_vnni, VNNI_TARGET, bhalf_vnni, prep_vnni, dot_vnni)
DEFINE_TILE(tile_avx2, AVX2_TARGET, bhalf_avx2, prep_avx2, dot_avx2)

/* Row tiles of TILE_MR, then one tile for the rest, with mr fixed per call site so
 * the accumulators live in registers. */
#define DEFINE_GEMM(NAME, TARGET, TILE)                                                                \
    TARGET void NAME(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const void *packed,  \
                     int32_t *c, size_t ldc)                                                           \
    {                                                                                                  \
        const size_t kq = (k + QUAD - 1) / QUAD, groups = (n + GROUP - 1) / GROUP;                     \
        const int8_t *bp = packed;                                                                     \
        for (size_t g = 0; g < groups; g++) {                                                          \
            const int8_t *bg = bp + g * kq * BLOCK;                                                    \
            const size_t cols = n - g * GROUP < GROUP ? n - g * GROUP : GROUP;                         \
            size_t i = 0;                                                                              \
            for (; i + TILE_MR <= m; i += TILE_MR)                                                     \
                TILE(TILE_MR, a + i * lda, lda, k, bg, c + i * ldc + g * GROUP, ldc, cols);            \
            switch (m - i) {                                                                           \
            case 5: TILE(5, a + i * lda, lda, k, bg, c + i * ldc + g * GROUP, ldc, cols); break;       \
            case 4: TILE(4, a + i * lda, lda, k, bg, c + i * ldc + g * GROUP, ldc, cols); break;       \
            case 3: TILE(3, a + i * lda, lda, k, bg, c + i * ldc + g * GROUP, ldc, cols); break;       \
            case 2: TILE(2, a + i * lda, lda, k, bg, c + i * ldc + g * GROUP, ldc, cols); break;       \
            case 1: TILE(1, a + i * lda, lda, k, bg, c + i * ldc + g * GROUP, ldc, cols); break;       \
            default: break;                                                                            \
            }                                                                                          \
        }                                                                                              \
    }

DEFINE_GEMM(repq_gemm_u8s8_avxvnni, VNNI_TARGET, tile_vnni)
DEFINE_GEMM(repq_gemm_u8s8_avx2, AVX2_TARGET, tile_avx2)
