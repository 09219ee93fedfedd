/* Quantizers used during calibration and their range searches (see quantizer.h). */
#include "calib/quantizer.h"
#include "core/vectorize.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/object.h"

#define SQRT2_D 1.41421356237309504880
/* Most order statistics one quantile call may need: two per requested quantile. */
#define MAX_QUANTILES 16

const double repq_quant_percentiles[REPQ_QUANT_NUM_CANDIDATES] = {0.999, 0.9999, 0.99999};

static bool bits_ok(int32_t bits)
{
    return bits >= REPQ_QUANT_MIN_BITS && bits <= REPQ_QUANT_MAX_BITS;
}

static bool scale_ok(float s)
{
    return isfinite(s) && s >= FLT_MIN;
}

/* ---- Uniform quantizer --------------------------------------------------------- */

repq_status repq_quant_params_check(const repq_quant_params *p)
{
    if (!p || !bits_ok(p->bits) || !scale_ok(p->scale))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (p->zero_point > REPQ_QUANT_ZERO_POINT_MAX || p->zero_point < -REPQ_QUANT_ZERO_POINT_MAX)
        return REPQ_ERR_INVALID_ARGUMENT;
    return REPQ_OK;
}

/* The reference's (s, z) for [lo, hi] in float, or false if degenerate (s not a
 * positive normal float, or |z| beyond the bound). */
static bool try_range(float lo, float hi, float qmax, float *s_out, float *z_out)
{
    float width = hi - lo;
    float s = isfinite(width) ? width / qmax : (float)(((double)hi - (double)lo) / qmax);
    if (!scale_ok(s))
        return false;
    float z = rintf(-lo / s);
    if (!(fabsf(z) <= (float)REPQ_QUANT_ZERO_POINT_MAX))
        return false;
    *s_out = s;
    *z_out = z;
    return true;
}

repq_status repq_quant_params_from_range(float lo, float hi, int32_t bits, repq_quant_params *out)
{
    if (!out || !bits_ok(bits))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (!isfinite(lo) || !isfinite(hi))
        return REPQ_ERR_NUMERIC;
    if (lo > hi)
        return REPQ_ERR_INVALID_ARGUMENT;
    float qmax = (float)((1 << bits) - 1);
    float s, z;
    if (!try_range(lo, hi, qmax, &s, &z) &&
        !try_range(fminf(lo, 0.0f), fmaxf(hi, 0.0f), qmax, &s, &z)) {
        s = REPQ_QUANT_FALLBACK_SCALE;
        z = 0.0f;
    }
    out->scale = s;
    out->zero_point = (int32_t)z;
    out->bits = bits;
    return REPQ_OK;
}

/* The clamped code of x as a float (exact integer in [0, qmax]); NaN gives 0.
 * Comparisons rather than fminf/fmaxf, which gcc cannot inline without -ffinite-math. */
static inline float uniform_code(float x, float s, float zf, float qmax)
{
    float t = rintf(x / s) + zf;
    t = t > 0.0f ? t : 0.0f; /* also maps NaN to 0 */
    return t < qmax ? t : qmax;
}

/* The cloned loops are static: a cloned function with external linkage is exported
 * (as an ifunc) despite -fvisibility=hidden. Each returns whether all x were finite. */
VECTORIZED static bool uniform_quantize_all(const repq_quant_params *p, const float *x, size_t n, uint8_t *codes)
{
    const float s = p->scale, zf = (float)p->zero_point, qmax = (float)((1 << p->bits) - 1);
    int finite = 1; /* a bool reduction is not vectorized */
    for (size_t i = 0; i < n; i++) {
        finite &= repq_finite_lane(x[i]);
        codes[i] = (uint8_t)uniform_code(x[i], s, zf, qmax);
    }
    return finite;
}

VECTORIZED static bool uniform_fake_all(const repq_quant_params *p, float *x, size_t n)
{
    const float s = p->scale, zf = (float)p->zero_point, qmax = (float)((1 << p->bits) - 1);
    int finite = 1; /* a bool reduction is not vectorized */
    for (size_t i = 0; i < n; i++) {
        finite &= repq_finite_lane(x[i]);
        x[i] = s * (uniform_code(x[i], s, zf, qmax) - zf);
    }
    return finite;
}

