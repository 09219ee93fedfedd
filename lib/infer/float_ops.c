/* Float LayerNorm and GELU of integer inference: the same formulas and summation
 * order as the float forward, so a session and the fake-quant forward see the same
 * values before each quantizer (bar the rounding of the linear layers). */
#include "infer/float_ops.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* As in forward.c: clones per instruction set for gcc on x86-64 glibc; the lane order
 * is fixed, so every clone returns the same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) && \
    defined(__has_attribute)
#if __has_attribute(target_clones) && __has_attribute(optimize)
#define VECTORIZED                                                                         \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"),            \
                   optimize("tree-vectorize", "vect-cost-model=dynamic")))
#endif
#endif
#ifndef VECTORIZED
#define VECTORIZED
#endif

#define LANES 16

/* exp(x) through 2^n exp(r), |r| <= ln2 / 2, degree-7 Taylor polynomial (relative
 * error below 4e-7); 0 below -87.33. */
static inline float exp_approx(float x)
{
    const float lo = -87.33654f, hi = 88.0f, round_magic = 12582912.0f;
    float xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    float t = xc * 1.44269504088896341f + round_magic;
    float n = t - round_magic;
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4b400000 + 127) * (1 << 23);
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

/* GELU(x) = x Phi(x) with erfc(z) = exp(-z^2) Q(1 / (1 + 0.4 z)) for z = |x| / sqrt2. */
static inline float gelu_one(float x)
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
    float erfc_z = q * exp_approx(-z * z);
    return 0.5f * x * (x < 0.0f ? erfc_z : 2.0f - erfc_z);
}

VECTORIZED void repq_infer_gelu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = gelu_one(x[i]);
}

static inline float lanes_total(float acc[LANES])
{
    for (size_t w = LANES / 2; w > 0; w /= 2)
        for (size_t l = 0; l < w; l++)
            acc[l] += acc[l + w];
    return acc[0];
}

VECTORIZED void repq_infer_layer_norm(const float *x, size_t rows, size_t d, const float *g,
                                      const float *b, float eps, float *y)
{
    for (size_t i = 0; i < rows; i++) {
        const float *xr = x + i * d;
        float *yr = y + i * d;
        float acc[LANES] = {0};
        size_t c = 0;
        for (; c + LANES <= d; c += LANES)
            for (size_t l = 0; l < LANES; l++)
                acc[l] += xr[c + l];
        for (size_t l = 0; c < d; c++, l++)
            acc[l] += xr[c];
        float mean = lanes_total(acc) / (float)d;
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
        float inv = 1.0f / sqrtf(lanes_total(sq) / (float)d + eps);
        for (c = 0; c < d; c++)
            yr[c] = ((xr[c] - mean) * inv) * g[c] + b[c];
    }
}
