/* Benchmark of the u8 x s8 GEMM: GOPS per kernel level on deit_small shapes
 * at batch 8 (whole and in the session's 96-row blocks) and a large square,
 * against register-resident vpdpbusd and tdpbusd peaks and single-thread
 * OpenBLAS sgemm of the same size, all measured in this run. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#include <immintrin.h>

#include "kernels/cpu.h"
#include "kernels/gemm_s8.h"
#include "kernels/gemm_u4.h"
#include "kernels/quantize_f32.h"
#include "model/float_ops.h"

#define MIN_SECONDS 0.3

void openblas_set_num_threads(int num_threads);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 16 independent accumulator chains (named, so they live in registers) hide
 * the vpdpbusd latency; nothing touches memory, so this is the core's int8
 * dot-product throughput. */
#define PEAK_CHAINS 16
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), noinline)) static int32_t
vnni_peak_loop(long iters)
{
    const __m512i a = _mm512_set1_epi32(0x01020304), b = _mm512_set1_epi32(0x01ff01ff);
    __m512i c0 = _mm512_set1_epi32(0), c1 = _mm512_set1_epi32(1), c2 = _mm512_set1_epi32(2),
            c3 = _mm512_set1_epi32(3), c4 = _mm512_set1_epi32(4), c5 = _mm512_set1_epi32(5),
            c6 = _mm512_set1_epi32(6), c7 = _mm512_set1_epi32(7), c8 = _mm512_set1_epi32(8),
            c9 = _mm512_set1_epi32(9), c10 = _mm512_set1_epi32(10), c11 = _mm512_set1_epi32(11),
            c12 = _mm512_set1_epi32(12), c13 = _mm512_set1_epi32(13), c14 = _mm512_set1_epi32(14),
            c15 = _mm512_set1_epi32(15);
    for (long it = 0; it < iters; it++) {
#define STEP(x) x = _mm512_dpbusd_epi32(x, a, b)
        STEP(c0); STEP(c1); STEP(c2); STEP(c3); STEP(c4); STEP(c5); STEP(c6); STEP(c7);
        STEP(c8); STEP(c9); STEP(c10); STEP(c11); STEP(c12); STEP(c13); STEP(c14); STEP(c15);
#undef STEP
    }
    __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                                 _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
    s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)),
                                             _mm512_add_epi32(_mm512_add_epi32(c12, c13), _mm512_add_epi32(c14, c15))));
    int32_t lanes[16];
    _mm512_storeu_si512(lanes, s);
    return lanes[0] ^ lanes[15];
}

static double vnni_peak_gops(void)
{
    long iters = 1 << 16;
    volatile int32_t sink;
    for (;;) {
        const double t0 = now();
        sink = vnni_peak_loop(iters);
        const double dt = now() - t0;
        if (dt >= MIN_SECONDS) {
            (void)sink;
            return 2.0 * 64.0 * PEAK_CHAINS * (double)iters / dt * 1e-9; /* 64 MACs per instruction */
        }
        iters *= 2;
    }
}

/* Six accumulator tiles fed by two register-resident operand tiles: nothing
 * touches memory inside the loop, so this is the core's AMX-INT8 throughput.
 * Tile numbers are literals (gcc pastes them into the assembly). */
typedef struct peak_tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} peak_tile_config;

__attribute__((target("amx-tile,amx-int8"), noinline)) static void amx_peak_loop(long iters)
{
    peak_tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
    static const uint8_t ones[16 * 64] = {1};
    _tile_loadd(6, ones, 64);
    _tile_loadd(7, ones, 64);
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3); _tile_zero(4); _tile_zero(5);
    for (long it = 0; it < iters; it++) {
        _tile_dpbusd(0, 6, 7); _tile_dpbusd(1, 6, 7); _tile_dpbusd(2, 6, 7);
        _tile_dpbusd(3, 6, 7); _tile_dpbusd(4, 6, 7); _tile_dpbusd(5, 6, 7);
    }
    int32_t out[16 * 16];
    _tile_stored(0, out, 64);
    _tile_release();
    volatile int32_t sink = out[0];
    (void)sink;
}

static double amx_peak_gops(void)
{
    long iters = 1 << 12;
    for (;;) {
        const double t0 = now();
        amx_peak_loop(iters);
        const double dt = now() - t0;
        if (dt >= MIN_SECONDS)
            return 2.0 * 16 * 16 * 64 * 6.0 * (double)iters / dt * 1e-9; /* 16x16x64 MACs per tdpbusd */
        iters *= 2;
    }
}

