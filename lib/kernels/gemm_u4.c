/* u8 x u4 GEMM: nibble packing, the scalar reference, and the panel-unpacking
 * driver over the 8-bit kernels. */
#include "kernels/gemm_u4.h"

#include <stdalign.h>
#include <stdbool.h>
#include <string.h>

#include <immintrin.h>

#include "kernels/gemm_s8.h"

#define GROUP 16
#define QUAD 4
#define BLOCK (GROUP * QUAD)
#define HALF_BLOCK (BLOCK / 2)
/* Column groups unpacked per panel: the AVX-512 kernel's register tile width. */
#define PANEL_GROUPS 4
/* Rows of an AMX tile. */
#define TAIL_TILE 16

static size_t div_up(size_t a, size_t b) { return (a + b - 1) / b; }

size_t repq_gemm_u8u4_packed_size(size_t n, size_t k)
{
    return div_up(n, GROUP) * div_up(k, QUAD) * HALF_BLOCK;
}

/* Element e of the 8-bit block (column e / 4, k offset e % 4) of group g, quad q. */
static size_t nibble_byte(size_t g, size_t q, size_t kq, size_t e)
{
    return (g * kq + q) * HALF_BLOCK + e % HALF_BLOCK;
}

void repq_gemm_u8u4_pack(size_t n, size_t k, const int8_t *b, size_t ldb, void *packed)
{
    const size_t kq = div_up(k, QUAD);
    uint8_t *out = packed;
    memset(out, 0, repq_gemm_u8u4_packed_size(n, k));
    for (size_t j = 0; j < n; j++)
        for (size_t p = 0; p < k; p++) {
            const size_t e = (j % GROUP) * QUAD + p % QUAD;
            const uint8_t v = (uint8_t)(b[j * ldb + p] & 0x0f);
            out[nibble_byte(j / GROUP, p / QUAD, kq, e)] |= (uint8_t)(e < HALF_BLOCK ? v : v << 4);
        }
}

void repq_gemm_u8u4_scalar(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const void *packed,
                           int32_t *c, size_t ldc)
{
    const size_t kq = div_up(k, QUAD);
    const uint8_t *bp = packed;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            int32_t sum = 0;
            for (size_t p = 0; p < k; p++) {
                const size_t e = (j % GROUP) * QUAD + p % QUAD;
                const uint8_t byte = bp[nibble_byte(j / GROUP, p / QUAD, kq, e)];
                sum += (int32_t)a[i * lda + p] * (e < HALF_BLOCK ? byte & 0x0f : byte >> 4);
            }
            c[i * ldc + j] = sum;
        }
}

static size_t panel_size(size_t k)
{
    /* PANEL_GROUPS groups as an n = 16 * PANEL_GROUPS matrix of the 8-bit layout. */
    return repq_gemm_u8s8_packed_size(GROUP * PANEL_GROUPS, k);
}

/* Bytes of k rounded up to whole AMX tile rows of 64 bytes. */
static size_t tile_k(size_t k) { return div_up(k, 64) * 64; }

size_t repq_gemm_u8u4_scratch_size(size_t k)
{
    /* The panel (two at AMX: the next one is unpacked while the current one is
     * multiplied), then for AMX a 64-byte aligned copy of the m % 16 tail rows as one
     * zero-padded tile of A (16 x tile_k(k)) and that tile's 16 x 64 sums. */
    return 2 * panel_size(k) + 64 + TAIL_TILE * tile_k(k) + TAIL_TILE * GROUP * PANEL_GROUPS * sizeof(int32_t);
}

/* Half blocks -> blocks: low nibbles to bytes 0-31, high nibbles to 32-63. The
 * session unpacks every 4-bit weight once per pass, so at batch 1 this runs about
 * as often as the GEMM reads the bytes: hence explicit vector forms. The scalar
 * level never unpacks (repq_gemm_u8u4_scalar reads the nibbles), so the SIMD levels
 * are checked against that reference through the whole GEMM. */
