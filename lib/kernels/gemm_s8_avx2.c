/* u8 x s8 -> s32 GEMM with 256-bit registers: AVX-VNNI (vpdpbusd, VEX form) and
 * plain AVX2, over the packed layout of gemm_s8.h.
 *
 * A packed block (16 columns x 4 k bytes) is two ymm operands: bytes 0-31 are
 * columns 0-7, bytes 32-63 columns 8-15. One register tile is TILE_MR rows x one
 * column group: 2 * TILE_MR int32 accumulators (12 of the 16 ymm registers), the
 * block's two halves and one broadcast A quad.
 *
 * AVX2 has no u8 x s8 dot product that cannot saturate: vpmaddubsw adds two
 * products in int16, and 255 * b0 + 255 * b1 leaves int16 once |b0| + |b1| > 128.
 * So the AVX2 kernel looks at the weights first. A block whose byte pairs (0-1 and
 * 2-3 of every column) all have |b0| + |b1| <= 128 cannot saturate (255 * 128 =
 * 32640) and takes vpmaddubsw then vpmaddwd by ones; a block with a wider pair
 * takes the exact form, vpmaddwd(a even bytes, b even bytes sign-extended) +
 * vpmaddwd(odd, odd), each product at most 255 * 128 and each pair sum exact in
 * int32. Weights of 4 to 7 bits are always narrow and get the first form (about
 * 1.8x the multiply-adds per cycle); 8-bit weights, trained or random, and
 * attention keys nearly always have some wide pair among a block's 32, and keep the
 * second. Either way every result has the scalar reference's bits. */
#include "kernels/gemm_s8.h"

#include <stdbool.h>
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

__attribute__((target("avx2"))) static inline __m256i dot_wide(__m256i acc, __m256i a, bhalf_avx2 b)
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
DEFINE_TILE(tile_wide, AVX2_TARGET, bhalf_avx2, prep_avx2, dot_wide)

/* Row tiles of TILE_MR, then one tile for the rest, with mr a constant at each
 * call so the accumulators live in registers. TILE_AT(mr, i) calls the tile of
 * rows i .. i + mr - 1. */
#define ROW_TILES(M, TILE_AT)                                                                          \
    do {                                                                                               \
        size_t i_ = 0;                                                                                 \
        for (; i_ + TILE_MR <= (M); i_ += TILE_MR)                                                     \
            TILE_AT(TILE_MR, i_);                                                                      \
        switch ((M) - i_) {                                                                            \
        case 5: TILE_AT(5, i_); break;                                                                 \
        case 4: TILE_AT(4, i_); break;                                                                 \
        case 3: TILE_AT(3, i_); break;                                                                 \
        case 2: TILE_AT(2, i_); break;                                                                 \
        case 1: TILE_AT(1, i_); break;                                                                 \
        default: break;                                                                                \
        }                                                                                              \
    } while (0)

#define VNNI_TILE_AT(MR, I) tile_vnni(MR, a + (I) * lda, lda, k, bg, c + (I) * ldc + g * GROUP, ldc, cols)

VNNI_TARGET void repq_gemm_u8s8_avxvnni(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                                        const void *packed, int32_t *c, size_t ldc)
{
    const size_t kq = (k + QUAD - 1) / QUAD, groups = (n + GROUP - 1) / GROUP;
    const int8_t *bp = packed;
    for (size_t g = 0; g < groups; g++) {
        const int8_t *bg = bp + g * kq * BLOCK;
        const size_t cols = n - g * GROUP < GROUP ? n - g * GROUP : GROUP;
        ROW_TILES(m, VNNI_TILE_AT);
    }
}

/* ---- plain AVX2: the narrow (vpmaddubsw) and wide (vpmaddwd) forms per block */

#define MAX_QUADS (REPQ_GEMM_U8S8_MAX_K / QUAD)

static inline bool quad_is_wide(const uint64_t *wide, size_t q)
{
    return (wide[q / 64] >> (q % 64)) & 1;
}

