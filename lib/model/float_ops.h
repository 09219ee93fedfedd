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
 * below 1e-8 on that interval). 2^n is built in the exponent field. */
static inline float repq_exp_approx(float x)
{
    const float lo = -87.33654f, hi = 88.0f, round_magic = 12582912.0f; /* 1.5 * 2^23 */
    float xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    /* Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits. */
    float t = xc * 1.44269504088896341f + round_magic;
    float n = t - round_magic;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4b400000u + 127u) << 23; /* n + 127 is in [1, 254]; a shift, not a vpmulld */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return x < lo ? 0.0f : p * scale;
}

/* GELU with the exact erf, through erfc(z) = exp(-z^2) Q(t), t = 1 / (1 + 0.4 z), z >= 0,
 * where Q is a degree-8 polynomial fitted here to a relative error of 1.3e-8 on
 * [0, 6] (erfc(6) = 2e-17; past that exp(-z^2) takes it to 0). Negative inputs use
 * 1 + erf(-z) = erfc(z) directly, so the small tail of GELU keeps its relative
 * accuracy instead of cancelling against 1. The integer session's fused fc1 epilogue
 * (kernels/quantize_f32.c) repeats these operations in the same order. */
static inline float repq_gelu_one(float x)
{
    float z = fabsf(x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.4f * z);
    float q = 0.08467032771701788f;
    q = q * t - 0.44902833687390276f;
    q = q * t + 0.8071263623290387f;
    q = q * t - 0.5287060290108232f;
    q = q * t + 0.5279574393340273f;
    q = q * t + 0.08236901611811902f;
    q = q * t + 0.25319514052047687f;
    q = q * t + 0.22222790034520473f;
    q = q * t + 0.00018816854908172318f;
    float erfc_z = q * repq_exp_approx(-z * z);
    return 0.5f * x * (x < 0.0f ? erfc_z : 2.0f - erfc_z);
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

/* out[c] = the mean of x[r][c] over `rows` rows of d: summed in double in row order,
 * divided, rounded once (average pooling; the float forward and the session share it). */
void repq_float_mean_rows(const float *x, size_t rows, size_t d, float *out);

#endif
