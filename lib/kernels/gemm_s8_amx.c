/* u8 x s8 -> s32 GEMM on AMX-INT8 tiles, over the packed layout of gemm_s8.h.
 *
 * A packed block (group g, quad q) is 16 columns x 4 k bytes, exactly one row of
 * an AMX B tile (K/4 rows of N*4 bytes), so 16 consecutive blocks of a group are
 * one B tile with a 64-byte stride and the weights need no second layout.
 *
 * Every tile is configured as 16 rows x 64 bytes; edges (ldtilecfg clears the
 * accumulators):
 *  - the last m % 16 rows run once more through the same loop with the tiles
 *    reconfigured to that many rows (one more ldtilecfg per call), rather than on
 *    the AVX-512 VNNI kernel, which took 4 % of a deit_small session at batch 1 for
 *    the 5 rows past 192 of each 197-token pass;
 *  - A rows that are not whole 64-byte lines (k or lda not a multiple of 64, or a
 *    misaligned): when k rounded up to 64 is at most STAGE_K, each block of ROW_BLOCK
 *    rows is copied once into a zero-padded, aligned buffer that every column group
 *    of the block reads (tile rows split across cache lines, and copying per tile
 *    and group, made swin_tiny's k = 96 layers run at a third of the k = 128 speed);
 *    for longer k only the bytes past the last whole 64 are staged that way;
 *  - the k tail of B: the tile reads up to 15 blocks past the group, which is the
 *    next group or the slack that repq_gemm_u8s8_packed_size reserves; those
 *    bytes meet the zero A bytes of the staged copy, so they add nothing;
 *  - columns past n of C: stored to a buffer, then copied.
 * Sums are exact (tdpbusd adds the products in int32 without saturation), so the
 * result equals the scalar reference bit for bit. */
#include "kernels/gemm_s8.h"
#include "kernels/gemm_u4.h"
#include "kernels/unpack_u4.h"

#include <stdalign.h>
#include <stdbool.h>
#include <string.h>

#include <immintrin.h>

#define GROUP 16
#define QUAD 4
#define BLOCK (GROUP * QUAD)
#define TILE_ROWS 16
#define TILE_K 64 /* k bytes per A tile row = quads per B tile x 4 */
/* Rows of A per pass over all column groups: a block of A stays in L1/L2 while
 * the B panels stream past it. Weights of more than BIG_B bytes (DeiT-Base's
 * 1.8-2.4 MB layers, about an L2) read in place take blocks of up to BIG_B_BLOCK
 * rows (a 197-token image in one pass), so that they stream from L3 or memory once
 * per call rather than once per 96 rows; smaller weights stay in L2 between passes
 * and keep the 96-row block, whose A stays in L1. */
#define ROW_BLOCK 96
#define BIG_B ((size_t)1 << 20)
#define BIG_B_BLOCK 208
/* Longest (64-rounded) k whose A block is staged whole: ROW_BLOCK x STAGE_K bytes (24 KB)
 * of stack. */
#define STAGE_K 256

#define AMX_TARGET __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw")))

/* Tile numbers, written as literals because gcc's tile intrinsics paste their
 * argument into the assembly text: accumulators C[row tile][group] are
 * tmm0 (0,0), tmm1 (0,1), tmm2 (1,0), tmm3 (1,1); A rows tmm4, tmm5; B groups
 * tmm6, tmm7. */