/* Marks the quads of one column group that have a pair with |b0| + |b1| > 128 and
 * returns how many there are. */
AVX2_TARGET static size_t mark_wide_quads(const int8_t *bg, size_t kq, uint64_t *wide)
{
    const __m256i ones = _mm256_set1_epi8(1), limit = _mm256_set1_epi16(128);
    size_t count = 0;
    memset(wide, 0, (kq + 63) / 64 * sizeof *wide);
    for (size_t q = 0; q < kq; q++) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(const void *)(bg + q * BLOCK));
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(const void *)(bg + q * BLOCK + BLOCK / 2));
        /* |b| read as an unsigned byte (|-128| is 0x80, 128) times 1, pairs summed:
         * exact, at most 256. */
        const __m256i s0 = _mm256_maddubs_epi16(_mm256_abs_epi8(w0), ones);
        const __m256i s1 = _mm256_maddubs_epi16(_mm256_abs_epi8(w1), ones);
        const __m256i over = _mm256_or_si256(_mm256_cmpgt_epi16(s0, limit), _mm256_cmpgt_epi16(s1, limit));
        if (!_mm256_testz_si256(over, over)) {
            wide[q / 64] |= (uint64_t)1 << (q % 64);
            count++;
        }
    }
    return count;
}

/* acc += 4-term sums for a half block whose pairs are all narrow: the int16 pair
 * sums are exact, vpmaddwd by ones adds the two pairs of each column in int32. */
AVX2_TARGET static inline __m256i dot_narrow(__m256i acc, __m256i x, const int8_t *p)
{
    const __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)p);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), _mm256_set1_epi16(1)));
}

/* Four A bytes in every lane; a partial last quad reads only the bytes inside the row. */
AVX2_TARGET static inline __m256i broadcast_quad(const uint8_t *p, bool partial, size_t avail)
{
    int32_t quad;
    if (!partial)
        memcpy(&quad, p, sizeof quad);
    else
        quad = quad_at(p, avail);
    return _mm256_set1_epi32(quad);
}

/* One tile of mr rows over all of k for one column group: every quad narrow, or
 * (mixed) each as `wide` marks it. mixed is a constant where the tile is inlined,
 * so the all-narrow loop has no test. */
AVX2_TARGET static inline __attribute__((always_inline)) void tile_avx2(int mr, const uint8_t *a, size_t lda,
                                                                         size_t k, const int8_t *bg,
                                                                         bool mixed, const uint64_t *wide,
                                                                         int32_t *c,
                                                                         size_t ldc, size_t cols)
{
    __m256i lo[TILE_MR], hi[TILE_MR];
    _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++) lo[r] = hi[r] = _mm256_setzero_si256();
    const size_t kq = (k + QUAD - 1) / QUAD, kfull = k / QUAD;
    for (size_t q = 0; q < kq; q++) {
        const int8_t *blk = bg + q * BLOCK;
        const bool partial = q >= kfull;
        if (mixed && quad_is_wide(wide, q)) {
            const bhalf_avx2 b0 = prep_avx2(blk), b1 = prep_avx2(blk + BLOCK / 2);
            _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++)
            {
                const __m256i x = broadcast_quad(a + (size_t)r * lda + q * QUAD, partial, k - q * QUAD);
                lo[r] = dot_wide(lo[r], x, b0);
                hi[r] = dot_wide(hi[r], x, b1);
            }
        } else {
            _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++)
            {
                const __m256i x = broadcast_quad(a + (size_t)r * lda + q * QUAD, partial, k - q * QUAD);
                lo[r] = dot_narrow(lo[r], x, blk);
                hi[r] = dot_narrow(hi[r], x, blk + BLOCK / 2);
            }
        }
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++) store_row(c + (size_t)r * ldc, lo[r], hi[r], cols);
}

/* One column group, all rows, in each of the three ways: all quads wide, all
 * narrow, or mixed. Separate functions: inlined into one, their tiles spilled
 * accumulators. */
