/* Tests of the kernels added for integer inference (lib/kernels/quantize_f32.h):
 * every level returns the scalar reference's bits, and the reference follows
 * repq_quant_quantize and exact integer arithmetic. Linked into test_kernels, whose
 * level selection (tests/kernel_levels.h) says which levels are checked. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "calib/quantizer.h"
#include "calib/two_region.h"
#include "kernel_levels.h"
#include "kernels/attn_log2.h"
#include "kernels/cpu.h"
#include "kernels/gemm_s8.h"
#include "kernels/quantize_f32.h"
#include "kernels/softmax_log2.h"

int repq_test_kernels_extra(void);

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float next_float(float lo, float hi) { return lo + (hi - lo) * (float)(next_u32() & 0xffffff) / 16777216.0f; }

static void quantize_matches_quantizer(void **state)
{
    (void)state;
    enum { N = 1037 };
    static float x[N];
    static uint8_t ref[N], got[N];
    for (int trial = 0; trial < 200; trial++) {
        repq_quant_params p = {next_float(1e-3f, 0.5f), (int32_t)(next_u32() % 601) - 300,
                               2 + (int32_t)(next_u32() % 7)};
        if (trial % 7 == 0)
            p.zero_point = (int32_t)(next_u32() % (2 * REPQ_QUANT_ZERO_POINT_MAX)) - REPQ_QUANT_ZERO_POINT_MAX;
        size_t n = 1 + next_u32() % N;
        for (size_t i = 0; i < n; i++) {
            x[i] = next_float(-200.0f, 200.0f) * p.scale;
            if (i % 5 == 0) /* exact ties of x / s */
                x[i] = ((float)((int32_t)(next_u32() % 400) - 200) + 0.5f) * p.scale;
        }
        x[0] = NAN;
        if (n > 2) {
            x[1] = INFINITY;
            x[2] = -INFINITY;
        }
        assert_int_equal(repq_quant_quantize(&p, x, n, ref), n > 0 ? REPQ_ERR_NUMERIC : REPQ_OK);
        for (int lv = REPQ_LEVEL_SCALAR; lv <= REPQ_LEVEL_AMX; lv++) {
            if (!kernel_level_checked((repq_kernel_level)lv))
                continue;
            memset(got, 0xa5, sizeof got);
            repq_quantize_f32_u8((repq_kernel_level)lv, n, x, p.scale, p.zero_point, p.bits, got);
            assert_memory_equal(ref, got, n);
            assert_int_equal(got[n], 0xa5);
        }
    }
}

/* The two-region kernel gives repq_tworeg_quantize's codes at every level, on random
 * parameters, odd lengths (tails of the 8- and 16-lane loops), ties of both grids,
 * signed zeros, NaN and infinities. */
static void two_region_quantize_matches_quantizer(void **state)
{
    (void)state;
    enum { N = 1037 };
    static float x[N];
    static uint8_t ref[N], got[N];
    for (int trial = 0; trial < 300; trial++) {
        repq_tworeg_params p = {next_float(1e-3f, 0.5f), 0, 2 + (int32_t)(next_u32() % 7),
                                (int32_t)(next_u32() % (REPQ_TWOREG_MAX_SHIFT + 1))};
        p.zero_point = (int32_t)(next_u32() % (uint32_t)(1 << p.bits));
        if (repq_tworeg_params_check(&p) != REPQ_OK)
            continue; /* the largest code does not fit in 8 bits */
        const float fine = ldexpf(p.scale, -p.neg_shift);
        size_t n = next_u32() % N;
        for (size_t i = 0; i < n; i++) {
            x[i] = next_float(-1.5f * (float)(1 << p.bits), 1.5f * (float)(1 << p.bits)) * p.scale;
            if (i % 5 == 1) /* exact ties of the positive grid */
                x[i] = ((float)(next_u32() % 300) + 0.5f) * p.scale;
            if (i % 5 == 2) /* and of the negative one */
                x[i] = -((float)(next_u32() % 300) + 0.5f) * fine;
        }
        const float special[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, -0.5f * fine, 0.5f * p.scale};
        for (size_t i = 0; i < sizeof special / sizeof special[0] && i < n; i++)
            x[(i * 7919) % n] = special[i];
        repq_status want = REPQ_OK;
        for (size_t i = 0; i < n; i++)
            if (!isfinite(x[i]))
                want = REPQ_ERR_NUMERIC;
        assert_int_equal(repq_tworeg_quantize(&p, x, n, ref), want);
        for (int lv = REPQ_LEVEL_SCALAR; lv <= REPQ_LEVEL_AMX; lv++) {
            if (!kernel_level_checked((repq_kernel_level)lv))
                continue;
            memset(got, 0xa5, sizeof got);
            repq_quantize_f32_two_region_u8((repq_kernel_level)lv, n, x, p.scale, p.zero_point,
                                            (1 << p.bits) - 1 - p.zero_point, p.neg_shift, got);
            assert_memory_equal(ref, got, n);
            assert_int_equal(got[n], 0xa5);
        }
    }
}

