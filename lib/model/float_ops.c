#include "model/float_ops.h"

#include <math.h>

#include "core/vectorize.h"

#define LANES REPQ_LANES

/* The cloned loops are static: a cloned function with external linkage is exported
 * (as an ifunc) despite -fvisibility=hidden. */
VECTORIZED static void gelu_all(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = repq_gelu_one(x[i]);
}

void repq_float_gelu(float *x, size_t n)
{
    gelu_all(x, n);
}

/* Piece k's coefficient of u^i is [i][k]. */
const float repq_gelu_quartic_coef[5][REPQ_GELU_QUARTIC_PIECES] = {
    {-3.560836386e-14f, -1.510797130e-12f, -4.989773872e-11f, -1.282664641e-09f,
     -2.565749213e-08f, -3.992604150e-07f, -4.831145361e-06f, -4.542623356e-05f,
     -3.315648064e-04f, -1.875331393e-03f, -8.194348775e-03f, -2.750506438e-02f,
     -7.010352612e-02f, -1.320622116e-01f, -1.699705124e-01f, -1.003234163e-01f,
     1.496765763e-01f, 5.800294876e-01f, 1.117937803e+00f, 1.679896474e+00f,
     2.222494841e+00f, 2.741805553e+00f, 3.248124599e+00f, 3.749668360e+00f,
     4.249954700e+00f, 4.749995232e+00f, 5.249999523e+00f, 5.750000000e+00f,
     6.250000000e+00f, 6.750000000e+00f, 7.250000000e+00f, 7.750000000e+00f},
    {-2.665713787e-13f, -1.067639987e-11f, -3.305832830e-10f, -7.909385147e-09f,
     -1.460945214e-07f, -2.080634658e-06f, -2.280405170e-05f, -1.918128110e-04f,
     -1.232997049e-03f, -6.016506348e-03f, -2.202960290e-02f, -5.919846520e-02f,
     -1.109356880e-01f, -1.226539835e-01f, 8.018804947e-04f, 3.046434820e-01f,
     6.953565478e-01f, 9.991981387e-01f, 1.122653961e+00f, 1.110935688e+00f,
     1.059198499e+00f, 1.022029638e+00f, 1.006016493e+00f, 1.001232982e+00f,
     1.000191808e+00f, 1.000022769e+00f, 1.000002027e+00f, 1.000000119e+00f,
     1.000000000e+00f, 1.000000000e+00f, 1.000000000e+00f, 1.000000000e+00f},
    {-1.039836077e-12f, -3.861074654e-11f, -1.103993785e-09f, -2.426438606e-08f,
     -4.089744436e-07f, -5.269456778e-06f, -5.167111885e-05f, -3.831127251e-04f,
     -2.126406645e-03f, -8.687164634e-03f, -2.529323660e-02f, -4.860346764e-02f,
     -4.583234712e-02f, 3.996260464e-02f, 2.164454460e-01f, 3.745750785e-01f,
     3.745750785e-01f, 2.164454460e-01f, 3.996260464e-02f, -4.583234712e-02f,
     -4.860346764e-02f, -2.529323660e-02f, -8.687164634e-03f, -2.126406645e-03f,
     -3.831127251e-04f, -5.167111885e-05f, -5.269456778e-06f, -4.089744436e-07f,
     -2.426438606e-08f, -1.103993785e-09f, -3.861074654e-11f, -1.039836077e-12f},
    {-3.202003549e-12f, -1.072823080e-10f, -2.757333251e-09f, -5.419546767e-08f,
     -8.112668297e-07f, -9.196713108e-06f, -7.831176481e-05f, -4.946733825e-04f,
     -2.269967925e-03f, -7.268911693e-03f, -1.471607387e-02f, -1.208757609e-02f,
     2.420363575e-02f, 9.226570278e-02f, 1.276250780e-01f, 6.235844269e-02f,
     -6.235844269e-02f, -1.276250780e-01f, -9.226570278e-02f, -2.420363575e-02f,
     1.208757609e-02f, 1.471607387e-02f, 7.268911693e-03f, 2.269967925e-03f,
     4.946733825e-04f, 7.831176481e-05f, 9.196713108e-06f, 8.112668297e-07f,
     5.419546767e-08f, 2.757333251e-09f, 1.072823080e-10f, 3.202003549e-12f},
    {-5.480791602e-12f, -1.718557796e-10f, -4.103076545e-09f, -7.423824400e-08f,
     -1.011395057e-06f, -1.028017323e-05f, -7.688149344e-05f, -4.134075425e-04f,
     -1.529814675e-03f, -3.500190098e-03f, -3.014276270e-03f, 7.818349637e-03f,
     2.881139144e-02f, 3.369654343e-02f, -4.941171035e-03f, -5.683917180e-02f,
     -5.683917180e-02f, -4.941171035e-03f, 3.369654343e-02f, 2.881139144e-02f,
     7.818349637e-03f, -3.014276270e-03f, -3.500190098e-03f, -1.529814675e-03f,
     -4.134075425e-04f, -7.688149344e-05f, -1.028017323e-05f, -1.011395057e-06f,
     -7.423824400e-08f, -4.103076545e-09f, -1.718557796e-10f, -5.480791602e-12f},
};

