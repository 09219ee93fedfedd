/* Tests of lib/calib/dual_clip: RepQuant's per-channel dual clipping. Expected values
 * are worked out by hand in the comments or found by an exhaustive search written here
 * in double precision, apart from the library's quantizer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "calib/dual_clip.h"

static void assert_near(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("got %.9g, want %.9g (tolerance %.3g)", got, want, tol);
}

/* 1000 values k = i mod 16 (62 or 63 copies of each of 0..15) and three outliers at
 * `outlier`; sign -1 mirrors everything. */
enum { BULK = 1000, N_OUT = BULK + 3 };
static void lattice_with_outliers(float *x, float sign, float outlier)
{
    for (int i = 0; i < BULK; i++)
        x[i] = sign * (float)(i % 16);
    for (int i = BULK; i < N_OUT; i++)
        x[i] = sign * outlier;
}

/* Outliers 17 above a bulk of 0..15, 4 bits (n = 1003):
 *   the reference's p = 0.999 pair: hi = quantile(0.999) at h = 1000.998, between v[1000]
 *   and v[1001], both 17; lo = 0. All three of its pairs keep the outliers: s = 17/15,
 *   and the integer bulk falls off the grid.
 *   Dual clipping: lo = 0 (the minimum, rank 0), hi = 15 (v[n - 1 - 3], rank 3): s = 1,
 *   z = 0, the bulk is exact and each outlier costs (17 - 15)^2: MSE = 12 / 1003.
 *   Nearby upper bounds lose: 15 (1 + e) moves the bulk by up to 15 e (sum over the bulk
 *   ~ 77500 e^2) to gain 180 e on the outliers, and the refinement steps between the
 *   neighbouring candidates 14 and 17 are 3/8 apart (e = 0.008: +5 against -1.5). */
static void outliers_on_one_side_are_clipped_there_only(void **state)
{
    (void)state;
    static float x[N_OUT], scratch[N_OUT];
    lattice_with_outliers(x, 1.0f, 17.0f);
    repq_quant_params p, ref;
    double mse, ref_mse;
    assert_int_equal(repq_quant_search_dual(x, N_OUT, 1, 4, scratch, &p, &mse), REPQ_OK);
    assert_true(p.scale == 1.0f);
    assert_int_equal(p.zero_point, 0);
    assert_int_equal(p.bits, 4);
    assert_near(mse, 12.0 / N_OUT, 1e-12);
    assert_int_equal(repq_quant_search(x, N_OUT, 1, 4, scratch, &ref, &ref_mse), REPQ_OK);
    assert_near(ref.scale, 17.0 / 15.0, 1e-6);
    assert_true(ref_mse > 5.0 * mse);
    /* Mirrored: the outliers at -17 are clipped at -15, the top stays at the maximum 0:
     * s = 1, z = round(15 / 1) = 15. */
    lattice_with_outliers(x, -1.0f, 17.0f);
    assert_int_equal(repq_quant_search_dual(x, N_OUT, 1, 4, scratch, &p, &mse), REPQ_OK);
    assert_true(p.scale == 1.0f);
    assert_int_equal(p.zero_point, 15);
    assert_near(mse, 12.0 / N_OUT, 1e-12);
}

/* An all-negative channel: -1 - k/8 for k = i mod 16 (so -2.875 .. -1, 16 levels 0.125
 * apart) and three outliers at -3.125 below it. Dual clipping: [lo, hi] = [-2.875, -1],
 * s = 1.875 / 15 = 0.125, z = round(2.875 / 0.125) = 23 (outside [0, 15]: the zero
 * point is not clamped), the bulk exact, each outlier off by 0.25: MSE = 0.1875 / 1003.
 * The reference keeps the outliers (quantile(0.001) is at h = 1.002, inside them). */
