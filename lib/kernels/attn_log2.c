/* Log2-code attention times V: scalar reference, a compiler-vectorized version for
 * AVX2, and AVX-512 (shift loop and byte-plane GEMMs). */
#include "kernels/attn_log2.h"

#include <math.h>
#include <string.h>

#include <immintrin.h>

#include "core/vectorize.h"
#include "kernels/gemm_s8.h"
#include "kernels/quantize_f32.h"
#include "kernels/requant.h"

/* Byte-wide and branch-free, so the compiler vectorizes it (a head's t * t codes). */
VECTORIZED static bool tail_codes(size_t n, const uint8_t *codes, uint8_t sentinel, uint8_t f2, uint8_t *tail)
{
    uint8_t any = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t c = codes[i], low = (uint8_t)((c > f2) & (c < sentinel));
        tail[i] = low ? (uint8_t)(c - f2) : sentinel;
        any |= low;
    }
    return any != 0;
}

int repq_attn_v_frac_bits_max(size_t tokens)
{
    for (int f = 24; f >= 0; f--) {
        const double bound = 1.4142135623730951 * (double)tokens * 255.0 * (double)(1u << f);
        if (bound < 2147483647.0)
            return f;
    }
    return -1;
}

static inline void accumulate_rows(size_t rows, size_t tokens, size_t dim, const uint8_t *codes,
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
            const uint8_t *vr = v + t * ldv;
            for (size_t j = 0; j < dim; j++)
                acc[j] += ((int32_t)vr[j] - zv) * w;
        }
    }
}

static void accumulate_scalar(size_t rows, size_t tokens, size_t dim, const uint8_t *codes,
                              size_t ldcodes, int32_t sentinel, const uint8_t *v, size_t ldv, int32_t zv,
                              int frac_bits, int32_t *e, int32_t *d, size_t ldacc)
{
    accumulate_rows(rows, tokens, dim, codes, ldcodes, sentinel, v, ldv, zv, frac_bits, e, d, ldacc);
}

/* Rows of more tokens than this take accumulate_vectorized at the AVX2 level. */
#define LIST_MAX 1024

/* Rows with more tokens than LIST_MAX: the same integer loop, vectorized by the compiler
 * in a per-ISA clone (integer arithmetic, so every clone gives the same bits). */
VECTORIZED static void accumulate_vectorized(size_t rows, size_t tokens, size_t dim, const uint8_t *codes,
                                             size_t ldcodes, int32_t sentinel, const uint8_t *v, size_t ldv,
                                             int32_t zv, int frac_bits, int32_t *e, int32_t *d, size_t ldacc)
{
    accumulate_rows(rows, tokens, dim, codes, ldcodes, sentinel, v, ldv, zv, frac_bits, e, d, ldacc);
}

#define AVX2_TARGET __attribute__((target("avx2")))

/* Eight bytes of v as int32 v - zv. */
AVX2_TARGET static inline __m256i v_minus_zv8(const uint8_t *p, __m256i vzv)
{
    return _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)), vzv);
}

/* acc (32 columns) += (v[t] - zv) << shift for each listed token t; v's rows are bytes
 * (stride ldv), or, when `wide` is set, int32 values v - zv already (stride ldw). */
AVX2_TARGET static inline __attribute__((always_inline)) void add_tokens32(const uint16_t *tok,
                                                                          const uint32_t *shift, size_t count,
                                                                          const uint8_t *v, size_t ldv,
                                                                          const int32_t *wide, size_t ldw,
                                                                          __m256i vzv, __m256i acc[4])
{
    for (size_t x = 0; x < count; x++) {
        const __m256i sh = _mm256_set1_epi32((int32_t)shift[x]);
        /* Unrolled, so that acc stays in registers (a loop kept it in memory). */
        _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++)
        {
            const __m256i b =
                wide ? _mm256_loadu_si256((const __m256i *)(const void *)(wide + (size_t)tok[x] * ldw + 8 * u))
                     : v_minus_zv8(v + (size_t)tok[x] * ldv + 8 * u, vzv);
            acc[u] = _mm256_add_epi32(acc[u], _mm256_sllv_epi32(b, sh));
        }
    }
}

