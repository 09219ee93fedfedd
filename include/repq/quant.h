/* librepq quantization stages: calibrate -> reparameterize -> integer inference.
 *
 *   repq_calib_new(ctx, model, options, &calib)   a calibrator over a float model
 *   repq_calib_feed(calib, images)                one or more batches of calibration images
 *   repq_calib_finish(calib, &qmodel)             searches every quantizer; the result keeps
 *                                                 the "complex" quantizers (channel-wise
 *                                                 post-LN, log-sqrt2 post-softmax)
 *   repq_qmodel_reparameterize(ctx, qmodel, &r)   folds them into "simple" ones (layer-wise
 *                                                 scales, log2 codes), what inference runs
 *   repq_calib_reconstruct(calib, r, &g)          optional: GPTQ weight codes (RepQuant)
 *   repq_qmodel_save(r, path)                     repq_qmodel_load(ctx, path, &r) later
 *   repq_session_new(ctx, r, options, max_batch, &s)
 *                                                 integer inference: repq_session_run(s,
 *                                                 images, logits)
 *
 * Thread safety: a repq_qmodel is immutable once made and may be shared read-only by
 * many sessions on many threads (its last-error message is only written by calls
 * that take it as their first argument and are documented as writing it). A
 * calibrator and a session belong to one thread at a time. The sessions of one qmodel
 * share its packed weights (built by the first session, released with the last, with
 * the qmodel's allocator, under a lock the qmodel holds), so each further session
 * costs only its scratch (the session context's allocator); the qmodel must outlive
 * its sessions.
 */
#ifndef REPQ_QUANT_H
#define REPQ_QUANT_H

#include "common.h"
#include "model.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Observes a float model on calibration images and searches quantization parameters.
 * It keeps a reference to the model: the model must outlive the calibrator. */
typedef struct repq_calib repq_calib;

/* A quantized model: integer weights, scales, zero points and the (possibly rewritten)
 * float parameters of LayerNorm and biases. It does not depend on the float model or
 * on the calibration data once made. */
typedef struct repq_qmodel repq_qmodel;

/* An integer-inference session over a reparameterized quantized model. It owns all of
 * its scratch memory (allocated at creation) and keeps a reference to the qmodel,
 * which must outlive it. */
typedef struct repq_session repq_session;

/* Options read: REPQ_OPT_WEIGHT_BITS, REPQ_OPT_ACT_BITS, REPQ_OPT_METHOD,
 * REPQ_OPT_PATCH_INPUT_BITS, REPQ_OPT_POST_GELU, REPQ_OPT_DUAL_CLIP, REPQ_OPT_SMOOTH (SQ-b:
 * repq_calib_finish then runs one more float forward over the images), REPQ_OPT_MIXED
 * (greedy mixed precision: repq_calib_finish first measures every quantizer's
 * sensitivity, docs/method.md), REPQ_OPT_GPTQ_TARGET (for repq_calib_reconstruct).
 * `options` may be NULL (W8A8, RepQ-ViT); they are copied.
 * Errors (recorded on ctx): REPQ_ERR_INVALID_ARGUMENT (NULL out_calib, model not a model,
 * options not an options object), REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_calib_new(repq_context *ctx, repq_model *model,
                                    const repq_options *options, repq_calib **out_calib);
REPQ_API void repq_calib_free(repq_calib *calib);
/* Add a batch of images (same forms as repq_model_forward accepts); they are copied.
 * Errors (recorded on `calib`): REPQ_ERR_INVALID_ARGUMENT (images not a tensor),
 * REPQ_ERR_SHAPE (wrong image size or channels, a dtype other than the earlier
 * batches'), REPQ_ERR_NUMERIC, REPQ_ERR_STATE (after finish), REPQ_ERR_OVERFLOW,
 * REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_calib_feed(repq_calib *calib, repq_tensor *images);
/* Progress of repq_calib_finish and repq_calib_reconstruct: called with done =
 * 0..total steps (total = transformer blocks + 1) from the thread making the call. */
typedef void (*repq_progress_fn)(void *user, int32_t done, int32_t total);
/* Set (or clear, with fn == NULL) the progress callback.
 * Errors: REPQ_ERR_INVALID_ARGUMENT (not a calibrator; nothing recorded). */
