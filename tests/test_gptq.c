/* Tests of lib/calib/gptq: GPTQ weight reconstruction of one layer. The expected codes
 * of the small cases are worked out by hand in the comments; the random cases compare
 * the layer output error ||(W - W^) X^T||^2, recomputed here in double from X, against
 * round-to-nearest's. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "calib/gptq.h"

/* repq_gptq_quantize with its work space. */
static repq_status gptq(const float *w, size_t rows, size_t cols, const double *h, double damping,
                        const repq_quant_params *wq, uint8_t *codes)
{
    size_t n = repq_gptq_work_doubles(rows, cols);
    double *work = n ? malloc(n * sizeof *work) : NULL;
    repq_status st = repq_gptq_quantize(w, rows, cols, h, damping, wq, work, codes);
    free(work);
    return st;
}

/* Deterministic uniform numbers in [-1, 1). */
static float uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*s >> 11) / 4503599627370496.0 - 1.0);
}

/* One row, two columns, 4 bits, s = 1, z = 8; H = [[1, rho], [rho, 1]], no damping.
 * H^-1 = 1/(1 - rho^2) [[1, -rho], [-rho, 1]]; its upper Cholesky factor has
 * U00 = 1/sqrt(1 - rho^2), U01 = -rho/sqrt(1 - rho^2), so quantizing column 0 moves
 * column 1 by -(e / U00) U01 = rho e, e = w0 - w^0.
 *   rho = 0.5,  w = (0.4, 0.4):  w^0 = 0 (code 8), e = 0.4, w1 -> 0.6, code 9.
 *     Round-to-nearest gives (8, 8). Output error d^T H d, d = w - w^:
 *     nearest d = (0.4, 0.4): 0.16 + 0.16 + 2 (0.5)(0.16) = 0.48;
 *     GPTQ    d = (0.4, -0.6): 0.16 + 0.36 - 2 (0.5)(0.24) = 0.28.
 *   rho = -0.5, w = (0.4, -0.4): w1 -> -0.4 - 0.2 = -0.6, code 7.
 *   rho = 0.5,  w = (0.4, 0.2):  w1 -> 0.4, code 8 (the error moved, not enough to flip). */
static void two_columns_by_hand(void **state)
{
    (void)state;
    const struct { float w0, w1; double rho; int code1; } cases[] = {
        {0.4f, 0.4f, 0.5, 9}, {0.4f, -0.4f, -0.5, 7}, {0.4f, 0.2f, 0.5, 8}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float w[2] = {cases[i].w0, cases[i].w1};
        double h[4] = {1.0, cases[i].rho, cases[i].rho, 1.0};
        repq_quant_params p = {1.0f, 8, 4};
        uint8_t codes[2];
        assert_int_equal(gptq(w, 1, 2, h, 0.0, &p, codes), REPQ_OK);
        assert_int_equal(codes[0], 8);
        assert_int_equal(codes[1], cases[i].code1);
    }
}

/* With uncorrelated inputs no error has anywhere to go: the codes are
 * round-to-nearest's, for every row, damping or not. */
static void diagonal_gram_is_round_to_nearest(void **state)
{
    (void)state;
    enum { R = 13, C = 37 };
    uint64_t seed = 7;
    float w[R * C];
    repq_quant_params p[R];
    for (int i = 0; i < R * C; i++)
        w[i] = uniform(&seed);
    for (int r = 0; r < R; r++)
        p[r] = (repq_quant_params){0.11f + 0.01f * (float)r, 7 + r % 3, 4};
    uint8_t nearest[R * C], codes[R * C];
    for (int r = 0; r < R; r++)
        assert_int_equal(repq_quant_quantize(&p[r], w + r * C, C, nearest + r * C), REPQ_OK);
    double h[C * C];
    for (double damping = 0.0; damping <= 0.01; damping += 0.01) {
        memset(h, 0, sizeof h);
        for (int i = 0; i < C; i++)
            h[i * C + i] = 1.0 + (double)i; /* unequal, still diagonal */
        assert_int_equal(gptq(w, R, C, h, damping, p, codes), REPQ_OK);
        assert_memory_equal(codes, nearest, sizeof codes);
    }
}

/* ||(W - W^) X^T||^2 in double, with W^ dequantized from codes. */
static double output_error(const float *w, const uint8_t *codes, const repq_quant_params *p, const float *x,
                           int rows, int cols, int tokens)
{
    double total = 0.0;
    for (int t = 0; t < tokens; t++)
        for (int r = 0; r < rows; r++) {
            double acc = 0.0;
            for (int c = 0; c < cols; c++) {
                double d = (double)w[r * cols + c] -
                           (double)p[r].scale * (double)((int32_t)codes[r * cols + c] - p[r].zero_point);
                acc += d * (double)x[t * cols + c];
            }
            total += acc * acc;
        }
    return total;
}