repq_status repq_quant_quantize(const repq_quant_params *p, const float *x, size_t n, uint8_t *codes)
{
    repq_status st = repq_quant_params_check(p);
    if (st != REPQ_OK)
        return st;
    if (n > 0 && (!x || !codes))
        return REPQ_ERR_INVALID_ARGUMENT;
    return uniform_quantize_all(p, x, n, codes) ? REPQ_OK : REPQ_ERR_NUMERIC;
}

repq_status repq_quant_dequantize(const repq_quant_params *p, const uint8_t *codes, size_t n, float *out)
{
    repq_status st = repq_quant_params_check(p);
    if (st != REPQ_OK)
        return st;
    if (n > 0 && (!codes || !out))
        return REPQ_ERR_INVALID_ARGUMENT;
    const int32_t qmax = (1 << p->bits) - 1;
    for (size_t i = 0; i < n; i++)
        if (codes[i] > qmax)
            return REPQ_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < n; i++)
        out[i] = p->scale * (float)((int32_t)codes[i] - p->zero_point);
    return REPQ_OK;
}

repq_status repq_quant_fake(const repq_quant_params *p, float *x, size_t n)
{
    repq_status st = repq_quant_params_check(p);
    if (st != REPQ_OK)
        return st;
    if (n > 0 && !x)
        return REPQ_ERR_INVALID_ARGUMENT;
    return uniform_fake_all(p, x, n) ? REPQ_OK : REPQ_ERR_NUMERIC;
}

/* Sum of squared fake-quantization errors; the data is known to be finite. */
static double uniform_sse(const repq_quant_params *p, const float *x, size_t n, size_t stride)
{
    const float s = p->scale, zf = (float)p->zero_point, qmax = (float)((1 << p->bits) - 1);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i * stride];
        double e = (double)v - (double)(s * (uniform_code(v, s, zf, qmax) - zf));
        sum += e * e;
    }
    return sum;
}

#define SSE_LANES 8
VECTORIZED static double uniform_sse_lanes(const repq_quant_params *p, const float *x, size_t n)
{
    const float s = p->scale, zf = (float)p->zero_point, qmax = (float)((1 << p->bits) - 1);
    double lane[SSE_LANES] = {0};
    size_t i = 0;
    for (; i + SSE_LANES <= n; i += SSE_LANES)
        for (size_t l = 0; l < SSE_LANES; l++) {
            const float v = x[i + l];
            const double e = (double)v - (double)(s * (uniform_code(v, s, zf, qmax) - zf));
            lane[l] += e * e;
        }
    for (size_t l = 0; i < n; i++, l++) {
        const double e = (double)x[i] - (double)(s * (uniform_code(x[i], s, zf, qmax) - zf));
        lane[l] += e * e;
    }
    double sum = 0.0;
    for (size_t l = 0; l < SSE_LANES; l++)
        sum += lane[l];
    return sum;
}

#define SSE_CHUNK 256
double repq_quant_sse_lanes(const repq_quant_params *p, const float *x, size_t n, double bound)
{
    /* The last chunk first, then the others from the front: selection leaves the
     * largest values at the end and the smallest at the front, where the clipping
     * candidates of a search differ most. */
    const size_t last = n > SSE_CHUNK ? (n - 1) / SSE_CHUNK * SSE_CHUNK : 0;
    double total = uniform_sse_lanes(p, x + last, n - last);
    for (size_t i = 0; i < last && !(total > bound); i += SSE_CHUNK)
        total += uniform_sse_lanes(p, x + i, SSE_CHUNK);
    return total;
}

/* Checks a strided view: non-NULL, n > 0, stride > 0, (n - 1) * stride addressable. */
static repq_status check_view(const float *x, size_t n, size_t stride)
{
    if (!x || n == 0 || stride == 0)
        return REPQ_ERR_INVALID_ARGUMENT;
    size_t last;
    if (!repq_size_mul(n - 1, stride, &last))
        return REPQ_ERR_OVERFLOW;
    return REPQ_OK;
}