#define WIDE_TILE_AT(MR, I) tile_wide(MR, a + (I) * lda, lda, k, bg, c + (I) * ldc, ldc, cols)
#define NARROW_TILE_AT(MR, I) tile_avx2(MR, a + (I) * lda, lda, k, bg, false, NULL, c + (I) * ldc, ldc, cols)
#define MIXED_TILE_AT(MR, I) tile_avx2(MR, a + (I) * lda, lda, k, bg, true, wide, c + (I) * ldc, ldc, cols)
#define DEFINE_GROUP(NAME, TILE_AT)                                                                    \
    AVX2_TARGET __attribute__((noinline)) static void NAME(size_t m, const uint8_t *a, size_t lda, size_t k, \
                                                          const int8_t *bg, const uint64_t *wide, int32_t *c,  \
                                                          size_t ldc, size_t cols)                             \
    {                                                                                                          \
        (void)wide;                                                                                            \
        ROW_TILES(m, TILE_AT);                                                                                 \
    }
DEFINE_GROUP(group_wide, WIDE_TILE_AT)
DEFINE_GROUP(group_narrow, NARROW_TILE_AT)
DEFINE_GROUP(group_mixed, MIXED_TILE_AT)

/* ---- the wide form with A widened once per row tile ---------------------------------
 *
 * The wide form's vpmaddwd needs A's even bytes (0, 2) and odd bytes (1, 3) of each quad
 * as int16 pairs. Split from the broadcast quad, that is two of its ten vector
 * operations per row and quad, repeated for every column group. For wide groups the
 * rows are therefore widened once per row tile into `widened` (per quad: a0, a2, a1, a3
 * as uint16), and the tile walks the wide groups with both halves of each quad
 * broadcast from there: eight operations per row and quad. The products and sums are
 * the same, so are the bits. A row tile's widened rows take TILE_MR * k * 2 bytes of
 * stack; longer k keeps the per-group split. */
#define WIDEN_MAX_K 4096
/* Column groups classified (and their narrow or mixed ones done) before each pass of
 * the wide ones over the row tiles. */
#define GROUP_CHUNK 64

/* Row r of a, quads 0 .. kq-1 (the last one partial when k % 4 != 0), as
 * (a0, a2, a1, a3) uint16 per quad. */
AVX2_TARGET static void widen_row(const uint8_t *a, size_t k, uint16_t *out)
{
    /* Each 4-byte quad of a 16-byte lane reordered to bytes 0, 2, 1, 3. */
    const __m128i order = _mm_setr_epi8(0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15);
    size_t p = 0;
    for (; p + 16 <= k; p += 16) {
        const __m128i v = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(a + p)), order);
        _mm256_storeu_si256((__m256i *)(void *)(out + p), _mm256_cvtepu8_epi16(v));
    }
    for (; p < k; p += QUAD) {
        const uint32_t q = (uint32_t)quad_at(a + p, k - p); /* byte t of the quad: bits 8t .. 8t + 7 */
        out[p] = (uint16_t)(q & 0xff);
        out[p + 1] = (uint16_t)((q >> 16) & 0xff);
        out[p + 2] = (uint16_t)((q >> 8) & 0xff);
        out[p + 3] = (uint16_t)(q >> 24);
    }
}

/* mr widened rows (stride kq quads) times one wide column group, all of k. */
AVX2_TARGET static inline __attribute__((always_inline)) void tile_widened(int mr, const uint16_t *aw,
                                                                            size_t kq, const int8_t *bg,
                                                                            int32_t *c, size_t ldc, size_t cols)
{
    __m256i lo[TILE_MR], hi[TILE_MR];
    _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++) lo[r] = hi[r] = _mm256_setzero_si256();
    for (size_t q = 0; q < kq; q++) {
        const bhalf_avx2 b0 = prep_avx2(bg + q * BLOCK), b1 = prep_avx2(bg + q * BLOCK + BLOCK / 2);
        _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++)
        {
            const uint16_t *w = aw + ((size_t)r * kq + q) * QUAD;
            int32_t even, odd;
            memcpy(&even, w, sizeof even);
            memcpy(&odd, w + 2, sizeof odd);
            const __m256i xe = _mm256_set1_epi32(even), xo = _mm256_set1_epi32(odd);
            lo[r] = _mm256_add_epi32(_mm256_add_epi32(lo[r], _mm256_madd_epi16(xe, b0.even)),
                                     _mm256_madd_epi16(xo, b0.odd));
            hi[r] = _mm256_add_epi32(_mm256_add_epi32(hi[r], _mm256_madd_epi16(xe, b1.even)),
                                     _mm256_madd_epi16(xo, b1.odd));
        }
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < mr; r++) store_row(c + (size_t)r * ldc, lo[r], hi[r], cols);
}

