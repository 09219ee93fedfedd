/* Internal: the float element-wise steps shared by the float forward and the integer
 * session (LayerNorm, GELU, exp), written once so that both compute the same bits:
 * a session and the fake-quant forward then see the same values before each quantizer
 * (bar the rounding of the linear layers). */
#ifndef REPQ_MODEL_FLOAT_OPS_H
#define REPQ_MODEL_FLOAT_OPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Independent partial sums of a reduction; 16 fills one AVX-512 register. */
#define REPQ_LANES 16

/* exp(x) for x <= 88 with relative error below 4e-7; 0 for x < -87.33 (where expf
 * would go subnormal). x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2, so
 * exp(x) = 2^n exp(r); ln2 is split in two (Cody and Waite) so that r is exact to
 * float precision, and exp(r) is its degree-7 Taylor polynomial (truncation error
 * below 1e-8 on that interval). 2^n is built in the exponent field. The constants are
 * named because kernels/quantize_f32.c evaluates the same function on vectors. */
#define REPQ_EXP_LO (-87.33654f)
#define REPQ_EXP_HI 88.0f
#define REPQ_EXP_ROUND_MAGIC 12582912.0f /* 1.5 * 2^23 */
#define REPQ_EXP_LOG2E 1.44269504088896341f
#define REPQ_EXP_LN2_HI 0.693359375f
#define REPQ_EXP_LN2_LO (-2.12194440e-4f)
#define REPQ_EXP_TERMS 8
/* Horner's order: the highest power first. */
static const float repq_exp_taylor[REPQ_EXP_TERMS] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f,
                                                      1.0f / 6.0f,    0.5f,          1.0f,          1.0f};

static inline float repq_exp_approx(float x)
{
    float xc = x < REPQ_EXP_LO ? REPQ_EXP_LO : x;
    xc = xc > REPQ_EXP_HI ? REPQ_EXP_HI : xc;
    /* Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits. */
    float t = xc * REPQ_EXP_LOG2E + REPQ_EXP_ROUND_MAGIC;
    float n = t - REPQ_EXP_ROUND_MAGIC;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4b400000u + 127u) << 23; /* n + 127 is in [1, 254]; a shift, not a vpmulld */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float r = (xc - n * REPQ_EXP_LN2_HI) - n * REPQ_EXP_LN2_LO;
    float p = repq_exp_taylor[0];
#pragma GCC unroll 8
    for (int i = 1; i < REPQ_EXP_TERMS; i++)
        p = p * r + repq_exp_taylor[i];
    return x < REPQ_EXP_LO ? 0.0f : p * scale;
}

/* GELU with the exact erf, through erfc(z) = exp(-z^2) Q(t), t = 1 / (1 + 0.4 z), z >= 0,
 * where Q is a degree-8 polynomial fitted here to a relative error of 1.3e-8 on
 * [0, 6] (erfc(6) = 2e-17; past that exp(-z^2) takes it to 0). Negative inputs use
 * 1 + erf(-z) = erfc(z) directly, so the small tail of GELU keeps its relative
 * accuracy instead of cancelling against 1. */
#define REPQ_GELU_TERMS 9
/* Q's coefficients in Horner's order (subtracting a constant is adding its negative,
 * bit for bit). */
static const float repq_gelu_erfc_q[REPQ_GELU_TERMS] = {
    0.08467032771701788f, -0.44902833687390276f, 0.8071263623290387f,  -0.5287060290108232f,
    0.5279574393340273f,  0.08236901611811902f,  0.25319514052047687f, 0.22222790034520473f,
    0.00018816854908172318f};

static inline float repq_gelu_one(float x)
{
    float z = fabsf(x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.4f * z);
    float q = repq_gelu_erfc_q[0];
#pragma GCC unroll 9
    for (int i = 1; i < REPQ_GELU_TERMS; i++)
        q = q * t + repq_gelu_erfc_q[i];
    float erfc_z = q * repq_exp_approx(-z * z);
    return 0.5f * x * (x < 0.0f ? erfc_z : 2.0f - erfc_z);
}

/* The integer session's GELU, which its fused fc1 epilogue (kernels/quantize_f32.c)
 * evaluates on vectors and the fake-quant forward repeats: on [-8, 8), 32 quartics of
 * width 1/2 in u = y minus the piece's centre (fitted by scripts/fit_gelu_fast.py,
 * Chebyshev interpolation), y from 8 up, the first piece's left end below -8 (|GELU| <
 * 1e-13 there). Within 1.5e-6 of repq_gelu_one (kernels/quantize_f32.h bounds it by
 * REPQ_GELU_FAST_ERR). Fused multiply-adds and selects only, so every CPU and level
 * computes the same bits; max(-8, y) and min(t, 31.5) return their second operand for
 * NaN, as the vector instructions do. */
#define REPQ_GELU_QUARTIC_PIECES 32
extern const float repq_gelu_quartic_coef[5][REPQ_GELU_QUARTIC_PIECES];

static inline float repq_gelu_quartic_one(float y)
{
    const float yc = -8.0f > y ? -8.0f : y;
    const float t0 = fmaf(yc, 2.0f, 16.0f), t = t0 < 31.5f ? t0 : 31.5f;
    const int idx = (int)t;
    const float u = yc - fmaf((float)idx, 0.5f, -7.75f);
    float p = repq_gelu_quartic_coef[4][idx];
    for (int k = 3; k >= 0; k--)
        p = fmaf(p, u, repq_gelu_quartic_coef[k][idx]);
    return y >= 8.0f ? y : p;
}

/* Sum in REPQ_LANES fixed partial sums, combined pairwise: the order is the same whatever
 * the vector width. */
static inline float repq_lanes_total(float acc[REPQ_LANES])
{
    for (size_t w = REPQ_LANES / 2; w > 0; w /= 2)
        for (size_t l = 0; l < w; l++)
            acc[l] += acc[l + w];
    return acc[0];
}

/* LayerNorm of each row of x [rows, d] with gain g and bias b into y. */
void repq_float_layer_norm(const float *x, size_t rows, size_t d, const float *g, const float *b,
                           float eps, float *y);
/* LayerNorm straight to codes: the codes repq_quantize_f32_u8(scale, zp, bits) gives of
 * repq_float_layer_norm's output, without the float row. */
void repq_float_layer_norm_codes(const float *x, size_t rows, size_t d, const float *g, const float *b, float eps,
                                 float scale, int32_t zp, int32_t bits, uint8_t *codes);
/* GELU (erf form) in place. */
void repq_float_gelu(float *x, size_t n);
/* The session's GELU (repq_gelu_quartic_one) in place. */
void repq_float_gelu_quartic(float *x, size_t n);

/* out[c] = the mean of x[r][c] over `rows` rows of d: summed in double in row order,
 * divided, rounded once (average pooling; the float forward and the session share it). */
void repq_float_mean_rows(const float *x, size_t rows, size_t d, float *out);

#endif
