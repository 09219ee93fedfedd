/* Tests of lib/calib/quantizer: uniform and log quantizers, quantiles, range searches.
 * Expected values are worked out by hand in the comments, not printed by the code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "calib/quantizer.h"

#define N_OUTLIER 1001

static void assert_near(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("got %.9g, want %.9g (tolerance %.3g)", got, want, tol);
}

/* 4 bits over [-2.5, 5]: s = 7.5 / 15 = 0.5, z = round(2.5 / 0.5) = 5.
 *   x      x/s    round  +z  clamp  x^ = 0.5 (q - 5)
 *  -3.0   -6      -6     -1   0     -2.5
 *  -2.5   -5      -5      0   0     -2.5
 *  -0.75  -1.5    -2 (tie->even)  3  -1.0
 *   0.25   0.5     0 (tie->even)  5   0.0
 *   0.75   1.5     2 (tie->even)  7   1.0
 *   1.25   2.5     2 (tie->even)  7   1.0
 *   3.3    6.6     7     12  12     3.5
 *   5.0   10      10     15  15     5.0
 *   6.0   12      12     17  15     5.0 */
static void uniform_4bit_by_hand(void **state)
{
    (void)state;
    repq_quant_params p;
    assert_int_equal(repq_quant_params_from_range(-2.5f, 5.0f, 4, &p), REPQ_OK);
    assert_true(p.scale == 0.5f);
    assert_int_equal(p.zero_point, 5);
    assert_int_equal(p.bits, 4);
    const float x[9] = {-3.0f, -2.5f, -0.75f, 0.25f, 0.75f, 1.25f, 3.3f, 5.0f, 6.0f};
    const uint8_t want_q[9] = {0, 0, 3, 5, 7, 7, 12, 15, 15};
    const float want_x[9] = {-2.5f, -2.5f, -1.0f, 0.0f, 1.0f, 1.0f, 3.5f, 5.0f, 5.0f};
    uint8_t q[9];
    float d[9], f[9];
    assert_int_equal(repq_quant_quantize(&p, x, 9, q), REPQ_OK);
    assert_memory_equal(q, want_q, sizeof q);
    assert_int_equal(repq_quant_dequantize(&p, q, 9, d), REPQ_OK);
    memcpy(f, x, sizeof f);
    assert_int_equal(repq_quant_fake(&p, f, 9), REPQ_OK);
    for (int i = 0; i < 9; i++) {
        assert_true(d[i] == want_x[i]);
        assert_true(f[i] == want_x[i]);
    }
    /* MSE: errors -0.5, 0, 0.25, 0.25, -0.25, 0.25, -0.2, 0, 1 ->
     * 0.25 + 4 * 0.0625 + 0.04 + 1 = 1.54, / 9. */
    double mse;
    assert_int_equal(repq_quant_mse(&p, x, 9, 1, &mse), REPQ_OK);
    assert_near(mse, 1.54 / 9.0, 1e-7);
    uint8_t bad = 16;
    assert_int_equal(repq_quant_dequantize(&p, &bad, 1, d), REPQ_ERR_INVALID_ARGUMENT);
}

/* s = 1, z = 0 at 4 bits ([0, 15]): x.5 rounds to the even neighbour. The zero point
 * rounds half to even too: 2 bits over [-1.5, 1.5] gives s = 1, z = round(1.5) = 2;
 * over [-2.5, 0.5], s = 1, z = round(2.5) = 2. */
static void ties_go_to_even(void **state)
{
    (void)state;
    repq_quant_params p;
    assert_int_equal(repq_quant_params_from_range(0.0f, 15.0f, 4, &p), REPQ_OK);
    assert_true(p.scale == 1.0f);
    assert_int_equal(p.zero_point, 0);
    const float x[6] = {0.5f, 1.5f, 2.5f, 3.5f, 13.5f, 14.5f};
    const uint8_t want[6] = {0, 2, 2, 4, 14, 14};
    uint8_t q[6];
    assert_int_equal(repq_quant_quantize(&p, x, 6, q), REPQ_OK);
    assert_memory_equal(q, want, sizeof q);

    assert_int_equal(repq_quant_params_from_range(-1.5f, 1.5f, 2, &p), REPQ_OK);
    assert_true(p.scale == 1.0f);
    assert_int_equal(p.zero_point, 2);
    assert_int_equal(repq_quant_params_from_range(-2.5f, 0.5f, 2, &p), REPQ_OK);
    assert_true(p.scale == 1.0f);
    assert_int_equal(p.zero_point, 2);
}

static void check_constant(float c, int32_t bits)
{
    float x[50], scratch[50];
    for (int i = 0; i < 50; i++)
        x[i] = c;
    repq_quant_params p[2];
    double mse;
    assert_int_equal(repq_quant_search(x, 50, 1, bits, scratch, &p[0], &mse), REPQ_OK);
    assert_int_equal(repq_quant_minmax(x, 50, 1, bits, &p[1], NULL), REPQ_OK);
    for (int k = 0; k < 2; k++) {
        assert_true(isfinite(p[k].scale) && p[k].scale > 0.0f);
        /* Widened to include zero: c is an end of the grid, z in [0, 2^b - 1]. */
        assert_in_range(p[k].zero_point, 0, (1 << bits) - 1);
        float f = c;
        assert_int_equal(repq_quant_fake(&p[k], &f, 1), REPQ_OK);
        assert_near(f, c, 4.0 * FLT_EPSILON * fabsf(c));
    }
    assert_true(mse <= 16.0 * FLT_EPSILON * FLT_EPSILON * c * c);
}