/* Rows i .. i + mr - 1 widened, then times every group of the chunk marked wide. */
AVX2_TARGET static inline __attribute__((always_inline)) void rows_widened(
    int mr, const uint8_t *a, size_t lda, size_t n, size_t k, const int8_t *bp, const bool *wide_group,
    size_t g0, size_t gn, uint16_t *aw, int32_t *c, size_t ldc)
{
    const size_t kq = (k + QUAD - 1) / QUAD;
    for (int r = 0; r < mr; r++)
        widen_row(a + (size_t)r * lda, k, aw + (size_t)r * kq * QUAD);
    for (size_t g = g0; g < g0 + gn; g++)
        if (wide_group[g - g0])
            tile_widened(mr, aw, kq, bp + g * kq * BLOCK, c + g * GROUP, ldc,
                         n - g * GROUP < GROUP ? n - g * GROUP : GROUP);
}

#define WIDENED_TILE_AT(MR, I)                                                                           \
    rows_widened(MR, a + (I) * lda, lda, n, k, bp, wide_group, g0, gn, widened, c + (I) * ldc, ldc)

AVX2_TARGET __attribute__((noinline)) static void groups_widened(size_t m, size_t n, size_t k, const uint8_t *a,
                                                                 size_t lda, const int8_t *bp,
                                                                 const bool *wide_group, size_t g0, size_t gn,
                                                                 int32_t *c, size_t ldc)
{
    uint16_t widened[TILE_MR * WIDEN_MAX_K];
    ROW_TILES(m, WIDENED_TILE_AT);
}

AVX2_TARGET void repq_gemm_u8s8_avx2(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                                     const void *packed, int32_t *c, size_t ldc)
{
    const size_t kq = (k + QUAD - 1) / QUAD, groups = (n + GROUP - 1) / GROUP;
    const int8_t *bp = packed;
    uint64_t wide[MAX_QUADS / 64]; /* 2 KB */
    bool wide_group[GROUP_CHUNK];
    for (size_t g0 = 0; g0 < groups; g0 += GROUP_CHUNK) {
        const size_t gn = groups - g0 < GROUP_CHUNK ? groups - g0 : GROUP_CHUNK;
        size_t widened_groups = 0;
        for (size_t g = g0; g < g0 + gn; g++) {
            const int8_t *bg = bp + g * kq * BLOCK;
            const size_t cols = n - g * GROUP < GROUP ? n - g * GROUP : GROUP;
            /* Mostly wide groups (8-bit weights with large values, attention keys) skip
             * the per-quad test: the wide form costs about what the test would save. */
            const size_t nwide = mark_wide_quads(bg, kq, wide);
            wide_group[g - g0] = false;
            if (nwide == 0) {
                group_narrow(m, a, lda, k, bg, wide, c + g * GROUP, ldc, cols);
            } else if (2 * nwide <= kq) {
                group_mixed(m, a, lda, k, bg, wide, c + g * GROUP, ldc, cols);
            } else if (k > WIDEN_MAX_K) {
                group_wide(m, a, lda, k, bg, wide, c + g * GROUP, ldc, cols);
            } else {
                wide_group[g - g0] = true;
                widened_groups++;
            }
        }
        if (widened_groups)
            groups_widened(m, n, k, a, lda, bp, wide_group, g0, gn, c, ldc);
    }
}
