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
#include "model/float_ops.h"

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
            if (i % 5 == 0 || i % 5 == 1) /* exact ties of x / s */
                x[i] = ((float)((int32_t)(next_u32() % 400) - 200) + 0.5f) * p.scale;
            /* and their neighbours a few ulps away, where x / s and x * (1 / s) can
             * round to different integers (the AVX-512 kernels must notice) */
            for (uint32_t k = i % 5 == 1 ? 1 + next_u32() % 4 : 0, up = next_u32() & 1; k > 0; k--)
                x[i] = nextafterf(x[i], up ? INFINITY : -INFINITY);
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

/* Random operands of a GEMM epilogue: m rows of accumulators (stride ld), row sums,
 * and per column a zero-point multiplier, a constant, a scale in [s_lo, s_hi) and a
 * bias in [b_lo, b_hi), drawn in that order. */
static void random_epilogue(size_t m, size_t n, size_t ld, int32_t *acc, int32_t *rowsum, int32_t *colmul,
                            int32_t *colconst, float *scale, float s_lo, float s_hi, float *bias, float b_lo,
                            float b_hi)
{
    for (size_t i = 0; i < m * ld; i++)
        acc[i] = (int32_t)(next_u32() % 2000001) - 1000000;
    for (size_t i = 0; i < m; i++)
        rowsum[i] = (int32_t)(next_u32() % 100000);
    for (size_t j = 0; j < n; j++) {
        colmul[j] = (int32_t)(next_u32() % 513) - 256;
        colconst[j] = (int32_t)(next_u32() % 20000001) - 10000000;
        scale[j] = next_float(s_lo, s_hi);
        bias[j] = next_float(b_lo, b_hi);
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
        random_epilogue(m, n, LD, acc, rowsum, colmul, colconst, scale, 1e-6f, 1e-4f, bias, -3.0f, 3.0f);
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
        /* The scaled one is the f32 one, a product by post, then the quantizer. */
        const float post = 1.0f / sqrtf((float)(16 << (trial % 3)));
        static uint8_t ref_s[M * LD], got_s[M * LD];
        memset(ref_s, 0x5a, sizeof ref_s);
        repq_gemm_out_scaled_u8(REPQ_LEVEL_SCALAR, m, n, acc, LD, rowsum, colmul, colconst, scale, bias, post, 0.01f,
                                100, 8, ref_s, LD);
        repq_quant_params qs = {0.01f, 100, 8};
        for (size_t i = 0; i < m && kernel_level_checked(REPQ_LEVEL_SCALAR); i++) {
            float yp[NC];
            uint8_t c[NC];
            for (size_t j = 0; j < n; j++)
                yp[j] = y[i * LD + j] * post;
            repq_quant_quantize(&qs, yp, n, c);
            assert_memory_equal(c, ref_s + i * LD, n);
        }
        for (int lv = REPQ_LEVEL_AVX2; lv <= REPQ_LEVEL_AMX; lv++) {
            if (!kernel_level_checked((repq_kernel_level)lv))
                continue;
            memset(got_s, 0x5a, sizeof got_s); /* as ref_s: a row left unwritten shows */
            repq_gemm_out_scaled_u8((repq_kernel_level)lv, m, n, acc, LD, rowsum, colmul, colconst, scale, bias, post,
                                    0.01f, 100, 8, got_s, LD);
            assert_memory_equal(got_s, ref_s, sizeof got_s);
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

/* The fused fc1 epilogue (acc -> y -> GELU -> fc2 codes) gives, at every level, the bits
 * of the three steps the fake-quant forward runs (float epilogue,
 * repq_float_gelu_quartic, repq_gelu_codes_u8), and its codes are those of an exact-erf GELU
 * computed in double from the same y wherever that GELU lies farther than
 * REPQ_GELU_FAST_ERR (plus the float roundings of the quantizer) from a rounding
 * boundary, and within that distance elsewhere. Inputs cover both GELU tails, uniform and two-region quantizers,
 * odd widths and tails, a fine grid and y placed at code boundaries. */
static void gelu_epilogue_matches_exact_gelu(void **state)
{
    (void)state;
    enum { M = 5, NC = 77, LD = 83 };
    static int32_t acc[M * LD], rowsum[M], colmul[NC], colconst[NC];
    static float scale[NC], bias[NC], y[M * LD];
    static uint8_t ref[M * LD], steps[M * LD], got[M * LD];
    size_t near = 0, total = 0, certain = 0;
    for (int trial = 0; trial < 200; trial++) {
        const size_t m = 1 + next_u32() % M, n = 1 + next_u32() % NC;
        const float span = trial % 4 == 0 ? 1e-2f : trial % 4 == 1 ? 1e-4f : 1e-5f; /* |y| up to ~1000, 10, 1 */
        random_epilogue(m, n, LD, acc, rowsum, colmul, colconst, scale, 0.1f * span, span, bias, -2.0f, 1.0f);
        repq_gelu_codes q = {next_float(0.002f, 0.1f), 0, 2 + (int32_t)(next_u32() % 7), trial & 1, 0, 0};
        if (q.two_region) {
            q.shift = (int32_t)(next_u32() % 6);
            q.zero_point = 1 + (int32_t)(next_u32() % 40);
            q.top = (255 - q.zero_point) >> q.shift;
            q.bits = 8;
        } else {
            q.zero_point = (int32_t)(next_u32() % (uint32_t)(1 << q.bits));
        }
        /* Every fifth trial: a fine uniform grid (steps of ~1e-6 of GELU's value) on a
         * narrow window of y around a centre, where any change of GELU's float
         * operations moves codes. */
        const bool fine = trial % 5 == 4;
        if (fine) {
            const float c = next_float(-6.0f, 3.0f);
            const double g0 = 0.5 * c * (1.0 + erf(c / sqrt(2.0)));
            const double slope = fmax(fabs(0.5 * (1.0 + erf(c / sqrt(2.0))) + c * exp(-0.5 * c * c) / sqrt(2 * 3.14159265358979323846)),
                                      1e-3);
            q = (repq_gelu_codes){(float)(1e-6 * fmax(fabs(g0), 1e-6)), 0, 8, false, 0, 0};
            q.zero_point = 128 - (int32_t)nearbyint(g0 / q.scale);
            for (size_t i = 0; i < m * LD; i++)
                acc[i] = (int32_t)(next_u32() % 2001) - 1000;
            for (size_t i = 0; i < m; i++)
                rowsum[i] = 0;
            for (size_t j = 0; j < n; j++) {
                colmul[j] = colconst[j] = 0;
                scale[j] = (float)(100.0 * q.scale / slope / 1000.0);
                bias[j] = c;
            }
        }
        /* Every seventh trial: y on a 2^-20 grid within +-20 steps of where the exact
         * GELU crosses a code boundary, so the fast path's margin decides. */
        const bool edge = !fine && trial % 7 == 6;
        if (edge) {
            /* Alternately 4-bit codes, whose rounding slack is small beside the fast
             * GELU's error, so that the error bound's part of the margin decides. */
            const bool narrow = (trial / 7) % 2 == 1;
            q = (repq_gelu_codes){next_float(0.005f, 0.05f), 0, narrow ? 4 : 8, false, 0, 0};
            q.zero_point = narrow ? 2 + (int32_t)(next_u32() % 3) : 10 + (int32_t)(next_u32() % 30);
            for (size_t j = 0; j < n; j++) {
                /* a boundary (k + 1/2) s between GELU's minimum and 8 (and inside the
                 * code range), then y there by bisection */
                const int top = (1 << q.bits) - 2 - q.zero_point;
                const int kmin = (int)ceil(-0.16 / q.scale),
                          kmax = narrow ? top : (int)(7.9 / q.scale);
                const double target = ((double)(kmin + (int)(next_u32() % (uint32_t)(kmax - kmin))) + 0.5) * q.scale;
                double a = -0.75, hi = 8.0; /* GELU increases on [-0.75, 8] */
                for (int it = 0; it < 60; it++) {
                    const double mid = 0.5 * (a + hi);
                    if (0.5 * mid * (1.0 + erf(mid / sqrt(2.0))) < target)
                        a = mid;
                    else
                        hi = mid;
                }
                for (size_t i = 0; i < m; i++)
                    acc[i * LD + j] = (int32_t)lrint(a * 1048576.0) + (int32_t)((i * 7 + j) % 41) - 20;
                colmul[j] = colconst[j] = 0;
                scale[j] = 0x1p-20f;
            }
            for (size_t i = 0; i < m; i++)
                rowsum[i] = 0;
        }
        const bool use_bias = !edge && (fine || trial % 3 != 0);
        const float *b = use_bias ? bias : NULL;
        repq_gemm_out_gelu_u8(REPQ_LEVEL_SCALAR, m, n, acc, LD, rowsum, colmul, colconst, scale, b, &q, ref, LD);
        repq_gemm_out_f32(REPQ_LEVEL_SCALAR, m, n, acc, LD, rowsum, colmul, colconst, scale, b, false, y, LD);
        for (size_t i = 0; i < m; i++) {
            const float *row = y + i * LD;
            for (size_t j = 0; j < n; j++) {
                const double g = 0.5 * row[j] * (1.0 + erf(row[j] / sqrt(2.0)));
                /* The unit of g's side, and how far from g the kernel's value may be
                 * in units: the fast GELU's bound plus the product by 1 / unit. */
                const double unit = q.two_region && g < 0 ? q.scale / (double)(1 << q.shift) : q.scale;
                const double w = g / unit;
                const double slack = (double)REPQ_GELU_FAST_ERR / unit + 0x1p-21 * (fabs(w) + 1.0);
                double c;
                if (q.two_region) {
                    const double p2m = (double)(1 << q.shift);
                    c = g >= 0 ? fmin(nearbyint(w), q.top) * p2m : fmax(nearbyint(w), -q.zero_point);
                } else {
                    c = fmin(fmax(nearbyint(w), -q.zero_point), (1 << q.bits) - 1 - q.zero_point);
                }
                const int want = (int)c + q.zero_point, have = ref[i * LD + j];
                /* Near 0 the two sides of the two-region quantizer both give code z. */
                const bool sure = fabs(w - nearbyint(w)) < 0.5 - slack &&
                                  (!q.two_region || fabs(g) > (double)REPQ_GELU_FAST_ERR);
                const int allowed = (int)ceil(slack) * (q.two_region && g >= 0 ? 1 << q.shift : 1);
                if (sure && want != have)
                    fail_msg("y=%.9g: code %d, exact GELU's %d (away from a boundary)", (double)row[j], have, want);
                if (abs(want - have) > allowed)
                    fail_msg("y=%.9g: code %d, exact GELU's %d (%d steps allowed)", (double)row[j], have, want,
                             allowed);
                certain += sure;
                if (fine || edge)
                    continue; /* placed near boundaries on purpose */
                near += want == have;
                total++;
            }
            float *yr = y + i * LD;
            repq_float_gelu_quartic(yr, n);
            assert_true(repq_gelu_codes_u8(n, yr, &q, steps + i * LD));
            assert_memory_equal(steps + i * LD, ref + i * LD, n);
        }
        for (int lv = REPQ_LEVEL_AVX2; lv <= REPQ_LEVEL_AMX; lv++) {
            if (!kernel_level_checked((repq_kernel_level)lv))
                continue;
            memset(got, 0xa5, sizeof got);
            repq_gemm_out_gelu_u8((repq_kernel_level)lv, m, n, acc, LD, rowsum, colmul, colconst, scale, b, &q, got,
                                  LD);
            for (size_t i = 0; i < m; i++) {
                assert_memory_equal(got + i * LD, ref + i * LD, n);
                assert_int_equal(got[i * LD + n], 0xa5);
            }
        }
    }
    print_message("fused GELU codes equal to an exact-erf GELU's: %zu of %zu (%zu certain)\n", near, total,
                  certain);
    assert_true((double)near >= 0.999 * (double)total);
}

/* fc2's input codes of GELU values, on hand-computed cases (ties to even, both clamps,
 * both sides of the two-region quantizer, -0, NaN), and equal to the dividing
 * quantizers' away from ties. */
static void gelu_codes_round_like_the_quantizers(void **state)
{
    (void)state;
    const repq_gelu_codes uni = {0.5f, 3, 4, false, 0, 0};
    const float gu[] = {1.25f, 1.75f, -2.0f, 100.0f, -0.0f, 0.2f, -1.25f};
    const uint8_t want_u[] = {5, 7, 0, 15, 3, 3, 1}; /* w 2.5 -> 2, 3.5 -> 4, -4, 200, 0, 0.4, -2.5 -> -2 */
    uint8_t got[8];
    assert_true(repq_gelu_codes_u8(7, gu, &uni, got));
    assert_memory_equal(got, want_u, 7);
    /* s 1/4, z 8, 4 bits, m 2: top 7, the negative side on steps of 1/16 */
    const repq_gelu_codes two = {0.25f, 8, 4, true, 7, 2};
    const float gt[] = {-0.09375f, -1.0f, 0.375f, 10.0f, 0.0f, -0.03125f, 0.625f};
    const uint8_t want_t[] = {6, 0, 16, 36, 8, 8, 16}; /* -1.5 -> -2, -16 -> -8, 1.5 -> 2, 40 -> 7, 0, -0.5 -> 0, 2.5 -> 2 */
    assert_true(repq_gelu_codes_u8(7, gt, &two, got));
    assert_memory_equal(got, want_t, 7);
    const float bad[] = {NAN};
    assert_false(repq_gelu_codes_u8(1, bad, &uni, got));
    assert_int_equal(got[0], 15);
    /* A NaN or infinity anywhere in whole vectors and tails is reported. */
    float row[40];
    uint8_t codes[40];
    for (size_t n = 1; n <= 40; n++)
        for (size_t at = 0; at < n; at++)
            for (int k = 0; k < 3; k++) {
                for (size_t i = 0; i < n; i++)
                    row[i] = 0.1f * (float)i - 1.0f;
                row[at] = k == 0 ? NAN : k == 1 ? INFINITY : -INFINITY;
                assert_false(repq_gelu_codes_u8(n, row, &uni, codes));
                assert_false(repq_gelu_codes_u8(n, row, &two, codes));
            }
    /* Away from ties, the division's codes. */
    enum { N = 4096 };
    static float g[N];
    static uint8_t mine[N], theirs[N];
    for (int trial = 0; trial < 20; trial++) {
        repq_gelu_codes q = {next_float(0.002f, 0.1f), 0, 2 + (int32_t)(next_u32() % 7), trial & 1, 0, 0};
        if (q.two_region) {
            q.shift = (int32_t)(next_u32() % 4);
            q.zero_point = 1 + (int32_t)(next_u32() % 12);
            q.bits = 4;
            q.top = 15 - q.zero_point;
        } else {
            q.zero_point = (int32_t)(next_u32() % (uint32_t)(1 << q.bits));
        }
        for (size_t i = 0; i < N; i++)
            g[i] = next_float(-0.2f, 1.0f) * (float)(1 << q.bits) * q.scale;
        assert_true(repq_gelu_codes_u8(N, g, &q, mine));
        if (q.two_region)
            repq_quantize_f32_two_region_u8(REPQ_LEVEL_SCALAR, N, g, q.scale, q.zero_point, q.top, q.shift, theirs);
        else
            repq_quantize_f32_u8(REPQ_LEVEL_SCALAR, N, g, q.scale, q.zero_point, q.bits, theirs);
        for (size_t i = 0; i < N; i++) {
            const double unit = q.two_region && g[i] < 0 ? q.scale / (double)(1 << q.shift) : q.scale;
            const double w = (double)g[i] / unit;
            if (fabs(fabs(w - floor(w)) - 0.5) > 1e-5 * (fabs(w) + 1.0) && mine[i] != theirs[i])
                fail_msg("g=%.9g: code %d, the quantizer's %d", (double)g[i], mine[i], theirs[i]);
        }
    }
}

/* The fused epilogue's GELU stays within a third of REPQ_GELU_FAST_ERR of
 * repq_gelu_one on every 256th float of [-9, 9] and at the pieces' ends, with the same
 * bits at every level. */
static void gelu_fast_stays_within_its_bound(void **state)
{
    (void)state;
    enum { CHUNK = 4096 };
    static float y[CHUNK], fast[CHUNK], level_fast[CHUNK];
    double worst = 0.0, at = 0.0;
    size_t count = 0;
    /* Bit patterns of [-9, 9] in float order: negatives from -9 up to -0, then 0 to 9. */
    uint32_t lo_bits, hi_bits;
    const float nine = 9.0f;
    memcpy(&hi_bits, &nine, sizeof hi_bits);
    lo_bits = 0;
    for (int side = 0; side < 2; side++)
        for (uint64_t b = lo_bits; b <= hi_bits;) {
            size_t k = 0;
            for (; k < CHUNK && b <= hi_bits; k++, b += 256) {
                uint32_t bits = (uint32_t)b | (side ? 0x80000000u : 0u);
                memcpy(&y[k], &bits, sizeof bits);
            }
            repq_gelu_fast_f32(REPQ_LEVEL_SCALAR, k, y, fast);
            for (int lv = REPQ_LEVEL_AVX2; lv <= REPQ_LEVEL_AMX; lv++) {
                if (!kernel_level_checked((repq_kernel_level)lv))
                    continue;
                repq_gelu_fast_f32((repq_kernel_level)lv, k, y, level_fast);
                assert_memory_equal(level_fast, fast, k * sizeof(float));
            }
            for (size_t i = 0; i < k; i++) {
                const double e = fabs((double)fast[i] - (double)repq_gelu_one(y[i]));
                if (e > worst) {
                    worst = e;
                    at = y[i];
                }
            }
            count += k;
        }
    for (int i = 0; i <= 32; i++)
        for (int d = -2; d <= 2; d++) {
            y[0] = nextafterf(nextafterf(-8.0f + 0.5f * (float)i, d < 0 ? -INFINITY : INFINITY),
                              d < 0 ? -INFINITY : INFINITY);
            y[0] = d == 0 ? -8.0f + 0.5f * (float)i : y[0];
            repq_gelu_fast_f32(REPQ_LEVEL_SCALAR, 1, y, fast);
            const double e = fabs((double)fast[0] - (double)repq_gelu_one(y[0]));
            worst = e > worst ? e : worst;
        }
    print_message("fast GELU: largest difference %.3g (at %.6g) over %zu values; bound %g\n", worst, at, count,
                  (double)REPQ_GELU_FAST_ERR);
    assert_true(worst <= (double)REPQ_GELU_FAST_ERR / 3.0);
}

/* LayerNorm straight to codes equals LayerNorm then the quantizer, on rows of odd
 * widths with outliers, constant rows, infinities' neighbours and every width 2-8. */
static void layer_norm_codes_match_steps(void **state)
{
    (void)state;
    skip_unless_scalar_checked();
    enum { ROWS = 3, D = 391 };
    static float x[ROWS * D], g[D], b[D], y[ROWS * D];
    static uint8_t want[ROWS * D], got[ROWS * D];
    /* 2000 sets of rows, about a million codes. */
    for (int trial = 0; trial < 2000; trial++) {
        const size_t d = 1 + next_u32() % D;
        for (size_t i = 0; i < ROWS * d; i++)
            x[i] = trial % 10 == 9 ? 1.5f : next_float(-3.0f, 3.0f) * (next_u32() % 50 == 0 ? 1000.0f : 1.0f);
        for (size_t c = 0; c < d; c++) {
            g[c] = next_float(-2.0f, 2.0f);
            b[c] = next_float(-1.0f, 1.0f);
        }
        const int32_t bits = 2 + (int32_t)(next_u32() % 7);
        const float s = next_float(0.001f, 0.2f);
        const int32_t z = (int32_t)(next_u32() % 300) - 20;
        repq_float_layer_norm(x, ROWS, d, g, b, 1e-6f, y);
        repq_quantize_f32_u8(REPQ_LEVEL_SCALAR, ROWS * d, y, s, z, bits, want);
        repq_float_layer_norm_codes(x, ROWS, d, g, b, 1e-6f, s, z, bits, got);
        assert_memory_equal(got, want, ROWS * d);
    }
}

/* The leveled LayerNorm-to-codes kernel gives the float_ops loop's codes at every
 * level: widths around the 16-lane tails, rows with a NaN or infinity, a scale whose
 * reciprocal is off, and values exactly between two codes (and their neighbours). */
static void layer_norm_codes_levels_agree(void **state)
{
    (void)state;
    enum { ROWS = 4, D = 200 };
    static float x[ROWS * D], g[D], b[D];
    static uint8_t want[ROWS * D + 1], got[ROWS * D + 1];
    for (int trial = 0; trial < 3000; trial++) {
        const size_t d = trial < 40 ? 1 + (size_t)trial : 1 + next_u32() % D;
        for (size_t i = 0; i < ROWS * d; i++)
            x[i] = next_float(-3.0f, 3.0f) * (next_u32() % 50 == 0 ? 1000.0f : 1.0f);
        for (size_t c = 0; c < d; c++) {
            g[c] = next_float(-2.0f, 2.0f);
            b[c] = next_float(-1.0f, 1.0f);
        }
        if (trial % 13 == 0)
            x[next_u32() % (ROWS * d)] = trial % 26 ? INFINITY : NAN;
        const int32_t bits = 2 + (int32_t)(next_u32() % 7);
        float s = next_float(0.001f, 0.2f);
        if (trial % 17 == 0)
            s = 0x1p-125f;
        const int32_t z = (int32_t)(next_u32() % 300) - 20;
        if (trial % 5 == 0) {
            /* zero gain and a bias on a half-integer multiple of s, give or take an ulp */
            for (size_t c = 0; c < d; c++) {
                g[c] = 0.0f;
                b[c] = ((float)((int32_t)(next_u32() % 40) - 20) + 0.5f) * s;
                if (c % 3)
                    b[c] = nextafterf(b[c], c % 3 == 1 ? INFINITY : -INFINITY);
            }
        }
        if (trial % 5 == 1) {
            /* row 0's values near the midpoints between codes: the bias that moves each
             * normalized product ((x - mean) inv) g (the LayerNorm with zero bias) onto
             * one, rounded in float, so that how the product and the sum round decides */
            static float y0[D];
            memset(b, 0, d * sizeof *b);
            repq_float_layer_norm(x, 1, d, g, b, 1e-6f, y0);
            for (size_t c = 0; c < d; c++)
                b[c] = ((float)((int32_t)(next_u32() % 40) - 20) + 0.5f) * s - y0[c];
        }
        repq_float_layer_norm_codes(x, ROWS, d, g, b, 1e-6f, s, z, bits, want);
        for (int lv = REPQ_LEVEL_SCALAR; lv <= REPQ_LEVEL_AMX; lv++) {
            if (!kernel_level_checked((repq_kernel_level)lv))
                continue;
            memset(got, 0xa5, sizeof got);
            repq_layer_norm_codes_u8((repq_kernel_level)lv, x, ROWS, d, g, b, 1e-6f, s, z, bits, got);
            assert_memory_equal(got, want, ROWS * d);
            assert_int_equal(got[ROWS * d], 0xa5);
        }
    }
}

int repq_test_kernels_extra(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quantize_matches_quantizer),
        cmocka_unit_test(two_region_quantize_matches_quantizer),
        cmocka_unit_test(epilogues_are_exact_and_agree),
        cmocka_unit_test(gelu_epilogue_matches_exact_gelu),
        cmocka_unit_test(gelu_fast_stays_within_its_bound),
        cmocka_unit_test(gelu_codes_round_like_the_quantizers),
        cmocka_unit_test(layer_norm_codes_match_steps),
        cmocka_unit_test(layer_norm_codes_levels_agree),
        cmocka_unit_test(attn_v_gemm_matches_shifts),
        cmocka_unit_test(attn_pack_k_matches_pack),
        cmocka_unit_test(softmax_bias_matches_corrected),
    };
    return cmocka_run_group_tests_name("kernels_extra", tests, NULL, NULL);
}