REPQ_API repq_status repq_calib_set_progress(repq_calib *calib, repq_progress_fn fn, void *user);
/* Run the calibration forward pass over every fed image and search all quantizers.
 * Errors (recorded on `calib`): REPQ_ERR_INVALID_ARGUMENT (NULL out_qmodel),
 * REPQ_ERR_STATE (no image fed, or already finished), REPQ_ERR_NUMERIC (a quantizer search
 * met non-finite values), REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_calib_finish(repq_calib *calib, repq_qmodel **out_qmodel);

REPQ_API void repq_qmodel_free(repq_qmodel *qmodel);

/* Optional stage after reparameterization: RepQuant's weight reconstruction (GPTQ).
 * The calibrator's images run once more through the reparameterized, fake-quantized
 * model; each linear layer in turn gets the weight codes that make its output on the
 * inputs it actually receives closest to its float weights' (docs/method.md), instead
 * of each weight's own nearest code; with the calibrator's REPQ_OPT_GPTQ_TARGET =
 * REPQ_GPTQ_TARGET_FLOAT_MODEL, closest to the float model's output of the layer, so
 * that the weights also correct their inputs' error (the float model then runs beside
 * the quantized one, a block at a time). Scales, zero points and activation quantizers are
 * kept, so the result runs wherever `qmodel` runs. `qmodel` is normally
 * repq_qmodel_reparameterize of this calibrator's result; any reparameterized qmodel of
 * the calibrated model's architecture is accepted, and its own quantizers (bits
 * included) are used. It needs the float weights: a loaded qmodel has none. Error
 * messages are recorded on the calibrator.
 * Errors: REPQ_ERR_INVALID_ARGUMENT, REPQ_ERR_STATE (calibrator not finished, qmodel not
 * reparameterized or without float weights), REPQ_ERR_SHAPE (another architecture),
 * REPQ_ERR_NUMERIC, REPQ_ERR_OVERFLOW, REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_calib_reconstruct(repq_calib *calib, const repq_qmodel *qmodel,
                                           repq_qmodel **out_qmodel);

/* Fold channel-wise post-LayerNorm quantizers into LayerNorm and the next linear
 * layer (layer-wise result) and turn log-sqrt2 post-softmax codes into log2 codes with
 * parity; weights are re-quantized after the rewrite. A qmodel that is already
 * layer-wise (method minmax, or reparameterized) is copied unchanged.
 * Errors (recorded on ctx): REPQ_ERR_INVALID_ARGUMENT (not a qmodel, NULL out),
 * REPQ_ERR_STATE (a channel-wise qmodel without float weights), REPQ_ERR_NUMERIC (a fold
 * gives an unusable scale), REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_qmodel_reparameterize(repq_context *ctx, const repq_qmodel *qmodel,
                                                repq_qmodel **out_reparameterized);

/* Ways of running a qmodel in float arithmetic. Values are part of the ABI. */
typedef enum repq_forward_mode {
    REPQ_FORWARD_FAKE_QUANT = 1, /* every quantizer applied where inference applies it */
    REPQ_FORWARD_FLOAT = 2       /* the qmodel's float parameters, no quantizer at all */
} repq_forward_mode;

/* Float forward of a quantized model. Inputs and outputs as repq_model_forward. In
 * fake-quant mode the products of quantized operands (linear layers after a layer-wise
 * quantizer, q k^T, attention x v) are computed exactly from the codes and rounded once,
 * as the integer session computes them (docs/inference.md).
 * Allocates its scratch per call; safe to call concurrently on one qmodel (with other
 * logits tensors): messages are recorded on `logits`, never on the shared qmodel.
 * Errors: REPQ_ERR_INVALID_ARGUMENT (not a qmodel, unknown mode, images or logits not a
 * tensor), REPQ_ERR_STATE (REPQ_FORWARD_FLOAT on a qmodel loaded from a file, which has
 * no float weights), REPQ_ERR_SHAPE, REPQ_ERR_NUMERIC, REPQ_ERR_NOMEM (as
 * repq_model_forward). */
REPQ_API repq_status repq_qmodel_forward(const repq_qmodel *qmodel, repq_forward_mode mode,
                                         repq_tensor *images, repq_tensor *logits);