/* GPTQ written the plain way, as an independent reference: damping as gptq.h states,
 * H^-1 by Gauss-Jordan elimination, its upper Cholesky factor by the textbook
 * recurrence, and every column's error applied to all later columns at once (no
 * blocks). */
static void reference_gptq(const float *w, int rows, int cols, const double *gram, double damping,
                           const repq_quant_params *p, uint8_t *codes)
{
    int n = cols;
    double *a = malloc(sizeof(double) * (size_t)(n * 2 * n));
    double mean = 0.0;
    for (int i = 0; i < n; i++)
        mean += gram[i * n + i] == 0.0 ? 1.0 : gram[i * n + i];
    mean /= n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 2 * n; j++) {
            double v = j < n ? gram[i * n + j] : (j - n == i ? 1.0 : 0.0);
            if (j == i)
                v = (v == 0.0 ? 1.0 : v) + damping * mean;
            a[i * 2 * n + j] = v;
        }
    for (int c = 0; c < n; c++) { /* positive definite: no pivoting needed */
        double d = a[c * 2 * n + c];
        for (int j = 0; j < 2 * n; j++)
            a[c * 2 * n + j] /= d;
        for (int r = 0; r < n; r++)
            if (r != c) {
                double f = a[r * 2 * n + c];
                for (int j = 0; j < 2 * n; j++)
                    a[r * 2 * n + j] -= f * a[c * 2 * n + j];
            }
    }
    double *u = calloc((size_t)(n * n), sizeof *u);
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
            double v = a[i * 2 * n + n + j];
            for (int k = 0; k < i; k++)
                v -= u[k * n + i] * u[k * n + j];
            u[i * n + j] = j == i ? sqrt(v) : v / u[i * n + i];
        }
    double *wd = malloc(sizeof(double) * (size_t)(rows * cols));
    for (int i = 0; i < rows * cols; i++)
        wd[i] = w[i];
    for (int i = 0; i < cols; i++)
        for (int r = 0; r < rows; r++) {
            float v = (float)wd[r * cols + i];
            repq_quant_quantize(&p[r], &v, 1, &codes[r * cols + i]);
            double e = (wd[r * cols + i] - (double)p[r].scale * ((int32_t)codes[r * cols + i] - p[r].zero_point)) /
                       u[i * n + i];
            for (int j = i + 1; j < cols; j++)
                wd[r * cols + j] -= e * u[i * n + j];
        }
    free(a), free(u), free(wd);
}

/* Correlated inputs (each a mix of a few shared factors plus noise), several widths
 * including more than one 128-column block and odd tails: GPTQ's output error is
 * clearly below round-to-nearest's on the very inputs it saw. */
static void correlated_inputs_lower_the_output_error(void **state)
{
    (void)state;
    const int shapes[][3] = {{5, 9, 40}, {17, 64, 300}, {11, 130, 500}, {9, 259, 700}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int rows = shapes[s][0], cols = shapes[s][1], tokens = shapes[s][2];
        uint64_t seed = 1000 + s;
        float *w = malloc(sizeof(float) * (size_t)(rows * cols));
        float *x = malloc(sizeof(float) * (size_t)(tokens * cols));
        float f[4];
        for (int t = 0; t < tokens; t++) {
            for (int k = 0; k < 4; k++)
                f[k] = uniform(&seed);
            for (int c = 0; c < cols; c++)
                x[t * cols + c] = f[c % 4] + 0.3f * f[(c + 1) % 4] + 0.2f * uniform(&seed);
        }
        repq_quant_params *p = malloc(sizeof *p * (size_t)rows);
        for (int i = 0; i < rows * cols; i++)
            w[i] = uniform(&seed);
        for (int r = 0; r < rows; r++)
            assert_int_equal(repq_quant_params_from_range(-1.0f, 1.0f, 4, &p[r]), REPQ_OK);
        uint8_t *nearest = malloc((size_t)(rows * cols)), *codes = malloc((size_t)(rows * cols));
        for (int r = 0; r < rows; r++)
            assert_int_equal(repq_quant_quantize(&p[r], w + r * cols, (size_t)cols, nearest + r * cols), REPQ_OK);
        double *h = calloc((size_t)(cols * cols), sizeof *h);
        double *scratch = malloc(sizeof(double) * 7 * (size_t)cols);
        repq_gptq_gram_add(x, (size_t)tokens, (size_t)cols, scratch, 7, h);
        assert_int_equal(gptq(w, (size_t)rows, (size_t)cols, h, REPQ_GPTQ_DAMPING, p, codes),
                         REPQ_OK);
        /* Blocked and plain GPTQ add the same terms in different orders: a code may
         * differ only where a weight lands within rounding noise of a tie. */
        uint8_t *plain = malloc((size_t)(rows * cols));
        double *gram = calloc((size_t)(cols * cols), sizeof *gram);
        repq_gptq_gram_add(x, (size_t)tokens, (size_t)cols, scratch, 7, gram);
        reference_gptq(w, rows, cols, gram, REPQ_GPTQ_DAMPING, p, plain);
        int differ = 0;
        for (int i = 0; i < rows * cols; i++)
            differ += plain[i] != codes[i];
        if (differ > rows * cols / 1000)
            fail_msg("%dx%d: %d codes differ from the plain GPTQ", rows, cols, differ);
        free(plain), free(gram);
        double e_nearest = output_error(w, nearest, p, x, rows, cols, tokens);
        double e_gptq = output_error(w, codes, p, x, rows, cols, tokens);
        if (!(e_gptq < 0.7 * e_nearest))
            fail_msg("%dx%d, %d tokens: GPTQ error %.6g, nearest %.6g", rows, cols, tokens, e_gptq, e_nearest);
        free(w), free(x), free(p), free(nearest), free(codes), free(h), free(scratch);
    }
}