static void constant_channel_is_reproduced(void **state)
{
    (void)state;
    check_constant(3.7f, 4);
    check_constant(-2.2f, 4);
    check_constant(0.1f, 8);
    check_constant(-1234.5f, 2);
    check_constant(1e30f, 6);
}

static void all_zero_tensor_gives_zeros(void **state)
{
    (void)state;
    float x[40] = {0}, scratch[40];
    repq_quant_params p;
    double mse = -1.0;
    assert_int_equal(repq_quant_search(x, 40, 1, 4, scratch, &p, &mse), REPQ_OK);
    assert_true(p.scale == REPQ_QUANT_FALLBACK_SCALE);
    assert_true(p.scale > 0.0f);
    assert_int_equal(p.zero_point, 0);
    assert_true(mse == 0.0);
    assert_int_equal(repq_quant_fake(&p, x, 40), REPQ_OK);
    for (int i = 0; i < 40; i++)
        assert_true(x[i] == 0.0f);
    assert_int_equal(repq_quant_minmax(x, 40, 1, 8, &p, &mse), REPQ_OK);
    assert_int_equal(p.zero_point, 0);
    assert_true(mse == 0.0);
}

/* Values in [-7, -4], the ends repeated so that every percentile candidate gives exactly
 * lo = -7 and hi = -4 (n = 11: h = 10 p lands between two equal order statistics).
 * 2 bits: s = 3 / 3 = 1, z = round(7) = 7, NOT clamped into [0, 3].
 *   x = -6.5: round(-6.5) = -6 (even), q = 1, x^ = -6
 *   x = -5.5: round(-5.5) = -6 (even), q = 1, x^ = -6
 *   x = -4.5: round(-4.5) = -4 (even), q = 3, x^ = -4
 *   x = -7:   q = 0, x^ = -7;   x = -4: q = 3, x^ = -4 */
static void negative_only_tensor_keeps_zero_point(void **state)
{
    (void)state;
    float x[11] = {-7, -7, -6.5f, -5.5f, -4.5f, -6.5f, -5.5f, -4.5f, -5.5f, -4, -4};
    float scratch[11];
    repq_quant_params p[2];
    assert_int_equal(repq_quant_search(x, 11, 1, 2, scratch, &p[0], NULL), REPQ_OK);
    assert_int_equal(repq_quant_minmax(x, 11, 1, 2, &p[1], NULL), REPQ_OK);
    for (int k = 0; k < 2; k++) {
        assert_true(p[k].scale == 1.0f);
        assert_int_equal(p[k].zero_point, 7);
        float f[5] = {-6.5f, -5.5f, -4.5f, -7.0f, -4.0f};
        const float want[5] = {-6, -6, -4, -7, -4};
        assert_int_equal(repq_quant_fake(&p[k], f, 5), REPQ_OK);
        for (int i = 0; i < 5; i++)
            assert_true(f[i] == want[i]);
    }
    /* All positive: [8, 23] at 4 bits gives s = 1, z = round(-8) = -8. */
    assert_int_equal(repq_quant_params_from_range(8.0f, 23.0f, 4, &p[0]), REPQ_OK);
    assert_true(p[0].scale == 1.0f);
    assert_int_equal(p[0].zero_point, -8);
}

/* [1000, 1000.0001] at 8 bits: s ~ 6e-5 / 255, z ~ -4e9 > 2^23: widened to [0, hi]. */
static void zero_point_is_bounded(void **state)
{
    (void)state;
    repq_quant_params p;
    assert_int_equal(repq_quant_params_from_range(1000.0f, 1000.0001f, 8, &p), REPQ_OK);
    assert_int_equal(p.zero_point, 0);
    assert_near(p.scale, 1000.0001 / 255.0, 1e-4);
    assert_int_equal(repq_quant_params_check(&p), REPQ_OK);
    p.zero_point = REPQ_QUANT_ZERO_POINT_MAX + 1;
    assert_int_equal(repq_quant_params_check(&p), REPQ_ERR_INVALID_ARGUMENT);
    /* A z just inside the bound is kept: [2^22, 2^22 + 3] at 2 bits: s = 1, z = -2^22. */
    assert_int_equal(repq_quant_params_from_range(4194304.0f, 4194307.0f, 2, &p), REPQ_OK);
    assert_true(p.scale == 1.0f);
    assert_int_equal(p.zero_point, -4194304);
}