/* Attributes of a qmodel: the same keys as repq_model_attr plus these. */
typedef enum repq_qmodel_attr {
    /* The widths the calibration options asked for. With mixed widths (MIXED_WIDTHS)
     * each linear layer has its own: repq_qmodel_get_layer_int. */
    REPQ_QMODEL_WEIGHT_BITS = 101,
    REPQ_QMODEL_ACT_BITS = 102,
    REPQ_QMODEL_METHOD = 103,
    REPQ_QMODEL_REPARAMETERIZED = 104, /* 1 if layer-wise (runnable by a session) */
    /* Blocks whose post-GELU activations (fc2's input) are quantized with two regions
     * (REPQ_POST_GELU_TWO_REGION keeps them only where they beat one grid; none at 8
     * bits): 0 to depth. */
    REPQ_QMODEL_TWO_REGION_BLOCKS = 105,
    REPQ_QMODEL_NUM_LAYERS = 106,  /* linear layers, in the network's order (layer indices) */
    /* 1 if some layer's weight width differs from WEIGHT_BITS or some activation's
     * from ACT_BITS (the patch embedding's input: from its own option), else 0 */
    REPQ_QMODEL_MIXED_WIDTHS = 107,
    /* Quantized activations, in the network's order (activation indices): every
     * linear layer's input, and each block's q, k, v and attention probabilities */
    REPQ_QMODEL_NUM_ACTIVATIONS = 108
} repq_qmodel_attr;
/* Errors: REPQ_ERR_INVALID_ARGUMENT (not a qmodel, unknown attr, NULL out_value); no
 * message is recorded (a qmodel is shared read-only by threads). */
REPQ_API repq_status repq_qmodel_get_int(const repq_qmodel *qmodel, int32_t attr,
                                         int64_t *out_value);
/* The architecture's stage attributes, as repq_model_get_stage_int. */
REPQ_API repq_status repq_qmodel_get_stage_int(const repq_qmodel *qmodel, int32_t stage, repq_stage_attr attr,
                                               int64_t *out_value);

/* Integer attributes of one linear layer of a qmodel. Values are part of the ABI. */
typedef enum repq_layer_attr {
    REPQ_LAYER_WEIGHT_BITS = 1,  /* width of its weight codes */
    REPQ_LAYER_INPUT_BITS = 2,   /* width of the activation quantizer of its input */
    REPQ_LAYER_OUT_FEATURES = 3,
    REPQ_LAYER_IN_FEATURES = 4   /* weights: OUT_FEATURES x IN_FEATURES */
} repq_layer_attr;
/* Attribute `attr` of linear layer `layer` (0 <= layer < REPQ_QMODEL_NUM_LAYERS), in
 * the network's order: patch embedding, each block's qkv, proj, fc1, fc2 (a Swin's
 * patch merging reductions between its stages), head. Thread-safe on a shared qmodel.
 * Errors: REPQ_ERR_INVALID_ARGUMENT (not a qmodel, layer out of range, unknown attr,
 * NULL out_value); no message is recorded. */
REPQ_API repq_status repq_qmodel_get_layer_int(const repq_qmodel *qmodel, int32_t layer, repq_layer_attr attr,
                                               int64_t *out_value);
/* The timm name of linear layer `layer` (e.g. "blocks.3.mlp.fc1"), UTF-8, owned by the
 * qmodel and valid until it is freed. Errors: REPQ_ERR_INVALID_ARGUMENT (not a qmodel,
 * layer out of range, NULL out_name); no message is recorded. */
REPQ_API repq_status repq_qmodel_get_layer_name(const repq_qmodel *qmodel, int32_t layer, const char **out_name);

/* How an activation's codes map to values. Values are part of the ABI. */
typedef enum repq_activation_kind {
    REPQ_ACTIVATION_UNIFORM = 1,    /* one scale and zero point for the whole tensor */
    REPQ_ACTIVATION_CHANNELS = 2,   /* one scale and zero point per channel (before reparameterization) */
    REPQ_ACTIVATION_LOG = 3,        /* powers of 2 or of sqrt2 (post-softmax probabilities) */
    REPQ_ACTIVATION_TWO_REGION = 4  /* two steps, one per sign (post-GELU; MPTQ-ViT) */
} repq_activation_kind;
/* Integer attributes of one quantized activation. Values are part of the ABI. */
typedef enum repq_activation_attr {
    REPQ_ACTIVATION_BITS = 1,   /* width of its codes */
    REPQ_ACTIVATION_VALUES = 2, /* values it holds per image (what its width costs in traffic) */
    REPQ_ACTIVATION_KIND = 3    /* a repq_activation_kind (0: not quantized) */
} repq_activation_attr;
/* Attribute `attr` of activation `activation` (0 <= activation <
 * REPQ_QMODEL_NUM_ACTIVATIONS), in the network's order: the patch embedding's input,
 * then per block the qkv layer's input, q, k, v, the attention probabilities, proj's,
 * fc1's and fc2's inputs (a Swin's patch merging reductions' inputs between its
 * stages), and the head's input. With mixed widths (REPQ_QMODEL_MIXED_WIDTHS) each has
 * its own BITS; REPQ_LAYER_INPUT_BITS is the BITS of a layer's input. Thread-safe on a
 * shared qmodel. Errors: REPQ_ERR_INVALID_ARGUMENT (not a qmodel, activation out of
 * range, unknown attr, NULL out_value); no message is recorded. */