/* The Gram matrix is the exact x^T x whatever the chunking (products of floats are
 * exact in double; these sums have few terms). */
static void gram_is_exact_and_symmetric(void **state)
{
    (void)state;
    enum { T = 11, C = 5 };
    float x[T * C];
    uint64_t seed = 3;
    for (int i = 0; i < T * C; i++)
        x[i] = (float)(int)(8.0f * uniform(&seed)) * 0.25f; /* small dyadic values: exact sums */
    double h[C * C] = {0}, scratch[3 * C];
    repq_gptq_gram_add(x, T, C, scratch, 3, h);
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            double want = 0.0;
            for (int t = 0; t < T; t++)
                want += (double)x[t * C + i] * (double)x[t * C + j];
            assert_true(h[i * C + j] == want);
        }
}

/* A column whose input was always zero has an all-zero row and column in H: it is
 * rounded to nearest and does not disturb the others. */
static void dead_input_is_rounded_to_nearest(void **state)
{
    (void)state;
    float w[3] = {0.4f, 0.3f, 0.4f};
    double h[9] = {1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.5, 0.0, 1.0};
    repq_quant_params p = {1.0f, 8, 4};
    uint8_t codes[3];
    assert_int_equal(gptq(w, 1, 3, h, 0.0, &p, codes), REPQ_OK);
    /* column 1 dead: code 8 (0.3 -> 0); columns 0 and 2 as in two_columns_by_hand */
    assert_int_equal(codes[0], 8);
    assert_int_equal(codes[1], 8);
    assert_int_equal(codes[2], 9);
}

static void bad_input_is_refused(void **state)
{
    (void)state;
    float w[2] = {0.4f, 0.4f};
    double h[4] = {1.0, 0.5, 0.5, 1.0};
    repq_quant_params p = {1.0f, 8, 4};
    uint8_t codes[2];
    double work[8];
    assert_int_equal(repq_gptq_quantize(w, 1, 2, h, 0.0, &p, NULL, codes), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_gptq_quantize(w, 1, 2, h, 0.0, &p, work, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_gptq_work_doubles(SIZE_MAX / 2, 3), 0);
    assert_int_equal(repq_gptq_work_doubles(1, SIZE_MAX / 4), 0);
    assert_int_equal(repq_gptq_work_doubles(1, 2), 1 * 2 + 2 * 2 + 1 * 2);
    assert_int_equal(gptq(NULL, 1, 2, h, 0.0, &p, codes), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(gptq(w, 0, 2, h, 0.0, &p, codes), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(gptq(w, 1, 2, h, -1.0, &p, codes), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(gptq(w, 1, 2, h, NAN, &p, codes), REPQ_ERR_INVALID_ARGUMENT);
    repq_quant_params bad = {0.0f, 8, 4};
    assert_int_equal(gptq(w, 1, 2, h, 0.0, &bad, codes), REPQ_ERR_INVALID_ARGUMENT);
    w[1] = NAN;
    assert_int_equal(gptq(w, 1, 2, h, 0.0, &p, codes), REPQ_ERR_NUMERIC);
    w[1] = 0.4f;
    h[1] = INFINITY;
    assert_int_equal(gptq(w, 1, 2, h, 0.0, &p, codes), REPQ_ERR_NUMERIC);
    h[1] = 0.5;
    /* The Gram matrix is the caller's: it is read, not changed. */
    assert_int_equal(gptq(w, 1, 2, h, 0.01, &p, codes), REPQ_OK);
    assert_true(h[0] == 1.0 && h[1] == 0.5 && h[2] == 0.5 && h[3] == 1.0);
    /* Indefinite, beyond what any damping retry fixes. */
    double indefinite[4] = {1.0, 5.0, 5.0, 1.0};
    assert_int_equal(gptq(w, 1, 2, indefinite, 0.0, &p, codes), REPQ_ERR_NUMERIC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_columns_by_hand),
        cmocka_unit_test(diagonal_gram_is_round_to_nearest),
        cmocka_unit_test(correlated_inputs_lower_the_output_error),
        cmocka_unit_test(gram_is_exact_and_symmetric),
        cmocka_unit_test(dead_input_is_rounded_to_nearest),
        cmocka_unit_test(bad_input_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