/* The AVX2 and AVX-VNNI levels. Each row's valid tokens are listed first, even and odd
 * codes apart with their shifts, so that the E and D accumulators of 32 columns stay in
 * registers and no token branches on its parity (which is random: a branch per token
 * mispredicted half the time). With `widened` (tokens x dim / 32 * 32 int32, from the
 * caller's scratch), V's first dim / 32 * 32 columns are widened to int32 v - zv once
 * per call, so that every row only loads, shifts and adds; without it they are
 * converted per token. The last dim % 32 columns take the plain loop. */
AVX2_TARGET static void accumulate_avx2(size_t rows, size_t tokens, size_t dim, const uint8_t *codes,
                                        size_t ldcodes, int32_t sentinel, const uint8_t *v, size_t ldv, int32_t zv,
                                        int frac_bits, int32_t *e, int32_t *d, size_t ldacc, int32_t *widened)
{
    if (tokens > LIST_MAX) {
        accumulate_vectorized(rows, tokens, dim, codes, ldcodes, sentinel, v, ldv, zv, frac_bits, e, d, ldacc);
        return;
    }
    uint16_t even_t[LIST_MAX], odd_t[LIST_MAX];
    uint32_t even_sh[LIST_MAX], odd_sh[LIST_MAX];
    const __m256i vzv = _mm256_set1_epi32(zv);
    const size_t d32 = dim / 32 * 32;
    const int32_t *wide = NULL;
    if (d32 && widened) {
        for (size_t t = 0; t < tokens; t++)
            for (size_t j = 0; j < d32; j += 8)
                _mm256_storeu_si256((__m256i *)(void *)(widened + t * d32 + j), v_minus_zv8(v + t * ldv + j, vzv));
        wide = widened;
    }
    for (size_t i = 0; i < rows; i++) {
        const uint8_t *cr = codes + i * ldcodes;
        size_t ne = 0, nd = 0;
        for (size_t t = 0; t < tokens; t++) {
            /* Written to both lists; only the right one's count moves (no branch). */
            const int32_t c = cr[t], h = (c + 1) >> 1;
            const size_t valid = c < sentinel && h <= frac_bits, odd = (size_t)(c & 1);
            odd_t[nd] = even_t[ne] = (uint16_t)t;
            odd_sh[nd] = even_sh[ne] = (uint32_t)(frac_bits - h);
            nd += valid & odd;
            ne += valid & (odd ^ 1);
        }
        int32_t *er = e + i * ldacc, *dr = d + i * ldacc;
        for (size_t j0 = 0; j0 < d32; j0 += 32) {
            __m256i ea[4], da[4];
            for (int u = 0; u < 4; u++)
                ea[u] = da[u] = _mm256_setzero_si256();
            if (wide) {
                add_tokens32(even_t, even_sh, ne, NULL, 0, wide + j0, d32, vzv, ea);
                add_tokens32(odd_t, odd_sh, nd, NULL, 0, wide + j0, d32, vzv, da);
            } else {
                add_tokens32(even_t, even_sh, ne, v + j0, ldv, NULL, 0, vzv, ea);
                add_tokens32(odd_t, odd_sh, nd, v + j0, ldv, NULL, 0, vzv, da);
            }
            for (int u = 0; u < 4; u++) {
                _mm256_storeu_si256((__m256i *)(void *)(er + j0 + 8 * (size_t)u), ea[u]);
                _mm256_storeu_si256((__m256i *)(void *)(dr + j0 + 8 * (size_t)u), da[u]);
            }
        }
        if (d32 < dim)
            accumulate_rows(1, tokens, dim - d32, cr, ldcodes, sentinel, v + d32, ldv, zv, frac_bits, er + d32,
                            dr + d32, ldacc);
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
    else if (level >= REPQ_LEVEL_AVX2)
        accumulate_avx2(rows, tokens, dim, codes, ldcodes, sentinel, v, ldv, zv, frac_bits, e, d, ldacc, NULL);
    else
        accumulate_scalar(rows, tokens, dim, codes, ldcodes, sentinel, v, ldv, zv, frac_bits, e, d, ldacc);
}

/* ---- attention x V as GEMMs over byte planes of the weights ---------------------- */

#define GEMM_RB 48 /* code rows per pass (a multiple of the GEMM's 6-row tile) */
#define COUNT_STRIDE 4 /* rows between those whose planes are counted */

static size_t round_up64(size_t x) { return (x + 63) & ~(size_t)63; }

/* The bytes after the blocks of an n x k packed matrix (gemm_s8.h: read, times
 * zero, only by AMX tile loads) are zeroed too, so a packed buffer's contents
 * never depend on what the scratch held before. */
static void zero_tile_slack(int8_t *packed, size_t n, size_t k)
{
    const size_t blocks = (n + 15) / 16 * ((k + 3) / 4) * 64;
    memset(packed + blocks, 0, repq_gemm_u8s8_packed_size(n, k) - blocks);
}
static int weight_planes(int frac_bits) { return frac_bits / 8 + 1; }
#define MAX_PLANES 4 /* weight_planes(24) */

size_t repq_attn_v_gemm_scratch_size(size_t tokens, size_t dim, int frac_bits)
{
    const size_t rows = 2 * (size_t)weight_planes(frac_bits < 0 ? 0 : frac_bits) * GEMM_RB;
    const size_t planes = 64 + round_up64(repq_gemm_u8s8_packed_size(dim, round_up64(tokens))) +
                          rows * round_up64(tokens) + round_up64(rows * dim * sizeof(int32_t)) +
                          round_up64(rows * sizeof(int32_t));
    const size_t widened_v = 64 + tokens * dim * sizeof(int32_t); /* the AVX2 levels' widened V */
    return planes > widened_v ? planes : widened_v;
}

/* v - 128 as s8 in the GEMM's packed layout (n = dim columns, k = kpad >= tokens):
 * block (g, q) byte 4*jj + tt is v[4q + tt][16g + jj] - 128, zeros past the matrix. */
AVX512_TARGET static void pack_v_avx512(size_t tokens, size_t kpad, size_t dim, const uint8_t *v, size_t ldv,
                                        int8_t *out)
{
    const size_t kq = (kpad + 3) / 4, groups = (dim + 15) / 16;
    const __m128i flip = _mm_set1_epi8((char)0x80);
    for (size_t g = 0; g < groups; g++) {
        const size_t j0 = 16 * g, cols = dim - j0 < 16 ? dim - j0 : 16;
        const __mmask16 cm = cols == 16 ? (__mmask16)0xffff : (__mmask16)((1u << cols) - 1);
        for (size_t q = 0; q < kq; q++) {
            __m128i r[4];
            for (size_t tt = 0; tt < 4; tt++) {
                const size_t t = 4 * q + tt;
                /* Missing tokens and columns must be 0 after the flip. */
                r[tt] = t < tokens ? _mm_xor_si128(_mm_mask_loadu_epi8(flip, cm, v + t * ldv + j0), flip)
                                   : _mm_setzero_si128();
            }
            const __m128i a01l = _mm_unpacklo_epi8(r[0], r[1]), a01h = _mm_unpackhi_epi8(r[0], r[1]);
            const __m128i a23l = _mm_unpacklo_epi8(r[2], r[3]), a23h = _mm_unpackhi_epi8(r[2], r[3]);
            int8_t *blk = out + (g * kq + q) * 64;
            _mm_storeu_si128((__m128i *)blk, _mm_unpacklo_epi16(a01l, a23l));
            _mm_storeu_si128((__m128i *)(blk + 16), _mm_unpackhi_epi16(a01l, a23l));
            _mm_storeu_si128((__m128i *)(blk + 32), _mm_unpacklo_epi16(a01h, a23h));
            _mm_storeu_si128((__m128i *)(blk + 48), _mm_unpackhi_epi16(a01h, a23h));
        }
    }
    zero_tile_slack(out, dim, kpad);
}

/* Planes of `rows` code rows: plane q (q < P: even codes, byte plane p0 + q; else odd
 * codes, plane p0 + q - P) row i at w + (q * rows + i) * lda, tokens bytes, zero
 * padded to lda (a multiple of 64), and the sum of each plane row's bytes at
 * wsum[q * rows + i]. */
AVX512_TARGET static void planes_avx512(size_t rows, size_t tokens, const uint8_t *codes, size_t ldcodes,
                                        int32_t sentinel, int frac_bits, int p0, int planes, uint8_t *w,
                                        size_t lda, int32_t *wsum)
{
    const __m512i zero = _mm512_setzero_si512();
    const __m512i pow2 = _mm512_broadcast_i32x4(_mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, (char)128, 0, 0, 0, 0, 0,
                                                              0, 0, 0));
    const __m512i vsent = _mm512_set1_epi8((char)(sentinel > 255 ? 255 : sentinel));
    const __m512i vf = _mm512_set1_epi8((char)frac_bits), seven = _mm512_set1_epi8(7);
    const __m512i low5 = _mm512_set1_epi8(0x1f), one = _mm512_set1_epi8(1);
    for (size_t i = 0; i < rows; i++) {
        const uint8_t *cr = codes + i * ldcodes;
        __m512i sums[2 * MAX_PLANES];
        for (int q = 0; q < 2 * planes; q++)
            sums[q] = zero;
        for (size_t t0 = 0; t0 < lda; t0 += 64) {
            const size_t left = t0 < tokens ? tokens - t0 : 0;
            const __mmask64 tail = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
            const __m512i c = _mm512_maskz_loadu_epi8(tail, cr + t0);
            const __m512i h = _mm512_avg_epu8(c, zero); /* ceil(c / 2) without overflow */
            __mmask64 valid = tail & _mm512_cmple_epu8_mask(h, vf);
            if (sentinel <= 255)
                valid &= _mm512_cmplt_epu8_mask(c, vsent);
            const __m512i ex = _mm512_sub_epi8(vf, h);
            const __m512i val = _mm512_shuffle_epi8(pow2, _mm512_and_si512(ex, seven));
            const __m512i pl = _mm512_and_si512(_mm512_srli_epi16(ex, 3), low5);
            const __mmask64 odd = _mm512_test_epi8_mask(c, one);
            for (int q = 0; q < 2 * planes; q++) {
                const int p = p0 + q % planes;
                __mmask64 m = valid & _mm512_cmpeq_epi8_mask(pl, _mm512_set1_epi8((char)p));
                m &= q < planes ? ~odd : odd;
                const __m512i x = _mm512_maskz_mov_epi8(m, val);
                _mm512_storeu_si512(w + ((size_t)q * rows + i) * lda + t0, x);
                sums[q] = _mm512_add_epi64(sums[q], _mm512_sad_epu8(x, zero));
            }
        }
        for (int q = 0; q < 2 * planes; q++)
            wsum[(size_t)q * rows + i] = (int32_t)_mm512_reduce_add_epi64(sums[q]);
    }
}