/* GOPS of repeated calls: the 8-bit GEMM, or the 4-bit one when scratch is given. */
static double time_gemm(repq_kernel_level level, size_t m, size_t n, size_t k, const uint8_t *a,
                        const void *packed, int32_t *c, void *scratch)
{
    long reps = -1; /* the first call warms up */
    double t0 = 0.0, dt = 0.0;
    do {
        if (scratch)
            repq_gemm_u8u4(level, m, n, k, a, k, packed, c, n, scratch);
        else
            repq_gemm_u8s8(level, m, n, k, a, k, packed, c, n);
        if (++reps == 0)
            t0 = now();
        else
            dt = now() - t0;
    } while (dt < MIN_SECONDS);
    return 2.0 * (double)m * (double)n * (double)k * (double)reps / dt * 1e-9;
}

/* 4-bit weights (two per byte, unpacked panel by panel) against 8-bit ones, per level.
 * The weights here are 0..15 in both forms, so the AVX2 rows show its vpmaddubsw form
 * (the first table's uniform 8-bit weights take the vpmaddwd form). */
static void bench_u4(uint32_t mask, repq_kernel_level best)
{
    const size_t shapes[][3] = {{96, 1152, 384}, {96, 384, 1536}, {8, 1536, 384}, {1, 1536, 384}};
    printf("\n4-bit weights: | m | n | k | level | s8 GOPS | u4 GOPS | u4 / s8 |\n|---|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        uint8_t *a = malloc(m * k);
        int8_t *b = malloc(n * k);
        int32_t *c = malloc(m * n * sizeof *c);
        void *p8 = aligned_alloc(64, repq_gemm_u8s8_packed_size(n, k));
        void *p4 = aligned_alloc(64, (repq_gemm_u8u4_packed_size(n, k) + 63) / 64 * 64);
        /* The AMX level's scratch covers every level's. */
        const size_t scratch_bytes = repq_gemm_u8u4_scratch_size(REPQ_LEVEL_AMX, k, repq_gemm_u8s8_packed_size(n, k));
        void *scratch = aligned_alloc(64, (scratch_bytes + 63) / 64 * 64);
        if (!a || !b || !c || !p8 || !p4 || !scratch)
            exit(1);
        for (size_t i = 0; i < m * k; i++)
            a[i] = (uint8_t)(i * 7 + 3);
        for (size_t i = 0; i < n * k; i++)
            b[i] = (int8_t)((i * 13 + 5) % 16);
        repq_gemm_u8s8_pack(n, k, b, k, p8);
        repq_gemm_u8u4_pack(n, k, b, k, p4);
        for (int lv = REPQ_LEVEL_AVX2; lv <= (int)best; lv++) {
            if (repq_kernel_level_clamp(mask, (repq_kernel_level)lv) != (repq_kernel_level)lv)
                continue; /* AVX-512 VNNI CPUs may lack AVX-VNNI (AMD Zen 4) */
            const double g8 = time_gemm((repq_kernel_level)lv, m, n, k, a, p8, c, NULL);
            const double g4 = time_gemm((repq_kernel_level)lv, m, n, k, a, p4, c, scratch);
            printf("| %zu | %zu | %zu | %s | %.1f | %.1f | %.2f |\n", m, n, k,
                   repq_kernel_level_name((repq_kernel_level)lv), g8, g4, g4 / g8);
        }
        free(a); free(b); free(c); free(p8); free(p4); free(scratch);
    }
}

/* Elements per second (x 1e9) of one float -> code kernel over n values. */
static double time_quantize(repq_kernel_level lv, bool two_region, size_t n, const float *x, uint8_t *codes)
{
    long reps = 0;
    const double t0 = now();
    double dt;
    do {
        if (two_region)
            repq_quantize_f32_two_region_u8(lv, n, x, 0.15f, 3, 12, 2, codes);
        else
            repq_quantize_f32_u8(lv, n, x, 0.15f, 1, 4, codes);
        reps++;
        dt = now() - t0;
    } while (dt < MIN_SECONDS);
    return (double)n * (double)reps / dt * 1e-9;
}

/* GELU output -> fc2 codes: one row of deit_small's hidden layer (1536), single grid
 * and two regions. */
static void bench_quantize(repq_kernel_level best)
{
    enum { N = 1536 };
    static float x[N];
    static uint8_t codes[N];
    for (size_t i = 0; i < N; i++)
        x[i] = (float)((int)(i * 37 % 200) - 40) * 0.01f;
    printf("\nfloat -> codes (%d values, GELU -> fc2 input): | level | single grid Gelem/s | two regions Gelem/s | "
           "two / single |\n|---|---|---|---|\n", N);
    for (int lv = REPQ_LEVEL_SCALAR; lv <= (int)best; lv++) {
        if (lv == REPQ_LEVEL_AVXVNNI || lv == REPQ_LEVEL_AMX)
            continue; /* the same code as the level below */
        const double u = time_quantize((repq_kernel_level)lv, false, N, x, codes);
        const double t = time_quantize((repq_kernel_level)lv, true, N, x, codes);
        printf("| %s | %.2f | %.2f | %.2f |\n", repq_kernel_level_name((repq_kernel_level)lv), u, t, t / u);
    }
}

