/* The float64 building blocks of the tests' reference forwards (vit_f64, swin_f64):
 * textbook formulas in double, products with dgemm. */
#ifndef REPQ_TESTS_F64_OPS_H
#define REPQ_TESTS_F64_OPS_H

#include <stdbool.h>
#include <stddef.h>

/* y[m, n] (+)= x[m, k] w[n, k]^T + b[n]; b may be NULL (no bias). */
void f64_linear(const double *x, size_t m, size_t k, const double *w, const double *b, size_t n, double *y,
                bool accumulate);

/* y[r] = (x[r] - mean) / sqrt(var + eps) * g + b for each of `rows` rows of d values
 * (biased variance); y may be x. */
void f64_layer_norm(const double *x, size_t rows, size_t d, const double *g, const double *b, double eps,
                    double *y);

#endif
