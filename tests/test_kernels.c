/* Tests of lib/kernels: every SIMD level against the scalar reference bit for
 * bit, the scalar references against hand-worked cases and naive loops, and the
 * integer log2 softmax against its float contract. meson runs this program once per
 * level (tests/kernel_levels.h): "kernels" for the scalar references, "kernels avx2"
 * and so on for one level each, skipped where the CPU lacks it. */
/* mmap and MAP_ANONYMOUS are outside plain C11. */
#define _DEFAULT_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "kernel_levels.h"
#include "kernels/attn_log2.h"
#include "kernels/cpu.h"
#include "kernels/gemm_s8.h"
#include "kernels/gemm_u4.h"
#include "kernels/requant.h"
#include "kernels/softmax_log2.h"

/* xorshift64*: a fixed seed per test makes failures reproducible. */
static uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s * 0x9e3779b97f4a7c15ull + 1; }
static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}
static int32_t rng_range(int32_t lo, int32_t hi) /* inclusive */
{
    return lo + (int32_t)(rng_next() % (uint64_t)((int64_t)hi - lo + 1));
}
static double rng_unit(void) { return (double)(rng_next() >> 11) * 0x1p-53; }

static const repq_kernel_level simd_levels[] = {REPQ_LEVEL_AVX2, REPQ_LEVEL_AVXVNNI, REPQ_LEVEL_AVX512VNNI,
                                                REPQ_LEVEL_AMX};
#define N_SIMD (sizeof simd_levels / sizeof simd_levels[0])
/* For hand cases: a level that shares a lower one's code still dispatches to it correctly. */
static const repq_kernel_level every_level[] = {REPQ_LEVEL_SCALAR, REPQ_LEVEL_AVX2, REPQ_LEVEL_AVXVNNI,
                                                REPQ_LEVEL_AVX512VNNI, REPQ_LEVEL_AMX};
#define N_LEVELS (sizeof every_level / sizeof every_level[0])

static void cpu_levels_are_ordered(void **state)
{
    (void)state;
    skip_unless_scalar_checked();
    const uint32_t cpu_mask = repq_cpu_detect();
    assert_true(cpu_mask & REPQ_CPU_SCALAR);
    const repq_kernel_level best = repq_kernel_level_best(cpu_mask);
    assert_int_equal(repq_kernel_level_clamp(cpu_mask, REPQ_LEVEL_SCALAR), REPQ_LEVEL_SCALAR);
    assert_int_equal(repq_kernel_level_clamp(cpu_mask, REPQ_LEVEL_AMX), best);
    assert_int_equal(repq_kernel_level_best(REPQ_CPU_SCALAR), REPQ_LEVEL_SCALAR);
    assert_int_equal(repq_kernel_level_best(REPQ_CPU_SCALAR | REPQ_CPU_AVX2), REPQ_LEVEL_AVX2);
    assert_int_equal(repq_kernel_level_best(REPQ_CPU_SCALAR | REPQ_CPU_AVX2 | REPQ_CPU_AVX512VNNI),
                     REPQ_LEVEL_AVX512VNNI);
    assert_string_equal(repq_kernel_level_name(best), repq_kernel_level_name(best));
    assert_string_equal(repq_kernel_level_name(REPQ_LEVEL_AVX2), "avx2");
    assert_int_equal(repq_kernel_level_best(REPQ_CPU_SCALAR | REPQ_CPU_AVX2 | REPQ_CPU_AVXVNNI), REPQ_LEVEL_AVXVNNI);
    /* AVX-512 VNNI without AVX-VNNI (Ice Lake, Zen 4): asking for avxvnni gives avx2. */
    const uint32_t zen4 = REPQ_CPU_SCALAR | REPQ_CPU_AVX2 | REPQ_CPU_AVX512VNNI;
    assert_int_equal(repq_kernel_level_clamp(zen4, REPQ_LEVEL_AVXVNNI), REPQ_LEVEL_AVX2);
    assert_int_equal(repq_kernel_level_clamp(zen4, REPQ_LEVEL_AMX), REPQ_LEVEL_AVX512VNNI);
    assert_int_equal(repq_kernel_level_clamp(REPQ_CPU_SCALAR | REPQ_CPU_AVXVNNI, REPQ_LEVEL_AVXVNNI),
                     REPQ_LEVEL_SCALAR);
}

/* ---- GEMM --------------------------------------------------------------- */

static void *pack_weights(size_t n, size_t k, const int8_t *b, size_t ldb)
{
    void *p = aligned_alloc(64, repq_gemm_u8s8_packed_size(n, k));
    assert_non_null(p);
    repq_gemm_u8s8_pack(n, k, b, ldb, p);
    return p;
}

static void gemm_scalar_hand_case(void **state)
{
    (void)state;
    const uint8_t a[2][4] = {{1, 2, 3, 4}, {255, 0, 10, 1}};
    const int8_t b[3][4] = {{1, -1, 2, 0}, {-128, 127, 0, 5}, {3, 3, 3, 3}};
    /* Worked by hand: row 0: 1-2+6 = 5; -128+254+20 = 146; 3*10 = 30.
     * row 1: 255+20 = 275; -32640+5 = -32635; 3*266 = 798. */
    const int32_t expect[2][3] = {{5, 146, 30}, {275, -32635, 798}};
    void *p = pack_weights(3, 4, &b[0][0], 4);
    int32_t c[2][3];
    if (kernel_level_checked(REPQ_LEVEL_SCALAR)) {
        repq_gemm_u8s8_scalar(2, 3, 4, &a[0][0], 4, p, &c[0][0], 3);
        assert_memory_equal(c, expect, sizeof c);
    }
    for (size_t l = 0; l < N_SIMD; l++) {
        if (!kernel_level_checked(simd_levels[l]))
            continue;
        memset(c, 0, sizeof c);
        repq_gemm_u8s8(simd_levels[l], 2, 3, 4, &a[0][0], 4, p, &c[0][0], 3);
        assert_memory_equal(c, expect, sizeof c);
    }
    free(p);
}

/* A scalar GEMM's result against the plain triple loop in int64. */
static void check_naive(const char *what, size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                        const int8_t *b, size_t ldb, const int32_t *got, size_t ldc)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            int64_t s = 0;
            for (size_t q = 0; q < k; q++)
                s += (int64_t)a[i * lda + q] * b[j * ldb + q];
            if (s != got[i * ldc + j])
                fail_msg("scalar %s gemm m=%zu n=%zu k=%zu at (%zu,%zu): %d != %lld", what, m, n, k, i, j,
                         got[i * ldc + j], (long long)s);
        }
}

