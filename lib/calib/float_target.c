/* The float-model target of GPTQ (float_target.h): a ridge regression of the layer's
 * output error on its quantized inputs, its strength cross-validated over images. */
#include "calib/float_target.h"

#include <cblas.h>
#include <f77blas.h>
#include <math.h>
#include <string.h>

/* LAPACK's symmetric eigensolver (divide and conquer), in OpenBLAS but not in its
 * f77blas.h. */
void dsyevd_(const char *jobz, const char *uplo, const blasint *n, double *a, const blasint *lda, double *w,
             double *work, const blasint *lwork, blasint *iwork, const blasint *liwork, blasint *info);

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
    double *r;       /* [rows_per_image][out] (Xf - X~) W^T of one image */
    half part[2];
    /* The grid search in the eigenbasis of one half's H: */
    double *vt;      /* [in][in] eigenvectors, one per row */
    double *eig;     /* [in] eigenvalues */
    double *p;       /* [out][in] that half's A in the eigenbasis */
    double *m;       /* [in][in] the other half's H in the eigenbasis, then times P^T P */
    double *q;       /* [in] */
    double *work;    /* [1 + 6 in + 2 in^2] LAPACK's */
    blasint *iwork;  /* [3 + 5 in] */
} fit;

/* One half's statistics over the images of one parity: H = X~^T X~ and
 * A = W (Xf - X~)^T X~, the latter as (R^T X~ with R = (Xf - X~) W^T) when the layer
 * has fewer outputs than inputs (fewer products), else through D = (Xf - X~)^T X~. */
static void half_statistics(fit *f, const float *xq, const float *xf, size_t images, size_t per, size_t parity,
                            half *out_half)
{
    const size_t in = f->in, out = f->out;
    const blasint bi = (blasint)in, bo = (blasint)out, bp = (blasint)per;
    const bool through_outputs = out < in;
    memset(out_half->h, 0, in * in * sizeof *out_half->h);
    memset(through_outputs ? out_half->a : f->d, 0, (through_outputs ? out : in) * in * sizeof(double));
    for (size_t img = parity; img < images; img += 2) {
        const float *q = xq + img * per * in, *x = xf + img * per * in;
        for (size_t i = 0; i < per * in; i++) {
            f->xq[i] = q[i];
            f->dx[i] = (double)x[i] - (double)q[i];
        }
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, bi, bp, 1.0, f->xq, bi, 1.0, out_half->h, bi);
        if (through_outputs) {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bp, bo, bi, 1.0, f->dx, bi, f->w, bi, 0.0, f->r, bo);
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bo, bi, bp, 1.0, f->r, bo, f->xq, bi, 1.0, out_half->a,
                        bi);
        } else {
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bi, bi, bp, 1.0, f->dx, bi, f->xq, bi, 1.0, f->d, bi);
        }
    }
    if (!through_outputs)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bo, bi, bi, 1.0, f->w, bi, f->d, bi, 0.0, out_half->a,
                    bi);
    /* dsyrk wrote one triangle; the products below read all of H. */
    for (size_t i = 0; i < in; i++)
        for (size_t j = 0; j < i; j++)
            out_half->h[i * in + j] = out_half->h[j * in + i];
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

/* The held-out error changes of the whole grid for the correction fitted on half k,
 * added to change[]. In the eigenbasis of H_k = V diag(e) V^T the fit is
 * Z = P diag(g) V^T with P = A_k V and g_i = 1 / (e_i + lambda), and the change of the
 * squared output error on the other half j,
 *     ||R_j - X~_j Z^T||^2 - ||R_j||^2 = -2 <Z, A_j> + <Z H_j, Z>,
 * is -2 sum_i g_i q_i + g^T ((V^T H_j V) o (P^T P)) g with q_i = sum_o P_oi (A_j V)_oi:
 * one eigendecomposition and a few products per half, then O(in^2) per lambda. */