static void epilogues_are_exact_and_agree(void **state)
{
    (void)state;
    enum { M = 13, NC = 53, LD = 61 };
    static int32_t acc[M * LD], rowsum[M], colmul[NC], colconst[NC], fixed[M * LD], got_i[M * LD];
    static float scale[NC], bias[NC], ref_f[M * LD], got_f[M * LD];
    static uint8_t ref_u[M * LD], got_u[M * LD];
    for (int trial = 0; trial < 50; trial++) {
        size_t m = 1 + next_u32() % M, n = 1 + next_u32() % NC;
        for (size_t i = 0; i < m * LD; i++)
            acc[i] = (int32_t)(next_u32() % 2000001) - 1000000;
        for (size_t i = 0; i < m; i++)
            rowsum[i] = (int32_t)(next_u32() % 100000);
        for (size_t j = 0; j < n; j++) {
            colmul[j] = (int32_t)(next_u32() % 513) - 256;
            colconst[j] = (int32_t)(next_u32() % 20000001) - 10000000;
            scale[j] = next_float(1e-6f, 1e-4f);
            bias[j] = next_float(-3.0f, 3.0f);
        }
        memcpy(fixed, acc, sizeof acc);
        repq_gemm_correct_s32(REPQ_LEVEL_SCALAR, m, n, fixed, LD, rowsum, colmul, colconst);
        for (size_t i = 0; i < m && kernel_level_checked(REPQ_LEVEL_SCALAR); i++)
            for (size_t j = 0; j < n; j++)
                assert_int_equal(fixed[i * LD + j],
                                 (int64_t)acc[i * LD + j] + (int64_t)colmul[j] * rowsum[i] + colconst[j]);
        for (size_t i = 0; i < m * LD; i++)
            ref_f[i] = (float)i;
        repq_gemm_out_f32(REPQ_LEVEL_SCALAR, m, n, acc, LD, rowsum, colmul, colconst, scale, bias, trial & 1,
                          ref_f, LD);
        repq_gemm_out_u8(REPQ_LEVEL_SCALAR, m, n, acc, LD, rowsum, colmul, colconst, scale, bias, 0.05f, 7, 8,
                         ref_u, LD);
        /* The u8 epilogue is the f32 one followed by the quantizer. */
        static float y[M * LD];
        repq_gemm_out_f32(REPQ_LEVEL_SCALAR, m, n, acc, LD, rowsum, colmul, colconst, scale, bias, false, y, LD);
        repq_quant_params qp = {0.05f, 7, 8};
        for (size_t i = 0; i < m && kernel_level_checked(REPQ_LEVEL_SCALAR); i++) {
            uint8_t c[NC];
            repq_quant_quantize(&qp, y + i * LD, n, c);
            assert_memory_equal(c, ref_u + i * LD, n);
        }
        for (int lv = REPQ_LEVEL_AVX2; lv <= REPQ_LEVEL_AMX; lv++) {
            if (!kernel_level_checked((repq_kernel_level)lv))
                continue;
            memcpy(got_i, acc, sizeof acc);
            repq_gemm_correct_s32((repq_kernel_level)lv, m, n, got_i, LD, rowsum, colmul, colconst);
            assert_memory_equal(got_i, fixed, sizeof fixed);
            for (size_t i = 0; i < m * LD; i++)
                got_f[i] = (float)i;
            repq_gemm_out_f32((repq_kernel_level)lv, m, n, acc, LD, rowsum, colmul, colconst, scale, bias, trial & 1,
                              got_f, LD);
            assert_memory_equal(got_f, ref_f, m * LD * sizeof(float));
            memcpy(got_u, ref_u, sizeof got_u);
            repq_gemm_out_u8((repq_kernel_level)lv, m, n, acc, LD, rowsum, colmul, colconst, scale, bias, 0.05f, 7, 8,
                             got_u, LD);
            assert_memory_equal(got_u, ref_u, sizeof got_u);
        }
    }
}