/* E (or D) rows from the products c ([planes][rows][dim]) of planes p0 .. p0 + planes - 1
 * and their weight sums, in wrapping 32-bit arithmetic. */
AVX512_TARGET static void combine_planes_avx512(size_t rows, size_t dim, int p0, int planes, const int32_t *c,
                                                const int32_t *wsum, int32_t zv, int32_t *out, size_t ldout)
{
    const uint32_t zc = (uint32_t)128 - (uint32_t)zv;
    for (size_t i = 0; i < rows; i++) {
        uint32_t ws = 0;
        for (int p = 0; p < planes; p++)
            ws += (uint32_t)wsum[(size_t)p * rows + i] << (8 * (p0 + p));
        const __m512i corr = _mm512_set1_epi32((int32_t)(ws * zc));
        for (size_t j = 0; j < dim; j += 16) {
            const __mmask16 mk = dim - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (dim - j)) - 1);
            __m512i y = corr;
            for (int p = 0; p < planes; p++)
                y = _mm512_add_epi32(y, _mm512_slli_epi32(
                    _mm512_maskz_loadu_epi32(mk, c + ((size_t)p * rows + i) * dim + j), (unsigned)(8 * (p0 + p))));
            _mm512_mask_storeu_epi32(out + i * ldout + j, mk, y);
        }
    }
}