/* fc1's epilogue to fc2's codes over rows x n accumulators: the same three steps
 * unfused (float epilogue, repq_float_gelu_quartic, repq_gelu_codes_u8: what the
 * fake-quant forward runs) or the fused kernel. */
static double time_gelu_epilogue(repq_kernel_level lv, bool fused, size_t rows, size_t n, const int32_t *acc,
                                 const int32_t *rowsum, const int32_t *colmul, const int32_t *colconst,
                                 const float *scale, const float *bias, float *f, uint8_t *codes)
{
    const repq_gelu_codes q = {0.02f, 12, 8, false, 0, 0};
    long reps = 0;
    const double t0 = now();
    double dt;
    do {
        if (fused) {
            repq_gemm_out_gelu_u8(lv, rows, n, acc, n, rowsum, colmul, colconst, scale, bias, &q, codes, n);
        } else {
            repq_gemm_out_f32(lv, rows, n, acc, n, rowsum, colmul, colconst, scale, bias, false, f, n);
            repq_float_gelu_quartic(f, rows * n);
            repq_gelu_codes_u8(rows * n, f, &q, codes);
        }
        reps++;
        dt = now() - t0;
    } while (dt < MIN_SECONDS);
    return (double)rows * (double)n * (double)reps / dt * 1e-9;
}

/* 96 rows of deit_small's fc1 (1536 outputs), y spread over about [-4, 4]. */
static void bench_gelu_epilogue(repq_kernel_level best)
{
    enum { ROWS = 96, N = 1536 };
    static int32_t acc[ROWS * N], rowsum[ROWS], colmul[N], colconst[N];
    static float scale[N], bias[N], f[ROWS * N];
    static uint8_t codes[ROWS * N];
    uint32_t r = 12345;
    for (size_t i = 0; i < ROWS * N; i++) {
        r = r * 1664525u + 1013904223u;
        acc[i] = (int32_t)(r >> 12) - (1 << 19);
    }
    for (size_t i = 0; i < ROWS; i++)
        rowsum[i] = 20000 + (int32_t)i;
    for (size_t j = 0; j < N; j++) {
        colmul[j] = (int32_t)(j % 7) - 3;
        colconst[j] = -(int32_t)(j % 11) * 1000;
        scale[j] = 8e-6f;
        bias[j] = -0.5f + 0.001f * (float)(j % 100);
    }
    printf("\nfc1 epilogue -> GELU -> fc2 codes (%d x %d accumulators): | level | three steps Gelem/s | "
           "fused Gelem/s | fused / steps |\n|---|---|---|---|\n", ROWS, N);
    for (int lv = REPQ_LEVEL_SCALAR; lv <= (int)best; lv++) {
        if (lv == REPQ_LEVEL_AVXVNNI || lv == REPQ_LEVEL_AMX)
            continue; /* the same code as the level below */
        const double steps = time_gelu_epilogue((repq_kernel_level)lv, false, ROWS, N, acc, rowsum, colmul, colconst,
                                                scale, bias, f, codes);
        const double fused = time_gelu_epilogue((repq_kernel_level)lv, true, ROWS, N, acc, rowsum, colmul, colconst,
                                                scale, bias, f, codes);
        printf("| %s | %.2f | %.2f | %.2f |\n", repq_kernel_level_name((repq_kernel_level)lv), steps, fused,
               fused / steps);
    }
}

static double time_sgemm(size_t m, size_t n, size_t k, const float *a, const float *b, float *c)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, a, (int)k, b, (int)k,
                0.0f, c, (int)n);
    long reps = 0;
    const double t0 = now();
    double dt;
    do {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, a, (int)k, b,
                    (int)k, 0.0f, c, (int)n);
        reps++;
        dt = now() - t0;
    } while (dt < MIN_SECONDS);
    return 2.0 * (double)m * (double)n * (double)k * (double)reps / dt * 1e-9;
}