static void all_negative_channel(void **state)
{
    (void)state;
    static float x[N_OUT], scratch[N_OUT];
    for (int i = 0; i < BULK; i++)
        x[i] = -1.0f - (float)(i % 16) / 8.0f;
    for (int i = BULK; i < N_OUT; i++)
        x[i] = -3.125f;
    repq_quant_params p, ref;
    double mse, ref_mse;
    assert_int_equal(repq_quant_search_dual(x, N_OUT, 1, 4, scratch, &p, &mse), REPQ_OK);
    assert_true(p.scale == 0.125f);
    assert_int_equal(p.zero_point, 23);
    assert_near(mse, 0.1875 / N_OUT, 1e-12);
    assert_int_equal(repq_quant_search(x, N_OUT, 1, 4, scratch, &ref, &ref_mse), REPQ_OK);
    assert_near(ref.scale, 2.125 / 15.0, 1e-6);
    assert_true(ref_mse > mse);
    /* Without the outliers both searches give the exact grid: MSE 0, the same answer. */
    assert_int_equal(repq_quant_search_dual(x, BULK, 1, 4, scratch, &p, &mse), REPQ_OK);
    assert_true(p.scale == 0.125f);
    assert_int_equal(p.zero_point, 23);
    assert_true(mse == 0.0);
}

/* A constant channel c: every candidate is [c, c], which repq_quant_params_from_range
 * widens to [0, c] (s = c / 15, z = 0 for c > 0; z = 15 for c < 0), reproducing c to
 * float rounding. Nothing beats it, so the answer is the reference's, bit for bit. */
static void constant_channel_keeps_the_reference(void **state)
{
    (void)state;
    const float cs[3] = {2.5f, -0.75f, 1e-3f};
    static float x[200], scratch[200];
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 200; i++)
            x[i] = cs[k];
        repq_quant_params p, ref;
        double mse;
        assert_int_equal(repq_quant_search_dual(x, 200, 1, 4, scratch, &p, &mse), REPQ_OK);
        assert_int_equal(repq_quant_search(x, 200, 1, 4, scratch, &ref, NULL), REPQ_OK);
        assert_memory_equal(&p, &ref, sizeof p);
        assert_near(p.scale, fabs(cs[k]) / 15.0, 1e-6 * fabs(cs[k]));
        assert_int_equal(p.zero_point, cs[k] > 0 ? 0 : 15);
        float v = cs[k];
        assert_int_equal(repq_quant_fake(&p, &v, 1), REPQ_OK);
        assert_near(v, cs[k], 1e-6 * fabs(cs[k]));
        assert_true(mse <= 1e-12 * (double)cs[k] * (double)cs[k]);
    }
}

/* All zero: the fallback scale 2^-24 and z = 0 reproduce zeros exactly. */
static void all_zero_channel(void **state)
{
    (void)state;
    static float x[300], scratch[300];
    memset(x, 0, sizeof x);
    repq_quant_params p;
    double mse;
    assert_int_equal(repq_quant_search_dual(x, 300, 1, 4, scratch, &p, &mse), REPQ_OK);
    assert_true(p.scale == REPQ_QUANT_FALLBACK_SCALE);
    assert_int_equal(p.zero_point, 0);
    assert_true(mse == 0.0);
}

/* ---- An exhaustive search in double, apart from the library -------------------- */

/* The squared error of the quantizer of method.md section 1, in double. */
static double sse_grid(const double *x, size_t n, double s, double z, int bits)
{
    const double qmax = (double)((1 << bits) - 1);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double q = nearbyint(x[i] / s) + z;
        q = q < 0.0 ? 0.0 : q > qmax ? qmax : q;
        const double e = x[i] - s * (q - z);
        sum += e * e;
    }
    return sum;
}

/* For the clipping range [lo, hi], lo < hi. */
static double sse_f64(const double *x, size_t n, double lo, double hi, int bits)
{
    const double s = (hi - lo) / (double)((1 << bits) - 1);
    return sse_grid(x, n, s, nearbyint(-lo / s), bits);
}

/* For the library's (s, z). */
static double sse_of(const double *x, size_t n, const repq_quant_params *p)
{
    return sse_grid(x, n, p->scale, p->zero_point, p->bits);
}

static uint32_t lcg(uint32_t *r)
{
    *r = *r * 1664525u + 1013904223u;
    return *r >> 8;
}

static double uniform01(uint32_t *r)
{
    return ((double)lcg(r) + 0.5) / 16777216.0;
}

/* Heavy-tailed, skewed values: Laplace with a different scale on each side, a centre
 * offset, and now and then an outlier ten times out on one side. */