/* The 64-byte operand of ldtilecfg (palette 1). */
typedef struct tile_config {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* Whether A's tiles can be loaded straight from its rows: whole aligned 64-byte lines. */
static bool reads_in_place(size_t k, const uint8_t *a, size_t lda)
{
    return k % TILE_K == 0 && lda % TILE_K == 0 && (uintptr_t)a % TILE_K == 0;
}

/* Bytes [k0, k) of `rows` rows of a, zero-padded to `width` bytes per row, in stage. */
static void stage_rows(const uint8_t *a, size_t lda, size_t k0, size_t k, size_t width, size_t rows,
                       uint8_t *stage)
{
    memset(stage, 0, rows * width);
    for (size_t r = 0; r < rows; r++)
        memcpy(stage + r * width, a + r * lda + k0, k - k0);
}

static void copy_out(const int32_t *tile, size_t rows, size_t cols, int32_t *c, size_t ldc)
{
    for (size_t r = 0; r < rows; r++)
        memcpy(c + r * ldc, tile + r * GROUP, cols * sizeof *c);
}

/* Stores accumulator tile `t` (a literal tile number, configured with `rows` rows)
 * to rows x cols of c. */
#define STORE_TILE(t, c, ldc, rows, cols, buf)                                            \
    do {                                                                                  \
        if ((cols) == GROUP) {                                                            \
            _tile_stored(t, (c), (ldc) * sizeof(int32_t));                                \
        } else {                                                                          \
            _tile_stored(t, (buf), GROUP * sizeof(int32_t));                              \
            copy_out((buf), (rows), (cols), (c), (ldc));                                  \
        }                                                                                 \
    } while (0)

/* The tail's rows (fewer than 16, at a, stride lda, read in place) times column
 * groups g and g + 1 (if two_groups), with tiles configured for those rows. */
AMX_TARGET static inline void tail_tile(size_t tail, size_t k, const uint8_t *a, size_t lda, const int8_t *b0,
                                        const int8_t *b1, bool two_groups, size_t cols0, size_t cols1,
                                        int32_t *c, size_t ldc, int32_t *cbuf)
{
    _tile_zero(0);
    _tile_zero(1);
    for (size_t kc = 0; kc < k; kc += TILE_K) {
        const size_t boff = kc / QUAD * BLOCK;
        _tile_loadd(4, a + kc, lda);
        _tile_loadd(6, b0 + boff, BLOCK);
        _tile_dpbusd(0, 4, 6);
        if (two_groups) {
            _tile_loadd(7, b1 + boff, BLOCK);
            _tile_dpbusd(1, 4, 7);
        }
    }
    STORE_TILE(0, c, ldc, tail, cols0, cbuf);
    if (two_groups)
        STORE_TILE(1, c + GROUP, ldc, tail, cols1, cbuf);
}

/* C[rows, n] for rows 16-row tiles of A starting at a (16 x 64-byte tiles, or the
 * tail's `rows` when fewer than 16, as configured by the caller): two row tiles by
 * two column groups of accumulators per step of k. With `merged_tail` rows (fewer
 * than 16; A read in place only) after `rows`, each column-group pair of the last
 * row block also takes those rows, between two reconfigurations (tail_cfg, then
 * full_cfg again): weights larger than L2 are then read once rather than once more
 * by a pass of a few rows, which cost 15-25 % of the GEMM (197 against 192 or 208
 * rows). */
AMX_TARGET static void tiles(size_t rows, size_t n, size_t k, const uint8_t *a, size_t lda, const int8_t *bp,
                             int32_t *c, size_t ldc, size_t merged_tail, const tile_config *full_cfg,
                             const tile_config *tail_cfg, repq_u4_job *job)
{
    const size_t kq = (k + QUAD - 1) / QUAD, groups = (n + GROUP - 1) / GROUP;
    const size_t gstride = kq * BLOCK, kpad = (k + TILE_K - 1) / TILE_K * TILE_K;
    const bool lines = reads_in_place(k, a, lda);
    const bool whole_block = !lines && kpad <= STAGE_K;
    /* k steps before this one read the matrix (or the staged block) directly. */
    const size_t kdirect = whole_block ? kpad : k / TILE_K * TILE_K;
    alignas(64) uint8_t stage[ROW_BLOCK * STAGE_K];
    alignas(64) int32_t cbuf[TILE_ROWS * GROUP];
    const size_t row_block = lines && n * k > BIG_B ? BIG_B_BLOCK : ROW_BLOCK;
    for (size_t ib = 0; ib < rows; ib += row_block) {
        const size_t mb = min_size(row_block, rows - ib);
        const uint8_t *ab = a + ib * lda; /* this block's rows, stride sa */
        size_t sa = lda;
        if (whole_block) {
            stage_rows(ab, lda, 0, k, kpad, mb, stage);
            ab = stage;
            sa = kpad;
        } else if (kdirect < k) {
            stage_rows(ab, lda, kdirect, k, TILE_K, mb, stage);
        }
        for (size_t g = 0; g < groups; g += 2) {
            /* 4-bit weights: this pair of groups, and the 15 blocks a k-tail tile reads
             * past it, unpacked just before the first row block reads them. */
            if (job)
                repq_u4_job_until(job, (g + 2) * kq + 15);
            const bool two_groups = g + 1 < groups;
            const int8_t *b0 = bp + g * gstride, *b1 = b0 + gstride;
            const size_t cols0 = min_size(GROUP, n - g * GROUP);
            const size_t cols1 = two_groups ? min_size(GROUP, n - (g + 1) * GROUP) : 0;
            for (size_t i = ib; i < ib + mb; i += 2 * TILE_ROWS) {
                const bool two_tiles = ib + mb - i > TILE_ROWS;
                const size_t rows0 = min_size(TILE_ROWS, ib + mb - i);
                const size_t rows1 = two_tiles ? min_size(TILE_ROWS, ib + mb - i - TILE_ROWS) : 0;
                const uint8_t *ar0 = ab + (i - ib) * sa, *ar1 = ar0 + TILE_ROWS * sa;
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                const uint8_t *st0 = stage + (i - ib) * TILE_K, *st1 = st0 + TILE_ROWS * TILE_K;
                for (size_t kc = 0; kc < k; kc += TILE_K) {
                    const size_t boff = kc / QUAD * BLOCK;
                    const bool whole = kc < kdirect;
                    const size_t s0 = whole ? sa : TILE_K, s1 = s0;
                    _tile_loadd(4, whole ? ar0 + kc : st0, s0);
                    _tile_loadd(6, b0 + boff, BLOCK);
                    _tile_dpbusd(0, 4, 6);
                    if (two_groups) {
                        _tile_loadd(7, b1 + boff, BLOCK);
                        _tile_dpbusd(1, 4, 7);
                    }
                    if (two_tiles) {
                        _tile_loadd(5, whole ? ar1 + kc : st1, s1);
                        _tile_dpbusd(2, 5, 6);
                        if (two_groups)
                            _tile_dpbusd(3, 5, 7);
                    }
                }
                int32_t *c0 = c + i * ldc + g * GROUP, *c1 = c0 + TILE_ROWS * ldc;
                STORE_TILE(0, c0, ldc, rows0, cols0, cbuf);
                if (two_groups)
                    STORE_TILE(1, c0 + GROUP, ldc, rows0, cols1, cbuf);
                if (two_tiles) {
                    STORE_TILE(2, c1, ldc, rows1, cols0, cbuf);
                    if (two_groups)
                        STORE_TILE(3, c1 + GROUP, ldc, rows1, cols1, cbuf);
                }
            }
            if (merged_tail && ib + mb == rows) {
                _tile_loadconfig(tail_cfg);
                tail_tile(merged_tail, k, a + rows * lda, lda, b0, b1, two_groups, cols0, cols1,
                          c + rows * ldc + g * GROUP, ldc, cbuf);
                _tile_loadconfig(full_cfg);
            }
        }
    }
}

/* C = A B^T for the packed B, which `job` (if not NULL) unpacks from 4 bits as the
 * tiles go. */
AMX_TARGET static void gemm_amx(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const void *packed,
                                int32_t *c, size_t ldc, repq_u4_job *job)
{
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = TILE_ROWS;
        cfg.colsb[t] = TILE_K;
    }
    const size_t tail = m % TILE_ROWS, full = m - tail;
    tile_config tail_cfg = cfg;
    for (int t = 0; t < 6; t++) /* accumulators and A tiles of `tail` rows: nothing computed past m */
        tail_cfg.rows[t] = (uint8_t)tail;
    /* Each merge costs two ldtilecfg per column-group pair (~0.2 us each here), more
     * than re-reading weights that stay in L2. */
    if (full && tail && reads_in_place(k, a, lda) && n * k > BIG_B) {
        _tile_loadconfig(&cfg);
        tiles(full, n, k, a, lda, packed, c, ldc, tail, &cfg, &tail_cfg, job);
    } else {
        if (full) {
            _tile_loadconfig(&cfg);
            tiles(full, n, k, a, lda, packed, c, ldc, 0, NULL, NULL, job);
        }
        if (tail) {
            _tile_loadconfig(&tail_cfg);
            tiles(tail, n, k, a + full * lda, lda, packed, c + full * ldc, ldc, 0, NULL, NULL, job);
        }
    }
    _tile_release();
}