static bool add_half_changes(fit *f, int k, double scale, double *change)
{
    const size_t in = f->in, out = f->out;
    const half *mine = &f->part[k], *other = &f->part[1 - k];
    char vectors = 'V', lower = 'L';
    blasint n = (blasint)in, lwork = (blasint)(1 + 6 * in + 2 * in * in), liwork = (blasint)(3 + 5 * in), info = 0;
    memcpy(f->vt, mine->h, in * in * sizeof *f->vt);
    /* Column-major eigenvectors of the symmetric H: read row-major, one per row. */
    dsyevd_(&vectors, &lower, &n, f->vt, &n, f->eig, f->work, &lwork, f->iwork, &liwork, &info);
    if (info != 0)
        return false;
    blasint bo = (blasint)out, bi = (blasint)in;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bo, bi, bi, 1.0, mine->a, bi, f->vt, bi, 0.0, f->p, bi);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bo, bi, bi, 1.0, other->a, bi, f->vt, bi, 0.0, f->z, bi);
    for (size_t i = 0; i < in; i++)
        f->q[i] = 0.0;
    for (size_t o = 0; o < out; o++)
        for (size_t i = 0; i < in; i++)
            f->q[i] += f->p[o * in + i] * f->z[o * in + i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi, bi, bi, 1.0, f->vt, bi, other->h, bi, 0.0, f->tmp, bi);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi, bi, bi, 1.0, f->tmp, bi, f->vt, bi, 0.0, f->m, bi);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bi, bi, bo, 1.0, f->p, bi, f->p, bi, 0.0, f->tmp, bi);
    for (size_t i = 0; i < in * in; i++)
        f->m[i] *= f->tmp[i];
    double *g = f->z; /* free again: one row of in */
    for (int c = 0; c < REPQ_FLOAT_TARGET_GRID_SIZE; c++) {
        double lambda = repq_float_target_grid[c] * scale, linear = 0.0, quadratic = 0.0;
        for (size_t i = 0; i < in; i++) {
            g[i] = 1.0 / (fmax(f->eig[i], 0.0) + lambda);
            linear += g[i] * f->q[i];
        }
        for (size_t i = 0; i < in; i++) {
            double row = 0.0;
            for (size_t j = 0; j < in; j++)
                row += f->m[i * in + j] * g[j];
            quadratic += g[i] * row;
        }
        change[c] += quadratic - 2.0 * linear;
    }
    return true;
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
    double change[REPQ_FLOAT_TARGET_GRID_SIZE] = {0};
    if (!add_half_changes(f, 0, scale, change) || !add_half_changes(f, 1, scale, change))
        return 0.0;
    double best = 0.0, best_change = 0.0;
    for (int c = 0; c < REPQ_FLOAT_TARGET_GRID_SIZE; c++)
        if (isfinite(change[c]) && change[c] < best_change) {
            best_change = change[c];
            best = repq_float_target_grid[c];
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
    size_t wn, hn, rows, xn, rn, big = out > in ? out : in, tn;
    if (!repq_size_mul(out, in, &wn) || !repq_size_mul(in, in, &hn) || !repq_size_mul(images, rows_per_image, &rows) ||
        !repq_size_mul(rows, in, &xn) || !repq_size_mul(rows_per_image, in, &tn) ||
        !repq_size_mul(rows_per_image, out, &rn) || !repq_size_mul(big, in, &big) ||
        in > (size_t)INT32_MAX || out > (size_t)INT32_MAX || rows_per_image > (size_t)INT32_MAX ||
        hn > ((size_t)INT32_MAX - 1 - 6 * in) / 2) /* LAPACK's work size as a 32-bit integer */
        return REPQ_ERR_OVERFLOW;
    if (!all_finite(w, wn) || !all_finite(xq, xn) || !all_finite(xf, xn))
        return REPQ_ERR_NUMERIC;
    memcpy(target, w, wn * sizeof *target);
    if (images < 2)
        return REPQ_OK;
    repq_mem_chain chain = {0};
    fit f = {.out = out, .in = in};
    double **buffers[] = {&f.w,  &f.d, &f.z, &f.tmp, &f.xq,   &f.dx,        &f.r,        &f.vt,       &f.eig,
                          &f.p,  &f.m, &f.q, &f.work, &f.part[0].h, &f.part[0].a, &f.part[1].h, &f.part[1].a};
    const size_t counts[] = {wn, hn, wn, big, tn, tn, rn, hn, in, wn, hn, in, 1 + 6 * in + 2 * hn, hn, wn, hn, wn};
    bool ok = true;
    for (size_t i = 0; i < sizeof counts / sizeof counts[0] && ok; i++)
        ok = (*buffers[i] = repq_mem_chain_alloc(al, &chain, counts[i], sizeof(double))) != NULL;
    f.iwork = ok ? repq_mem_chain_alloc(al, &chain, 3 + 5 * in, sizeof(blasint)) : NULL;
    if (!f.iwork) {
        repq_mem_chain_free(al, &chain);
        return REPQ_ERR_NOMEM;
    }
    for (size_t i = 0; i < wn; i++)
        f.w[i] = w[i];
    for (size_t k = 0; k < 2; k++)
        half_statistics(&f, xq, xf, images, rows_per_image, k, &f.part[k]);
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