/* Valid entries (code below the sentinel, h <= F) of 64 codes, their byte plane
 * (F - h) / 8 and exponent F - h. */
AVX512_TARGET static inline __mmask64 classify(__m512i c, __mmask64 tail, int32_t sentinel, int frac_bits,
                                               __m512i *pl, __m512i *ex)
{
    const __m512i vf = _mm512_set1_epi8((char)frac_bits);
    const __m512i h = _mm512_avg_epu8(c, _mm512_setzero_si512());
    __mmask64 valid = tail & _mm512_cmple_epu8_mask(h, vf);
    if (sentinel <= 255)
        valid &= _mm512_cmplt_epu8_mask(c, _mm512_set1_epi8((char)sentinel));
    *ex = _mm512_sub_epi8(vf, h);
    *pl = _mm512_and_si512(_mm512_srli_epi16(*ex, 3), _mm512_set1_epi8(0x1f));
    return valid;
}

/* Valid entries per byte plane (planes <= 4). */
AVX512_TARGET static void count_planes_avx512(size_t rows, size_t tokens, const uint8_t *codes, size_t ldcodes,
                                              int32_t sentinel, int frac_bits, int planes, size_t *counts)
{
    for (int p = 0; p < planes; p++)
        counts[p] = 0;
    for (size_t i = 0; i < rows; i++)
        for (size_t t0 = 0; t0 < tokens; t0 += 64) {
            const size_t left = tokens - t0;
            const __mmask64 tail = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
            __m512i pl, ex;
            const __mmask64 valid =
                classify(_mm512_maskz_loadu_epi8(tail, codes + i * ldcodes + t0), tail, sentinel, frac_bits, &pl, &ex);
            for (int p = 0; p < planes; p++)
                counts[p] += (size_t)__builtin_popcountll(valid & _mm512_cmpeq_epi8_mask(pl, _mm512_set1_epi8((char)p)));
        }
}