static bool all_finite(const float *x, size_t n, size_t stride)
{
    bool finite = true;
    for (size_t i = 0; i < n; i++)
        finite &= isfinite(x[i * stride]) != 0;
    return finite;
}

repq_status repq_quant_mse(const repq_quant_params *p, const float *x, size_t n, size_t stride,
                           double *mse)
{
    repq_status st = repq_quant_params_check(p);
    if (st != REPQ_OK)
        return st;
    if (!mse || (st = check_view(x, n, stride)) != REPQ_OK)
        return mse ? st : REPQ_ERR_INVALID_ARGUMENT;
    if (!all_finite(x, n, stride))
        return REPQ_ERR_NUMERIC;
    *mse = uniform_sse(p, x, n, stride) / (double)n;
    return REPQ_OK;
}

/* ---- Selection and quantiles --------------------------------------------------- */

static inline void swap_f(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Small pieces: insertion sort, no comparison callback (no NaN here). */
static void insertion_sort(float *v, size_t len)
{
    for (size_t i = 1; i < len; i++) {
        const float t = v[i];
        size_t j = i;
        for (; j > 0 && v[j - 1] > t; j--)
            v[j] = v[j - 1];
        v[j] = t;
    }
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* Rearranges v[lo, hi) (no NaN) so that v[k] holds the k-th smallest value of v for
 * every k in ks[0, nk) (ascending, all in [lo, hi)). Introselect: median-of-three
 * quickselect with a three-way partition (duplicates cost nothing), recursing only into
 * sides that still hold wanted indices; after `depth` rounds it sorts what is left. */
static void multiselect(float *v, size_t lo, size_t hi, const size_t *ks, size_t nk, int depth)
{
    while (nk > 0) {
        size_t len = hi - lo;
        if (len <= 16) {
            insertion_sort(v + lo, len);
            return;
        }
        if (depth-- <= 0) {
            qsort(v + lo, len, sizeof *v, cmp_float);
            return;
        }
        float a = v[lo], b = v[lo + len / 2], c = v[hi - 1];
        float pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (v[i] < pivot)
                swap_f(&v[lt++], &v[i++]);
            else if (v[i] > pivot)
                swap_f(&v[i], &v[--gt]);
            else
                i++;
        }
        /* v[lo, lt) < pivot, v[lt, gt) == pivot, v[gt, hi) > pivot. */
        size_t nleft = 0;
        while (nleft < nk && ks[nleft] < lt)
            nleft++;
        size_t nright_start = nleft;
        while (nright_start < nk && ks[nright_start] < gt)
            nright_start++;
        if (nleft > 0)
            multiselect(v, lo, lt, ks, nleft, depth);
        ks += nright_start;
        nk -= nright_start;
        lo = gt;
    }
}

/* Selection of the few order statistics of a large array, usually clustered at both
 * tails (the 0.001% .. 0.1% quantiles): the values at matching ranks of a fixed sample
 * of the data bound the two tails, one pass moves the elements below the lower bound to
 * the front and those above the upper bound to the back, and the selection continues
 * inside each region holding wanted indices. The partition is exact whatever the
 * sample says, so a poor sample costs time only. Returns false (nothing done) when the
 * wanted indices do not sit in two tails. */
#define SAMPLE_MAX 1024
#define TAIL_MIN_N 1024
static bool tail_select(float *v, size_t n, const size_t *ks, size_t nk, int depth)
{
    size_t nlow = 0;
    while (nlow < nk && ks[nlow] < n / 2)
        nlow++;
    /* m = n / 16 sample values (64..1024); a rank k of the data is near rank k m / n of
     * the sample, and the bounds step `margin` sample ranks outward from there. */
    const size_t m = n / 16 < SAMPLE_MAX ? n / 16 : SAMPLE_MAX, margin = m / 32 + 4;
    float sample[SAMPLE_MAX];
    for (size_t i = 0; i < m; i++)
        sample[i] = v[(size_t)((double)i * (double)n / (double)m)];
    qsort(sample, m, sizeof *sample, cmp_float);
    float a = -INFINITY, b = INFINITY;
    if (nlow > 0) {
        size_t r = (size_t)((double)ks[nlow - 1] * (double)m / (double)n) + margin;
        if (r >= m / 4)
            return false;
        a = sample[r];
    }
    if (nlow < nk) {
        size_t r = (size_t)((double)ks[nlow] * (double)m / (double)n);
        if (r < m - m / 4)
            return false;
        b = sample[r - margin];
    }
    /* v[0, lt) < a, v[lt, gt) in [a, b], v[gt, n) > b. */
    size_t lt = 0, i = 0, gt = n;
    while (i < gt) {
        if (v[i] < a)
            swap_f(&v[lt++], &v[i++]);
        else if (v[i] > b)
            swap_f(&v[i], &v[--gt]);
        else
            i++;
    }
    size_t j0 = 0, j1 = 0;
    while (j0 < nk && ks[j0] < lt)
        j0++;
    j1 = j0;
    while (j1 < nk && ks[j1] < gt)
        j1++;
    if (j0 > 0)
        multiselect(v, 0, lt, ks, j0, depth);
    if (j1 > j0)
        multiselect(v, lt, gt, ks + j0, j1 - j0, depth);
    if (nk > j1)
        multiselect(v, gt, n, ks + j1, nk - j1, depth);
    return true;
}

static int depth_limit(size_t n)
{
    int d = 8;
    while (n > 1) {
        n >>= 1;
        d += 2;
    }
    return d;
}

void repq_sort_small(float *v, size_t len)
{
    insertion_sort(v, len);
}

void repq_order_statistics(float *v, size_t n, const size_t *ranks, size_t nr)
{
    if (n < TAIL_MIN_N || !tail_select(v, n, ranks, nr, depth_limit(n)))
        multiselect(v, 0, n, ranks, nr, depth_limit(n));
}

/* NumPy's linear interpolation between a (at floor h) and b, weight t = h - floor h. */
static float lerp_numpy(double a, double b, double t)
{
    double d = b - a;
    return (float)(t >= 0.5 ? b - d * (1.0 - t) : a + d * t);
}

/* Quantiles of the n finite values in v (rearranged in place). p validated by caller. */
static void quantiles_inplace(float *v, size_t n, const double *p, size_t np, float *out)
{
    size_t ks[2 * MAX_QUANTILES], nk = 0;
    for (size_t j = 0; j < np; j++) {
        double h = (double)(n - 1) * p[j];
        size_t i = (size_t)floor(h);
        if (i > n - 1)
            i = n - 1;
        ks[nk++] = i;
        if (i + 1 < n)
            ks[nk++] = i + 1;
    }
    qsort(ks, nk, sizeof *ks, cmp_size);
    size_t u = 0;
    for (size_t j = 0; j < nk; j++)
        if (u == 0 || ks[j] != ks[u - 1])
            ks[u++] = ks[j];
    repq_order_statistics(v, n, ks, u);
    for (size_t j = 0; j < np; j++) {
        double h = (double)(n - 1) * p[j];
        size_t i = (size_t)floor(h);
        if (i >= n - 1) {
            out[j] = v[n - 1];
            continue;
        }
        out[j] = lerp_numpy(v[i], v[i + 1], h - (double)i);
    }
}

/* Copies x[i * stride] to scratch; false if some value is NaN or infinite. */
static bool gather(const float *x, size_t n, size_t stride, float *scratch)
{
    bool finite = true;
    for (size_t i = 0; i < n; i++) {
        float v = x[i * stride];
        finite &= isfinite(v) != 0;
        scratch[i] = v;
    }
    return finite;
}

repq_status repq_quantiles(const float *x, size_t n, size_t stride, const double *p, size_t np,
                           float *scratch, float *out)
{
    repq_status st = check_view(x, n, stride);
    if (st != REPQ_OK)
        return st;
    if (!p || !scratch || !out || np == 0 || np > MAX_QUANTILES)
        return REPQ_ERR_INVALID_ARGUMENT;
    for (size_t j = 0; j < np; j++)
        if (!(p[j] >= 0.0 && p[j] <= 1.0))
            return REPQ_ERR_INVALID_ARGUMENT;
    if (!gather(x, n, stride, scratch))
        return REPQ_ERR_NUMERIC;
    quantiles_inplace(scratch, n, p, np, out);
    return REPQ_OK;
}

/* ---- Uniform range searches ------------------------------------------------------ */

repq_status repq_quant_candidate_ranges(const float *x, size_t n, size_t stride, float *scratch,
                                        float lo[REPQ_QUANT_NUM_CANDIDATES], float hi[REPQ_QUANT_NUM_CANDIDATES])
{
    repq_status st = check_view(x, n, stride);
    if (st != REPQ_OK)
        return st;
    if (!scratch || !lo || !hi)
        return REPQ_ERR_INVALID_ARGUMENT;
    if (!gather(x, n, stride, scratch))
        return REPQ_ERR_NUMERIC;
    double p[2 * REPQ_QUANT_NUM_CANDIDATES];
    float q[2 * REPQ_QUANT_NUM_CANDIDATES];
    for (int c = 0; c < REPQ_QUANT_NUM_CANDIDATES; c++) {
        p[2 * c] = 1.0 - repq_quant_percentiles[c];
        p[2 * c + 1] = repq_quant_percentiles[c];
    }
    quantiles_inplace(scratch, n, p, 2 * REPQ_QUANT_NUM_CANDIDATES, q);
    for (int c = 0; c < REPQ_QUANT_NUM_CANDIDATES; c++) {
        lo[c] = q[2 * c];
        hi[c] = q[2 * c + 1];
    }
    return REPQ_OK;
}

repq_status repq_quant_search(const float *x, size_t n, size_t stride, int32_t bits,
                              float *scratch, repq_quant_params *out, double *mse)
{
    if (!out || !bits_ok(bits))
        return REPQ_ERR_INVALID_ARGUMENT;
    float lo[REPQ_QUANT_NUM_CANDIDATES], hi[REPQ_QUANT_NUM_CANDIDATES];
    repq_status st = repq_quant_candidate_ranges(x, n, stride, scratch, lo, hi);
    if (st != REPQ_OK)
        return st;
    /* The scratch now holds a permutation of the data: score over it, contiguously. */
    double sse;
    if ((st = repq_quant_best_range(scratch, n, bits, lo, hi, REPQ_QUANT_NUM_CANDIDATES, out, &sse)) != REPQ_OK)
        return st;
    if (mse)
        *mse = sse / (double)n;
    return REPQ_OK;
}

repq_status repq_quant_best_range(const float *x, size_t n, int32_t bits, const float *lo, const float *hi,
                                  size_t count, repq_quant_params *out, double *sse)
{
    if (!x || n == 0 || !lo || !hi || count == 0 || !out || !sse)
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_quant_params best = {0};
    double best_sse = INFINITY;
    for (size_t c = 0; c < count; c++) {
        repq_quant_params cand;
        repq_status st = repq_quant_params_from_range(lo[c], hi[c], bits, &cand);
        if (st != REPQ_OK)
            return st;
        double e = uniform_sse(&cand, x, n, 1);
        if (e < best_sse) {
            best_sse = e;
            best = cand;
        }
    }
    *out = best;
    *sse = best_sse;
    return REPQ_OK;
}

repq_status repq_quant_minmax(const float *x, size_t n, size_t stride, int32_t bits,
                              repq_quant_params *out, double *mse)
{
    repq_status st = check_view(x, n, stride);
    if (st != REPQ_OK)
        return st;
    if (!out || !bits_ok(bits))
        return REPQ_ERR_INVALID_ARGUMENT;
    float lo = x[0], hi = x[0];
    bool finite = true;
    for (size_t i = 0; i < n; i++) {
        float v = x[i * stride];
        finite &= isfinite(v) != 0;
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
    }
    if (!finite)
        return REPQ_ERR_NUMERIC;
    repq_quant_params prm;
    st = repq_quant_params_from_range(lo, hi, bits, &prm);
    if (st != REPQ_OK)
        return st;
    *out = prm;
    if (mse)
        *mse = uniform_sse(&prm, x, n, stride) / (double)n;
    return REPQ_OK;
}

static repq_status search_strided(const float *m, size_t count, size_t n, size_t step, size_t stride,
                                  int32_t bits, repq_range_method method, float *scratch,
                                  repq_quant_params *out)
{
    if (!m || !out || count == 0 || n == 0 || !bits_ok(bits))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (method != REPQ_RANGE_PERCENTILE && method != REPQ_RANGE_MINMAX)
        return REPQ_ERR_INVALID_ARGUMENT;
    if (method == REPQ_RANGE_PERCENTILE && !scratch)
        return REPQ_ERR_INVALID_ARGUMENT;
    size_t total;
    if (!repq_size_mul(count, n, &total))
        return REPQ_ERR_OVERFLOW;
    for (size_t c = 0; c < count; c++) {
        const float *x = m + c * step;
        repq_status st = method == REPQ_RANGE_PERCENTILE
                             ? repq_quant_search(x, n, stride, bits, scratch, &out[c], NULL)
                             : repq_quant_minmax(x, n, stride, bits, &out[c], NULL);
        if (st != REPQ_OK)
            return st;
    }
    return REPQ_OK;
}

repq_status repq_quant_search_rows(const float *m, size_t rows, size_t cols, int32_t bits,
                                   repq_range_method method, float *scratch, repq_quant_params *out)
{
    return search_strided(m, rows, cols, cols, 1, bits, method, scratch, out);
}

repq_status repq_quant_search_cols(const float *m, size_t rows, size_t cols, int32_t bits,
                                   repq_range_method method, float *scratch, repq_quant_params *out)
{
    return search_strided(m, cols, rows, 1, cols, bits, method, scratch, out);
}

/* ---- Log quantizers ---------------------------------------------------------------- */

repq_status repq_logq_params_check(const repq_logq_params *p)
{
    if (!p || !bits_ok(p->bits) || !scale_ok(p->scale))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (p->base != REPQ_LOG_SQRT2 && p->base != REPQ_LOG_2)
        return REPQ_ERR_INVALID_ARGUMENT;
    return REPQ_OK;
}

int32_t repq_logq_zero_code(int32_t bits)
{
    int32_t z = (int32_t)1 << (bits_ok(bits) ? bits : REPQ_QUANT_MAX_BITS);
    return z < 255 ? z : 255;
}

/* The unclamped code of x: in [0, 2^b - 1], or 2^b for the zero state. */
static inline int32_t log_code(float x, float s, bool sqrt2, float nlev)
{
    if (!(x > 0.0f)) /* zero, negative, NaN */
        return (int32_t)nlev;
    float l = log2f(x / s); /* -inf when x / s underflows, +inf when it overflows */
    float t = rintf(sqrt2 ? -2.0f * l : -l);
    if (t >= nlev)
        return (int32_t)nlev;
    return t < 0.0f ? 0 : (int32_t)t;
}

static float level_of(float s, repq_log_base base, int32_t c)
{
    if (base == REPQ_LOG_2)
        return ldexpf(1.0f, -c) * s;
    float m = (c & 1) ? 1.0f + (float)(SQRT2_D - 1.0) : 1.0f;
    return ldexpf(m, -((c + 1) / 2)) * s;
}

float repq_logq_level(const repq_logq_params *p, int32_t c)
{
    if (repq_logq_params_check(p) != REPQ_OK || c < 0 || c >= ((int32_t)1 << p->bits))
        return 0.0f;
    return level_of(p->scale, p->base, c);
}

/* levels[c] for c in [0, 2^b], levels[2^b] = 0 (the zero state). */
static void fill_levels(const repq_logq_params *p, float levels[257])
{
    int32_t nlev = (int32_t)1 << p->bits;
    for (int32_t c = 0; c < nlev; c++)
        levels[c] = level_of(p->scale, p->base, c);
    levels[nlev] = 0.0f;
}

repq_status repq_logq_quantize(const repq_logq_params *p, const float *x, size_t n, uint8_t *codes)
{
    repq_status st = repq_logq_params_check(p);
    if (st != REPQ_OK)
        return st;
    if (n > 0 && (!x || !codes))
        return REPQ_ERR_INVALID_ARGUMENT;
    const float nlev = (float)((int32_t)1 << p->bits);
    const int32_t zc = repq_logq_zero_code(p->bits);
    const bool sqrt2 = p->base == REPQ_LOG_SQRT2;
    bool finite = true;
    for (size_t i = 0; i < n; i++) {
        finite &= isfinite(x[i]) != 0;
        int32_t c = log_code(x[i], p->scale, sqrt2, nlev);
        codes[i] = (uint8_t)(c > zc ? zc : c);
    }
    return finite ? REPQ_OK : REPQ_ERR_NUMERIC;
}

repq_status repq_logq_dequantize(const repq_logq_params *p, const uint8_t *codes, size_t n, float *out)
{
    repq_status st = repq_logq_params_check(p);
    if (st != REPQ_OK)
        return st;
    if (n > 0 && (!codes || !out))
        return REPQ_ERR_INVALID_ARGUMENT;
    const int32_t zc = repq_logq_zero_code(p->bits);
    for (size_t i = 0; i < n; i++)
        if (codes[i] > zc)
            return REPQ_ERR_INVALID_ARGUMENT;
    float levels[257];
    fill_levels(p, levels);
    levels[zc] = 0.0f; /* b == 8: code 255 is read as the zero state */
    for (size_t i = 0; i < n; i++)
        out[i] = levels[codes[i]];
    return REPQ_OK;
}

repq_status repq_logq_fake(const repq_logq_params *p, float *x, size_t n)
{
    repq_status st = repq_logq_params_check(p);
    if (st != REPQ_OK)
        return st;
    if (n > 0 && !x)
        return REPQ_ERR_INVALID_ARGUMENT;
    float levels[257];
    fill_levels(p, levels);
    const float nlev = (float)((int32_t)1 << p->bits);
    const bool sqrt2 = p->base == REPQ_LOG_SQRT2;
    bool finite = true;
    for (size_t i = 0; i < n; i++) {
        finite &= isfinite(x[i]) != 0;
        x[i] = levels[log_code(x[i], p->scale, sqrt2, nlev)];
    }
    return finite ? REPQ_OK : REPQ_ERR_NUMERIC;
}

static double log_sse(const repq_logq_params *p, const float *x, size_t n, size_t stride)
{
    float levels[257];
    fill_levels(p, levels);
    const float nlev = (float)((int32_t)1 << p->bits);
    const bool sqrt2 = p->base == REPQ_LOG_SQRT2;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i * stride];
        double e = (double)v - (double)levels[log_code(v, p->scale, sqrt2, nlev)];
        sum += e * e;
    }
    return sum;
}