__attribute__((target("avx2"))) static void unpack_blocks_avx2(const uint8_t *in, size_t blocks, uint8_t *out)
{
    const __m256i low = _mm256_set1_epi8(0x0f);
    for (size_t b = 0; b < blocks; b++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(in + b * HALF_BLOCK));
        _mm256_storeu_si256((__m256i *)(void *)(out + b * BLOCK), _mm256_and_si256(v, low));
        _mm256_storeu_si256((__m256i *)(void *)(out + b * BLOCK + HALF_BLOCK),
                            _mm256_and_si256(_mm256_srli_epi16(v, 4), low));
    }
}

__attribute__((target("avx512f,avx512bw"))) static void unpack_blocks_avx512(const uint8_t *in, size_t blocks,
                                                                           uint8_t *out)
{
    const __m512i low = _mm512_set1_epi8(0x0f);
    for (size_t b = 0; b < blocks; b++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(in + b * HALF_BLOCK));
        const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
        _mm512_storeu_si512((void *)(out + b * BLOCK), _mm512_and_si512(both, low));
    }
}

static void unpack_blocks(repq_kernel_level level, const uint8_t *in, size_t blocks, uint8_t *out)
{
    if (level >= REPQ_LEVEL_AVX512VNNI)
        unpack_blocks_avx512(in, blocks, out);
    else
        unpack_blocks_avx2(in, blocks, out);
}

/* Unpacks the column groups [g0, g0 + ng) into panel as the 8-bit packing of their
 * columns, slack included (zeroed so that the AMX kernel's tail reads stay defined);
 * returns the panel's column count. */
static size_t unpack_panel(repq_kernel_level level, size_t n, size_t k, const uint8_t *bp, size_t g0, size_t ng,
                           uint8_t *panel)
{
    const size_t kq = div_up(k, QUAD);
    const size_t cols = n - g0 * GROUP < ng * GROUP ? n - g0 * GROUP : ng * GROUP;
    const size_t bytes = ng * kq * BLOCK;
    unpack_blocks(level, bp + g0 * kq * HALF_BLOCK, ng * kq, panel);
    memset(panel + bytes, 0, repq_gemm_u8s8_packed_size(cols, k) - bytes);
    return cols;
}

#define AMX_U4_TARGET __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw")))

/* Stores accumulator tile t (a literal) for rows x cols at c: straight when whole,
 * else through buf. */
#define STORE_PART(t, c, ldc, rows, cols, buf)                                               \
    do {                                                                                     \
        if ((rows) == TAIL_TILE && (cols) == GROUP) {                                        \
            _tile_stored(t, (c), (ldc) * sizeof(int32_t));                                   \
        } else {                                                                             \
            _tile_stored(t, (buf), GROUP * sizeof(int32_t));                                 \
            for (size_t r_ = 0; r_ < (rows); r_++)                                           \
                memcpy((c) + r_ * (ldc), (buf) + r_ * GROUP, (cols) * sizeof(int32_t));      \
        }                                                                                    \
    } while (0)

/* The AMX form for A read in place (k and lda multiples of 64, a 64-byte aligned, as
 * the session's codes are): the unpacking of the next panel is spread over the tile
 * steps of the current one, so that it runs while the tile unit multiplies, instead of
 * in between (where it was about 10 % of the GEMM at one 197-row image: it streams
 * the packed weights from L3). Row tiles of 16 (the m % 16 tail from a zero-padded
 * copy), two row tiles by two column groups of accumulators, as the 8-bit kernel; tiles:
 * accumulators tmm0-3, A tmm4-5, B tmm6-7. */
