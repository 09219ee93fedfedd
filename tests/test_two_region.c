/* Tests of the two-region post-GELU quantizer (lib/calib/two_region.h) against hand-
 * computed codes and an exhaustive search written here. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "calib/two_region.h"

/* s = 0.5 for x >= 0, s 2^-2 = 0.125 below zero, z = 2 negative levels, 3 bits: the
 * non-negative codes are 2, 6, 10, ..., 22 (levels 0, 0.5, ..., 2.5), the negative ones 0
 * and 1 (levels -0.25, -0.125). */
static const repq_tworeg_params hand = {0.5f, 2, 3, 2};

static void hand_computed_codes(void **state)
{
    (void)state;
    const float x[] = {0.0f, 0.3f, 0.25f, 0.75f, 1.25f, 2.5f, 10.0f, -0.1f, -0.0625f, -0.1875f, -0.0625f * 3,
                       -5.0f, -0.0f, 1e-30f, -1e-30f};
    /* 0.25 / 0.5 = 0.5 and 1.25 / 0.5 = 2.5 are ties (to even: 0 and 2); so are
     * -0.0625 / 0.125 = -0.5 (to -0) and -0.1875 / 0.125 = -1.5 (to -2). */
    const uint8_t want[] = {2, 6, 2, 10, 10, 22, 22, 1, 2, 0, 0, 0, 2, 2, 2};
    const float level[] = {0.0f, 0.5f, 0.0f, 1.0f, 1.0f, 2.5f, 2.5f, -0.125f, 0.0f, -0.25f, -0.25f,
                           -0.25f, 0.0f, 0.0f, 0.0f};
    enum { N = sizeof x / sizeof x[0] };
    uint8_t codes[N];
    float deq[N], fake[N];
    assert_int_equal(repq_tworeg_quantize(&hand, x, N, codes), REPQ_OK);
    assert_memory_equal(codes, want, N);
    assert_int_equal(repq_tworeg_dequantize(&hand, codes, N, deq), REPQ_OK);
    memcpy(fake, x, sizeof fake);
    assert_int_equal(repq_tworeg_fake(&hand, fake, N), REPQ_OK);
    for (int i = 0; i < N; i++) {
        assert_true(deq[i] == level[i]);
        assert_true(fake[i] == level[i]);
    }
    repq_quant_params grid;
    int32_t max_code;
    assert_int_equal(repq_tworeg_grid(&hand, &grid, &max_code), REPQ_OK);
    assert_true(grid.scale == 0.125f);
    assert_int_equal(grid.zero_point, 2);
    assert_int_equal(max_code, 22);
}

static void non_finite_input_is_reported(void **state)
{
    (void)state;
    float x[3] = {NAN, INFINITY, -INFINITY};
    uint8_t codes[3];
    assert_int_equal(repq_tworeg_quantize(&hand, x, 3, codes), REPQ_ERR_NUMERIC);
    assert_int_equal(codes[0], 0);  /* NaN: the lowest code, as the uniform quantizer */
    assert_int_equal(codes[1], 22); /* the ends of the range */
    assert_int_equal(codes[2], 0);
    assert_int_equal(repq_tworeg_fake(&hand, x, 3), REPQ_ERR_NUMERIC);
    double mse;
    float y[2] = {1.0f, NAN};
    assert_int_equal(repq_tworeg_mse(&hand, y, 2, &mse), REPQ_ERR_NUMERIC);
    repq_tworeg_params out;
    repq_quant_params u = {0.1f, 1, 4};
    float scratch[2];
    assert_int_equal(repq_tworeg_search(y, 2, &u, scratch, &out, &mse), REPQ_ERR_NUMERIC);
}

/* The level of x written out: q = x / s; q >= 0: s min(round(q), top); below zero:
 * (s 2^-m) max(round(q 2^m), -z); NaN falls on the negative side's end. */
static float level_by_formula(const repq_tworeg_params *p, float x)
{
    const float q = x / p->scale, top = (float)((1 << p->bits) - 1 - p->zero_point), p2m = (float)(1 << p->neg_shift);
    if (q >= 0.0f) {
        const float c = rintf(q);
        return p->scale * (c < top ? c : top);
    }
    const float c = rintf(q * p2m), z = (float)p->zero_point;
    return ldexpf(p->scale, -p->neg_shift) * (c > -z ? c : -z);
}

/* The quantize and fake loops are vectorized (whole vectors, then a tail): at every
 * length up to a few vectors the values must be the formula's, element by element, and
 * a NaN or infinity must be reported at any position. */