static float heavy_tailed(uint32_t *r, double centre, double left, double right)
{
    const double u = uniform01(r), e = -log(uniform01(r));
    double v = u < 0.5 ? centre - left * e : centre + right * e;
    if (lcg(r) % 211 == 0)
        v = centre + 10.0 * right * (1.0 + uniform01(r));
    return (float)v;
}

/* Small channels (n = 48), 4 bits: every pair (v_i, v_j), v_i < v_j, of the channel's
 * values as the clipping range, scored in double. A channel of at most
 * REPQ_DUAL_CLIP_EXHAUSTIVE_N values is searched over every pair of a lower-half and an
 * upper-half value (then refined), so it must reach the best pair on every channel, up
 * to the float rounding of its (s, z) (about 1e-7 of the error), and beat it where a
 * refinement between data values helps. */
static void close_to_exhaustive_search_of_small_channels(void **state)
{
    (void)state;
    enum { N = 48, CHANNELS = 60 };
    uint32_t r = 7;
    int at_least_as_good = 0;
    double worst_ratio = 0.0;
    int better = 0;
    for (int c = 0; c < CHANNELS; c++) {
        float x[N], scratch[N];
        double xd[N];
        const double centre = 2.0 * (uniform01(&r) - 0.5), left = 0.1 + uniform01(&r), right = 0.1 + 2 * uniform01(&r);
        for (int i = 0; i < N; i++)
            xd[i] = x[i] = heavy_tailed(&r, centre, left, right);
        double best = INFINITY;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                if (xd[i] < xd[j])
                    best = fmin(best, sse_f64(xd, N, xd[i], xd[j], 4));
        repq_quant_params p;
        assert_int_equal(repq_quant_search_dual(x, N, 1, 4, scratch, &p, NULL), REPQ_OK);
        const double got = sse_of(xd, N, &p);
        worst_ratio = fmax(worst_ratio, got / best);
        at_least_as_good += got <= best * (1.0 + 1e-9);
        better += got < best * (1.0 - 1e-6);
    }
    print_message("dual / exhaustive SSE: worst %.9f; at least as good on %d of %d channels, better on %d\n",
                  worst_ratio, at_least_as_good, CHANNELS, better);
    assert_true(worst_ratio <= 1.0 + 1e-5);
}

/* A [2080][48] activation matrix of heavy-tailed channels (the size of one post-LN
 * point of the bundled model on 32 images): per channel the dual MSE is never above
 * the reference search's, the columns search equals the per-column search, and the
 * error falls substantially where the data has tails to clip. */
static void never_worse_than_the_reference_on_heavy_tails(void **state)
{
    (void)state;
    enum { ROWS = 2080, COLS = 48 };
    float *m = malloc(sizeof(float) * ROWS * COLS), *scratch = malloc(sizeof(float) * ROWS);
    assert_non_null(m);
    assert_non_null(scratch);
    uint32_t r = 99;
    double centre[COLS], left[COLS], right[COLS];
    for (int c = 0; c < COLS; c++) {
        centre[c] = 4.0 * (uniform01(&r) - 0.5);
        left[c] = 0.05 + uniform01(&r);
        right[c] = 0.05 + 3.0 * uniform01(&r);
    }
    for (int i = 0; i < ROWS; i++)
        for (int c = 0; c < COLS; c++)
            m[i * COLS + c] = heavy_tailed(&r, centre[c], left[c], right[c]);
    repq_quant_params cols[COLS];
    for (int bits = 4; bits <= 6; bits += 2) {
        assert_int_equal(repq_quant_search_cols_dual(m, ROWS, COLS, bits, scratch, cols), REPQ_OK);
        int lower = 0;
        double ratio_sum = 0.0;
        for (int c = 0; c < COLS; c++) {
            repq_quant_params one, ref;
            double dual_mse, ref_mse;
            assert_int_equal(repq_quant_search_dual(m + c, ROWS, COLS, bits, scratch, &one, NULL), REPQ_OK);
            assert_memory_equal(&one, &cols[c], sizeof one);
            assert_int_equal(repq_quant_search(m + c, ROWS, COLS, bits, scratch, &ref, NULL), REPQ_OK);
            assert_int_equal(repq_quant_mse(&cols[c], m + c, ROWS, COLS, &dual_mse), REPQ_OK);
            assert_int_equal(repq_quant_mse(&ref, m + c, ROWS, COLS, &ref_mse), REPQ_OK);
            /* Equal sums added in another order may differ in the last bits. */
            assert_true(dual_mse <= ref_mse * (1.0 + 1e-12));
            lower += dual_mse < ref_mse;
            ratio_sum += dual_mse / ref_mse;
        }
        print_message("%d bits: dual MSE below the reference's on %d of %d channels, mean ratio %.3f\n", bits,
                      lower, COLS, ratio_sum / COLS);
        assert_true(lower >= COLS * 9 / 10);
        assert_true(ratio_sum / COLS <= (bits == 4 ? 0.9 : 0.99));
    }
    free(m);
    free(scratch);
}

