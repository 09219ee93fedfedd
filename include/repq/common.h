/* librepq: post-training quantization and integer inference for vision transformers.
 * Common definitions: export macro, version, status codes, contexts, options.
 *
 * Conventions that hold for every header of this library:
 * - Every fallible function returns repq_status; REPQ_OK (0) is success. Results come
 *   back through out-parameters, which are always last. On failure an out-parameter
 *   that would receive a handle is set to NULL.
 * - Every handle is opaque. Whoever obtains a handle from a _new/_load/_create call
 *   frees it with the matching _free, which accepts NULL.
 * - Buffers the caller passes in stay the caller's; the library copies what it keeps.
 * - The human-readable message of the last failure on a handle is returned by
 *   repq_last_error(handle). Every failing call records its own message, replacing any
 *   older one, on the handle its comment names: by default its first argument; for
 *   calls that create a handle, the repq_context passed to them; for calls on a shared
 *   repq_qmodel (repq_qmodel_forward) the caller's logits tensor; repq_top1_compute and
 *   repq_top1_count the logits tensor. The exceptions record nothing, there being
 *   nowhere to record it: a call given a NULL or invalid handle as that argument
 *   (REPQ_ERR_INVALID_ARGUMENT), a creating call given ctx == NULL, and
 *   repq_qmodel_get_int (a qmodel is shared read-only by threads).
 */
#ifndef REPQ_COMMON_H
#define REPQ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(REPQ_BUILDING_LIBRARY)
#  define REPQ_API __attribute__((visibility("default")))
#else
#  define REPQ_API
#endif

#define REPQ_VERSION_MAJOR 0
#define REPQ_VERSION_MINOR 1
#define REPQ_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH, as returned by repq_version_number(). */
#define REPQ_VERSION_NUMBER \
    (REPQ_VERSION_MAJOR * 10000 + REPQ_VERSION_MINOR * 100 + REPQ_VERSION_PATCH)

/* Status codes. Values are part of the ABI and are never renumbered. */
typedef enum repq_status {
    REPQ_OK = 0,
    REPQ_ERR_INVALID_ARGUMENT = 1, /* NULL handle or pointer, bad size, bad option value */
    REPQ_ERR_NOMEM = 2,            /* an allocation failed */
    REPQ_ERR_IO = 3,               /* a file could not be opened or read */
    REPQ_ERR_FORMAT = 4,           /* a file is malformed or inconsistent */
    REPQ_ERR_UNSUPPORTED = 5,      /* well-formed but not supported (dtype, version, architecture) */
    REPQ_ERR_SHAPE = 6,            /* tensor shape or dtype does not match what the call needs */
    REPQ_ERR_STATE = 7,            /* stages called in the wrong order */
    REPQ_ERR_NUMERIC = 8,          /* NaN or infinity in input data or weights */
    REPQ_ERR_OVERFLOW = 9          /* a size would overflow */
} repq_status;

/* A static English name for a status ("REPQ_ERR_FORMAT: malformed file"); never NULL. */
REPQ_API const char *repq_status_string(repq_status status);

/* Run-time version, e.g. "0.1.0", and REPQ_VERSION_NUMBER of the loaded library. */
REPQ_API const char *repq_version_string(void);
REPQ_API int32_t repq_version_number(void);

/* The message of the last failure recorded on a handle of this library (a
 * repq_context, repq_options, repq_tensor, repq_model, repq_calib, repq_qmodel,
 * repq_session), or "" if none. The string stays valid until the next failing call on
 * that handle or until it is freed. NULL gives "". A handle is one library object;
 * passing any other pointer is undefined. */
REPQ_API const char *repq_last_error(const void *handle);

/* ---- Context ------------------------------------------------------------------
 * A context carries the memory allocator and receives the error messages of calls
 * that create handles (load, new). Handles copy what they need from the context at
 * creation, so a context may be freed before the handles made with it.
 * Every creating function also accepts ctx == NULL: the C allocator is used and the
 * message of a failed creation is lost (the status still says what kind of error).
 * A context is used by one thread at a time. */
typedef struct repq_context repq_context;

/* Allocation callbacks: alloc(user, size, alignment) returns memory aligned to
 * `alignment` (a power of two, at most 4096) or NULL; release(user, ptr) frees it and
 * accepts NULL. Both are called from whatever thread uses a handle. */
typedef void *(*repq_alloc_fn)(void *user, size_t size, size_t alignment);
typedef void (*repq_release_fn)(void *user, void *ptr);

/* Errors: REPQ_ERR_INVALID_ARGUMENT (NULL out_ctx), REPQ_ERR_NOMEM; nothing is recorded. */
REPQ_API repq_status repq_context_new(repq_context **out_ctx);
REPQ_API void repq_context_free(repq_context *ctx);
/* Replace the allocator used by handles created from now on with this context.
 * Errors: REPQ_ERR_INVALID_ARGUMENT if ctx, alloc or release is NULL. */
REPQ_API repq_status repq_context_set_allocator(repq_context *ctx, repq_alloc_fn alloc,
                                                repq_release_fn release, void *user);

/* ---- Options ------------------------------------------------------------------
 * A key/value bag used by the calibrator and the session, so that new settings never
 * change a struct layout. Keys that a stage does not use are ignored by it. Values are
 * checked when they are set, against the ranges below; a refused value leaves the old
 * one and records "option threads = 100000 is outside [1, 256]" on the options handle
 * (repq_last_error(options)). An options object is used by one thread at a time while
 * it is being set; the stages only read it. */