AMX_U4_TARGET static void gemm_amx_pipelined(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                                             const uint8_t *bp, int32_t *c, size_t ldc, uint8_t *scratch)
{
    const size_t kq = div_up(k, QUAD), groups = div_up(n, GROUP), tail = m % TAIL_TILE, full = m - tail;
    const size_t tiles = div_up(m, TAIL_TILE), psize = panel_size(k);
    uint8_t *panels[2] = {scratch, scratch + psize};
    uint8_t *tail_a = scratch + 2 * psize;
    tail_a += (64 - (uintptr_t)tail_a % 64) % 64;
    alignas(64) int32_t cbuf[TAIL_TILE * GROUP];
    if (tail) {
        memset(tail_a, 0, TAIL_TILE * k);
        for (size_t r = 0; r < tail; r++)
            memcpy(tail_a + r * k, a + (full + r) * lda, k);
    }
    size_t cols = unpack_panel(REPQ_LEVEL_AMX, n, k, bp, 0, groups < PANEL_GROUPS ? groups : PANEL_GROUPS, panels[0]);
    repq_gemm_amx_begin();
    for (size_t g0 = 0, p = 0; g0 < groups; g0 += PANEL_GROUPS, p ^= 1) {
        const size_t ng = groups - g0 < PANEL_GROUPS ? groups - g0 : PANEL_GROUPS;
        const uint8_t *panel = panels[p];
        /* The next panel's blocks, a share per step. */
        const size_t g1 = g0 + PANEL_GROUPS;
        const size_t ng1 = g1 < groups ? (groups - g1 < PANEL_GROUPS ? groups - g1 : PANEL_GROUPS) : 0;
        const uint8_t *next_in = bp + g1 * kq * HALF_BLOCK;
        uint8_t *next_out = panels[p ^ 1];
        size_t left = ng1 * kq;
        const size_t steps = div_up(tiles, 2) * div_up(ng, 2), share = div_up(left, steps);
        for (size_t i = 0; i < tiles; i += 2) {
            const bool two_tiles = i + 1 < tiles;
            const size_t rows0 = i * TAIL_TILE < full ? TAIL_TILE : tail;
            const size_t rows1 = two_tiles ? ((i + 1) * TAIL_TILE < full ? TAIL_TILE : tail) : 0;
            const uint8_t *a0 = rows0 == TAIL_TILE ? a + i * TAIL_TILE * lda : tail_a;
            const uint8_t *a1 = rows1 == TAIL_TILE ? a + (i + 1) * TAIL_TILE * lda : tail_a;
            const size_t s0 = rows0 == TAIL_TILE ? lda : k, s1 = rows1 == TAIL_TILE ? lda : k;
            for (size_t g = 0; g < ng; g += 2) {
                const bool two_groups = g + 1 < ng;
                const int8_t *b0 = (const int8_t *)panel + g * kq * BLOCK, *b1 = b0 + kq * BLOCK;
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (size_t kc = 0; kc < k; kc += 64) {
                    const size_t boff = kc / QUAD * BLOCK;
                    _tile_loadd(4, a0 + kc, s0);
                    _tile_loadd(6, b0 + boff, BLOCK);
                    _tile_dpbusd(0, 4, 6);
                    if (two_groups) {
                        _tile_loadd(7, b1 + boff, BLOCK);
                        _tile_dpbusd(1, 4, 7);
                    }
                    if (two_tiles) {
                        _tile_loadd(5, a1 + kc, s1);
                        _tile_dpbusd(2, 5, 6);
                        if (two_groups)
                            _tile_dpbusd(3, 5, 7);
                    }
                }
                if (left) {
                    const size_t now = share < left ? share : left;
                    unpack_blocks_avx512(next_in, now, next_out);
                    next_in += now * HALF_BLOCK;
                    next_out += now * BLOCK;
                    left -= now;
                }
                const size_t col0 = (g0 + g) * GROUP;
                const size_t cols0 = n - col0 < GROUP ? n - col0 : GROUP;
                const size_t cols1 = two_groups ? (n - col0 - GROUP < GROUP ? n - col0 - GROUP : GROUP) : 0;
                int32_t *c0 = c + i * TAIL_TILE * ldc + col0, *c1 = c0 + TAIL_TILE * ldc;
                STORE_PART(0, c0, ldc, rows0, cols0, cbuf);
                if (two_groups)
                    STORE_PART(1, c0 + GROUP, ldc, rows0, cols1, cbuf);
                if (two_tiles) {
                    STORE_PART(2, c1, ldc, rows1, cols0, cbuf);
                    if (two_groups)
                        STORE_PART(3, c1 + GROUP, ldc, rows1, cols1, cbuf);
                }
            }
        }
        if (ng1) {
            unpack_blocks_avx512(next_in, left, next_out);
            const size_t bytes = ng1 * kq * BLOCK;
            cols = n - g1 * GROUP < ng1 * GROUP ? n - g1 * GROUP : ng1 * GROUP;
            memset(panels[p ^ 1] + bytes, 0, repq_gemm_u8s8_packed_size(cols, k) - bytes);
        }
    }
    repq_gemm_amx_end();
}