/* Valid entries outside byte plane p0 (few), added one token at a time into the E
 * and D rows, in wrapping 32-bit arithmetic. */
AVX512_TARGET static void sparse_weights_avx512(size_t rows, size_t tokens, size_t dim, const uint8_t *codes,
                                                size_t ldcodes, int32_t sentinel, const uint8_t *v, size_t ldv,
                                                int32_t zv, int frac_bits, int p0, int32_t *e, int32_t *d,
                                                size_t ldacc)
{
    const __m512i vzv = _mm512_set1_epi32(zv), vp0 = _mm512_set1_epi8((char)p0);
    for (size_t i = 0; i < rows; i++) {
        const uint8_t *cr = codes + i * ldcodes;
        for (size_t t0 = 0; t0 < tokens; t0 += 64) {
            const size_t left = tokens - t0;
            const __mmask64 tail = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
            __m512i pl, ex;
            __mmask64 m = classify(_mm512_maskz_loadu_epi8(tail, cr + t0), tail, sentinel, frac_bits, &pl, &ex);
            m &= ~_mm512_cmpeq_epi8_mask(pl, vp0);
            while (m) {
                const size_t t = t0 + (size_t)__builtin_ctzll(m);
                m &= m - 1;
                const int32_t code = cr[t];
                const __m128i sh = _mm_cvtsi32_si128(frac_bits - ((code + 1) >> 1));
                int32_t *acc = ((code & 1) ? d : e) + i * ldacc;
                const uint8_t *vr = v + t * ldv;
                for (size_t j = 0; j < dim; j += 16) {
                    const __mmask16 mk = dim - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (dim - j)) - 1);
                    const __m512i x = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, vr + j)), vzv);
                    _mm512_mask_storeu_epi32(acc + j, mk,
                                             _mm512_add_epi32(_mm512_maskz_loadu_epi32(mk, acc + j), _mm512_sll_epi32(x, sh)));
                }
            }
        }
    }
}