int main(void)
{
    openblas_set_num_threads(1);
    const uint32_t mask = repq_cpu_detect();
    const repq_kernel_level best = repq_kernel_level_best(mask);
    printf("librepq kernels benchmark (single thread), best level: %s\n", repq_kernel_level_name(best));
    double peak = 0.0, amx_peak = 0.0;
    if (best >= REPQ_LEVEL_AVX512VNNI) {
        peak = vnni_peak_gops();
        printf("VNNI peak (register-resident vpdpbusd, 2*64 ops/instr): %.1f GOPS\n", peak);
    }
    if (best >= REPQ_LEVEL_AMX) {
        amx_peak = amx_peak_gops();
        printf("AMX peak (register-resident tdpbusd, 2*16*16*64 ops/instr): %.1f GOPS\n", amx_peak);
    }
    /* deit_small at batch 8 (1576 token rows): qkv, proj, fc1, fc2, whole and in the
     * session's 96-row blocks; then one head's q k^T (197 x 197 x 64) and a square. */
    const size_t shapes[][3] = {
        {1576, 1152, 384}, {1576, 384, 384}, {1576, 1536, 384}, {1576, 384, 1536},
        {96, 1152, 384},   {96, 1536, 384},  {96, 384, 1536},   {197, 197, 64},    {2048, 2048, 2048},
    };
    printf("\n| m | n | k | scalar GOPS | avx2 GOPS | avxvnni GOPS | vnni GOPS | vnni / vnni peak | amx GOPS "
           "| amx / amx peak | sgemm GFLOP/s | best / sgemm |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        uint8_t *a = malloc(m * k);
        int8_t *b = malloc(n * k);
        int32_t *c = malloc(m * n * sizeof *c);
        void *packed = aligned_alloc(64, repq_gemm_u8s8_packed_size(n, k));
        float *af = malloc(m * k * sizeof *af), *bf = malloc(n * k * sizeof *bf), *cf = malloc(m * n * sizeof *cf);
        if (!a || !b || !c || !packed || !af || !bf || !cf) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < m * k; i++) {
            a[i] = (uint8_t)(i * 7 + 3);
            af[i] = (float)a[i];
        }
        for (size_t i = 0; i < n * k; i++) {
            b[i] = (int8_t)(i * 13 + 5);
            bf[i] = (float)b[i];
        }
        repq_gemm_u8s8_pack(n, k, b, k, packed);
        /* The scalar reference is slow; it is timed only on the smaller shapes. */
        const double g_scalar = k * n <= 384 * 384 ? time_gemm(REPQ_LEVEL_SCALAR, m, n, k, a, packed, c, NULL) : 0.0;
        const double g_avx2 = best >= REPQ_LEVEL_AVX2 ? time_gemm(REPQ_LEVEL_AVX2, m, n, k, a, packed, c, NULL) : 0.0;
        const double g_avxvnni = repq_kernel_level_clamp(mask, REPQ_LEVEL_AVXVNNI) == REPQ_LEVEL_AVXVNNI
                                     ? time_gemm(REPQ_LEVEL_AVXVNNI, m, n, k, a, packed, c, NULL)
                                     : 0.0;
        const double g_vnni =
            best >= REPQ_LEVEL_AVX512VNNI ? time_gemm(REPQ_LEVEL_AVX512VNNI, m, n, k, a, packed, c, NULL) : 0.0;
        const double g_amx = best >= REPQ_LEVEL_AMX ? time_gemm(REPQ_LEVEL_AMX, m, n, k, a, packed, c, NULL) : 0.0;
        const double g_sgemm = time_sgemm(m, n, k, af, bf, cf);
        char scalar_txt[32], amx_txt[64];
        if (g_scalar > 0)
            snprintf(scalar_txt, sizeof scalar_txt, "%.1f", g_scalar);
        else
            snprintf(scalar_txt, sizeof scalar_txt, "-");
        if (g_amx > 0)
            snprintf(amx_txt, sizeof amx_txt, "%.1f | %.0f%%", g_amx, 100.0 * g_amx / amx_peak);
        else
            snprintf(amx_txt, sizeof amx_txt, "- | -");
        const double g_best = g_amx > g_vnni ? g_amx : g_vnni;
        printf("| %zu | %zu | %zu | %s | %.1f | %.1f | %.1f | %.0f%% | %s | %.1f | %.2fx |\n", m, n, k, scalar_txt,
               g_avx2, g_avxvnni, g_vnni, peak > 0 ? 100.0 * g_vnni / peak : 0.0, amx_txt, g_sgemm, g_best / g_sgemm);
        free(a); free(b); free(c); free(packed); free(af); free(bf); free(cf);
    }
    if (best >= REPQ_LEVEL_AVX2)
        bench_u4(mask, best);
    bench_quantize(best);
    bench_gelu_epilogue(best);
    return 0;
}