static void vector_lengths_and_non_finite_positions(void **state)
{
    (void)state;
    enum { MAX_N = 70 };
    const repq_tworeg_params p = {0.043f, 3, 5, 2};
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    float src[MAX_N], x[MAX_N];
    uint8_t codes[MAX_N];
    uint32_t seed = 777;
    for (int i = 0; i < MAX_N; i++) {
        seed = seed * 1664525u + 1013904223u;
        /* exact ties on both sides, past both ends, and a GELU-like spread */
        src[i] = i % 7 == 0   ? p.scale * ((float)(i / 7) - 0.5f)
                 : i % 7 == 3 ? -p.scale / 4.0f * ((float)(i / 7) + 0.5f)
                              : ((float)(seed >> 8) / 16777216.0f - 0.15f) * 1.6f;
    }
    const float fine = ldexpf(p.scale, -p.neg_shift);
    for (size_t n = 1; n <= MAX_N; n++) {
        memcpy(x, src, n * sizeof *x);
        assert_int_equal(repq_tworeg_fake(&p, x, n), REPQ_OK);
        assert_int_equal(repq_tworeg_quantize(&p, src, n, codes), REPQ_OK);
        for (size_t i = 0; i < n; i++) {
            const float want = level_by_formula(&p, src[i]);
            if (memcmp(&x[i], &want, sizeof want) != 0 && !(x[i] == 0.0f && want == 0.0f))
                fail_msg("n %zu, x[%zu] = %.9g: got %.9g, want %.9g", n, i, src[i], x[i], want);
            if (fine * (float)((int)codes[i] - p.zero_point) != want)
                fail_msg("n %zu, x[%zu] = %.9g: code %d is not level %.9g", n, i, src[i], codes[i], want);
        }
        for (size_t at = 0; at < n; at++)
            for (int k = 0; k < 3; k++) {
                memcpy(x, src, n * sizeof *x);
                x[at] = bad[k];
                assert_int_equal(repq_tworeg_quantize(&p, x, n, codes), REPQ_ERR_NUMERIC);
                assert_int_equal(repq_tworeg_fake(&p, x, n), REPQ_ERR_NUMERIC);
            }
    }
}

static void bad_parameters_are_refused(void **state)
{
    (void)state;
    const repq_tworeg_params bad[] = {
        {0.5f, 8, 3, 2},        /* z above 2^b - 1 */
        {0.5f, -1, 3, 2},       /* negative z */
        {0.5f, 2, 3, 8},        /* m above 7 */
        {0.5f, 2, 3, -1},
        {0.5f, 0, 8, 1},        /* largest code 510 */
        {0.5f, 2, 9, 0},        /* bits */
        {0.5f, 2, 1, 0},
        {NAN, 2, 3, 2},
        {0.0f, 2, 3, 2},
        {FLT_MIN, 2, 3, 1},     /* s 2^-m subnormal */
        {0x1p-125f, 2, 3, 3},   /* s normal, s 2^-m = 2^-128 subnormal */
        {FLT_MAX, 0, 4, 0},     /* the top level overflows */
        {FLT_MAX, 15, 4, 0},    /* the lowest level, -15 s, overflows */
    };
    uint8_t c[1] = {0};
    float x[1] = {0.0f};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(repq_tworeg_params_check(&bad[i]), REPQ_ERR_INVALID_ARGUMENT);
        assert_int_equal(repq_tworeg_quantize(&bad[i], x, 1, c), REPQ_ERR_INVALID_ARGUMENT);
        assert_int_equal(repq_tworeg_dequantize(&bad[i], c, 1, x), REPQ_ERR_INVALID_ARGUMENT);
        assert_int_equal(repq_tworeg_fake(&bad[i], x, 1), REPQ_ERR_INVALID_ARGUMENT);
    }
    /* Usable at the ends: a largest code of 255, z = 2^b - 1, m = 6 at 2 bits. */
    const repq_tworeg_params edge[] = {{0.5f, 0, 8, 0}, {0.5f, 15, 4, 4}, {0.5f, 1, 2, 6}};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
        assert_int_equal(repq_tworeg_params_check(&edge[i]), REPQ_OK);
    assert_int_equal(repq_tworeg_params_check(NULL), REPQ_ERR_INVALID_ARGUMENT);
    c[0] = 23; /* above the largest code 22 */
    assert_int_equal(repq_tworeg_dequantize(&hand, c, 1, x), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_tworeg_quantize(&hand, NULL, 1, c), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_tworeg_quantize(&hand, NULL, 0, NULL), REPQ_OK);
}

/* With m = 0 and z inside the range the quantizer is the uniform one with (s, z). */
static void zero_shift_is_the_uniform_quantizer(void **state)
{
    (void)state;
    enum { N = 4001 };
    static float x[N];
    static uint8_t a[N], b[N];
    for (int i = 0; i < N; i++)
        x[i] = -3.0f + 0.0015f * (float)i;
    for (int32_t z = 0; z <= 15; z++) {
        repq_tworeg_params t = {0.173f, z, 4, 0};
        repq_quant_params u = {0.173f, z, 4};
        assert_int_equal(repq_tworeg_quantize(&t, x, N, a), REPQ_OK);
        assert_int_equal(repq_quant_quantize(&u, x, N, b), REPQ_OK);
        assert_memory_equal(a, b, N);
    }
}