void repq_attn_v_accumulate_gemm(repq_kernel_level level, size_t rows, size_t tokens, size_t dim,
                                 const uint8_t *codes, size_t ldcodes, int32_t sentinel, const uint8_t *v,
                                 size_t ldv, int32_t zv, int frac_bits, int32_t *e, int32_t *d, size_t ldacc,
                                 void *scratch)
{
    uint8_t *base = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    if (level < REPQ_LEVEL_AVX512VNNI) {
        if (level >= REPQ_LEVEL_AVX2)
            accumulate_avx2(rows, tokens, dim, codes, ldcodes, sentinel, v, ldv, zv, frac_bits, e, d, ldacc,
                            (int32_t *)(void *)base);
        else
            repq_attn_v_accumulate(level, rows, tokens, dim, codes, ldcodes, sentinel, v, ldv, zv, frac_bits, e, d,
                                   ldacc);
        return;
    }
    /* All byte planes go through the GEMM, unless the entries outside the fullest
     * plane are few enough (under 1/32 of the entries per other plane) to add one by
     * one: then only that plane does. Both ways give the same sums, so the choice is
     * only about speed, and it is made on every COUNT_STRIDE-th row (a full count
     * took a tenth of the whole product). */
    int planes = weight_planes(frac_bits), p0 = 0;
    bool sparse = false;
    if (planes > 1) {
        size_t counts[MAX_PLANES], total = 0;
        const size_t sampled = (rows + COUNT_STRIDE - 1) / COUNT_STRIDE;
        count_planes_avx512(sampled, tokens, codes, COUNT_STRIDE * ldcodes, sentinel, frac_bits, planes, counts);
        for (int p = 0; p < planes; p++) {
            total += counts[p];
            p0 = counts[p] > counts[p0] ? p : p0;
        }
        sparse = (total - counts[p0]) * 32 < sampled * tokens * (size_t)(planes - 1);
        if (sparse)
            planes = 1;
        else
            p0 = 0;
    }
    const size_t np = 2 * (size_t)planes, lda = round_up64(tokens);
    /* AMX reads the planes' rows in place when k is a whole number of 64-byte lines:
     * the GEMM runs over all lda tokens (the planes are zero past `tokens`, and so is
     * v's packing) instead of staging each block of rows into a padded copy. */
    const size_t kg = level >= REPQ_LEVEL_AMX ? lda : tokens;
    int8_t *vp = (int8_t *)base;
    uint8_t *w = base + round_up64(repq_gemm_u8s8_packed_size(dim, kg));
    int32_t *c = (int32_t *)(void *)(w + np * GEMM_RB * lda);
    int32_t *wsum = (int32_t *)(void *)((uint8_t *)c + round_up64(np * GEMM_RB * dim * sizeof(int32_t)));
    pack_v_avx512(tokens, kg, dim, v, ldv, vp);
    for (size_t i0 = 0; i0 < rows; i0 += GEMM_RB) {
        const size_t rb = rows - i0 < GEMM_RB ? rows - i0 : GEMM_RB;
        planes_avx512(rb, tokens, codes + i0 * ldcodes, ldcodes, sentinel, frac_bits, p0, planes, w, lda, wsum);
        repq_gemm_u8s8(level, np * rb, dim, kg, w, lda, vp, c, dim);
        combine_planes_avx512(rb, dim, p0, planes, c, wsum, zv, e + i0 * ldacc, ldacc);
        combine_planes_avx512(rb, dim, p0, planes, c + (size_t)planes * rb * dim, wsum + (size_t)planes * rb, zv,
                              d + i0 * ldacc, ldacc);
    }
    if (sparse)
        sparse_weights_avx512(rows, tokens, dim, codes, ldcodes, sentinel, v, ldv, zv, frac_bits, p0, e, d, ldacc);
}

/* ---- the k operand of q k^T ------------------------------------------------------- */

static void pack_k_scalar(size_t tokens, size_t hd, const uint8_t *k, size_t ldk, int32_t off, void *packed)
{
    const size_t kq = (hd + 3) / 4;
    int8_t *out = packed;
    memset(out, 0, repq_gemm_u8s8_packed_size(tokens, hd));
    for (size_t j = 0; j < tokens; j++)
        for (size_t p = 0; p < hd; p++)
            out[((j / 16) * kq + p / 4) * 64 + (j % 16) * 4 + p % 4] = (int8_t)((int32_t)k[j * ldk + p] - off);
}

/* One gather of 16 rows' 4-byte words per packed block (hd a multiple of 4). */
AVX512_TARGET static void pack_k_avx512(size_t tokens, size_t hd, const uint8_t *k, size_t ldk, int32_t off,
                                        void *packed)
{
    const size_t kq = hd / 4, groups = (tokens + 15) / 16;
    int8_t *out = packed;
    const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int32_t)ldk));
    const __m512i voff = _mm512_set1_epi8((char)off);
    for (size_t g = 0; g < groups; g++) {
        const size_t left = tokens - 16 * g;
        const __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        const __mmask64 mb = left >= 16 ? ~(__mmask64)0 : (((__mmask64)1 << (4 * left)) - 1);
        const uint8_t *src = k + 16 * g * ldk;
        for (size_t q = 0; q < kq; q++) {
            const __m512i x =
                _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mk, rows, (const void *)(src + 4 * q), 1);
            _mm512_storeu_si512(out + (g * kq + q) * 64, _mm512_maskz_sub_epi8(mb, x, voff));
        }
    }
    zero_tile_slack(out, tokens, hd);
}