static void bad_arguments_are_rejected(void **state)
{
    (void)state;
    float x[4] = {0.0f, 1.0f, 2.0f, 3.0f}, scratch[4];
    repq_quant_params p;
    const repq_status bad = REPQ_ERR_INVALID_ARGUMENT;
    assert_int_equal(repq_quant_search_dual(NULL, 4, 1, 4, scratch, &p, NULL), bad);
    assert_int_equal(repq_quant_search_dual(x, 4, 1, 4, NULL, &p, NULL), bad);
    assert_int_equal(repq_quant_search_dual(x, 4, 1, 4, scratch, NULL, NULL), bad);
    assert_int_equal(repq_quant_search_dual(x, 0, 1, 4, scratch, &p, NULL), bad);
    assert_int_equal(repq_quant_search_dual(x, 4, 0, 4, scratch, &p, NULL), bad);
    assert_int_equal(repq_quant_search_dual(x, 4, 1, REPQ_QUANT_MIN_BITS - 1, scratch, &p, NULL), bad);
    assert_int_equal(repq_quant_search_dual(x, 4, 1, REPQ_QUANT_MAX_BITS + 1, scratch, &p, NULL), bad);
    assert_int_equal(repq_quant_search_dual(x, SIZE_MAX / 2, 4, 4, scratch, &p, NULL), REPQ_ERR_OVERFLOW);
    x[2] = NAN;
    assert_int_equal(repq_quant_search_dual(x, 4, 1, 4, scratch, &p, NULL), REPQ_ERR_NUMERIC);
    x[2] = -INFINITY;
    assert_int_equal(repq_quant_search_dual(x, 4, 1, 4, scratch, &p, NULL), REPQ_ERR_NUMERIC);
    x[2] = 2.0f;
    repq_quant_params cols[2];
    assert_int_equal(repq_quant_search_cols_dual(NULL, 2, 2, 4, scratch, cols), bad);
    assert_int_equal(repq_quant_search_cols_dual(x, 0, 2, 4, scratch, cols), bad);
    assert_int_equal(repq_quant_search_cols_dual(x, 2, 0, 4, scratch, cols), bad);
    assert_int_equal(repq_quant_search_cols_dual(x, 2, 2, 4, scratch, NULL), bad);
    assert_int_equal(repq_quant_search_cols_dual(x, 2, 2, 4, NULL, cols), bad);
    assert_int_equal(repq_quant_search_cols_dual(x, SIZE_MAX / 2, 4, 4, scratch, cols), REPQ_ERR_OVERFLOW);
    /* One value, and a two-column matrix: tiny but valid. */
    assert_int_equal(repq_quant_search_dual(x + 3, 1, 1, 4, scratch, &p, NULL), REPQ_OK);
    assert_near(p.scale, 3.0 / 15.0, 1e-7);
    assert_int_equal(repq_quant_search_cols_dual(x, 2, 2, 4, scratch, cols), REPQ_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(outliers_on_one_side_are_clipped_there_only),
        cmocka_unit_test(all_negative_channel),
        cmocka_unit_test(constant_channel_keeps_the_reference),
        cmocka_unit_test(all_zero_channel),
        cmocka_unit_test(close_to_exhaustive_search_of_small_channels),
        cmocka_unit_test(never_worse_than_the_reference_on_heavy_tails),
        cmocka_unit_test(bad_arguments_are_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