AMX_TARGET void repq_gemm_u8s8_amx(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                                   const void *packed, int32_t *c, size_t ldc)
{
    if (m == 0 || n == 0)
        return;
    gemm_amx(m, n, k, a, lda, packed, c, ldc, NULL);
}

/* The matrix is unpacked into scratch pair of column groups by pair of groups, as the
 * tiles' first row block reaches them, and the later row blocks and the row tail read
 * it there. Unpacking panel by panel before an 8-bit call per panel, as the other levels
 * do, cost two tile configurations and a pass of the row tail per panel: at a
 * 96-row block this runs at 0.76-0.88 of the 8-bit kernel's speed against 0.62-0.79
 * (bench_kernels). Unpacking in small steps between the tile multiplies, so that the
 * vector ports and the AMX unit overlap, measured the same and is not done. */
AMX_TARGET void repq_gemm_u8u4_amx(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const void *packed,
                                   int32_t *c, size_t ldc, void *scratch)
{
    if (m == 0 || n == 0)
        return;
    const size_t blocks = (n + GROUP - 1) / GROUP * ((k + QUAD - 1) / QUAD);
    uint8_t *unpacked = scratch;
    /* The slack past the last block, which k-tail tiles read, is zero. */
    memset(unpacked + blocks * BLOCK, 0, repq_gemm_u8s8_packed_size(n, k) - blocks * BLOCK);
    repq_u4_job job = {packed, unpacked, 0, blocks};
    gemm_amx(m, n, k, a, lda, unpacked, c, ldc, &job);
}
