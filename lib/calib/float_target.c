/* The float-model target of GPTQ (float_target.h): a ridge regression of the layer's
 * output error on its quantized inputs, its strength cross-validated over images. */
#include "calib/float_target.h"

#include <cblas.h>
#include <f77blas.h>
#include <math.h>
#include <string.h>

/* From barely regularized to a correction that is nearly a plain gradient step; three
 * points a decade. */
const double repq_float_target_grid[REPQ_FLOAT_TARGET_GRID_SIZE] = {0.003, 0.01, 0.03, 0.1, 0.3, 1.0,
                                                                    3.0,   10.0, 30.0, 100.0, 300.0, 1000.0};

/* What one half of the images (every other image) says about the layer. */
typedef struct half {
    double *h; /* [in][in]   X~^T X~ */
    double *a; /* [out][in]  W (Xf - X~)^T X~ */
} half;

typedef struct fit {
    size_t out, in;
    double *w;       /* [out][in] the weights in double */
    double *d;       /* [in][in] (Xf - X~)^T X~ of one half, then of all */
    double *z;       /* [out][in] a correction */
    double *tmp;     /* [max(in, out)][in] */
    double *xq, *dx; /* [rows_per_image][in] one image widened */
    half part[2];
} fit;

/* h += X~^T X~ and d += (Xf - X~)^T X~ over the images of one parity. */
static void add_images(fit *f, const float *xq, const float *xf, size_t images, size_t per, size_t parity,
                       double *h, double *d)
{
    size_t in = f->in;
    for (size_t img = parity; img < images; img += 2) {
        const float *q = xq + img * per * in, *x = xf + img * per * in;
        for (size_t i = 0; i < per * in; i++) {
            f->xq[i] = q[i];
            f->dx[i] = (double)x[i] - (double)q[i];
        }
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)in, (blasint)in, (blasint)per, 1.0, f->xq,
                    (blasint)in, f->xq, (blasint)in, 1.0, h, (blasint)in);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)in, (blasint)in, (blasint)per, 1.0, f->dx,
                    (blasint)in, f->xq, (blasint)in, 1.0, d, (blasint)in);
    }
}

/* z <- a (h + lambda I)^-1 (h symmetric, so z^T solves (h + lambda I) z^T = a^T: the
 * row-major a is a^T in column major). False if h + lambda I is not positive definite. */
static bool ridge_solve(fit *f, const double *h, const double *a, double lambda, double *z)
{
    size_t in = f->in;
    memcpy(f->tmp, h, in * in * sizeof *f->tmp);
    for (size_t i = 0; i < in; i++)
        f->tmp[i * in + i] += lambda;
    memcpy(z, a, f->out * in * sizeof *z);
    char lower = 'L';
    blasint n = (blasint)in, rhs = (blasint)f->out, info = 0;
    dpotrf_(&lower, &n, f->tmp, &n, &info);
    if (info == 0)
        dpotrs_(&lower, &n, &rhs, f->tmp, &n, z, &n, &info);
    return info == 0;
}

/* Change of the squared output error on a half when the weights move by z:
 * ||R - X~ z^T||^2 - ||R||^2 = -2 <z, a> + <z h, z>, with R = (Xf - X~) W^T. */
static double error_change(fit *f, const double *z, const half *p)
{
    size_t n = f->out * f->in;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)f->out, (blasint)f->in, (blasint)f->in, 1.0, z,
                (blasint)f->in, p->h, (blasint)f->in, 0.0, f->tmp, (blasint)f->in);
    double e = 0.0;
    for (size_t i = 0; i < n; i++)
        e += z[i] * (f->tmp[i] - 2.0 * p->a[i]);
    return e;
}

static double mean_diagonal(const double *h, size_t in)
{
    double s = 0.0;
    for (size_t i = 0; i < in; i++)
        s += h[i * in + i];
    return s / (double)in;
}

/* The grid's multiple with the least summed held-out error change, 0 if none is
 * negative. */
