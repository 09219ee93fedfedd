/* GPTQ: column-by-column quantization with error feedback through the Cholesky factor
 * of the inverse Gram matrix (gptq.h). Double precision throughout: the factor of
 * H^-1 loses about cond(H) of the relative precision, which float would not afford. */
#include "calib/gptq.h"

#include <cblas.h>
#include <f77blas.h>
#include <math.h>
#include <string.h>

/* Columns quantized between two updates of the columns after them: the error of a
 * block reaches the rest in one matrix product instead of one rank-1 update per column
 * (same result up to the order of additions). */
#define GPTQ_BLOCK 128

void repq_gptq_gram_add(const float *x, size_t rows, size_t cols, double *scratch, size_t chunk, double *h)
{
    for (size_t r0 = 0; r0 < rows; r0 += chunk) {
        size_t n = rows - r0 < chunk ? rows - r0 : chunk;
        for (size_t i = 0; i < n * cols; i++)
            scratch[i] = x[r0 * cols + i];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (blasint)cols, (blasint)n, 1.0, scratch, (blasint)cols,
                    1.0, h, (blasint)cols);
    }
    /* dsyrk fills one triangle; the factorization below reads the other. */
    for (size_t i = 0; i < cols; i++)
        for (size_t j = 0; j < i; j++)
            h[i * cols + j] = h[j * cols + i];
}

/* In place: h (symmetric, row-major) -> U, the upper Cholesky factor of h^-1, in h's
 * upper triangle (row-major U[i][j] = h[i * n + j], i <= j). A row-major symmetric
 * matrix is its own column-major transpose, and LAPACK's lower factor of h^-1 in column
 * major, read row-major, is that upper U. Returns false if h is not positive definite. */
static bool inverse_cholesky_upper(double *h, size_t n)
{
    char lower = 'L';
    blasint bn = (blasint)n, info = 0;
    dpotrf_(&lower, &bn, h, &bn, &info);
    if (info != 0)
        return false;
    dpotri_(&lower, &bn, h, &bn, &info);
    if (info != 0)
        return false;
    dpotrf_(&lower, &bn, h, &bn, &info);
    return info == 0;
}

/* Damped copy of h into u: dead columns (h_ii == 0) get 1 so that they decouple and
 * round to nearest, every diagonal entry gets damping * mean(diagonal). */
static void damp(const double *h, size_t n, double damping, double *u)
{
    memcpy(u, h, n * n * sizeof *u);
    double mean = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (u[i * n + i] == 0.0)
            u[i * n + i] = 1.0;
        mean += u[i * n + i];
    }
    mean /= (double)n;
    for (size_t i = 0; i < n; i++)
        u[i * n + i] += damping * mean;
}

static bool all_finite(const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

/* Quantize columns [c0, c1) of the working weights wd, feeding each column's scaled
 * error into the later columns of the block and recording it in err [rows][ld]
 * (ld = the block width of the trailing update, even for a narrower last block). */
static repq_status quantize_block(double *wd, size_t rows, size_t cols, const double *u, size_t c0, size_t c1,
                                  const repq_quant_params *wq, uint8_t *codes, double *err, size_t ld)
{
    for (size_t i = c0; i < c1; i++) {
        double d = u[i * cols + i];
        for (size_t r = 0; r < rows; r++) {
            double *row = wd + r * cols;
            float v = (float)row[i];
            uint8_t code;
            repq_status st = repq_quant_quantize(&wq[r], &v, 1, &code);
            if (st)
                return st;
            codes[r * cols + i] = code;
            double deq = (double)wq[r].scale * (double)((int32_t)code - wq[r].zero_point);
            double e = (row[i] - deq) / d;
            err[r * ld + (i - c0)] = e;
            for (size_t j = i + 1; j < c1; j++)
                row[j] -= e * u[i * cols + j];
        }
    }
    return REPQ_OK;
}

size_t repq_gptq_work_doubles(size_t rows, size_t cols)
{
    size_t wn, hn, en, total;
    size_t block = cols < GPTQ_BLOCK ? cols : GPTQ_BLOCK;
    if (!repq_size_mul(rows, cols, &wn) || !repq_size_mul(cols, cols, &hn) || !repq_size_mul(rows, block, &en) ||
        !repq_size_add(wn, hn, &total) || !repq_size_add(total, en, &total) || total > SIZE_MAX / sizeof(double))
        return 0;
    return total;
}

repq_status repq_gptq_quantize(const float *w, size_t rows, size_t cols, const double *h, double damping,
                               const repq_quant_params *wq, double *work, uint8_t *codes)
{
    if (!w || !h || !wq || !work || !codes || rows == 0 || cols == 0 || !(damping >= 0.0) || !isfinite(damping))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (repq_gptq_work_doubles(rows, cols) == 0 || cols > (size_t)INT32_MAX || rows > (size_t)INT32_MAX)
        return REPQ_ERR_OVERFLOW;
    size_t wn = rows * cols, hn = cols * cols;
    if (!all_finite(h, hn))
        return REPQ_ERR_NUMERIC;
    for (size_t r = 0; r < rows; r++)
        if (repq_quant_params_check(&wq[r]) != REPQ_OK)
            return REPQ_ERR_INVALID_ARGUMENT;
    size_t block = cols < GPTQ_BLOCK ? cols : GPTQ_BLOCK;
    double *wd = work, *u = work + wn, *err = u + hn;
    for (size_t i = 0; i < wn; i++) {
        wd[i] = w[i];
        if (!isfinite(wd[i]))
            return REPQ_ERR_NUMERIC;
    }
    bool factored = false;
    for (int attempt = 0; attempt < 4 && !factored; attempt++, damping = damping > 0.0 ? damping * 10.0 : 1e-6) {
        damp(h, cols, damping, u);
        factored = inverse_cholesky_upper(u, cols) && all_finite(u, hn);
    }
    if (!factored)
        return REPQ_ERR_NUMERIC;
    for (size_t c0 = 0; c0 < cols; c0 += block) {
        size_t c1 = c0 + block < cols ? c0 + block : cols;
        repq_status st = quantize_block(wd, rows, cols, u, c0, c1, wq, codes, err, block);
        if (st)
            return st;
        if (c1 < cols)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)(cols - c1),
                        (blasint)(c1 - c0), -1.0, err, (blasint)block, u + c0 * cols + c1, (blasint)cols, 1.0,
                        wd + c1, (blasint)cols);
    }
    return REPQ_OK;
}