typedef struct repq_options repq_options;

typedef enum repq_option {
    REPQ_OPT_WEIGHT_BITS = 1,      /* 2..8, default 8 */
    REPQ_OPT_ACT_BITS = 2,         /* 2..8, default 8 */
    REPQ_OPT_METHOD = 3,           /* repq_method (0..1), default REPQ_METHOD_REPQ */
    REPQ_OPT_PATCH_INPUT_BITS = 4, /* bits of the patch embedding's input, 2..8, default 8 */
    REPQ_OPT_THREADS = 5,          /* worker threads of a session, 1..256, default 1 */
    REPQ_OPT_KERNELS = 6,          /* repq_kernels (0..5): the most a session may use, default AUTO */
    REPQ_OPT_POST_GELU = 7,        /* repq_post_gelu (0..1): the quantizer of fc2's input, default TWO_REGION */
    REPQ_OPT_DUAL_CLIP = 8,        /* clipping of the post-LayerNorm channels (0..1): 0 the reference's
                                      percentile search, 1 RepQuant's per-channel dual clipping
                                      (docs/method.md); default 0 */
    REPQ_OPT_SMOOTH = 9,           /* repq_smooth (0..1): SQ-b before calibration, default SQB
                                      (part of the best measured combination) */
    REPQ_OPT_MIXED = 10,           /* 0..1, default 0. 1: greedy mixed precision: every linear layer's
                                      weight and every activation gets a width from {4, 5, 6, 8}, chosen
                                      by measured sensitivity so that the average widths (weighted by
                                      weights, and by activation values per image) are at most
                                      REPQ_OPT_WEIGHT_BITS and REPQ_OPT_ACT_BITS (then 4..8) */
    REPQ_OPT_GPTQ_TARGET = 11      /* repq_gptq_target (0..1): what repq_calib_reconstruct's GPTQ
                                      keeps each layer's output close to, default FLOAT_MODEL
                                      (part of the best measured combination) */
} repq_option;

/* Kernel families of the integer engine, slowest first. A session uses the best
 * family the CPU (and OS) supports, at most the one REPQ_OPT_KERNELS asks for; every
 * family gives the same bits. */
typedef enum repq_kernels {
    REPQ_KERNELS_AUTO = 0,       /* the best available */
    REPQ_KERNELS_SCALAR = 1,     /* portable C */
    REPQ_KERNELS_AVX2 = 2,
    REPQ_KERNELS_AVXVNNI = 3,    /* AVX2 + 256-bit VNNI dot products */
    REPQ_KERNELS_AVX512VNNI = 4,
    REPQ_KERNELS_AMX = 5         /* AVX-512 VNNI + AMX-INT8 tiles (Linux asks for permission) */
} repq_kernels;

typedef enum repq_method {
    REPQ_METHOD_REPQ = 0,   /* RepQ-ViT: channel-wise post-LN, log-sqrt2 post-softmax */
    REPQ_METHOD_MINMAX = 1  /* naive baseline: min/max ranges, layer-wise, uniform softmax */
} repq_method;

/* The quantizer of the post-GELU activations (fc2's input) under REPQ_METHOD_REPQ. */
typedef enum repq_post_gelu {
    REPQ_POST_GELU_UNIFORM = 0,   /* RepQ-ViT's: one layer-wise uniform grid */
    REPQ_POST_GELU_TWO_REGION = 1 /* MPTQ-ViT's OPT-m: a finer step for the negative values, the
                                     regions and the ratio of the steps searched (docs/method.md) */
} repq_post_gelu;

/* MPTQ-ViT's SQ-b (SmoothQuant with a bias term) under either method: every channel of
 * the inputs of the linear layers after a LayerNorm, of proj and of the head is shifted
 * to its centre and divided by a smoothing factor, folded exactly into the layers that
 * produce and consume it before calibration (docs/method.md). */
typedef enum repq_smooth {
    REPQ_SMOOTH_OFF = 0,
    REPQ_SMOOTH_SQB = 1
} repq_smooth;

/* What GPTQ weight reconstruction (repq_calib_reconstruct) keeps each linear layer's
 * output close to, on the calibration images. */
typedef enum repq_gptq_target {
    REPQ_GPTQ_TARGET_QUANTIZED_INPUT = 0, /* GPTQ's: the layer's float weights applied to the
                                             (quantized) inputs the layer receives */
    REPQ_GPTQ_TARGET_FLOAT_MODEL = 1      /* the float model's output of the layer: the weights
                                             also correct the error their inputs carry, by a
                                             ridge regression whose strength is chosen per layer
                                             by cross-validation over the images (docs/method.md) */
} repq_gptq_target;

/* Errors: REPQ_ERR_INVALID_ARGUMENT (NULL out_options), REPQ_ERR_NOMEM; nothing is recorded. */
REPQ_API repq_status repq_options_new(repq_options **out_options);
REPQ_API void repq_options_free(repq_options *options);
/* Errors (recorded on `options`): REPQ_ERR_INVALID_ARGUMENT for an unknown key or a
 * value outside the key's range above. */
REPQ_API repq_status repq_options_set_int(repq_options *options, repq_option key, int64_t value);
/* Errors (recorded on `options`): REPQ_ERR_INVALID_ARGUMENT for an unknown key or a NULL
 * out_value. */
REPQ_API repq_status repq_options_get_int(const repq_options *options, repq_option key,
                                          int64_t *out_value);

#ifdef __cplusplus
}
#endif
#endif