static double choose_lambda(fit *f)
{
    double scale = 0.5 * (mean_diagonal(f->part[0].h, f->in) + mean_diagonal(f->part[1].h, f->in));
    if (!(scale > 0.0) || !isfinite(scale))
        return 0.0;
    double best = 0.0, best_change = 0.0;
    for (int g = 0; g < REPQ_FLOAT_TARGET_GRID_SIZE; g++) {
        double change = 0.0;
        bool ok = true;
        for (int k = 0; k < 2 && ok; k++) {
            ok = ridge_solve(f, f->part[k].h, f->part[k].a, repq_float_target_grid[g] * scale, f->z);
            if (ok)
                change += error_change(f, f->z, &f->part[1 - k]);
        }
        if (ok && isfinite(change) && change < best_change) {
            best_change = change;
            best = repq_float_target_grid[g];
        }
    }
    return best;
}

static bool all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

repq_status repq_float_target_weights(const repq_allocator *al, const float *w, size_t out, size_t in,
                                      const float *xq, const float *xf, size_t images, size_t rows_per_image,
                                      float *target, double *out_lambda)
{
    if (out_lambda)
        *out_lambda = 0.0;
    if (!al || !w || !xq || !xf || !target || !out_lambda || out == 0 || in == 0 || images == 0 ||
        rows_per_image == 0)
        return REPQ_ERR_INVALID_ARGUMENT;
    size_t wn, hn, rows, xn, big = out > in ? out : in, tn;
    if (!repq_size_mul(out, in, &wn) || !repq_size_mul(in, in, &hn) || !repq_size_mul(images, rows_per_image, &rows) ||
        !repq_size_mul(rows, in, &xn) || !repq_size_mul(rows_per_image, in, &tn) || !repq_size_mul(big, in, &big) ||
        in > (size_t)INT32_MAX || out > (size_t)INT32_MAX || rows_per_image > (size_t)INT32_MAX)
        return REPQ_ERR_OVERFLOW;
    if (!all_finite(w, wn) || !all_finite(xq, xn) || !all_finite(xf, xn))
        return REPQ_ERR_NUMERIC;
    memcpy(target, w, wn * sizeof *target);
    if (images < 2)
        return REPQ_OK;
    repq_mem_chain chain = {0};
    fit f = {out, in, repq_mem_chain_alloc(al, &chain, wn, sizeof(double)),
             repq_mem_chain_alloc(al, &chain, hn, sizeof(double)), repq_mem_chain_alloc(al, &chain, wn, sizeof(double)),
             repq_mem_chain_alloc(al, &chain, big, sizeof(double)), repq_mem_chain_alloc(al, &chain, tn, sizeof(double)),
             repq_mem_chain_alloc(al, &chain, tn, sizeof(double)), {{0}}};
    bool ok = f.w && f.d && f.z && f.tmp && f.xq && f.dx;
    for (int k = 0; k < 2 && ok; k++) {
        f.part[k].h = repq_mem_chain_alloc(al, &chain, hn, sizeof(double));
        f.part[k].a = repq_mem_chain_alloc(al, &chain, wn, sizeof(double));
        ok = f.part[k].h && f.part[k].a;
    }
    if (!ok) {
        repq_mem_chain_free(al, &chain);
        return REPQ_ERR_NOMEM;
    }
    for (size_t i = 0; i < wn; i++)
        f.w[i] = w[i];
    for (size_t k = 0; k < 2; k++) {
        memset(f.d, 0, hn * sizeof *f.d);
        add_images(&f, xq, xf, images, rows_per_image, k, f.part[k].h, f.d);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)out, (blasint)in, (blasint)in, 1.0, f.w,
                    (blasint)in, f.d, (blasint)in, 0.0, f.part[k].a, (blasint)in);
    }
    double lambda = choose_lambda(&f);
    if (lambda > 0.0) {
        /* All images: the halves' sums. */
        for (size_t i = 0; i < hn; i++)
            f.part[0].h[i] += f.part[1].h[i];
        for (size_t i = 0; i < wn; i++)
            f.part[0].a[i] += f.part[1].a[i];
        if (ridge_solve(&f, f.part[0].h, f.part[0].a, lambda * mean_diagonal(f.part[0].h, in), f.z)) {
            for (size_t i = 0; i < wn; i++)
                target[i] = (float)(f.w[i] + f.z[i]);
            *out_lambda = lambda;
        }
    }
    repq_mem_chain_free(al, &chain);
    return REPQ_OK;
}