/* Weights of a test GEMM. The AVX2 kernel takes a different form for a block
 * (16 columns x 4 k) whose byte pairs all have |b0| + |b1| <= 128 ("narrow") than
 * for one with a wider pair, and decides per column group whether to test quads
 * one by one; these cover every form. */
enum weights {
    WEIGHTS_RANDOM,   /* uniform int8: nearly every block wide */
    WEIGHTS_EXTREME,  /* all -128, with A all 255: the largest sums */
    WEIGHTS_NARROW,   /* |b| <= 64: every block narrow */
    WEIGHTS_FEW_WIDE, /* narrow, with one wide pair in about one quad in eight */
    WEIGHTS_BY_GROUP, /* column group g: narrow, random, few wide as g % 3 */
};

static int8_t weight_of(enum weights kind, size_t p)
{
    switch (kind) {
    case WEIGHTS_EXTREME: return -128;
    case WEIGHTS_NARROW: return (int8_t)((int)(rng_next() % 129) - 64);
    case WEIGHTS_FEW_WIDE:
        if (p % 2 == 0 && rng_next() % 256 == 0)
            return rng_next() % 2 ? 127 : -128; /* with any partner beyond +-1: wide */
        return (int8_t)((int)(rng_next() % 129) - 64);
    case WEIGHTS_RANDOM:
    case WEIGHTS_BY_GROUP: break; /* per column: gemm_check_shape_lda */
    }
    return (int8_t)rng_next();
}

static void gemm_check_shape_lda(size_t m, size_t n, size_t k, size_t lda, enum weights kind)
{
    const bool extremes = kind == WEIGHTS_EXTREME;
    const size_t ldb = k + 1, ldc = n + 5;
    /* 64-byte aligned, so that lda a multiple of 64 gives whole cache-line rows. */
    uint8_t *a = aligned_alloc(64, (m * lda + 63) / 64 * 64);
    int8_t *b = malloc(n * ldb);
    int32_t *ref = malloc(m * ldc * sizeof *ref), *c = malloc(m * ldc * sizeof *c);
    assert_true(a && b && ref && c);
    for (size_t i = 0; i < m * lda; i++)
        a[i] = extremes ? 255 : (uint8_t)rng_next();
    const enum weights by_group[3] = {WEIGHTS_NARROW, WEIGHTS_RANDOM, WEIGHTS_FEW_WIDE};
    for (size_t i = 0; i < n * ldb; i++)
        b[i] = weight_of(kind == WEIGHTS_BY_GROUP ? by_group[i / ldb / 16 % 3] : kind, i % ldb);
    void *p = pack_weights(n, k, b, ldb);
    repq_gemm_u8s8_scalar(m, n, k, a, lda, p, ref, ldc);
    if (kernel_level_checked(REPQ_LEVEL_SCALAR))
        check_naive("s8", m, n, k, a, lda, b, ldb, ref, ldc);
    for (size_t l = 0; l < N_SIMD; l++) {
        if (!kernel_level_checked(simd_levels[l]))
            continue;
        for (size_t i = 0; i < m * ldc; i++)
            c[i] = ref[i] = 0x5a5a5a5a;
        repq_gemm_u8s8(REPQ_LEVEL_SCALAR, m, n, k, a, lda, p, ref, ldc);
        repq_gemm_u8s8(simd_levels[l], m, n, k, a, lda, p, c, ldc);
        /* Also compares the padding columns between n and ldc: they must be untouched. */
        if (memcmp(c, ref, ((m - 1) * ldc + n) * sizeof *c) != 0)
            fail_msg("%s gemm differs from scalar for m=%zu n=%zu k=%zu",
                     repq_kernel_level_name(simd_levels[l]), m, n, k);
    }
    free(p);
    free(a);
    free(b);
    free(ref);
    free(c);
}

static void gemm_check_shape(size_t m, size_t n, size_t k, enum weights kind)
{
    gemm_check_shape_lda(m, n, k, k + 3, kind);
}

static void gemm_levels_match_scalar(void **state)
{
    (void)state;
    rng_seed(1);
    const size_t ms[] = {1, 3, 5, 17, 33, 197};
    const size_t ns[] = {1, 3, 15, 16, 17, 65};
    const size_t ks[] = {1, 3, 5, 16, 17, 63, 100};
    for (size_t x = 0; x < sizeof ms / sizeof *ms; x++)
        for (size_t y = 0; y < sizeof ns / sizeof *ns; y++)
            for (size_t z = 0; z < sizeof ks / sizeof *ks; z++)
                gemm_check_shape(ms[x], ns[y], ks[z], WEIGHTS_RANDOM);
    gemm_check_shape(13, 70, 1100, WEIGHTS_RANDOM); /* crosses the VNNI K chunk */
    gemm_check_shape(7, 33, 2051, WEIGHTS_RANDOM);
    /* The AMX kernel's A paths: whole aligned lines (k and lda multiples of 64), a
     * staged block (k up to 256), a staged k tail (longer k); 197 rows span three
     * row blocks. */
    gemm_check_shape_lda(197, 65, 128, 128, WEIGHTS_RANDOM);
    gemm_check_shape_lda(197, 65, 320, 320, WEIGHTS_RANDOM);
    gemm_check_shape_lda(197, 33, 256, 260, WEIGHTS_RANDOM);
    gemm_check_shape_lda(197, 33, 96, 96, WEIGHTS_RANDOM);
    gemm_check_shape_lda(197, 33, 300, 300, WEIGHTS_RANDOM);
    gemm_check_shape_lda(40, 17, 384, 448, WEIGHTS_RANDOM);
    /* Weights over 1 MB read in place: the AMX kernel's 208-row blocks; 245 rows are
     * one such block, a partial one of 32 and a tail of 5. */
    gemm_check_shape_lda(245, 520, 2048, 2048, WEIGHTS_RANDOM);
    /* Narrow weights, and narrow ones with a few wide quads, over the same kinds of
     * shapes: tails of rows, columns and k, k long enough for groups with a wide
     * quad to be tested quad by quad and groups mostly wide. */
    const enum weights kinds[] = {WEIGHTS_NARROW, WEIGHTS_FEW_WIDE};
    for (size_t w = 0; w < 2; w++) {
        for (size_t x = 0; x < sizeof ms / sizeof *ms; x++)
            for (size_t z = 0; z < sizeof ks / sizeof *ks; z++)
                gemm_check_shape(ms[x], 17, ks[z], kinds[w]);
        gemm_check_shape(197, 65, 384, kinds[w]);
        gemm_check_shape(13, 33, 1537, kinds[w]);
    }
    /* The AVX2 kernel classifies column groups in chunks of 64, does the narrow and
     * mixed ones at once and then the wide ones by row tile over A rows widened once
     * (k up to 4096; longer k keeps the per-group split): every kind side by side
     * across a chunk boundary, and k on both sides of the limit. */
    gemm_check_shape(13, 16 * 70 + 5, 97, WEIGHTS_BY_GROUP);
    gemm_check_shape(6, 16 * 64 + 16, 40, WEIGHTS_BY_GROUP);
    gemm_check_shape(7, 33, 4096, WEIGHTS_RANDOM);
    gemm_check_shape(7, 33, 4097, WEIGHTS_RANDOM);
    gemm_check_shape(5, 33, 4095, WEIGHTS_BY_GROUP);
}