REPQ_API repq_status repq_qmodel_get_activation_int(const repq_qmodel *qmodel, int32_t activation,
                                                    repq_activation_attr attr, int64_t *out_value);
/* The name of activation `activation`: a layer's input is the layer's timm name and
 * ".input" ("blocks.3.mlp.fc2.input"), the others the attention module's name and "q",
 * "k", "v" or "softmax" ("blocks.3.attn.softmax"). UTF-8, owned by the qmodel and valid
 * until it is freed. Errors: REPQ_ERR_INVALID_ARGUMENT (not a qmodel, activation out of
 * range, NULL out_name); no message is recorded. */
REPQ_API repq_status repq_qmodel_get_activation_name(const repq_qmodel *qmodel, int32_t activation,
                                                     const char **out_name);

/* Save a reparameterized qmodel as one safetensors file (format: docs/format.md) with a
 * CRC-32C of its bytes in the header. The file is written to a temporary file in the
 * destination's folder, flushed and renamed over `path`: a failed save leaves any file
 * already at `path` untouched and no temporary file behind. A symbolic link at `path` is
 * followed. Messages are recorded on `qmodel`.
 * Errors: REPQ_ERR_INVALID_ARGUMENT (NULL path), REPQ_ERR_STATE (not reparameterized),
 * REPQ_ERR_IO (cannot create, write, flush or rename; `path` is a directory or not a
 * regular file), REPQ_ERR_UNSUPPORTED (an architecture the format cannot describe),
 * REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_qmodel_save(repq_qmodel *qmodel, const char *path);
/* Load a file written by repq_qmodel_save. Hostile-input safe: every size, offset and
 * parameter is checked, and the file's checksum when it has one (files written before
 * checksums existed load too). Messages are recorded on `ctx`.
 * Errors: REPQ_ERR_INVALID_ARGUMENT, REPQ_ERR_IO, REPQ_ERR_FORMAT (malformed, damaged:
 * "checksum mismatch", or not a quantized model), REPQ_ERR_UNSUPPORTED (newer format
 * version), REPQ_ERR_OVERFLOW, REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_qmodel_load(repq_context *ctx, const char *path,
                                      repq_qmodel **out_qmodel);

/* Options read: REPQ_OPT_THREADS, REPQ_OPT_KERNELS. `max_batch` >= 1 sizes the scratch
 * memory: runs may use any batch up to it.
 * Errors (recorded on ctx): REPQ_ERR_INVALID_ARGUMENT (not a qmodel, NULL out_session,
 * options not an options object, max_batch < 1), REPQ_ERR_STATE (qmodel not
 * reparameterized), REPQ_ERR_UNSUPPORTED (embed_dim not a multiple of num_heads),
 * REPQ_ERR_OVERFLOW (scratch size), REPQ_ERR_NOMEM (scratch, or worker threads that could
 * not start). */
REPQ_API repq_status repq_session_new(repq_context *ctx, const repq_qmodel *qmodel,
                                      const repq_options *options, int32_t max_batch,
                                      repq_session **out_session);
REPQ_API void repq_session_free(repq_session *session);

/* Attributes of a session. */
typedef enum repq_session_attr {
    REPQ_SESSION_KERNELS = 201,   /* repq_kernels in use (never AUTO) */
    REPQ_SESSION_THREADS = 202,
    REPQ_SESSION_MAX_BATCH = 203
} repq_session_attr;
/* Errors: REPQ_ERR_INVALID_ARGUMENT (bad handle; NULL out pointer or unknown attr,
 * recorded on `session`). */
REPQ_API repq_status repq_session_get_int(const repq_session *session, int32_t attr,
                                          int64_t *out_value);
/* Run the network with integer GEMMs and shift-based attention. Allocates nothing.
 * Inputs and outputs as repq_model_forward, with N <= max_batch.
 * Errors (recorded on `session`): REPQ_ERR_INVALID_ARGUMENT (images or logits not a
 * tensor), REPQ_ERR_SHAPE (images not [N, C, H, W] of the model's size in U8 or F32,
 * logits not F32 [N, num_classes], N > max_batch), REPQ_ERR_NUMERIC (NaN/Inf in F32
 * images). */
REPQ_API repq_status repq_session_run(repq_session *session, repq_tensor *images,
                                      repq_tensor *logits);

#ifdef __cplusplus
}
#endif
#endif
