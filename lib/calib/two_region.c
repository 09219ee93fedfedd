/* The two-region post-GELU quantizer and its search (see two_region.h). */
#include "calib/two_region.h"
#include "core/vectorize.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>

/* Candidates of z searched at most: a negative tail needs few levels, and each z costs
 * a pass over the data per m. */
#define MAX_NEGATIVE_LEVELS 16
/* Partial sums of the squared errors: fixed lanes keep the order of the additions
 * the same in every vectorized clone. */
#define LANES 8

static int32_t largest_code(int32_t z, int32_t bits, int32_t m)
{
    return z + (((1 << bits) - 1 - z) << m);
}

repq_status repq_tworeg_params_check(const repq_tworeg_params *p)
{
    if (!p || p->bits < REPQ_QUANT_MIN_BITS || p->bits > REPQ_QUANT_MAX_BITS || p->neg_shift < 0 ||
        p->neg_shift > REPQ_TWOREG_MAX_SHIFT || p->zero_point < 0 || p->zero_point > (1 << p->bits) - 1)
        return REPQ_ERR_INVALID_ARGUMENT;
    const float fine = ldexpf(p->scale, -p->neg_shift);
    if (!isfinite(p->scale) || !(fine >= FLT_MIN) || largest_code(p->zero_point, p->bits, p->neg_shift) > 255)
        return REPQ_ERR_INVALID_ARGUMENT;
    /* The extreme levels, s (2^b - 1 - z) and -s 2^-m z, must be finite. */
    const double top = (double)p->scale * (double)((1 << p->bits) - 1 - p->zero_point);
    if (!(top <= (double)FLT_MAX) || !((double)fine * (double)p->zero_point <= (double)FLT_MAX))
        return REPQ_ERR_INVALID_ARGUMENT;
    return REPQ_OK;
}

repq_status repq_tworeg_grid(const repq_tworeg_params *p, repq_quant_params *grid, int32_t *max_code)
{
    repq_status st = repq_tworeg_params_check(p);
    if (st)
        return st;
    if (!grid || !max_code)
        return REPQ_ERR_INVALID_ARGUMENT;
    *grid = (repq_quant_params){ldexpf(p->scale, -p->neg_shift), p->zero_point, p->bits};
    *max_code = largest_code(p->zero_point, p->bits, p->neg_shift);
    return REPQ_OK;
}

/* The code of x as a float (an exact integer in [0, largest code]); NaN gives 0.
 * Comparisons rather than fminf/fmaxf, which gcc cannot inline without -ffinite-math. */
static inline float code_of(float x, float s, float zf, float top, float p2m)
{
    const float q = x / s;
    float c;
    if (q >= 0.0f) {
        c = rintf(q);
        c = (c < top ? c : top) * p2m;
    } else {
        c = rintf(q * p2m);
        c = c > -zf ? c : -zf; /* also maps NaN to -z */
    }
    return c + zf;
}

typedef struct consts {
    float s, zf, top, p2m, fine;
} consts;

static consts consts_of(const repq_tworeg_params *p)
{
    return (consts){p->scale, (float)p->zero_point, (float)((1 << p->bits) - 1 - p->zero_point),
                    (float)(1 << p->neg_shift), ldexpf(p->scale, -p->neg_shift)};
}

/* The loops are static: a cloned (ifunc) function that is not static would be exported
 * despite -fvisibility=hidden. */
VECTORIZED static bool quantize_all(const consts *k, const float *x, size_t n, uint8_t *codes)
{
    int finite = 1; /* a bool reduction is not vectorized */
    for (size_t i = 0; i < n; i++) {
        finite &= repq_finite_lane(x[i]);
        codes[i] = (uint8_t)code_of(x[i], k->s, k->zf, k->top, k->p2m);
    }
    return finite;
}

VECTORIZED static bool fake_all(const consts *k, float *x, size_t n)
{
    int finite = 1; /* a bool reduction is not vectorized */
    for (size_t i = 0; i < n; i++) {
        finite &= repq_finite_lane(x[i]);
        x[i] = k->fine * (code_of(x[i], k->s, k->zf, k->top, k->p2m) - k->zf);
    }
    return finite;
}

repq_status repq_tworeg_quantize(const repq_tworeg_params *p, const float *x, size_t n, uint8_t *codes)
{
    repq_status st = repq_tworeg_params_check(p);
    if (st)
        return st;
    if (n > 0 && (!x || !codes))
        return REPQ_ERR_INVALID_ARGUMENT;
    const consts k = consts_of(p);
    return quantize_all(&k, x, n, codes) ? REPQ_OK : REPQ_ERR_NUMERIC;
}