static void non_finite_and_bad_arguments_are_rejected(void **state)
{
    (void)state;
    float x[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f}, scratch[8], qv;
    repq_quant_params p;
    repq_logq_params lp;
    const double half = 0.5;
    for (int k = 0; k < 2; k++) {
        x[5] = k == 0 ? NAN : -INFINITY;
        assert_int_equal(repq_quant_search(x, 8, 1, 4, scratch, &p, NULL), REPQ_ERR_NUMERIC);
        assert_int_equal(repq_quant_minmax(x, 8, 1, 4, &p, NULL), REPQ_ERR_NUMERIC);
        assert_int_equal(repq_quantiles(x, 8, 1, &half, 1, scratch, &qv), REPQ_ERR_NUMERIC);
        assert_int_equal(repq_logq_search(x, 8, 1, 4, REPQ_LOG_SQRT2, scratch, &lp, NULL),
                         REPQ_ERR_NUMERIC);
        assert_int_equal(repq_quant_params_from_range(x[5], 1.0f, 4, &p), REPQ_ERR_NUMERIC);
    }
    /* Stride 2 skips the bad element at index 5. */
    assert_int_equal(repq_quant_search(x, 4, 2, 4, scratch, &p, NULL), REPQ_OK);
    x[5] = INFINITY;
    repq_quant_params ok = {0.5f, 0, 4};
    uint8_t codes[8];
    assert_int_equal(repq_quant_quantize(&ok, x, 8, codes), REPQ_ERR_NUMERIC);
    assert_int_equal(codes[5], 15);
    x[5] = 0.6f;

    assert_int_equal(repq_quant_search(x, 0, 1, 4, scratch, &p, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_quant_minmax(x, 0, 1, 4, &p, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_quant_search(x, 8, 0, 4, scratch, &p, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_quant_search(x, 8, 1, 1, scratch, &p, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_quant_search(x, 8, 1, 9, scratch, &p, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_quant_search(x, 8, 1, 4, NULL, &p, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_quant_search(NULL, 8, 1, 4, scratch, &p, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_quant_search(x, SIZE_MAX / 2, 4, 4, scratch, &p, NULL), REPQ_ERR_OVERFLOW);
    assert_int_equal(repq_quant_params_from_range(2.0f, 1.0f, 4, &p), REPQ_ERR_INVALID_ARGUMENT);
    repq_quant_params bad = {0.0f, 0, 4};
    assert_int_equal(repq_quant_fake(&bad, x, 8), REPQ_ERR_INVALID_ARGUMENT);
    const double out_of_range = 1.5;
    assert_int_equal(repq_quantiles(x, 8, 1, &out_of_range, 1, scratch, &qv), REPQ_ERR_INVALID_ARGUMENT);
}

/* The quantize and fake loops are vectorized (whole vectors, then a tail): at every
 * length up to a few vectors, and a NaN or infinity at every position, each value must
 * be the one the formula gives element by element (division, round half to even,
 * clamp), and the non-finite one must be reported wherever it is. */
static float fake_by_formula(const repq_quant_params *p, float x)
{
    float t = rintf(x / p->scale) + (float)p->zero_point;
    const float qmax = (float)((1 << p->bits) - 1);
    t = t > 0.0f ? t : 0.0f;
    t = t < qmax ? t : qmax;
    return p->scale * (t - (float)p->zero_point);
}

static void vector_lengths_and_non_finite_positions(void **state)
{
    (void)state;
    enum { MAX_N = 70 };
    const repq_quant_params p = {0.037f, 9, 5};
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    float src[MAX_N], x[MAX_N];
    uint8_t codes[MAX_N];
    uint32_t seed = 12345;
    for (int i = 0; i < MAX_N; i++) {
        seed = seed * 1664525u + 1013904223u;
        /* includes exact half steps (ties) and values past both ends */
        src[i] = i % 5 == 0 ? p.scale * ((float)(i / 5) - 12.5f) : ((float)(seed >> 8) / 16777216.0f - 0.45f) * 1.6f;
    }
    for (size_t n = 1; n <= MAX_N; n++) {
        memcpy(x, src, n * sizeof *x);
        assert_int_equal(repq_quant_fake(&p, x, n), REPQ_OK);
        for (size_t i = 0; i < n; i++)
            if (memcmp(&x[i], &(float){fake_by_formula(&p, src[i])}, sizeof(float)) != 0)
                fail_msg("n %zu, x[%zu] = %.9g: got %.9g, want %.9g", n, i, src[i], x[i],
                         fake_by_formula(&p, src[i]));
        assert_int_equal(repq_quant_quantize(&p, src, n, codes), REPQ_OK);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(codes[i], (int)rintf(fake_by_formula(&p, src[i]) / p.scale) + p.zero_point);
        for (size_t at = 0; at < n; at++)
            for (int k = 0; k < 3; k++) {
                memcpy(x, src, n * sizeof *x);
                x[at] = bad[k];
                assert_int_equal(repq_quant_quantize(&p, x, n, codes), REPQ_ERR_NUMERIC);
                assert_int_equal(repq_quant_fake(&p, x, n), REPQ_ERR_NUMERIC);
            }
    }
}

/* x sorted: -5 -1 1 2 3 3.5 4 5 6 9 10 (n = 11, h = 10 p).
 *   p = 0      h = 0     -> -5
 *   p = 0.001  h = 0.01  -> -5 + 0.01 (-1 - -5) = -4.96
 *   p = 0.1    h = 1     -> -1
 *   p = 0.25   h = 2.5   -> 1 + 0.5 (2 - 1) = 1.5
 *   p = 0.5    h = 5     -> 3.5
 *   p = 0.95   h = 9.5   -> 9 + 0.5 (10 - 9) = 9.5
 *   p = 0.999  h = 9.99  -> 9 + 0.99 (10 - 9) = 9.99
 *   p = 1      h = 10    -> 10 */
static void quantiles_match_numpy_linear(void **state)
{
    (void)state;
    const float x[11] = {3, -1, 4, 1, -5, 9, 2, 6, 5, 3.5f, 10};
    const double p[8] = {0, 0.001, 0.1, 0.25, 0.5, 0.95, 0.999, 1};
    const double want[8] = {-5, -4.96, -1, 1.5, 3.5, 9.5, 9.99, 10};
    float scratch[11], q[8];
    assert_int_equal(repq_quantiles(x, 11, 1, p, 8, scratch, q), REPQ_OK);
    for (int j = 0; j < 8; j++)
        assert_near(q[j], want[j], 1e-5);
    /* The same values as column 2 of an [11][3] matrix. */
    float m[33];
    for (int i = 0; i < 33; i++)
        m[i] = 1000.0f + (float)i;
    for (int i = 0; i < 11; i++)
        m[i * 3 + 2] = x[i];
    assert_int_equal(repq_quantiles(m + 2, 11, 3, p, 8, scratch, q), REPQ_OK);
    for (int j = 0; j < 8; j++)
        assert_near(q[j], want[j], 1e-5);
    /* A single value is every quantile. */
    assert_int_equal(repq_quantiles(x + 4, 1, 1, p, 8, scratch, q), REPQ_OK);
    for (int j = 0; j < 8; j++)
        assert_true(q[j] == -5.0f);
}

/* Larger arrays: selection agrees with the order statistics of a known permutation
 * (the values 0..n-1 shuffled, so quantile(p) = (n - 1) p exactly), including many
 * duplicates (values i / 7, sorted order known). */
static void quantiles_on_permutations(void **state)
{
    (void)state;
    enum { N = 5001 };
    static float x[N], scratch[N];
    uint32_t r = 12345u;
    for (int i = 0; i < N; i++)
        x[i] = (float)i;
    for (int i = N - 1; i > 0; i--) {
        r = r * 1664525u + 1013904223u;
        int j = (int)(r % (uint32_t)(i + 1));
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
    const double p[6] = {0.001, 0.999, 0.0001, 0.9999, 0.00001, 0.99999};
    float q[6];
    assert_int_equal(repq_quantiles(x, N, 1, p, 6, scratch, q), REPQ_OK);
    for (int j = 0; j < 6; j++)
        assert_near(q[j], 5000.0 * p[j], 1e-3);
    /* A middle quantile too (no longer two tails: the plain selection). */
    const double pm[3] = {0.001, 0.5, 0.99999};
    assert_int_equal(repq_quantiles(x, N, 1, pm, 3, scratch, q), REPQ_OK);
    for (int j = 0; j < 3; j++)
        assert_near(q[j], 5000.0 * pm[j], 1e-3);
    /* Small arrays take the plain selection: 499, 498, ..., 0 gives 499 p. */
    float small[500];
    for (int i = 0; i < 500; i++)
        small[i] = (float)(499 - i);
    assert_int_equal(repq_quantiles(small, 500, 1, p, 6, scratch, q), REPQ_OK);
    for (int j = 0; j < 6; j++)
        assert_near(q[j], 499.0 * p[j], 1e-3);
    /* Duplicates: x[i] = floor(i / 7) over 7 * 700 values, reversed. Sorted v[k] =
     * floor(k / 7); h = 4899 p. */
    for (int i = 0; i < 4900; i++)
        x[i] = (float)((4899 - i) / 7);
    assert_int_equal(repq_quantiles(x, 4900, 1, p, 6, scratch, q), REPQ_OK);
    for (int j = 0; j < 6; j++) {
        double h = 4899.0 * p[j];
        double k = floor(h), a = floor(k / 7), b = floor((k + 1) / 7);
        assert_near(q[j], a + (h - k) * (b - a), 1e-3);
    }
    /* One value repeated: every quantile is that value. */
    for (int i = 0; i < N; i++)
        x[i] = -0.75f;
    assert_int_equal(repq_quantiles(x, N, 1, p, 6, scratch, q), REPQ_OK);
    for (int j = 0; j < 6; j++)
        assert_true(q[j] == -0.75f);
}

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Selection against a full sort done here, for sizes on both sides of the tail path,
 * data with and without many duplicates. */
static void quantiles_match_sorted_reference(void **state)
{
    (void)state;
    enum { MAXN = 70001 };
    static float x[MAXN], sorted[MAXN], scratch[MAXN];
    const size_t sizes[8] = {1, 2, 17, 1023, 1024, 3000, 16385, MAXN};
    const double p[8] = {0.001, 0.999, 0.0001, 0.9999, 0.00001, 0.99999, 0.3, 0.0};
    uint32_t r = 99u;
    for (int dup = 0; dup < 2; dup++)
        for (int si = 0; si < 8; si++) {
            size_t n = sizes[si];
            for (size_t i = 0; i < n; i++) {
                r = r * 1664525u + 1013904223u;
                x[i] = dup ? (float)((r >> 8) % 5u) : (float)(r >> 8) / 1048576.0f - 8.0f;
            }
            memcpy(sorted, x, n * sizeof *x);
            qsort(sorted, n, sizeof *sorted, cmp_f);
            for (int with_mid = 0; with_mid < 2; with_mid++) {
                float q[8];
                size_t np = with_mid ? 8 : 6;
                assert_int_equal(repq_quantiles(x, n, 1, p, np, scratch, q), REPQ_OK);
                for (size_t j = 0; j < np; j++) {
                    double h = (double)(n - 1) * p[j];
                    size_t k = (size_t)floor(h);
                    double a = sorted[k], b = k + 1 < n ? sorted[k + 1] : sorted[k];
                    assert_near(q[j], a + (h - (double)k) * (b - a), 1e-5);
                }
            }
        }
}

/* 1000 zeros and one outlier 100 (n = 1001, h = 1000 p):
 *   p = 0.999:   hi = v[999] = 0, lo = 0: degenerate -> fallback scale; 100 -> 0,
 *                MSE = 100^2 / 1001
 *   p = 0.9999:  hi = 0 + 0.9 (100 - 0) = 90, s = 6, z = 0; 100 / 6 = 16.7 -> 15,
 *                x^ = 90, MSE = 10^2 / 1001
 *   p = 0.99999: hi = 0 + 0.99 (100) = 99, s = 6.6, z = 0; 100 / 6.6 = 15.15 -> 15,
 *                x^ = 99, MSE = 1 / 1001 (zeros are exact every time)   <- chosen */
static void search_keeps_outlier_when_cheaper(void **state)
{
    (void)state;
    static float x[N_OUTLIER], scratch[N_OUTLIER];
    memset(x, 0, sizeof x);
    x[500] = 100.0f;
    repq_quant_params p;
    double mse;
    assert_int_equal(repq_quant_search(x, N_OUTLIER, 1, 4, scratch, &p, &mse), REPQ_OK);
    assert_near(p.scale, 99.0 / 15.0, 1e-5);
    assert_int_equal(p.zero_point, 0);
    assert_near(mse, 1.0 / 1001.0, 1e-7);
}

/* v = i mod 16 for i < 1000 (62 or 63 copies of each of 0..15) and one outlier 16:
 *   p = 0.999: lo = 0, hi = v[999] = 15, s = 1, z = 0: every bulk value exact, 16 -> 15,
 *              MSE = 1 / 1001   <- chosen
 *   p = 0.9999 / 0.99999: hi = 15.9 / 15.99, s = 1.06 / 1.066: the bulk falls off the
 *              grid (e.g. 1 -> 1.06, 8 -> 7.42 or 8.48), far more than 1 in total. */
static void search_clips_outlier_when_cheaper(void **state)
{
    (void)state;
    static float x[N_OUTLIER], scratch[N_OUTLIER];
    for (int i = 0; i < 1000; i++)
        x[i] = (float)(i % 16);
    x[1000] = 16.0f;
    repq_quant_params p;
    double mse;
    assert_int_equal(repq_quant_search(x, N_OUTLIER, 1, 4, scratch, &p, &mse), REPQ_OK);
    assert_true(p.scale == 1.0f);
    assert_int_equal(p.zero_point, 0);
    assert_near(mse, 1.0 / 1001.0, 1e-9);
    /* Min/max keeps the outlier: s = 16 / 15. */
    assert_int_equal(repq_quant_minmax(x, N_OUTLIER, 1, 4, &p, NULL), REPQ_OK);
    assert_near(p.scale, 16.0 / 15.0, 1e-6);
    assert_int_equal(p.zero_point, 0);
}

/* Column 1 of a [1001][3] matrix holds the outlier data; the other columns are junk of
 * another range. A strided search and search_cols give the contiguous answer; the
 * transposed matrix through search_rows too. */
static void stride_selects_a_column(void **state)
{
    (void)state;
    enum { R = N_OUTLIER, C = 3 };
    static float m[R * C], t[C * R], col[R], scratch[R];
    for (int i = 0; i < R; i++) {
        col[i] = (float)(i % 16);
        m[i * C + 0] = -50.0f - (float)(i % 7);
        m[i * C + 1] = col[i];
        m[i * C + 2] = 1e6f + (float)i;
    }
    col[R - 1] = m[(R - 1) * C + 1] = 16.0f;
    for (int i = 0; i < R; i++)
        for (int c = 0; c < C; c++)
            t[c * R + i] = m[i * C + c];
    repq_quant_params want, got, cols[C], rows[C];
    assert_int_equal(repq_quant_search(col, R, 1, 4, scratch, &want, NULL), REPQ_OK);
    assert_true(want.scale == 1.0f);
    assert_int_equal(repq_quant_search(m + 1, R, C, 4, scratch, &got, NULL), REPQ_OK);
    assert_memory_equal(&got, &want, sizeof want);
    assert_int_equal(repq_quant_search_cols(m, R, C, 4, REPQ_RANGE_PERCENTILE, scratch, cols), REPQ_OK);
    assert_int_equal(repq_quant_search_rows(t, C, R, 4, REPQ_RANGE_PERCENTILE, scratch, rows), REPQ_OK);
    assert_memory_equal(&cols[1], &want, sizeof want);
    assert_memory_equal(&rows[1], &want, sizeof want);
    for (int c = 0; c < C; c++) {
        assert_memory_equal(&rows[c], &cols[c], sizeof want);
        repq_quant_params one;
        assert_int_equal(repq_quant_search(t + c * R, R, 1, 4, scratch, &one, NULL), REPQ_OK);
        assert_memory_equal(&one, &cols[c], sizeof one);
    }
    /* Min/max per column: column 0 spans [-56, -50]. */
    assert_int_equal(repq_quant_search_cols(m, R, C, 4, REPQ_RANGE_MINMAX, NULL, cols), REPQ_OK);
    assert_near(cols[0].scale, 6.0 / 15.0, 1e-6);
    assert_int_equal(cols[0].zero_point, 140); /* round(56 / 0.4) */
    assert_near(cols[1].scale, 16.0 / 15.0, 1e-6);
    assert_int_equal(repq_quant_search_cols(m, R, C, 4, REPQ_RANGE_PERCENTILE, NULL, cols),
                     REPQ_ERR_INVALID_ARGUMENT);
}

/* s = 1, 4 bits, log-sqrt2: code = round(-2 log2 x).
 *   x = 1.5    -> -1.17 -> clamp 0 -> x^ = 1
 *   x = 1      -> 0 -> 1
 *   x = 0.7071 -> 1.00003 -> 1 -> 2^-1 sqrt2 = 0.70711
 *   x = 0.5    -> 2 -> 0.5
 *   x = 0.3    -> 3.47 -> 3 -> 2^-2 sqrt2 = 0.35355
 *   x = 0.25   -> 4 -> 0.25
 *   x = 2^-7.5 = 0.0055243 -> 15 -> 2^-8 sqrt2 = 0.0055243
 *   x = 0.004  -> 15.93 -> 16 >= 2^4: zero (stored as 16)
 *   x = 1e-9   -> 59.8 -> zero;  x = 0 -> zero */
static void log_sqrt2_by_hand(void **state)
{
    (void)state;
    repq_logq_params p = {1.0f, 4, REPQ_LOG_SQRT2};
    const float x[10] = {1.5f, 1.0f, 0.7071f, 0.5f, 0.3f, 0.25f, 0.0055243f, 0.004f, 1e-9f, 0.0f};
    const uint8_t want_q[10] = {0, 0, 1, 2, 3, 4, 15, 16, 16, 16};
    const double want_x[10] = {1, 1, 0.70710678, 0.5, 0.35355339, 0.25, 0.00552427, 0, 0, 0};
    uint8_t q[10];
    float d[10], f[10];
    assert_int_equal(repq_logq_quantize(&p, x, 10, q), REPQ_OK);
    assert_memory_equal(q, want_q, sizeof q);
    assert_int_equal(repq_logq_dequantize(&p, q, 10, d), REPQ_OK);
    memcpy(f, x, sizeof f);
    assert_int_equal(repq_logq_fake(&p, f, 10), REPQ_OK);
    for (int i = 0; i < 10; i++) {
        assert_near(d[i], want_x[i], 1e-7);
        assert_true(d[i] == f[i]);
    }
    assert_int_equal(repq_logq_zero_code(4), 16);
    uint8_t bad = 17;
    assert_int_equal(repq_logq_dequantize(&p, &bad, 1, d), REPQ_ERR_INVALID_ARGUMENT);
    /* Scale 0.8: x = 0.4 -> code 2 -> 0.4; x = 0.8 -> 0 -> 0.8. Negative -> zero. */
    p.scale = 0.8f;
    float g[3] = {0.4f, 0.8f, -0.1f};
    assert_int_equal(repq_logq_fake(&p, g, 3), REPQ_OK);
    assert_near(g[0], 0.4, 1e-7);
    assert_near(g[1], 0.8, 1e-7);
    assert_true(g[2] == 0.0f);
}

/* s = 1, 3 bits, log2: code = round(-log2 x).
 *   x = 0.3 -> 1.74 -> 2 -> 0.25;  x = 0.7 -> 0.51 -> 1 -> 0.5;  x = 0.72 -> 0.47 -> 0 -> 1
 *   x = 2^-7 -> 7 -> 2^-7;  x = 2^-8 -> 8 >= 2^3: zero (stored as 8). */
static void log2_by_hand(void **state)
{
    (void)state;
    repq_logq_params p = {1.0f, 3, REPQ_LOG_2};
    const float x[5] = {0.3f, 0.7f, 0.72f, 0.0078125f, 0.00390625f};
    const uint8_t want_q[5] = {2, 1, 0, 7, 8};
    const float want_x[5] = {0.25f, 0.5f, 1.0f, 0.0078125f, 0.0f};
    uint8_t q[5];
    float d[5];
    assert_int_equal(repq_logq_quantize(&p, x, 5, q), REPQ_OK);
    assert_memory_equal(q, want_q, sizeof q);
    assert_int_equal(repq_logq_dequantize(&p, q, 5, d), REPQ_OK);
    for (int i = 0; i < 5; i++)
        assert_true(d[i] == want_x[i]);
}

/* b = 8: the zero state is stored as 255, which is also the code of s 2^-127.5; read
 * back as 0. The fake quantization keeps the tiny level (the reference's value). */
static void log_zero_code_at_8_bits(void **state)
{
    (void)state;
    repq_logq_params p = {1.0f, 8, REPQ_LOG_SQRT2};
    assert_int_equal(repq_logq_zero_code(8), 255);
    const float x[3] = {0.0f, 1e-30f, ldexpf(1.0f, -127) / 1.41421356f};
    uint8_t q[3];
    float d[3];
    assert_int_equal(repq_logq_quantize(&p, x, 3, q), REPQ_OK);
    /* 1e-30: -2 log2(1e-30) = 199.3 -> 199, a real level. */
    assert_int_equal(q[0], 255);
    assert_int_equal(q[1], 199);
    assert_int_equal(q[2], 255);
    assert_int_equal(repq_logq_dequantize(&p, q, 3, d), REPQ_OK);
    assert_true(d[0] == 0.0f && d[2] == 0.0f);
    assert_near(d[1], pow(2.0, -99.5), 1e-36);
    float f = x[2];
    assert_int_equal(repq_logq_fake(&p, &f, 1), REPQ_OK);
    assert_true(f > 0.0f);
}

/* Below 8 bits the fake-quant forward takes a log quantizer's values from its codes
 * (model/qforward.c): dequantizing the codes must give fake quantization's bits, for
 * both bases, on values across every level, past the last one, zeros and negatives. */
static void log_codes_give_the_fake_values_below_8_bits(void **state)
{
    (void)state;
    enum { N = 600 };
    float x[N], fake[N], levels[N];
    uint8_t codes[N];
    for (int base = 0; base < 2; base++)
        for (int32_t bits = 2; bits <= 7; bits++) {
            const repq_logq_params p = {0.8f, bits, base ? REPQ_LOG_SQRT2 : REPQ_LOG_2};
            for (int i = 0; i < N; i++) /* 0.8 2^-(i / 3.7) down to 2^-150, then zeros and negatives */
                x[i] = i < 560 ? 0.8f * exp2f(-(float)i / 3.7f) : i < 580 ? 0.0f : -(float)(i - 579);
            memcpy(fake, x, sizeof x);
            assert_int_equal(repq_logq_fake(&p, fake, N), REPQ_OK);
            assert_int_equal(repq_logq_quantize(&p, x, N, codes), REPQ_OK);
            assert_int_equal(repq_logq_dequantize(&p, codes, N, levels), REPQ_OK);
            assert_memory_equal(levels, fake, sizeof fake);
        }
}

/* s 2^-ceil(c/2) (1 + (c mod 2)(sqrt2 - 1)) against s 2^(-c/2) for every code. */
static void log_sqrt2_level_forms_agree(void **state)
{
    (void)state;
    const float scales[4] = {1.0f, 0.37f, 0.9925f, 3.0f};
    for (int k = 0; k < 4; k++) {
        repq_logq_params p = {scales[k], 8, REPQ_LOG_SQRT2};
        for (int32_t c = 0; c < 256; c++) {
            double direct = (double)scales[k] * exp2(-(double)c / 2.0);
            double got = repq_logq_level(&p, c);
            assert_near(got, direct, 3.0 * FLT_EPSILON * direct + 2.0 * FLT_TRUE_MIN);
        }
        p.base = REPQ_LOG_2;
        for (int32_t c = 0; c < 256; c++) {
            double direct = (double)scales[k] * exp2(-(double)c);
            assert_near(repq_logq_level(&p, c), direct, 3.0 * FLT_EPSILON * direct + 2.0 * FLT_TRUE_MIN);
        }
    }
}

/* 1000 values 0.25 and one 1.0 (n = 1001), 4 bits log-sqrt2:
 *   p = 0.999:   s = v[999] = 0.25: 0.25 exact, 1.0 -> code 0 -> 0.25; SSE 0.5625
 *   p = 0.9999:  s = 0.25 + 0.9 (0.75) = 0.925: 0.25/0.925 -> 3.77 -> 4 -> 0.23125,
 *                SSE 1000 (0.01875)^2 + (0.075)^2 = 0.357
 *   p = 0.99999: s = 0.25 + 0.99 (0.75) = 0.9925: -> 3.98 -> 4 -> 0.248125,
 *                SSE 1000 (0.001875)^2 + (0.0075)^2 = 0.003571875   <- chosen */
static void log_search_by_hand(void **state)
{
    (void)state;
    static float x[N_OUTLIER], scratch[N_OUTLIER];
    for (int i = 0; i < N_OUTLIER; i++)
        x[i] = 0.25f;
    x[77] = 1.0f;
    repq_logq_params p;
    double mse;
    assert_int_equal(repq_logq_search(x, N_OUTLIER, 1, 4, REPQ_LOG_SQRT2, scratch, &p, &mse), REPQ_OK);
    assert_near(p.scale, 0.9925, 1e-6);
    assert_int_equal(p.bits, 4);
    assert_int_equal(p.base, REPQ_LOG_SQRT2);
    assert_near(mse, 0.003571875 / 1001.0, 1e-9);
    /* All zeros: every candidate is 0, replaced by 1; zeros stay zeros. */
    memset(x, 0, sizeof x);
    assert_int_equal(repq_logq_search(x, N_OUTLIER, 1, 4, REPQ_LOG_2, scratch, &p, &mse), REPQ_OK);
    assert_true(p.scale == 1.0f);
    assert_true(mse == 0.0);
}

static uint32_t lcg(uint32_t *r)
{
    *r = *r * 1664525u + 1013904223u;
    return *r >> 8;
}

/* The MSE the search reports, and repq_quant_mse, equal a double-precision
 * recomputation from the definition; none of the three candidates does better. */
static void mse_matches_double_recomputation(void **state)
{
    (void)state;
    enum { N = 20000 };
    static float x[N], scratch[N];
    uint32_t r = 7u;
    for (int i = 0; i < N; i++) {
        double u = (double)lcg(&r) / 16777216.0, v = (double)lcg(&r) / 16777216.0;
        /* A skewed, heavy-tailed mix. */
        x[i] = (float)(0.3 + (u - 0.5) * (v < 0.01 ? 40.0 : 2.0) + (v > 0.98 ? 5.0 * v : 0.0));
    }
    for (int32_t bits = 2; bits <= 8; bits++) {
        repq_quant_params p;
        double mse, mse2;
        assert_int_equal(repq_quant_search(x, N, 1, bits, scratch, &p, &mse), REPQ_OK);
        assert_int_equal(repq_quant_mse(&p, x, N, 1, &mse2), REPQ_OK);
        double sum = 0.0, qmax = (double)((1 << bits) - 1);
        for (int i = 0; i < N; i++) {
            double q = nearbyint((double)x[i] / p.scale) + p.zero_point;
            q = q < 0 ? 0 : (q > qmax ? qmax : q);
            double e = (double)x[i] - (double)p.scale * (q - p.zero_point);
            sum += e * e;
        }
        double want = sum / N;
        assert_near(mse, want, 1e-5 * want);
        assert_near(mse2, want, 1e-5 * want);
        /* The lane sums for searches: the same sum in another order; with a bound below
         * it, a partial sum above the bound (it stops early), never the full one. */
        const double lanes = repq_quant_sse_lanes(&p, x, N, INFINITY);
        assert_near(lanes, sum, 1e-5 * sum);
        assert_true(repq_quant_sse_lanes(&p, x, N, lanes) == lanes);
        const double partial = repq_quant_sse_lanes(&p, x, N, 0.01 * sum);
        assert_true(partial > 0.01 * sum && partial < lanes);
        /* Candidates rebuilt from the quantiles: none is better than the chosen one. */
        for (int c = 0; c < REPQ_QUANT_NUM_CANDIDATES; c++) {
            double pp[2] = {1.0 - repq_quant_percentiles[c], repq_quant_percentiles[c]};
            float lh[2];
            repq_quant_params cand;
            double cm;
            assert_int_equal(repq_quantiles(x, N, 1, pp, 2, scratch, lh), REPQ_OK);
            assert_int_equal(repq_quant_params_from_range(lh[0], lh[1], bits, &cand), REPQ_OK);
            assert_int_equal(repq_quant_mse(&cand, x, N, 1, &cm), REPQ_OK);
            assert_true(mse <= cm * (1.0 + 1e-12));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uniform_4bit_by_hand),
        cmocka_unit_test(ties_go_to_even),
        cmocka_unit_test(constant_channel_is_reproduced),
        cmocka_unit_test(all_zero_tensor_gives_zeros),
        cmocka_unit_test(negative_only_tensor_keeps_zero_point),
        cmocka_unit_test(zero_point_is_bounded),
        cmocka_unit_test(non_finite_and_bad_arguments_are_rejected),
        cmocka_unit_test(vector_lengths_and_non_finite_positions),
        cmocka_unit_test(quantiles_match_numpy_linear),
        cmocka_unit_test(quantiles_on_permutations),
        cmocka_unit_test(quantiles_match_sorted_reference),
        cmocka_unit_test(search_keeps_outlier_when_cheaper),
        cmocka_unit_test(search_clips_outlier_when_cheaper),
        cmocka_unit_test(stride_selects_a_column),
        cmocka_unit_test(log_sqrt2_by_hand),
        cmocka_unit_test(log2_by_hand),
        cmocka_unit_test(log_zero_code_at_8_bits),
        cmocka_unit_test(log_codes_give_the_fake_values_below_8_bits),
        cmocka_unit_test(log_sqrt2_level_forms_agree),
        cmocka_unit_test(log_search_by_hand),
        cmocka_unit_test(mse_matches_double_recomputation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
