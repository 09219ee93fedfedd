/* A float64 ViT forward with fake quantization for the tests, written from the
 * architecture (timm's VisionTransformer) and docs/method.md, apart from lib/model: the float64
 * recomputation that the library's float32 forwards are measured against. Every step
 * is the textbook one in double (exact exp, erf, sqrt; products with dgemm), and every
 * quantizer is the mathematical one: x / s, its rounding and its level computed in
 * double. */
#ifndef REPQ_TESTS_VIT_F64_H
#define REPQ_TESTS_VIT_F64_H

#include "model/qmodel.h"

/* p's parameters as doubles, in the layout of p's arena (a float f of p is at
 * values + (f - p->arena)). free() it. NULL when out of memory. */
double *vit_f64_params(const repq_params *p);

/* x [rows, cols] <- its fake quantization by aq in double (channel-wise: one quantizer
 * per column). false on a kind it does not know or a channel count other than cols. */
bool vit_f64_fake_quantize(const repq_act_quant *aq, double *x, size_t rows, size_t cols);

/* logits [n, num_classes] of n U8 images [n, C, H, W] through the parameters `values`
 * (vit_f64_params layout of `layout`). With acts set (a qmodel's quantizer table,
 * slot order) every activation quantizer in it is applied where the
 * model's forward applies it, and GELU is the session's (the quartic pieces of
 * model/float_ops.h) as in the fake-quant forward; without, GELU is the erf form. The
 * weights are used as they are. Returns false when out
 * of memory or on a quantizer it does not know. */
bool vit_f64_forward(const repq_arch *a, const repq_params *layout, const double *values,
                     const repq_act_quant *acts, const uint8_t *images, size_t n, double *logits);

/* Transformer block `block` of `layout` (parameters `values`) applied in place to x
 * [n, tokens, embed_dim], unquantized: the float64 counterpart of repq_vit_block_apply.
 * false when out of memory or for a block out of range. */
bool vit_f64_block(const repq_arch *a, const repq_params *layout, const double *values, int32_t block,
                   double *x, size_t n);

#endif