repq_status repq_logq_mse(const repq_logq_params *p, const float *x, size_t n, size_t stride,
                          double *mse)
{
    repq_status st = repq_logq_params_check(p);
    if (st != REPQ_OK)
        return st;
    if (!mse || (st = check_view(x, n, stride)) != REPQ_OK)
        return mse ? st : REPQ_ERR_INVALID_ARGUMENT;
    if (!all_finite(x, n, stride))
        return REPQ_ERR_NUMERIC;
    *mse = log_sse(p, x, n, stride) / (double)n;
    return REPQ_OK;
}

repq_status repq_logq_search(const float *x, size_t n, size_t stride, int32_t bits, repq_log_base base,
                             float *scratch, repq_logq_params *out, double *mse)
{
    repq_status st = check_view(x, n, stride);
    if (st != REPQ_OK)
        return st;
    if (!scratch || !out || !bits_ok(bits) || (base != REPQ_LOG_SQRT2 && base != REPQ_LOG_2))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (!gather(x, n, stride, scratch))
        return REPQ_ERR_NUMERIC;
    float q[REPQ_QUANT_NUM_CANDIDATES];
    quantiles_inplace(scratch, n, repq_quant_percentiles, REPQ_QUANT_NUM_CANDIDATES, q);
    repq_logq_params best = {1.0f, bits, base};
    double best_sse = INFINITY;
    for (int c = 0; c < REPQ_QUANT_NUM_CANDIDATES; c++) {
        repq_logq_params cand = {scale_ok(q[c]) ? q[c] : 1.0f, bits, base};
        double sse = log_sse(&cand, scratch, n, 1);
        if (sse < best_sse) {
            best_sse = sse;
            best = cand;
        }
    }
    *out = best;
    if (mse)
        *mse = best_sse / (double)n;
    return REPQ_OK;
}
