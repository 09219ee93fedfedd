/* Internal: the quantized model. It holds integer weight codes with their per-output-
 * channel quantizers, the activation quantizers of every quantization point, and two
 * float parameter sets: `float_params` (LayerNorm, biases and weights as rewritten by
 * reparameterization, unquantized) and `fq_params` (the same with every linear weight
 * replaced by its dequantized codes), which the fake-quant forward runs. */
#ifndef REPQ_MODEL_QMODEL_H
#define REPQ_MODEL_QMODEL_H

#include <pthread.h>

#include "calib/quantizer.h"
#include "calib/two_region.h"
#include "kernels/quantize_f32.h"
#include "model/net.h"
#include "repq/quant.h"

/* Kinds of activation quantizer. Stored in files: never renumber. */
typedef enum repq_aq_kind {
    REPQ_AQ_NONE = 0,
    REPQ_AQ_UNIFORM = 1,         /* layer-wise (s, z) */
    REPQ_AQ_UNIFORM_CHANNEL = 2, /* one (s, z) per channel (column) */
    REPQ_AQ_LOG_SQRT2 = 3,       /* post-softmax, base sqrt2 */
    REPQ_AQ_LOG2_PARITY = 4,     /* the same codes read as 2^-ceil(c/2) (1 + parity (sqrt2-1)) */
    REPQ_AQ_TWO_REGION = 5       /* post-GELU: two steps, codes on the finer grid (two_region.h) */
} repq_aq_kind;

typedef struct repq_act_quant {
    int32_t kind;
    repq_quant_params uniform;
    repq_logq_params log;
    repq_tworeg_params two;
    int32_t channels;             /* entries of per_channel (UNIFORM_CHANNEL) */
    repq_quant_params *per_channel;
} repq_act_quant;

/* One linear layer's quantized weight. */
typedef struct repq_qlinear {
    int32_t out, in;
    uint8_t *codes;        /* [out, in], into the qmodel's code arena */
    repq_quant_params *wq; /* [out], into the qmodel's quantizer arena */
} repq_qlinear;

struct repq_qmodel {
    repq_object base;
    repq_arch arch;
    repq_net *net;             /* layers, slots and nodes */
    /* The options' widths. Each layer's own weight width is layer_bits[id] (its
     * quantizers' bits), each slot's its quantizer's bits: they differ from these
     * when widths are mixed (repq_calib_set_widths). */
    int32_t weight_bits, act_bits, patch_input_bits, method;
    int32_t reparameterized;
    int32_t has_float_weights; /* 0 after loading from a file: float_params weights = fq */
    repq_params float_params;
    repq_params fq_params;
    int32_t num_linear;        /* net->num_linear, in the net's order */
    repq_qlinear *linear;
    uint8_t *code_arena;
    repq_quant_params *wq_arena;
    repq_act_quant *acts;      /* [net->num_slots]: the quantizer of each activation slot */
    int8_t *layer_bits;        /* [num_linear]: each linear layer's weight width */
    /* What its sessions share (lib/infer/shared_weights.h), while any exists; the
     * only field written after creation, under shared_lock. */
    pthread_mutex_t shared_lock;
    struct repq_shared_weights *shared;
};

/* The weight of linear layer `id` within a parameter set, with its shape. */
float *repq_net_linear_weight(const repq_net *net, const repq_params *p, int32_t id, int32_t *out_rows,
                              int32_t *out_cols);
/* The bias of linear layer `id` within a parameter set (NULL if it has none). */
float *repq_net_linear_bias(const repq_net *net, const repq_params *p, int32_t id);

/* A new qmodel with parameter sets, weight arenas and quantizer table allocated
 * (zero: every activation quantizer NONE). */
repq_status repq_qmodel_alloc(repq_object *err, const repq_allocator *al, const repq_arch *a,
                              repq_qmodel **out);
/* A deep copy. */
repq_status repq_qmodel_clone(repq_object *err, const repq_allocator *al, const repq_qmodel *src,
                              repq_qmodel **out);
/* Give one activation quantizer `channels` per-channel entries (replacing any). */
repq_status repq_act_quant_set_channels(const repq_allocator *al, repq_act_quant *q, int32_t channels);
/* Search per-output-channel quantizers of every linear weight of float_params at
 * its layer's width (layer_bits) and store the codes (method picks percentile or min/max ranges), then
 * rebuild fq_params. With `post_ln_only`, only the layers that follow a LayerNorm
 * (qkv and fc1, whose weights reparameterization rewrites) are searched again. */