VECTORIZED static void gelu_quartic_all(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = repq_gelu_quartic_one(x[i]);
}

void repq_float_gelu_quartic(float *x, size_t n)
{
    gelu_quartic_all(x, n);
}


/* Two passes in float: the mean, then the mean squared deviation, which cannot cancel
 * catastrophically the way E[x^2] - E[x]^2 can. Inlined into each clone below. */
static inline __attribute__((always_inline)) void row_stats(const float *xr, size_t d, float eps, float *out_mean,
                                                            float *out_inv)
{
    float acc[LANES] = {0};
    size_t c = 0;
    for (; c + LANES <= d; c += LANES)
        for (size_t l = 0; l < LANES; l++)
            acc[l] += xr[c + l];
    for (size_t l = 0; c < d; c++, l++)
        acc[l] += xr[c];
    float mean = repq_lanes_total(acc) / (float)d;
    float sq[LANES] = {0};
    for (c = 0; c + LANES <= d; c += LANES)
        for (size_t l = 0; l < LANES; l++) {
            float t = xr[c + l] - mean;
            sq[l] += t * t;
        }
    for (size_t l = 0; c < d; c++, l++) {
        float t = xr[c] - mean;
        sq[l] += t * t;
    }
    *out_mean = mean;
    *out_inv = 1.0f / sqrtf(repq_lanes_total(sq) / (float)d + eps);
}

VECTORIZED static void layer_norm_rows(const float *x, size_t rows, size_t d, const float *g, const float *b,
                                       float eps, float *y)
{
    for (size_t i = 0; i < rows; i++) {
        const float *xr = x + i * d;
        float *yr = y + i * d;
        float mean, inv;
        row_stats(xr, d, eps, &mean, &inv);
        for (size_t c = 0; c < d; c++)
            yr[c] = ((xr[c] - mean) * inv) * g[c] + b[c];
    }
}

/* The quantizer of kernels/quantize_f32.h (rint(y / s) + z, clamped; NaN to 0) written
 * with comparisons, which vectorize, instead of fmaxf/fminf, which do not. */
VECTORIZED static void layer_norm_codes_rows(const float *x, size_t rows, size_t d, const float *g, const float *b,
                                             float eps, float s, float zf, float qmax, uint8_t *codes)
{
    for (size_t i = 0; i < rows; i++) {
        const float *xr = x + i * d;
        uint8_t *cr = codes + i * d;
        float mean, inv;
        row_stats(xr, d, eps, &mean, &inv);
        for (size_t c = 0; c < d; c++) {
            const float y = ((xr[c] - mean) * inv) * g[c] + b[c];
            float t = rintf(y / s) + zf;
            t = t > 0.0f ? t : 0.0f;
            t = t < qmax ? t : qmax;
            cr[c] = (uint8_t)t;
        }
    }
}

void repq_float_layer_norm_codes(const float *x, size_t rows, size_t d, const float *g, const float *b, float eps,
                                 float scale, int32_t zp, int32_t bits, uint8_t *codes)
{
    layer_norm_codes_rows(x, rows, d, g, b, eps, scale, (float)zp, (float)((1 << bits) - 1), codes);
}

void repq_float_layer_norm(const float *x, size_t rows, size_t d, const float *g, const float *b, float eps,
                           float *y)
{
    layer_norm_rows(x, rows, d, g, b, eps, y);
}

void repq_float_mean_rows(const float *x, size_t rows, size_t d, float *out)
{
    for (size_t c = 0; c < d; c++) {
        double sum = 0.0;
        for (size_t r = 0; r < rows; r++)
            sum += x[r * d + c];
        out[c] = (float)(sum / (double)rows);
    }
}
