#include "f64_ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void f64_linear(const double *x, size_t m, size_t k, const double *w, const double *b, size_t n, double *y,
                bool accumulate)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++)
            y[i * n + j] = (accumulate ? y[i * n + j] : 0.0) + (b ? b[j] : 0.0);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)n, (blasint)k, 1.0, x, (blasint)k, w,
                (blasint)k, 1.0, y, (blasint)n);
}

void f64_layer_norm(const double *x, size_t rows, size_t d, const double *g, const double *b, double eps,
                    double *y)
{
    for (size_t r = 0; r < rows; r++) {
        const double *xr = x + r * d;
        double mean = 0.0, var = 0.0;
        for (size_t j = 0; j < d; j++)
            mean += xr[j];
        mean /= (double)d;
        for (size_t j = 0; j < d; j++)
            var += (xr[j] - mean) * (xr[j] - mean);
        const double inv = 1.0 / sqrt(var / (double)d + eps);
        for (size_t j = 0; j < d; j++)
            y[r * d + j] = (xr[j] - mean) * inv * g[j] + b[j];
    }
}