/* Pairs at the narrow form's limit: |b0| + |b1| = 128 times a = 255 is 32640 (or
 * -32640), the largest int16 pair sum it allows; a quad with one pair of 129 must
 * take the wide form. Expected values worked out here, not by a kernel. */
static void gemm_narrow_limit(void **state)
{
    (void)state;
    enum { N = 16, K = 12 };
    const int8_t limit_pairs[][2] = {{127, 1}, {-128, 0}, {64, 64}, {-64, -64}, {100, -28}, {0, -128}, {-1, 127}, {28, 100}};
    int8_t b[N][K];
    uint8_t a[3][K];
    memset(a, 255, sizeof a);
    a[2][1] = 0; /* one row where the limit pairs' second product drops out */
    for (int j = 0; j < N; j++) {
        const int8_t *x = limit_pairs[j % 8], *y = limit_pairs[(j + 3) % 8];
        /* quads 0 and 1: limit pairs only (narrow); quad 2: column 5 has (-65, -64). */
        const int8_t row[K] = {x[0], x[1], y[0], y[1], y[0], y[1], x[0], x[1], 1, 2, j == 5 ? -65 : 3, j == 5 ? -64 : 4};
        memcpy(b[j], row, K);
    }
    int32_t expect[3][N];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < N; j++) {
            const int8_t *x = limit_pairs[j % 8], *y = limit_pairs[(j + 3) % 8];
            const int32_t ax1 = i == 2 ? 0 : 255;
            /* The x pair at k 0-1 (a[i][1] = ax1) and 6-7, the y pair twice, quad 2. */
            expect[i][j] = (255 * x[0] + ax1 * x[1]) + 255 * (x[0] + x[1]) + 2 * 255 * (y[0] + y[1]) +
                           (j == 5 ? 255 * (1 + 2 - 65 - 64) : 255 * (1 + 2 + 3 + 4));
        }
    void *p = pack_weights(N, K, &b[0][0], K);
    int32_t c[3][N];
    for (size_t l = 0; l < N_LEVELS; l++) {
        if (!kernel_level_checked(every_level[l]))
            continue;
        memset(c, 0x5a, sizeof c);
        repq_gemm_u8s8(every_level[l], 3, N, K, &a[0][0], K, p, &c[0][0], N);
        assert_memory_equal(c, expect, sizeof c);
    }
    free(p);
}

static void gemm_extremes_do_not_overflow(void **state)
{
    (void)state;
    /* 255 * -128 * 65536 = -2139095040, the most negative sum the bound allows. */
    gemm_check_shape(2, 17, REPQ_GEMM_U8S8_MAX_K, WEIGHTS_EXTREME);
}

/* Memory whose last byte is followed by an inaccessible page: a kernel that reads
 * past `bytes` faults. Tile loads are not seen by AddressSanitizer, so this is
 * how the AMX kernel's staging of row and k tails and the packed slack are checked. */
typedef struct guarded {
    uint8_t *map;
    size_t map_len;
    void *p;
} guarded;

static guarded guarded_alloc(size_t bytes)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t body = (bytes + page - 1) / page * page;
    guarded g = {NULL, body + page, NULL};
    void *map = mmap(NULL, g.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    g.map = map;
    assert_int_equal(mprotect(g.map + body, page, PROT_NONE), 0);
    g.p = g.map + body - bytes;
    return g;
}