void repq_attn_pack_k(repq_kernel_level level, size_t tokens, size_t hd, const uint8_t *k, size_t ldk,
                      int32_t off, void *packed)
{
    if (level >= REPQ_LEVEL_AVX512VNNI && hd % 4 == 0 && tokens * ldk < ((size_t)1 << 31))
        pack_k_avx512(tokens, hd, k, ldk, off, packed);
    else
        pack_k_scalar(tokens, hd, k, ldk, off, packed);
}

bool repq_attn_v_tail_codes(size_t n, const uint8_t *codes, int32_t sentinel, int frac_bits, uint8_t *tail)
{
    return tail_codes(n, codes, (uint8_t)sentinel, (uint8_t)(2 * frac_bits), tail);
}

#define CHUNK 1024

/* o[j] = (float)(ce * (E 2^F + E2) + co * (D 2^F + D2)) in double: products and sums, no
 * fused multiply-add in any clone, so every level gives the same bits. The int32
 * accumulators convert exactly; E 2^F + E2 is exact below 2^53 (F <= 21), else rounded
 * once. */
VECTORIZED static void combine_f32(size_t n, const int32_t *e, const int32_t *d, const int32_t *e2,
                                   const int32_t *d2, double two_f, double ce, double co, float *o)
{
    for (size_t j = 0; j < n; j++) {
        const double ye = (double)e[j] * two_f + (double)e2[j], yd = (double)d[j] * two_f + (double)d2[j];
        o[j] = (float)(ce * ye + co * yd);
    }
}

/* combine_f32 without E2 and D2: E 2^F is exact, and scaling by 2^F is exact in
 * either factor, so ce E 2^F = (ce 2^F) E, the same double; the two products, their
 * sum and the conversion as above. */
AVX512_TARGET static void combine_f32_avx512(size_t n, const int32_t *e, const int32_t *d, double ce_f, double co_f,
                                             float *o)
{
    const __m512d vce = _mm512_set1_pd(ce_f), vco = _mm512_set1_pd(co_f);
    for (size_t j = 0; j < n; j += 8) {
        const __mmask8 mk = n - j >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (n - j)) - 1);
        const __m512d ye = _mm512_cvtepi32_pd(_mm256_maskz_loadu_epi32(mk, e + j));
        const __m512d yd = _mm512_cvtepi32_pd(_mm256_maskz_loadu_epi32(mk, d + j));
        const __m512d y = _mm512_add_pd(_mm512_mul_pd(vce, ye), _mm512_mul_pd(vco, yd));
        _mm256_mask_storeu_ps(o + j, mk, _mm512_cvtpd_ps(y));
    }
}

void repq_attn_v_finish(repq_kernel_level level, size_t rows, size_t dim, const int32_t *e, const int32_t *d,
                        const int32_t *e2, const int32_t *d2, size_t ldacc, int frac_bits, double ce, double co,
                        float qscale, int32_t qzp, int32_t bits, uint8_t *out, size_t ldout)
{
    /* Up to CHUNK values at a time on the stack (whole rows when they fit, so that
     * the quantizer is set up once per group of rows), so nothing is allocated; a
     * missing tail adds zeros. */
    static const int32_t zero[CHUNK];
    float o[CHUNK];
    if (dim == 0)
        return;
    const double two_f = ldexp(1.0, frac_bits), ce_f = ce * two_f, co_f = co * two_f;
    const bool fast = level >= REPQ_LEVEL_AVX512VNNI && !e2 && !d2;
    const size_t width = dim < CHUNK ? dim : CHUNK, group = CHUNK / width;
    for (size_t i0 = 0; i0 < rows; i0 += group) {
        const size_t g = rows - i0 < group ? rows - i0 : group;
        for (size_t j0 = 0; j0 < dim; j0 += width) {
            const size_t nc = dim - j0 < width ? dim - j0 : width;
            for (size_t r = 0; r < g; r++) {
                const size_t at = (i0 + r) * ldacc + j0;
                if (fast)
                    combine_f32_avx512(nc, e + at, d + at, ce_f, co_f, o + r * width);
                else
                    combine_f32(nc, e + at, d + at, e2 ? e2 + at : zero, d2 ? d2 + at : zero, two_f, ce, co,
                                o + r * width);
            }
            repq_quantize_rows_f32_u8(level, g, nc, o, width, qscale, qzp, bits, out + i0 * ldout + j0, ldout);
        }
    }
}