/* At AMX the tile configuration is loaded once for all panels: the 8-bit kernel
 * loads it twice per call (the full rows, then the m % 16 tail), which was about 2 %
 * of a W4A4 session at batch 1 with one call per 64 columns. The tail rows run as
 * one whole tile from a zero-padded copy; its extra rows cost about what a
 * 16-row pass saves. */
static void gemm_amx(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const uint8_t *bp, int32_t *c,
                     size_t ldc, uint8_t *scratch)
{
    const size_t groups = div_up(n, GROUP), tail = m % TAIL_TILE, full = m - tail, tk = tile_k(k);
    uint8_t *panel = scratch;
    uint8_t *tail_a = scratch + panel_size(k);
    tail_a += (64 - (uintptr_t)tail_a % 64) % 64;
    int32_t *tail_c = (int32_t *)(void *)(tail_a + TAIL_TILE * tk);
    const size_t ldt = GROUP * PANEL_GROUPS;
    if (tail) {
        memset(tail_a, 0, TAIL_TILE * tk);
        for (size_t r = 0; r < tail; r++)
            memcpy(tail_a + r * tk, a + (full + r) * lda, k);
    }
    repq_gemm_amx_begin();
    for (size_t g0 = 0; g0 < groups; g0 += PANEL_GROUPS) {
        const size_t ng = groups - g0 < PANEL_GROUPS ? groups - g0 : PANEL_GROUPS;
        const size_t cols = unpack_panel(REPQ_LEVEL_AMX, n, k, bp, g0, ng, panel);
        if (full)
            repq_gemm_u8s8_amx_tiles(full, cols, k, a, lda, panel, c + g0 * GROUP, ldc);
        if (tail) {
            repq_gemm_u8s8_amx_tiles(TAIL_TILE, cols, k, tail_a, tk, panel, tail_c, ldt);
            for (size_t r = 0; r < tail; r++)
                memcpy(c + (full + r) * ldc + g0 * GROUP, tail_c + r * ldt, cols * sizeof *c);
        }
    }
    repq_gemm_amx_end();
}

void repq_gemm_u8u4(repq_kernel_level level, size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                    const void *packed, int32_t *c, size_t ldc, void *scratch)
{
    if (level == REPQ_LEVEL_SCALAR) {
        repq_gemm_u8u4_scalar(m, n, k, a, lda, packed, c, ldc);
        return;
    }
    if (m == 0 || n == 0)
        return;
    if (level == REPQ_LEVEL_AMX && k % 64 == 0 && lda % 64 == 0 && (uintptr_t)a % 64 == 0) {
        gemm_amx_pipelined(m, n, k, a, lda, packed, c, ldc, scratch);
        return;
    }
    if (level == REPQ_LEVEL_AMX) {
        gemm_amx(m, n, k, a, lda, packed, c, ldc, scratch);
        return;
    }
    const size_t groups = div_up(n, GROUP);
    uint8_t *panel = scratch;
    for (size_t g0 = 0; g0 < groups; g0 += PANEL_GROUPS) {
        const size_t ng = groups - g0 < PANEL_GROUPS ? groups - g0 : PANEL_GROUPS;
        const size_t cols = unpack_panel(level, n, k, packed, g0, ng, panel);
        repq_gemm_u8s8(level, m, cols, k, a, lda, panel, c + g0 * GROUP, ldc);
    }
}
