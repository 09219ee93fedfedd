/* Tests of lib/calib/float_target: the float-model target of GPTQ. The behaviour that
 * matters is out of sample: on fresh rows from the same distribution, the returned
 * weights must lower the float-target error ||Xf W^T - X~ W*^T||^2 when X~ predicts
 * the error, and must not raise it when the difference is noise unrelated to X~.
 * Errors are recomputed here in double from the rows. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "calib/float_target.h"

/* The library's default allocator (malloc), as a context-less call gets. */
static repq_allocator plain_allocator;

/* Deterministic uniform numbers in [-1, 1). */
static float uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*s >> 11) / 4503599627370496.0 - 1.0);
}

/* Rows of a layer's inputs: xq correlated across channels (as activations are), and
 * xf = xq P^T + noise, P = I + map_scale * (a fixed random matrix). */
typedef struct sample {
    size_t rows, in;
    float *xq, *xf;
} sample;

static sample draw(uint64_t *seed, size_t rows, size_t in, const float *p, float map_scale, float noise)
{
    sample s = {rows, in, malloc(rows * in * sizeof(float)), malloc(rows * in * sizeof(float))};
    for (size_t r = 0; r < rows; r++) {
        float common = uniform(seed);
        for (size_t i = 0; i < in; i++)
            s.xq[r * in + i] = 0.7f * uniform(seed) + 0.5f * common;
        for (size_t i = 0; i < in; i++) {
            double v = s.xq[r * in + i];
            for (size_t j = 0; j < in; j++)
                v += map_scale * p[i * in + j] * s.xq[r * in + j];
            s.xf[r * in + i] = (float)v + noise * uniform(seed);
        }
    }
    return s;
}

static void sample_free(sample *s)
{
    free(s->xq);
    free(s->xf);
}

/* ||Xf W^T - X~ V^T||^2 over the sample's rows. */
static double float_target_error(const sample *s, const float *w, const float *v, size_t out)
{
    double e = 0.0;
    for (size_t r = 0; r < s->rows; r++)
        for (size_t o = 0; o < out; o++) {
            double want = 0.0, got = 0.0;
            for (size_t i = 0; i < s->in; i++) {
                want += (double)w[o * s->in + i] * s->xf[r * s->in + i];
                got += (double)v[o * s->in + i] * s->xq[r * s->in + i];
            }
            e += (want - got) * (want - got);
        }
    return e;
}

typedef struct layer {
    size_t out, in;
    float *w, *p;
} layer;

static layer layer_new(uint64_t *seed, size_t out, size_t in)
{
    layer l = {out, in, malloc(out * in * sizeof(float)), malloc(in * in * sizeof(float))};
    for (size_t i = 0; i < out * in; i++)
        l.w[i] = uniform(seed);
    for (size_t i = 0; i < in * in; i++)
        l.p[i] = uniform(seed) / sqrtf((float)in);
    return l;
}

static void layer_free(layer *l)
{
    free(l->w);
    free(l->p);
}

/* Fit on images x rows_per_image rows, then measure on as many fresh rows. */
static void fit_and_measure(size_t out, size_t in, size_t images, size_t per, float map_scale, float noise,
                            uint64_t seed, double *fresh_ratio, double *lambda, float *max_change)
{
    layer l = layer_new(&seed, out, in);
    sample fit = draw(&seed, images * per, in, l.p, map_scale, noise);
    sample fresh = draw(&seed, images * per, in, l.p, map_scale, noise);
    float *target = malloc(out * in * sizeof(float));
    assert_int_equal(repq_float_target_weights(&plain_allocator, l.w, out, in, fit.xq, fit.xf, images, per, target,
                                               lambda),
                     REPQ_OK);
    *fresh_ratio = float_target_error(&fresh, l.w, target, out) / float_target_error(&fresh, l.w, l.w, out);
    *max_change = 0.0f;
    for (size_t i = 0; i < out * in; i++)
        *max_change = fmaxf(*max_change, fabsf(target[i] - l.w[i]));
    free(target);
    sample_free(&fit);
    sample_free(&fresh);
    layer_free(&l);
}

/* The call succeeds, returns w bit for bit and reports no lambda. */
static void expect_weights_kept(const float *w, size_t out, size_t in, const float *xq, const float *xf,
                                size_t images, size_t per)
{
    float *target = malloc(out * in * sizeof *target);
    double lambda = -1.0;
    assert_int_equal(repq_float_target_weights(&plain_allocator, w, out, in, xq, xf, images, per, target, &lambda),
                     REPQ_OK);
    assert_memory_equal(target, w, out * in * sizeof *target);
    assert_true(lambda == 0.0);
    free(target);
}

/* Xf = X~: nothing to correct, the weights come back bit for bit. */
static void equal_inputs_keep_the_weights(void **state)
{
    (void)state;
    uint64_t seed = 7;
    layer l = layer_new(&seed, 6, 10);
    sample s = draw(&seed, 8 * 13, 10, l.p, 0.0f, 0.0f);
    memcpy(s.xf, s.xq, s.rows * s.in * sizeof(float));
    expect_weights_kept(l.w, 6, 10, s.xq, s.xf, 8, 13);
    sample_free(&s);
    layer_free(&l);
}

/* Xf = X~ P^T exactly: the weights that reproduce the float output are W P, and the
 * cross-validation picks the weakest regularization (the fit has no noise to follow). */