repq_status repq_qmodel_quantize_weights(repq_object *err, repq_qmodel *q, bool post_ln_only);
/* Search per-output-channel quantizers of linear layer `id`'s float_params weight at
 * `bits` (2..8; the qmodel's method picks the ranges), store them, the codes and
 * layer_bits[id] = bits, and rebuild that layer's weight in fq_params. The weights of
 * a qmodel loaded from a file are its dequantized codes: searching them again is
 * allowed but is not the calibrated result. Errors: REPQ_ERR_INVALID_ARGUMENT (id or
 * bits out of range; nothing changed), REPQ_ERR_NOMEM (nothing changed),
 * REPQ_ERR_NUMERIC (NaN or infinity in the weights, which a model's loader refuses:
 * the layer is then left half-searched and the qmodel must be dropped). */
repq_status repq_qmodel_quantize_layer(repq_object *err, repq_qmodel *q, int32_t id, int32_t bits);
/* The width of an activation quantizer (0 for NONE). */
int32_t repq_act_quant_bits(const repq_act_quant *q);
/* Whether some layer's weight width differs from weight_bits, some used slot's from
 * act_bits (the patch input's from patch_input_bits): a file then needs version 4. */
bool repq_qmodel_widths_mixed(const repq_qmodel *q);
/* fq_params <- float_params with every linear weight replaced by its dequantized codes. */
void repq_qmodel_rebuild_fq(repq_qmodel *q);
/* The weight of linear layer `id` in fq_params <- its dequantized codes. Errors as
 * repq_quant_dequantize (a code above 2^bits - 1). */
repq_status repq_qmodel_dequantize_layer(repq_qmodel *q, int32_t id);
/* The uniform grid the codes of a layer-wise quantizer (UNIFORM or TWO_REGION) live
 * on, and its largest code; REPQ_ERR_INVALID_ARGUMENT for other kinds. */
repq_status repq_act_quant_grid(const repq_act_quant *q, repq_quant_params *grid, int32_t *max_code);
/* fc2's input quantizer (UNIFORM or TWO_REGION) as the session's fused GELU epilogue
 * and the fake-quant forward take it (kernels/quantize_f32.h); REPQ_ERR_INVALID_ARGUMENT
 * for other kinds. */
repq_status repq_act_quant_gelu_codes(const repq_act_quant *q, repq_gelu_codes *out);
/* How many slots quantize fc2's input with two regions (the only point that may). */
int32_t repq_qmodel_two_region_blocks(const repq_qmodel *q);
/* timm's additive mask between tokens that a shifted window brought together. */
#define REPQ_SWIN_MASK (-100.0)

/* Window attention (Swin) runs its scores on a grid 2^-shift finer than their scale
 * in_scale (s_q s_k), with the relative position bias and the mask rounded onto that
 * grid (repq_window_score_round), so that the integer session and the fake-quant
 * forward add the same integers. The shift is the largest in [0, 12] that keeps the
 * scores of head_dim products of q codes and k codes (made s8 as the session does),
 * their zero-point terms, and a bias up to bias_max in magnitude (in real units) below
 * 2^30; -1 when none does. */
int repq_window_score_shift(const repq_quant_params *q, const repq_quant_params *k, int32_t head_dim, double bias_max);
/* value / in_scale on the grid 2^-shift, rounded to the nearest integer (ties to even). */
int32_t repq_window_score_round(double value, double in_scale, int shift);
/* The largest |entry| of a windowed block's relative position bias table in `p`. */
double repq_window_bias_max(const repq_net *net, const repq_params *p, const repq_net_node *node);
/* Every windowed block's scores fit a grid (repq_window_score_shift >= 0) with its q and
 * k quantizers; else fails with `code`, naming the block. */
repq_status repq_qmodel_check_windows(repq_object *err, repq_status code, const repq_qmodel *q);

/* Apply an activation quantizer in place to x [rows, cols] (fake quantization). */
repq_status repq_act_quant_apply(const repq_act_quant *q, float *x, size_t rows, size_t cols);
/* Fake quantization of the activations only, with the weights of parameter set p (e.g.
 * float_params: the weights held fixed in float) and every product the forward's exact
 * product of the float values; for tests of reparameterization, which is an identity
 * for the activation quantizers. */
repq_status repq_qmodel_forward_activations(const repq_qmodel *q, const repq_params *p, repq_tensor *images,
                                            repq_tensor *logits);

#endif