/* GELU of a standard normal sample, as a post-GELU activation looks. */
static void gelu_sample(float *x, size_t n, unsigned seed)
{
    uint64_t r = 0x9e3779b97f4a7c15u ^ seed;
    for (size_t i = 0; i < n; i++) {
        double u = 0.0;
        for (int k = 0; k < 4; k++) { /* sum of uniforms: roughly normal, sd 1.15 */
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            u += (double)(r >> 11) / 9007199254740992.0 - 0.5;
        }
        double v = 2.0 * u - 0.3;
        x[i] = (float)(0.5 * v * (1.0 + erf(v / sqrt(2.0))));
    }
}

/* The search returns the least-MSE candidate of the documented set, as an exhaustive
 * loop over the same set scores them with repq_tworeg_mse, and beats the uniform
 * quantizer on GELU-shaped data at 4 bits. */
static void search_finds_the_least_error_candidate(void **state)
{
    (void)state;
    enum { N = 20011 };
    static float x[N], scratch[N];
    gelu_sample(x, N, 1);
    for (int32_t bits = 3; bits <= 6; bits++) {
        repq_quant_params u;
        double umse, mse;
        assert_int_equal(repq_quant_search(x, N, 1, bits, scratch, &u, &umse), REPQ_OK);
        repq_tworeg_params got;
        assert_int_equal(repq_tworeg_search(x, N, &u, scratch, &got, &mse), REPQ_OK);
        const int32_t levels = (1 << bits) - 1;
        const float hi = u.scale * (float)(levels - u.zero_point);
        double best = INFINITY;
        repq_tworeg_params want = {0};
        for (int32_t z = 1; z <= levels / 2 && z <= 16; z++)
            for (int32_t m = 0; m <= REPQ_TWOREG_MAX_SHIFT; m++) {
                repq_tworeg_params c = {hi / (float)(levels - z), z, bits, m};
                double e;
                if (repq_tworeg_params_check(&c) != REPQ_OK)
                    continue;
                assert_int_equal(repq_tworeg_mse(&c, x, N, &e), REPQ_OK);
                if (e < best * (1.0 - 1e-12)) {
                    best = e;
                    want = c;
                }
            }
        assert_true(fabs(mse - best) <= 1e-9 * best);
        assert_int_equal(got.zero_point, want.zero_point);
        assert_int_equal(got.neg_shift, want.neg_shift);
        assert_true(got.scale == want.scale);
        assert_int_equal(got.bits, bits);
        if (bits == 4)
            assert_true(mse < 0.8 * umse);
    }
}

/* No negative values (evenly spread ones here): every candidate gives up non-negative
 * levels for nothing, so the uniform quantizer stays better; no non-negative range:
 * nothing to search. */
static void search_without_a_negative_tail_or_a_positive_range(void **state)
{
    (void)state;
    enum { N = 5000 };
    static float x[N], scratch[N];
    for (int i = 0; i < N; i++)
        x[i] = 3.0f * (float)i / N;
    repq_quant_params u;
    double umse, mse;
    repq_tworeg_params t = {0};
    assert_int_equal(repq_quant_search(x, N, 1, 4, scratch, &u, &umse), REPQ_OK);
    assert_int_equal(repq_tworeg_search(x, N, &u, scratch, &t, &mse), REPQ_OK);
    assert_true(mse > umse);
    for (int i = 0; i < N; i++)
        x[i] = -1.0f - (float)i / N;
    assert_int_equal(repq_quant_search(x, N, 1, 4, scratch, &u, &umse), REPQ_OK);
    memset(&t, 0x5a, sizeof t);
    repq_tworeg_params before = t;
    assert_int_equal(repq_tworeg_search(x, N, &u, scratch, &t, &mse), REPQ_OK);
    assert_true(isinf(mse));
    assert_memory_equal(&t, &before, sizeof t);
    assert_int_equal(repq_tworeg_search(NULL, N, &u, scratch, &t, &mse), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_tworeg_search(x, 0, &u, scratch, &t, &mse), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_tworeg_search(x, N, NULL, scratch, &t, &mse), REPQ_ERR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hand_computed_codes),
        cmocka_unit_test(non_finite_input_is_reported),
        cmocka_unit_test(vector_lengths_and_non_finite_positions),
        cmocka_unit_test(bad_parameters_are_refused),
        cmocka_unit_test(zero_shift_is_the_uniform_quantizer),
        cmocka_unit_test(search_finds_the_least_error_candidate),
        cmocka_unit_test(search_without_a_negative_tail_or_a_positive_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