/* Attention x V through byte planes and the GEMM gives the shift accumulation's bits:
 * every code (sentinels, codes past frac_bits, 255), every plane count, tails of
 * tokens and columns, zero points inside and outside the code range. */
static void attn_v_gemm_matches_shifts(void **state)
{
    (void)state;
    enum { R = 70, T = 213, DIM = 83, LDC = 217, LDV = 91, LDA = 89 };
    static uint8_t codes[R * LDC], v[T * LDV];
    static int32_t e0[R * LDA], d0[R * LDA], e1[R * LDA], d1[R * LDA];
    void *scratch = malloc(repq_attn_v_gemm_scratch_size(T, DIM, 24));
    assert_non_null(scratch);
    for (int trial = 0; trial < 90; trial++) {
        const size_t rows = 1 + next_u32() % R, tokens = 1 + next_u32() % T, dim = 1 + next_u32() % DIM;
        const int bits = 2 + (int)(next_u32() % 7);
        const int32_t sentinel = bits == 8 ? 255 : 1 << bits;
        int32_t zv = (int32_t)(next_u32() % 256);
        if (trial % 5 == 0)
            zv = (int32_t)(next_u32() % 4001) - 2000;
        const double vabs = fmax(fabs((double)zv), fabs(255.0 - zv));
        int fmax_ok = repq_attn_v_frac_bits_max(tokens);
        while (fmax_ok > 0 && 1.4142135623730951 * (double)tokens * vabs * ldexp(1.0, fmax_ok) >= 2147483647.0)
            fmax_ok--;
        const int frac = trial % 4 == 0 ? fmax_ok : (int)(next_u32() % (unsigned)(fmax_ok + 1));
        for (size_t i = 0; i < rows * LDC; i++) {
            uint32_t r = next_u32();
            codes[i] = (uint8_t)(r % 8 == 0 ? 255 : r % 8 == 1 ? (uint32_t)sentinel : (r >> 8) % (2u * (unsigned)frac + 3));
            /* Every third trial: large weights (small codes) rare, as in real attention
             * rows, so the kernel adds them one by one. */
            if (trial % 3 == 1 && frac >= 8 && (r >> 20) % 64 != 0)
                codes[i] = (uint8_t)(2 * (frac - 7) + (int)((r >> 8) % 17));
            /* ... or small weights rare (flat rows, small attention scale): the
             * fullest plane is not plane 0. */
            if (trial % 3 == 2 && frac >= 8 && (r >> 20) % 64 != 0)
                codes[i] = (uint8_t)((r >> 8) % (2u * (unsigned)(frac - 8) + 1));
        }
        for (size_t i = 0; i < tokens * LDV; i++)
            v[i] = (uint8_t)next_u32();
        repq_attn_v_accumulate(REPQ_LEVEL_SCALAR, rows, tokens, dim, codes, LDC, sentinel, v, LDV, zv, frac, e0, d0,
                               LDA);
        for (int lv = REPQ_LEVEL_SCALAR; lv <= REPQ_LEVEL_AMX; lv++) {
            if (!kernel_level_checked((repq_kernel_level)lv))
                continue;
            memset(e1, 0x5a, sizeof e1);
            memset(d1, 0x5a, sizeof d1);
            repq_attn_v_accumulate_gemm((repq_kernel_level)lv, rows, tokens, dim, codes, LDC, sentinel, v, LDV, zv,
                                        frac, e1, d1, LDA, scratch);
            for (size_t i = 0; i < rows; i++) {
                assert_memory_equal(e1 + i * LDA, e0 + i * LDA, dim * sizeof(int32_t));
                assert_memory_equal(d1 + i * LDA, d0 + i * LDA, dim * sizeof(int32_t));
            }
        }
    }
    free(scratch);
}

