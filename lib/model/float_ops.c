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