static void gemm_reads_stay_inside_operands(void **state)
{
    (void)state;
    skip_unless_simd_checked();
    rng_seed(5);
    /* k tails of 1, 3 and 5 bytes past a quad, 1 to 15 quads past a tile; rows
     * and columns past a tile. Both operands end right before a guard page. */
    const size_t shapes[][3] = {{1, 1, 1}, {5, 17, 197}, {33, 31, 65}, {17, 16, 64}, {31, 33, 131}, {2, 5, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        const size_t psize = repq_gemm_u8s8_packed_size(n, k);
        guarded ga = guarded_alloc(m * k), gb = guarded_alloc(psize);
        int8_t *b = malloc(n * k);
        int32_t *ref = malloc(m * n * sizeof *ref), *c = malloc(m * n * sizeof *c);
        assert_true(b && ref && c);
        uint8_t *a = ga.p;
        for (size_t i = 0; i < m * k; i++)
            a[i] = (uint8_t)rng_next();
        for (size_t i = 0; i < n * k; i++)
            b[i] = (int8_t)rng_next();
        repq_gemm_u8s8_pack(n, k, b, k, gb.p);
        repq_gemm_u8s8_scalar(m, n, k, a, k, gb.p, ref, n);
        for (size_t l = 0; l < N_SIMD; l++) {
            if (!kernel_level_checked(simd_levels[l]))
                continue;
            memset(c, 0x5a, m * n * sizeof *c);
            repq_gemm_u8s8(simd_levels[l], m, n, k, a, k, gb.p, c, n);
            if (memcmp(c, ref, m * n * sizeof *c) != 0)
                fail_msg("%s gemm differs from scalar for m=%zu n=%zu k=%zu (guarded operands)",
                         repq_kernel_level_name(simd_levels[l]), m, n, k);
        }
        munmap(ga.map, ga.map_len);
        munmap(gb.map, gb.map_len);
        free(b);
        free(ref);
        free(c);
    }
}

/* ---- 4-bit weights ------------------------------------------------------ */

/* aligned: A rows are whole 64-byte lines at a 64-byte aligned address, as the
 * session's codes are (the AMX kernel then reads A's tiles in place). */
static void gemm_u4_check_shape_at(size_t m, size_t n, size_t k, int extremes, int aligned)
{
    const size_t lda = aligned ? (k + 63) / 64 * 64 + 64 : k + 3, ldb = k + 1, ldc = n + 5;
    uint8_t *a = aligned ? aligned_alloc(64, (m * lda + 63) / 64 * 64) : malloc(m * lda);
    int8_t *b = malloc(n * ldb);
    int32_t *ref = malloc(m * ldc * sizeof *ref), *c = malloc(m * ldc * sizeof *c);
    void *p = malloc(repq_gemm_u8u4_packed_size(n, k));
    assert_true(a && b && ref && c && p);
    for (size_t i = 0; i < m * lda; i++)
        a[i] = extremes ? 255 : (uint8_t)rng_next();
    for (size_t i = 0; i < n * ldb; i++)
        b[i] = extremes ? 15 : (int8_t)(rng_next() % 16);
    repq_gemm_u8u4_pack(n, k, b, ldb, p);
    for (size_t i = 0; i < m * ldc; i++)
        ref[i] = 0x5a5a5a5a;
    repq_gemm_u8u4(REPQ_LEVEL_SCALAR, m, n, k, a, lda, p, ref, ldc, NULL);
    if (kernel_level_checked(REPQ_LEVEL_SCALAR))
        check_naive("u4", m, n, k, a, lda, b, ldb, ref, ldc);
    for (size_t l = 0; l < N_SIMD; l++) {
        if (!kernel_level_checked(simd_levels[l]))
            continue;
        for (size_t i = 0; i < m * ldc; i++)
            c[i] = 0x5a5a5a5a;
        /* Exactly the level's scratch (ASan sees any write past it), filled with junk. */
        const size_t scratch_bytes = repq_gemm_u8u4_scratch_size(simd_levels[l], k, repq_gemm_u8s8_packed_size(n, k));
        uint8_t *scratch = malloc(scratch_bytes);
        assert_non_null(scratch);
        memset(scratch, 0xa5, scratch_bytes);
        repq_gemm_u8u4(simd_levels[l], m, n, k, a, lda, p, c, ldc, scratch);
        free(scratch);
        if (memcmp(c, ref, ((m - 1) * ldc + n) * sizeof *c) != 0)
            fail_msg("%s u4 gemm differs from scalar for m=%zu n=%zu k=%zu",
                     repq_kernel_level_name(simd_levels[l]), m, n, k);
    }
    free(a); free(b); free(ref); free(c); free(p);
}

static void gemm_u4_check_shape(size_t m, size_t n, size_t k, int extremes)
{
    gemm_u4_check_shape_at(m, n, k, extremes, 0);
}

static void gemm_u4_hand_case(void **state)
{
    (void)state;
    skip_unless_scalar_checked();
    /* Two columns of one group, k = 5: element (column j, k p) of a block sits in
     * byte 4j + p % 4 of the 64-byte block, i.e. a low nibble for j < 8. */
    const int8_t b[2][5] = {{1, 2, 3, 4, 15}, {0, 15, 0, 15, 7}};
    const uint8_t a[1][5] = {{1, 1, 1, 1, 2}};
    uint8_t p[64] = {0};
    assert_true(repq_gemm_u8u4_packed_size(2, 5) <= sizeof p);
    repq_gemm_u8u4_pack(2, 5, &b[0][0], 5, p);
    assert_int_equal(p[0], 1);  /* block 0, column 0, k 0 */
    assert_int_equal(p[7], 15); /* block 0, column 1, k 3 */
    assert_int_equal(p[32], 15); /* block 1 (k 4..7), column 0 */
    assert_int_equal(p[36], 7); /* block 1, column 1 */
    int32_t c[2];
    repq_gemm_u8u4_scalar(1, 2, 5, &a[0][0], 5, p, c, 2);
    assert_int_equal(c[0], 1 + 2 + 3 + 4 + 30);
    assert_int_equal(c[1], 30 + 14);
}

static void gemm_u4_levels_match_scalar(void **state)
{
    (void)state;
    rng_seed(3);
    const size_t ms[] = {1, 5, 17, 96};
    const size_t ns[] = {1, 15, 17, 65, 130};
    const size_t ks[] = {1, 3, 63, 100, 197};
    for (size_t x = 0; x < sizeof ms / sizeof *ms; x++)
        for (size_t y = 0; y < sizeof ns / sizeof *ns; y++)
            for (size_t z = 0; z < sizeof ks / sizeof *ks; z++)
                gemm_u4_check_shape(ms[x], ns[y], ks[z], 0);
    gemm_u4_check_shape(7, 33, 1100, 0);
    /* AMX: the whole matrix unpacked (32 rows or more) with A's last partial 64 bytes
     * staged (k > 256, not a multiple of 64). */
    gemm_u4_check_shape(40, 70, 300, 0);
    /* 255 * 15 * 65536 < 2^31: the largest sum. */
    gemm_u4_check_shape(2, 17, REPQ_GEMM_U8S8_MAX_K, 1);
    /* A read in place: row tails (m % 16), odd column groups and panels, one panel or many. */
    const size_t am[] = {1, 5, 16, 17, 33, 197};
    const size_t an[] = {1, 17, 64, 65, 130, 200};
    const size_t ak[] = {64, 384, 1536};
    for (size_t x = 0; x < sizeof am / sizeof *am; x++)
        for (size_t y = 0; y < sizeof an / sizeof *an; y++)
            for (size_t z = 0; z < sizeof ak / sizeof *ak; z++)
                gemm_u4_check_shape_at(am[x], an[y], ak[z], 0, 1);
    gemm_u4_check_shape_at(37, 70, 4096, 1, 1);
    /* Weights over 1 MB: AMX's long row blocks with the row tail merged, the matrix
     * unpacked while the first block's tiles run. */
    gemm_u4_check_shape_at(197, 1540, 768, 0, 1);
}

/* ---- requantization ----------------------------------------------------- */

static void requant_hand_cases(void **state)
{
    (void)state;
    int32_t mult, shift;
    assert_true(repq_requant_multiplier_from_float(0.5, &mult, &shift));
    assert_int_equal(mult, 1 << 30);
    assert_int_equal(shift, 0);
    /* Ties go away from zero, others to nearest. */
    assert_int_equal(repq_requant_round(3, mult, shift), 2);
    assert_int_equal(repq_requant_round(-3, mult, shift), -2);
    assert_int_equal(repq_requant_round(1, mult, shift), 1);
    assert_int_equal(repq_requant_round(-1, mult, shift), -1);
    assert_int_equal(repq_requant_round(-5, mult, shift), -3);
    assert_true(repq_requant_multiplier_from_float(0.25, &mult, &shift));
    assert_int_equal(shift, 1);
    assert_int_equal(repq_requant_round(5, mult, shift), 1);   /* 1.25 */
    assert_int_equal(repq_requant_round(-7, mult, shift), -2); /* -1.75 */
    assert_int_equal(repq_requant_round(6, mult, shift), 2);   /* 1.5 */
    assert_true(repq_requant_multiplier_from_float(3.0, &mult, &shift));
    assert_int_equal(repq_requant_round(INT32_MAX, mult, shift), (int64_t)INT32_MAX * 3);
    assert_false(repq_requant_multiplier_from_float(0.0, &mult, &shift));
    assert_false(repq_requant_multiplier_from_float(32768.0, &mult, &shift));
    assert_false(repq_requant_multiplier_from_float(NAN, &mult, &shift));

    /* u8 with zero point 128, real 0.5: -5 -> 128 - 3; clamps at both ends; bias added first. */
    const int32_t acc[5] = {-5, 3, 1000, -1000, 0};
    const int32_t bias[5] = {0, 0, 0, 0, 7};
    int32_t mults[5], shifts[5];
    for (int j = 0; j < 5; j++)
        assert_true(repq_requant_multiplier_from_float(0.5, &mults[j], &shifts[j]));
    const uint8_t expect[5] = {125, 130, 255, 0, 132};
    uint8_t out[5];
    for (size_t l = 0; l < N_LEVELS; l++) {
        if (!kernel_level_checked(every_level[l]))
            continue;
        repq_requant_u8(every_level[l], 1, 5, acc, 5, bias, mults, shifts, 128, 0, 255, out, 5);
        assert_memory_equal(out, expect, 5);
    }
}

static void requant_multiplier_is_accurate(void **state)
{
    (void)state;
    skip_unless_scalar_checked();
    rng_seed(2);
    for (int it = 0; it < 10000; it++) {
        const double real = ldexp(0.5 + rng_unit() * 0.5, rng_range(-31, 15));
        if (!(real < 32768.0))
            continue;
        int32_t mult, shift;
        assert_true(repq_requant_multiplier_from_float(real, &mult, &shift));
        assert_true(mult >= (1 << 30));
        assert_true(shift >= REPQ_REQUANT_SHIFT_MIN && shift <= REPQ_REQUANT_SHIFT_MAX);
        const double back = ldexp((double)mult, -(31 + shift));
        assert_true(fabs(back - real) <= real * 0x1p-30);
    }
    int32_t mult, shift;
    assert_true(repq_requant_multiplier_from_float(1e-12, &mult, &shift));
    assert_int_equal(shift, REPQ_REQUANT_SHIFT_MAX);
    assert_true(repq_requant_multiplier_from_float(32767.9999999, &mult, &shift));
    assert_int_equal(shift, REPQ_REQUANT_SHIFT_MIN);
}

static void requant_levels_match_scalar(void **state)
{
    (void)state;
    rng_seed(3);
    const size_t sizes[] = {1, 3, 5, 15, 16, 17, 33, 63, 65, 100, 197};
    for (size_t x = 0; x < sizeof sizes / sizeof *sizes; x++)
        for (size_t y = 0; y < sizeof sizes / sizeof *sizes; y += 2) {
            const size_t m = sizes[y], n = sizes[x], ld = n + 2;
            int32_t *acc = malloc(m * ld * sizeof *acc), *bias = malloc(n * sizeof *bias);
            int32_t *mult = malloc(n * sizeof *mult), *shift = malloc(n * sizeof *shift);
            float *scale = malloc(n * sizeof *scale), *fref = malloc(m * ld * sizeof *fref),
                  *fout = malloc(m * ld * sizeof *fout);
            uint8_t *ref = malloc(m * ld), *out = malloc(m * ld);
            int32_t *sref = malloc(m * sizeof *sref), *sout = malloc(m * sizeof *sout);
            assert_true(acc && bias && mult && shift && scale && fref && fout && ref && out && sref && sout);
            for (size_t i = 0; i < m * ld; i++)
                acc[i] = rng_range(-(1 << 26), 1 << 26);
            for (size_t j = 0; j < n; j++) {
                bias[j] = rng_range(-(1 << 20), 1 << 20);
                /* Whole range of the helper, so large products exercise the clamps too. */
                const double real = ldexp(0.5 + rng_unit() * 0.5, rng_range(-31, 14));
                assert_true(repq_requant_multiplier_from_float(real, &mult[j], &shift[j]));
                scale[j] = (float)ldexp(rng_unit() + 0.1, rng_range(-20, 0));
            }
            if (x == 0) /* exact ties: v * 0.5 with v odd */
                for (size_t i = 0; i < m * ld; i++)
                    acc[i] = 2 * rng_range(-100, 100) + 1;
            const int32_t zp = rng_range(0, 255), qmin = rng_range(0, zp), qmax = rng_range(zp, 255);
            repq_requant_u8(REPQ_LEVEL_SCALAR, m, n, acc, ld, bias, mult, shift, zp, qmin, qmax, ref, ld);
            repq_dequant_f32(REPQ_LEVEL_SCALAR, m, n, acc, ld, bias, scale, fref, ld);
            const uint8_t *rows = (const uint8_t *)acc;
            repq_row_sums_u8(REPQ_LEVEL_SCALAR, m, n * 4, rows, ld * 4, sref);
            for (size_t i = 0; i < m && kernel_level_checked(REPQ_LEVEL_SCALAR); i++) {
                int32_t s = 0;
                for (size_t q = 0; q < n * 4; q++)
                    s += rows[i * ld * 4 + q];
                assert_int_equal(s, sref[i]);
            }
            for (size_t l = 0; l < N_SIMD; l++) {
                if (!kernel_level_checked(simd_levels[l]))
                    continue;
                repq_requant_u8(simd_levels[l], m, n, acc, ld, bias, mult, shift, zp, qmin, qmax, out, ld);
                for (size_t i = 0; i < m; i++)
                    assert_memory_equal(out + i * ld, ref + i * ld, n);
                repq_dequant_f32(simd_levels[l], m, n, acc, ld, bias, scale, fout, ld);
                for (size_t i = 0; i < m; i++)
                    assert_memory_equal(fout + i * ld, fref + i * ld, n * sizeof *fout);
                repq_row_sums_u8(simd_levels[l], m, n * 4, rows, ld * 4, sout);
                assert_memory_equal(sout, sref, m * sizeof *sout);
            }
            free(acc); free(bias); free(mult); free(shift); free(scale); free(fref); free(fout);
            free(ref); free(out); free(sref); free(sout);
        }
}

/* ---- softmax ------------------------------------------------------------ */

/* The fast log2 equals the squaring definition on random sums of every magnitude,
 * on powers of two, and on the integers nearest to Q22 boundaries, where the
 * double path must hand over to the definition. */
static void softmax_log2_sum_matches_definition(void **state)
{
    (void)state;
    skip_unless_scalar_checked();
    rng_seed(9);
    size_t checked = 0;
    for (int i = 0; i < 400000; i++) {
        const int bits = 31 + (int)(rng_next() % 33); /* sums in [2^30, 2^63] */
        uint64_t sum = rng_next() >> (64 - bits);
        sum = sum < (UINT64_C(1) << 30) ? (UINT64_C(1) << 30) + sum : sum;
        if (repq_log2_q22(sum) != repq_log2_q22_reference(sum))
            fail_msg("log2 of %llu: %d != %d", (unsigned long long)sum, repq_log2_q22(sum),
                     repq_log2_q22_reference(sum));
        checked++;
    }
    for (int e = 30; e < 63; e++)
        for (int64_t dx = -2; dx <= 2; dx++) {
            const uint64_t sum = (UINT64_C(1) << e) + (uint64_t)dx;
            if (sum >= (UINT64_C(1) << 30))
                assert_int_equal(repq_log2_q22(sum), repq_log2_q22_reference(sum));
        }
    for (int i = 0; i < 20000; i++) {
        /* 2^(30 + u / 2^22) for a random Q22 point u: the sums around it straddle a boundary. */
        const double u = (double)(rng_next() % ((uint64_t)20 << 22));
        const double center = ldexp(exp2(u / 4194304.0), 30);
        for (int dx = -1; dx <= 1; dx++) {
            const uint64_t sum = (uint64_t)center + (uint64_t)(int64_t)dx;
            if (repq_log2_q22(sum) != repq_log2_q22_reference(sum))
                fail_msg("log2 near a boundary, %llu: %d != %d", (unsigned long long)sum, repq_log2_q22(sum),
                         repq_log2_q22_reference(sum));
        }
    }
    assert_int_equal(checked, 400000);
}

/* The batch log2 (vector lanes at AVX-512) equals the definition at every level on
 * the same kinds of sums: random magnitudes, around powers of two (2^52 and up take
 * the definition), and around Q22 boundaries, in batches of every length to 19. */
static void softmax_log2_batch_matches_definition(void **state)
{
    (void)state;
    skip_unless_simd_checked();
    rng_seed(19);
    enum { N = 60000 };
    static uint64_t sum[N];
    static int32_t want[N], got[N];
    size_t n = 0;
    while (n < 30000) {
        const int bits = 31 + (int)(rng_next() % 33);
        const uint64_t v = rng_next() >> (64 - bits);
        sum[n++] = v < (UINT64_C(1) << 30) ? (UINT64_C(1) << 30) + v : v;
    }
    for (int e = 30; e < 64; e++)
        for (int64_t dx = -2; dx <= 2; dx++)
            if (e < 63 || dx < 0)
                sum[n++] = (UINT64_C(1) << e) + (uint64_t)dx;
    while (n + 3 <= N) {
        const double u = (double)(rng_next() % ((uint64_t)22 << 22));
        const uint64_t center = (uint64_t)ldexp(exp2(u / 4194304.0), 30);
        for (int dx = -1; dx <= 1; dx++)
            sum[n++] = center + (uint64_t)(int64_t)dx;
    }
    for (size_t i = 0; i < n; i++)
        want[i] = repq_log2_q22_reference(sum[i]);
    for (size_t l = 0; l < N_SIMD; l++) {
        if (!kernel_level_checked(simd_levels[l]))
            continue;
        for (size_t i = 0, len = 1; i < n; i += len, len = len % 19 + 1) {
            const size_t c = n - i < len ? n - i : len;
            repq_log2_q22_batch(simd_levels[l], c, sum + i, got + i);
        }
        for (size_t i = 0; i < n; i++)
            if (got[i] != want[i])
                fail_msg("%s: log2 of %llu: %d != %d", repq_kernel_level_name(simd_levels[l]),
                         (unsigned long long)sum[i], got[i], want[i]);
    }
}

static void softmax_hand_cases(void **state)
{
    (void)state;
    skip_unless_scalar_checked();
    repq_log2softmax_params p;
    assert_false(repq_log2softmax_prepare(0.1f, 1.5f, 4, &p));
    assert_false(repq_log2softmax_prepare(0.1f, 0.5f, 9, &p));
    assert_false(repq_log2softmax_prepare(0.0f, 0.5f, 4, &p));
    /* One dominant score: p = 1 for it (code 0 at s = 1), the rest underflow to the sentinel. */
    assert_true(repq_log2softmax_prepare(0.1f, 1.0f, 4, &p));
    const int32_t dom[4] = {0, 1000, 0, -7};
    uint8_t codes[4];
    repq_log2softmax_rows(REPQ_LEVEL_SCALAR, &p, 1, 4, dom, 4, codes, 4);
    const uint8_t expect_dom[4] = {16, 0, 16, 16};
    assert_memory_equal(codes, expect_dom, 4);
    /* Uniform row of 4: p = 1/4, -2*log2(p/s) = 4 at s = 1, 2 at s = 1/2. */
    const int32_t flat[4] = {5, 5, 5, 5};
    repq_log2softmax_rows(REPQ_LEVEL_SCALAR, &p, 1, 4, flat, 4, codes, 4);
    const uint8_t four[4] = {4, 4, 4, 4};
    assert_memory_equal(codes, four, 4);
    assert_true(repq_log2softmax_prepare(0.1f, 0.5f, 4, &p));
    repq_log2softmax_rows(REPQ_LEVEL_SCALAR, &p, 1, 4, flat, 4, codes, 4);
    const uint8_t two[4] = {2, 2, 2, 2};
    assert_memory_equal(codes, two, 4);
    /* Real scores {0, -1}: p = {0.731, 0.269}, -2*log2(p) = {0.90, 3.79}. */
    assert_true(repq_log2softmax_prepare(0.5f, 1.0f, 8, &p));
    const int32_t pair[2] = {0, -2};
    repq_log2softmax_rows(REPQ_LEVEL_SCALAR, &p, 1, 2, pair, 2, codes, 2);
    assert_int_equal(codes[0], 1);
    assert_int_equal(codes[1], 4);
}

static int float_code(const double *r, size_t n, size_t j, double s, int bits)
{
    double mx = r[0];
    for (size_t i = 1; i < n; i++)
        mx = r[i] > mx ? r[i] : mx;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += exp(r[i] - mx);
    const double pj = exp(r[j] - mx) / sum;
    const double c = nearbyint(-2.0 * log2(pj / s)); /* default mode: half to even */
    const int sentinel = bits == 8 ? 255 : 1 << bits;
    if (!(c < (double)(1 << bits)))
        return sentinel;
    return c < 0 ? 0 : (int)c;
}

/* Measured with seed 4 over 2000 rows (93,433 entries, n from 1 to 197, b in
 * 2..8, s in [2^-8, 1], real scores spread over +-1 to +-12): 99.997% of codes
 * equal the float codes (99.995% of the 65,696 non-zero ones); none differs by
 * more than 1. */
static void softmax_follows_float_contract(void **state)
{
    (void)state;
    skip_unless_scalar_checked();
    rng_seed(4);
    const size_t ns[] = {1, 3, 5, 15, 16, 17, 33, 63, 65, 100, 197};
    size_t total = 0, same = 0, total_live = 0, same_live = 0;
    int32_t x[197];
    double r[197];
    uint8_t codes[197];
    for (int it = 0; it < 2000; it++) {
        const size_t n = ns[it % (sizeof ns / sizeof *ns)];
        const float in_scale = (float)ldexp(0.5 + rng_unit(), rng_range(-12, -4));
        const float s = (float)ldexp(1.0, -rng_range(0, 8)) * (float)(0.6 + 0.4 * rng_unit());
        const int bits = rng_range(2, 8);
        /* Real score spread 1..12 so both dense and peaked rows occur. */
        const int32_t span = (int32_t)((1.0 + 11.0 * rng_unit()) / in_scale);
        repq_log2softmax_params p;
        assert_true(repq_log2softmax_prepare(in_scale, s, bits, &p));
        for (size_t j = 0; j < n; j++) {
            x[j] = rng_range(-span, span);
            r[j] = (double)in_scale * x[j];
        }
        repq_log2softmax_rows(REPQ_LEVEL_SCALAR, &p, 1, n, x, n, codes, n);
        for (size_t j = 0; j < n; j++) {
            const int want = float_code(r, n, j, s, bits);
            if (abs(want - codes[j]) > 1)
                fail_msg("n=%zu in_scale=%g s=%g b=%d j=%zu: code %d, float %d", n, (double)in_scale,
                         (double)s, bits, j, codes[j], want);
            total++;
            same += want == codes[j];
            if (want != p.sentinel) {
                total_live++;
                same_live += want == codes[j];
            }
        }
    }
    print_message("log2 softmax: %zu of %zu codes (%.3f%%) equal the float contract; "
                  "%zu of %zu (%.3f%%) of the non-zero ones\n", same, total, 100.0 * (double)same / (double)total,
                  same_live, total_live, 100.0 * (double)same_live / (double)total_live);
    assert_true((double)same >= 0.99 * (double)total);
}

static void softmax_levels_match_scalar(void **state)
{
    (void)state;
    skip_unless_simd_checked();
    rng_seed(5);
    /* Up to 37 rows, so that the AVX-512 groups of up to 16 rows split with a rest;
     * 4097 and 5000: past the 4096 scores whose t it keeps between passes. */
    const size_t ns[] = {1, 3, 5, 15, 16, 17, 33, 49, 63, 65, 100, 197, 1000, 1024, 1100, 4097, 5000};
    static int32_t x[37 * 5000];
    static uint8_t ref[37 * 5000], out[37 * 5000];
    for (int it = 0; it < 340; it++) {
        const size_t n = ns[it % (sizeof ns / sizeof *ns)];
        const size_t rows = n > 1100 ? 2 + (size_t)(it % 3) : 1 + (size_t)(it * 7 % 37);
        const float in_scale = (float)ldexp(0.5 + rng_unit(), rng_range(-30, 8));
        const float s = (float)ldexp(0.5 + 0.5 * rng_unit(), -rng_range(0, 60));
        repq_log2softmax_params p;
        assert_true(repq_log2softmax_prepare(in_scale, s, rng_range(2, 8), &p));
        const int mode = it % 3;
        for (size_t j = 0; j < rows * n; j++)
            x[j] = mode == 0 ? (int32_t)rng_next()                      /* full int32 range */
                 : mode == 1 ? rng_range(-1000, 1000)
                             : (rng_next() & 1 ? INT32_MAX : INT32_MIN); /* extreme spread */
        repq_log2softmax_rows(REPQ_LEVEL_SCALAR, &p, rows, n, x, n, ref, n);
        for (size_t l = 0; l < N_SIMD; l++) {
            if (!kernel_level_checked(simd_levels[l]))
                continue;
            repq_log2softmax_rows(simd_levels[l], &p, rows, n, x, n, out, n);
            assert_memory_equal(out, ref, rows * n);
        }
    }
}

/* ---- attention x V ------------------------------------------------------ */

static void attn_hand_case(void **state)
{
    (void)state;
    /* codes 0, 1, 2 with F = 4: weights 2^4 (E), 2^3 (D), 2^3 (E); code 16 is the sentinel. */
    const uint8_t codes[4] = {0, 1, 2, 16};
    const uint8_t v[4][2] = {{10, 20}, {12, 18}, {14, 16}, {200, 200}};
    /* v - 12: (-2, 8), (0, 6), (2, 4). E = (-32+16, 128+32) = (-16, 160); D = (0, 48). */
    int32_t e[2], d[2];
    uint8_t out[2];
    for (size_t l = 0; l < N_LEVELS; l++) {
        const repq_kernel_level level = every_level[l];
        if (!kernel_level_checked(level))
            continue;
        repq_attn_v_accumulate(level, 1, 4, 2, codes, 4, 16, &v[0][0], 2, 12, 4, e, d, 2);
        assert_int_equal(e[0], -16);
        assert_int_equal(e[1], 160);
        assert_int_equal(d[0], 0);
        assert_int_equal(d[1], 48);
        /* Levels 1 and sqrt2 at 2^0, s_v = 1: o = 2^-F (E + sqrt2 D) = (-1, 14.24); at scale
         * 0.25 and zero point 100 the codes are (96, 100 + round(56.97)) = (96, 157). */
        const double ce = ldexp(1.0, -8), co = 1.41421356 * ldexp(1.0, -8);
        repq_attn_v_finish(level, 1, 2, e, d, NULL, NULL, 2, 4, ce, co, 0.25f, 100, 8, out, 2);
        assert_int_equal(out[0], 96);
        assert_int_equal(out[1], 157);
        /* A tail term -64 at 2^-2F: o[0] = (-16 * 16 - 64) 2^-8 = -1.25, code 95. At 4 bits
         * with zero point 10 the codes clamp to 15: (10 - 5, 15). */
        const int32_t e2[2] = {-64, 0}, d2[2] = {0, 0};
        repq_attn_v_finish(level, 1, 2, e, d, e2, d2, 2, 4, ce, co, 0.25f, 100, 8, out, 2);
        assert_int_equal(out[0], 95);
        assert_int_equal(out[1], 157);
        repq_attn_v_finish(level, 1, 2, e, d, e2, d2, 2, 4, ce, co, 0.25f, 10, 4, out, 2);
        assert_int_equal(out[0], 5);
        assert_int_equal(out[1], 15);
        /* No columns: nothing is written. */
        repq_attn_v_finish(level, 3, 0, e, d, NULL, NULL, 2, 4, ce, co, 0.25f, 100, 8, out, 2);
        assert_int_equal(out[0], 5);
        assert_int_equal(out[1], 15);
    }
    assert_int_equal(repq_attn_v_frac_bits_max(197), 14);
    /* Codes past 2F = 32 (ceil(c/2) > 16) shifted by 32; the rest, and the sentinel,
     * become the sentinel. */
    const uint8_t all[6] = {0, 32, 33, 34, 254, 255};
    const uint8_t want[6] = {255, 255, 1, 2, 222, 255};
    uint8_t tail[6];
    assert_true(repq_attn_v_tail_codes(6, all, 255, 16, tail));
    assert_memory_equal(tail, want, 6);
    assert_false(repq_attn_v_tail_codes(2, all, 255, 16, tail));
    const uint8_t four[3] = {15, 16, 3}; /* 4 bits: nothing past 2F */
    assert_false(repq_attn_v_tail_codes(3, four, 16, 16, tail));
}

static void attn_levels_match_scalar(void **state)
{
    (void)state;
    rng_seed(6);
    /* The AVX2 kernel lists each row's tokens (up to 1024; more take the compiler-
     * vectorized loop). Called this way it converts V per token; through
     * repq_attn_v_accumulate_gemm it widens V in the scratch first, which
     * attn_v_gemm_matches_shifts checks at the same levels. */
    const size_t tokens_list[] = {1, 3, 17, 197, 1025};
    const size_t dims[] = {1, 5, 16, 17, 63, 64, 65, 100, 1100};
    for (size_t a = 0; a < sizeof tokens_list / sizeof *tokens_list; a++)
        for (size_t b = 0; b < sizeof dims / sizeof *dims; b++) {
            const size_t tokens = tokens_list[a], dim = dims[b], rows = 5;
            if (tokens > 1024 && dim != 64 && dim != 17)
                continue;
            const int bits = rng_range(2, 8);
            const int32_t sentinel = bits == 8 ? 255 : 1 << bits;
            const int frac = repq_attn_v_frac_bits_max(tokens);
            const size_t ldv = dim + 3, ldacc = dim + 1;
            uint8_t *codes = malloc(rows * tokens), *v = malloc(tokens * ldv);
            int32_t *e0 = malloc(rows * ldacc * 4), *d0 = malloc(rows * ldacc * 4);
            int32_t *e1 = malloc(rows * ldacc * 4), *d1 = malloc(rows * ldacc * 4);
            int32_t *e2 = malloc(rows * ldacc * 4), *d2 = malloc(rows * ldacc * 4);
            const size_t ldo = dim + 3; /* output rows with a stride of their own */
            uint8_t *o0 = malloc(rows * ldo), *o1 = malloc(rows * ldo);
            assert_true(codes && v && e0 && d0 && e1 && d1 && e2 && d2 && o0 && o1);
            for (size_t i = 0; i < rows * tokens; i++)
                codes[i] = (uint8_t)rng_range(0, sentinel);
            for (size_t i = 0; i < tokens * ldv; i++)
                v[i] = (uint8_t)rng_next();
            const int32_t zv = rng_range(0, 255), zp = rng_range(0, 255), obits = rng_range(2, 8);
            /* About a code per 2^-F step; the tail accumulators get random values below 2^F. */
            const double ce = ldexp(rng_unit() + 0.5, -2 * frac - 2), co = ce * 1.41421356;
            const bool with_tail = rng_range(0, 1);
            for (size_t i = 0; i < rows * ldacc; i++) {
                e2[i] = rng_range(-(1 << frac), 1 << frac);
                d2[i] = rng_range(-(1 << frac), 1 << frac);
            }
            repq_attn_v_accumulate(REPQ_LEVEL_SCALAR, rows, tokens, dim, codes, tokens, sentinel, v, ldv, zv,
                                   frac, e0, d0, ldacc);
            /* Spot-check the scalar reference against the definition. */
            for (size_t j = 0; j < dim && kernel_level_checked(REPQ_LEVEL_SCALAR); j++) {
                int64_t se = 0, sd = 0;
                for (size_t t = 0; t < tokens; t++) {
                    const int c = codes[t], h = (c + 1) / 2;
                    if (c >= sentinel || h > frac)
                        continue;
                    const int64_t term = (int64_t)(v[t * ldv + j] - zv) * (1 << (frac - h));
                    if (c % 2)
                        sd += term;
                    else
                        se += term;
                }
                assert_int_equal(se, e0[j]);
                assert_int_equal(sd, d0[j]);
            }
            repq_attn_v_finish(REPQ_LEVEL_SCALAR, rows, dim, e0, d0, with_tail ? e2 : NULL, with_tail ? d2 : NULL,
                               ldacc, frac, ce, co, 1.0f, zp, obits, o0, ldo);
            for (size_t l = 0; l < N_SIMD; l++) {
                if (!kernel_level_checked(simd_levels[l]))
                    continue;
                repq_attn_v_accumulate(simd_levels[l], rows, tokens, dim, codes, tokens, sentinel, v, ldv, zv,
                                       frac, e1, d1, ldacc);
                for (size_t i = 0; i < rows; i++) {
                    assert_memory_equal(e1 + i * ldacc, e0 + i * ldacc, dim * 4);
                    assert_memory_equal(d1 + i * ldacc, d0 + i * ldacc, dim * 4);
                }
                repq_attn_v_finish(simd_levels[l], rows, dim, e0, d0, with_tail ? e2 : NULL, with_tail ? d2 : NULL,
                                   ldacc, frac, ce, co, 1.0f, zp, obits, o1, ldo);
                for (size_t i = 0; i < rows; i++)
                    assert_memory_equal(o1 + i * ldo, o0 + i * ldo, dim);
            }
            free(codes); free(v); free(e0); free(d0); free(e1); free(d1); free(e2); free(d2); free(o0); free(o1);
        }
}

int repq_test_kernels_extra(void);

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cpu_levels_are_ordered),
        cmocka_unit_test(gemm_scalar_hand_case),
        cmocka_unit_test(gemm_levels_match_scalar),
        cmocka_unit_test(gemm_narrow_limit),
        cmocka_unit_test(gemm_extremes_do_not_overflow),
        cmocka_unit_test(gemm_reads_stay_inside_operands),
        cmocka_unit_test(gemm_u4_hand_case),
        cmocka_unit_test(gemm_u4_levels_match_scalar),
        cmocka_unit_test(requant_hand_cases),
        cmocka_unit_test(requant_multiplier_is_accurate),
        cmocka_unit_test(requant_levels_match_scalar),
        cmocka_unit_test(softmax_log2_sum_matches_definition),
        cmocka_unit_test(softmax_log2_batch_matches_definition),
        cmocka_unit_test(softmax_hand_cases),
        cmocka_unit_test(softmax_follows_float_contract),
        cmocka_unit_test(softmax_levels_match_scalar),
        cmocka_unit_test(attn_hand_case),
        cmocka_unit_test(attn_levels_match_scalar),
    };
    kernel_levels_select();
    return cmocka_run_group_tests(tests, NULL, NULL) + repq_test_kernels_extra();
}