/* The k operand packed straight from u8 codes equals converting and packing. */
static void attn_pack_k_matches_pack(void **state)
{
    (void)state;
    enum { T = 213, HD = 100, LDK = 131 };
    static uint8_t k[T * LDK];
    static int8_t s8[T * HD];
    static int8_t ref[16 * 14 * 25 * 64 + 64], got[16 * 14 * 25 * 64 + 64];
    for (int trial = 0; trial < 40; trial++) {
        const size_t tokens = 1 + next_u32() % T, hd = trial % 3 ? 4 * (1 + next_u32() % (HD / 4)) : 1 + next_u32() % HD;
        const int32_t off = trial & 1 ? 128 : 0;
        for (size_t i = 0; i < tokens * LDK; i++)
            k[i] = (uint8_t)(off ? next_u32() : next_u32() % 128);
        for (size_t j = 0; j < tokens; j++)
            for (size_t p = 0; p < hd; p++)
                s8[j * hd + p] = (int8_t)((int32_t)k[j * LDK + p] - off);
        const size_t bytes = repq_gemm_u8s8_packed_size(tokens, hd);
        memset(ref, 0x33, sizeof ref);
        repq_gemm_u8s8_pack(tokens, hd, s8, hd, ref);
        for (int lv = REPQ_LEVEL_SCALAR; lv <= REPQ_LEVEL_AMX; lv++) {
            if (!kernel_level_checked((repq_kernel_level)lv))
                continue;
            memset(got, 0x5a, sizeof got);
            repq_attn_pack_k((repq_kernel_level)lv, tokens, hd, k, LDK, off, got);
            assert_memory_equal(got, ref, bytes);
        }
    }
}

/* The softmax with a column bias equals the softmax of the corrected scores, at
 * every level. */
static void softmax_bias_matches_corrected(void **state)
{
    (void)state;
    enum { R = 5, N = 203 };
    static int32_t x[R * N], xb[R * N], bias[N];
    static uint8_t ref[R * N], got[R * N];
    for (int trial = 0; trial < 60; trial++) {
        const size_t n = 1 + next_u32() % N;
        repq_log2softmax_params p;
        assert_true(repq_log2softmax_prepare(next_float(1e-4f, 2e-2f), next_float(0.01f, 1.0f),
                                             2 + (int)(next_u32() % 7), &p));
        for (size_t j = 0; j < n; j++)
            bias[j] = (int32_t)(next_u32() % 200001) - 100000;
        for (size_t i = 0; i < R * n; i++) {
            x[i] = (int32_t)(next_u32() % 400001) - 200000;
            xb[i] = x[i] + bias[i % n];
        }
        repq_log2softmax_rows(REPQ_LEVEL_SCALAR, &p, R, n, xb, n, ref, n);
        for (int lv = REPQ_LEVEL_SCALAR; lv <= REPQ_LEVEL_AMX; lv++) {
            if (!kernel_level_checked((repq_kernel_level)lv))
                continue;
            memset(got, 0x5a, sizeof got);
            repq_log2softmax_rows_bias((repq_kernel_level)lv, &p, R, n, x, n, bias, got, n);
            assert_memory_equal(got, ref, R * n);
        }
    }
}

int repq_test_kernels_extra(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quantize_matches_quantizer),
        cmocka_unit_test(two_region_quantize_matches_quantizer),
        cmocka_unit_test(epilogues_are_exact_and_agree),
        cmocka_unit_test(attn_v_gemm_matches_shifts),
        cmocka_unit_test(attn_pack_k_matches_pack),
        cmocka_unit_test(softmax_bias_matches_corrected),
    };
    return cmocka_run_group_tests_name("kernels_extra", tests, NULL, NULL);
}