repq_status repq_tworeg_dequantize(const repq_tworeg_params *p, const uint8_t *codes, size_t n, float *out)
{
    repq_status st = repq_tworeg_params_check(p);
    if (st)
        return st;
    if (n > 0 && (!codes || !out))
        return REPQ_ERR_INVALID_ARGUMENT;
    const int32_t cmax = largest_code(p->zero_point, p->bits, p->neg_shift);
    for (size_t i = 0; i < n; i++)
        if (codes[i] > cmax)
            return REPQ_ERR_INVALID_ARGUMENT;
    const consts k = consts_of(p);
    for (size_t i = 0; i < n; i++)
        out[i] = k.fine * ((float)codes[i] - k.zf);
    return REPQ_OK;
}

repq_status repq_tworeg_fake(const repq_tworeg_params *p, float *x, size_t n)
{
    repq_status st = repq_tworeg_params_check(p);
    if (st)
        return st;
    if (n > 0 && !x)
        return REPQ_ERR_INVALID_ARGUMENT;
    const consts k = consts_of(p);
    return fake_all(&k, x, n) ? REPQ_OK : REPQ_ERR_NUMERIC;
}

/* Sum of squared errors over finite x[0, n) (any signs). */
VECTORIZED static double sse(const consts *k, const float *x, size_t n)
{
    double lane[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (size_t l = 0; l < LANES; l++) {
            const float v = x[i + l];
            const double e = (double)v - (double)(k->fine * (code_of(v, k->s, k->zf, k->top, k->p2m) - k->zf));
            lane[l] += e * e;
        }
    for (size_t l = 0; i < n; i++, l++) {
        const double e = (double)x[i] - (double)(k->fine * (code_of(x[i], k->s, k->zf, k->top, k->p2m) - k->zf));
        lane[l] += e * e;
    }
    double sum = 0.0;
    for (size_t l = 0; l < LANES; l++)
        sum += lane[l];
    return sum;
}

repq_status repq_tworeg_mse(const repq_tworeg_params *p, const float *x, size_t n, double *mse)
{
    repq_status st = repq_tworeg_params_check(p);
    if (st)
        return st;
    if (!x || n == 0 || !mse)
        return REPQ_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return REPQ_ERR_NUMERIC;
    const consts k = consts_of(p);
    *mse = sse(&k, x, n) / (double)n;
    return REPQ_OK;
}

repq_status repq_tworeg_search(const float *x, size_t n, const repq_quant_params *uniform, float *scratch,
                               repq_tworeg_params *out, double *mse)
{
    if (!x || n == 0 || !scratch || !out || !mse || repq_quant_params_check(uniform) != REPQ_OK)
        return REPQ_ERR_INVALID_ARGUMENT;
    /* Negative values first, the others after: the non-negative region's error depends
     * on z alone, the negative region's on z and m. */
    size_t neg = 0, pos = n;
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        if (!isfinite(v))
            return REPQ_ERR_NUMERIC;
        if (v < 0.0f)
            scratch[neg++] = v;
        else
            scratch[--pos] = v;
    }
    const int32_t bits = uniform->bits, levels = (1 << bits) - 1;
    const float hi = uniform->scale * (float)(levels - uniform->zero_point);
    *mse = INFINITY;
    if (!(hi > 0.0f) || !isfinite(hi))
        return REPQ_OK;
    double best = INFINITY;
    const int32_t zmax = levels / 2 < MAX_NEGATIVE_LEVELS ? levels / 2 : MAX_NEGATIVE_LEVELS;
    for (int32_t z = 1; z <= zmax; z++) {
        repq_tworeg_params cand = {hi / (float)(levels - z), z, bits, 0};
        if (repq_tworeg_params_check(&cand) != REPQ_OK)
            continue;
        consts k = consts_of(&cand);
        const double pos_sse = sse(&k, scratch + neg, n - neg);
        for (int32_t m = 0; m <= REPQ_TWOREG_MAX_SHIFT; m++) {
            cand.neg_shift = m;
            if (repq_tworeg_params_check(&cand) != REPQ_OK)
                continue;
            k = consts_of(&cand);
            const double total = pos_sse + sse(&k, scratch, neg);
            if (total < best) {
                best = total;
                *out = cand;
            }
        }
    }
    if (best < INFINITY)
        *mse = best / (double)n;
    return REPQ_OK;
}