static void an_exact_linear_error_is_undone(void **state)
{
    (void)state;
    const size_t out = 5, in = 12, images = 20, per = 30;
    uint64_t seed = 11;
    layer l = layer_new(&seed, out, in);
    sample s = draw(&seed, images * per, in, l.p, 0.3f, 0.0f);
    float *target = malloc(out * in * sizeof(float));
    double lambda;
    assert_int_equal(
        repq_float_target_weights(&plain_allocator, l.w, out, in, s.xq, s.xf, images, per, target, &lambda), REPQ_OK);
    assert_true(lambda == repq_float_target_grid[0]);
    /* W P = W (I + 0.3 Pr), worked out in double. */
    double worst = 0.0, scale = 0.0;
    for (size_t o = 0; o < out; o++)
        for (size_t j = 0; j < in; j++) {
            double want = l.w[o * in + j];
            for (size_t i = 0; i < in; i++)
                want += 0.3 * (double)l.w[o * in + i] * (double)l.p[i * in + j];
            worst = fmax(worst, fabs(target[o * in + j] - want));
            scale = fmax(scale, fabs(want - l.w[o * in + j]));
        }
    /* The ridge at 0.003 of the mean diagonal shrinks the correction by about that. */
    if (!(worst < 0.02 * scale))
        fail_msg("largest deviation from W P %.3g against a correction of %.3g", worst, scale);
    free(target);
    sample_free(&s);
    layer_free(&l);
}

/* A predictable error under noise: the correction lowers the error on fresh rows. */
static void a_noisy_linear_error_is_reduced_out_of_sample(void **state)
{
    (void)state;
    const size_t shapes[][4] = {{7, 16, 12, 40}, {20, 48, 32, 65}, {3, 9, 5, 17}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        double ratio, lambda;
        float change;
        fit_and_measure(shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3], 0.2f, 0.1f, 100 + k, &ratio, &lambda,
                        &change);
        if (!(ratio < 0.6))
            fail_msg("shape %zu: fresh-row error %.3f of the uncorrected weights' (lambda %g)", k, ratio, lambda);
    }
}

/* The difference is noise unrelated to X~: whatever the fit finds on the calibration
 * rows is chance, and the cross-validation keeps it from raising the error on fresh
 * rows (the unregularized least-squares fit raises it by about in / rows). */
static void unrelated_noise_is_not_fitted(void **state)
{
    (void)state;
    for (uint64_t seed = 200; seed < 206; seed++) {
        double ratio, lambda;
        float change;
        fit_and_measure(8, 64, 10, 20, 0.0f, 0.3f, seed, &ratio, &lambda, &change);
        if (!(ratio < 1.005))
            fail_msg("seed %d: fresh-row error %.4f of the uncorrected weights' (lambda %g)", (int)seed, ratio, lambda);
    }
}

/* Cross-validation needs two images; with one, the weights are kept. */
static void one_image_keeps_the_weights(void **state)
{
    (void)state;
    uint64_t seed = 3;
    layer l = layer_new(&seed, 4, 6);
    sample s = draw(&seed, 50, 6, l.p, 0.5f, 0.0f);
    expect_weights_kept(l.w, 4, 6, s.xq, s.xf, 1, 50);
    sample_free(&s);
    layer_free(&l);
}

/* Inputs always zero: no Gram matrix to regularize against, the weights are kept. */
static void zero_inputs_keep_the_weights(void **state)
{
    (void)state;
    const float w[6] = {1, -2, 3, 0.5f, 0.25f, -1}, xq[4 * 3] = {0},
                xf[4 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    expect_weights_kept(w, 2, 3, xq, xf, 2, 2);
}

static void bad_input_is_refused(void **state)
{
    (void)state;
    float w[4] = {1, 2, 3, 4}, x[8] = {1, 0, 0, 1, 1, 1, 0, 2}, target[4];
    double lambda;
    const repq_allocator *al = &plain_allocator;
    assert_int_equal(repq_float_target_weights(NULL, w, 2, 2, x, x, 2, 2, target, &lambda), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_float_target_weights(al, NULL, 2, 2, x, x, 2, 2, target, &lambda), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_float_target_weights(al, w, 2, 2, NULL, x, 2, 2, target, &lambda), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_float_target_weights(al, w, 2, 2, x, NULL, 2, 2, target, &lambda), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_float_target_weights(al, w, 2, 2, x, x, 2, 2, NULL, &lambda), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_float_target_weights(al, w, 2, 2, x, x, 2, 2, target, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_float_target_weights(al, w, 0, 2, x, x, 2, 2, target, &lambda), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_float_target_weights(al, w, 2, 0, x, x, 2, 2, target, &lambda), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_float_target_weights(al, w, 2, 2, x, x, 0, 2, target, &lambda), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_float_target_weights(al, w, 2, 2, x, x, 2, 0, target, &lambda), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_float_target_weights(al, w, SIZE_MAX / 2, 4, x, x, 2, 2, target, &lambda), REPQ_ERR_OVERFLOW);
    float bad[8];
    memcpy(bad, x, sizeof bad);
    bad[5] = NAN;
    assert_int_equal(repq_float_target_weights(al, w, 2, 2, bad, x, 2, 2, target, &lambda), REPQ_ERR_NUMERIC);
    assert_int_equal(repq_float_target_weights(al, w, 2, 2, x, bad, 2, 2, target, &lambda), REPQ_ERR_NUMERIC);
    float wbad[4] = {1, INFINITY, 3, 4};
    assert_int_equal(repq_float_target_weights(al, wbad, 2, 2, x, x, 2, 2, target, &lambda), REPQ_ERR_NUMERIC);
}

int main(void)
{
    plain_allocator = repq_allocator_of(NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(equal_inputs_keep_the_weights),
        cmocka_unit_test(an_exact_linear_error_is_undone),
        cmocka_unit_test(a_noisy_linear_error_is_reduced_out_of_sample),
        cmocka_unit_test(unrelated_noise_is_not_fitted),
        cmocka_unit_test(one_image_keeps_the_weights),
        cmocka_unit_test(zero_inputs_keep_the_weights),
        cmocka_unit_test(bad_input_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
