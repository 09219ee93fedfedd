/* librepq float models and image data. */
#ifndef REPQ_MODEL_H
#define REPQ_MODEL_H

#include "common.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A float vision transformer: ViT/DeiT (class-token pooling) or Swin (stages of window
 * attention, patch merging, average pooling). Immutable after loading except for its
 * last-error message: use one model from one thread at a time, or one model per thread. */
typedef struct repq_model repq_model;

/* The families of vision transformers (REPQ_MODEL_FAMILY). Values are part of the ABI. */
typedef enum repq_family {
    REPQ_FAMILY_VIT = 0, /* ViT, DeiT: timm's VisionTransformer */
    REPQ_FAMILY_SWIN = 1 /* timm's SwinTransformer */
} repq_family;

/* Load a model from a safetensors file with timm's tensor names.
 * `preset` names an architecture ("deit_tiny_patch16_224", "deit_small_patch16_224",
 * "deit_base_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224",
 * "swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224",
 * "swin_base_patch4_window7_224"); with NULL, the architecture is read from the file's
 * __metadata__ "architecture" entry (a Swin when "format" is "timm.swin_transformer";
 * docs/guide.md lists the fields) and the preprocessing from "preprocess", else
 * ImageNet's defaults. Swin checkpoints may use timm's current names or those of timm
 * before 0.9 (patch merging at the end of the previous stage, "head"); buffers they
 * carry (relative_position_index, attn_mask) must equal what the library computes.
 * The file is read completely; F32, F16 and BF16 tensors are converted to float.
 * Errors (recorded on ctx): REPQ_ERR_INVALID_ARGUMENT (NULL path or out_model), REPQ_ERR_IO,
 * REPQ_ERR_FORMAT (malformed or inconsistent file, damaged (checksum mismatch), missing or
 * misshapen tensor; a quantized .repq model or a CIFAR-10 file is named as such),
 * REPQ_ERR_UNSUPPORTED (dtype, architecture), REPQ_ERR_NUMERIC (NaN/Inf weights),
 * REPQ_ERR_OVERFLOW, REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_model_load(repq_context *ctx, const char *path, const char *preset,
                                     repq_model **out_model);

/* Create a model of a preset architecture with random weights (deterministic for a
 * seed), for tests and benchmarks. `num_classes` <= 0 keeps the preset's count.
 * Errors (recorded on ctx): REPQ_ERR_INVALID_ARGUMENT (NULL or unknown preset, NULL
 * out_model, num_classes > 100000), REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_model_create_random(repq_context *ctx, const char *preset,
                                              int32_t num_classes, uint64_t seed,
                                              repq_model **out_model);
REPQ_API void repq_model_free(repq_model *model);

/* Integer attributes of a model's architecture. Values are part of the ABI. Where a
 * family has one value per stage, the attribute reads family-neutrally: DEPTH counts
 * every transformer block, EMBED_DIM, NUM_HEADS and MLP_HIDDEN are the first stage's,
 * NUM_TOKENS the token rows entering the first block (ViT: patches + class token);
 * repq_model_get_stage_int gives each stage's. */
typedef enum repq_model_attr {
    REPQ_MODEL_IMG_SIZE = 1,
    REPQ_MODEL_PATCH_SIZE = 2,
    REPQ_MODEL_IN_CHANS = 3,
    REPQ_MODEL_NUM_CLASSES = 4,
    REPQ_MODEL_EMBED_DIM = 5,
    REPQ_MODEL_DEPTH = 6,
    REPQ_MODEL_NUM_HEADS = 7,
    REPQ_MODEL_MLP_HIDDEN = 8,
    REPQ_MODEL_NUM_TOKENS = 9,
    REPQ_MODEL_NUM_TENSORS = 10,
    REPQ_MODEL_NUM_PARAMS = 11,
    REPQ_MODEL_FLOPS_PER_IMAGE = 12, /* multiply-adds x 2 of the linear layers and attention */
    REPQ_MODEL_FAMILY = 13,          /* repq_family */
    REPQ_MODEL_NUM_STAGES = 14,      /* stages of blocks (ViT/DeiT: 1) */
    REPQ_MODEL_WINDOW_SIZE = 15      /* attention window side (Swin's target window); 0: global */
} repq_model_attr;

/* Errors (recorded on `model`): REPQ_ERR_INVALID_ARGUMENT (unknown attr, NULL out_value). */
REPQ_API repq_status repq_model_get_int(const repq_model *model, repq_model_attr attr,
                                        int64_t *out_value);

/* Integer attributes of one stage of blocks. Values are part of the ABI. */
typedef enum repq_stage_attr {
    REPQ_STAGE_DEPTH = 1,       /* blocks */
    REPQ_STAGE_EMBED_DIM = 2,   /* channels of its tokens */
    REPQ_STAGE_NUM_HEADS = 3,
    REPQ_STAGE_MLP_HIDDEN = 4,
    REPQ_STAGE_NUM_TOKENS = 5,  /* token rows per image */
    REPQ_STAGE_WINDOW_SIZE = 6  /* side of its attention windows (0: global attention) */
} repq_stage_attr;

/* Attribute `attr` of stage `stage` (0 <= stage < REPQ_MODEL_NUM_STAGES).
 * Errors: REPQ_ERR_INVALID_ARGUMENT (not a model, stage out of range, unknown attr,
 * NULL out_value). */
REPQ_API repq_status repq_model_get_stage_int(const repq_model *model, int32_t stage, repq_stage_attr attr,
                                              int64_t *out_value);

/* Float forward pass with OpenBLAS sgemm.
 * `images`: U8 [N, C, H, W] raw pixels (the model's preprocessing is applied), or F32
 * [N, C, H, W] already preprocessed. `logits`: F32 [N, num_classes], overwritten.
 * Scratch memory is allocated per call. OpenBLAS's own thread count applies.
 * Errors (recorded on `model`): REPQ_ERR_INVALID_ARGUMENT (images or logits not a tensor),
 * REPQ_ERR_SHAPE (images not [N, C, H, W] of the model's size in U8 or F32, logits not
 * F32 [N, num_classes]), REPQ_ERR_NUMERIC (NaN/Inf in F32 images), REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_model_forward(repq_model *model, repq_tensor *images,
                                        repq_tensor *logits);

/* Read records of the CIFAR-10 binary format (1 label byte, then 3072 bytes: the red,
 * green and blue 32x32 planes). Reads records [offset, offset + limit), or to the end
 * of the file when limit <= 0. Outputs: U8 [N, 3, 32, 32] images and I32 [N] labels.
 * Errors (recorded on ctx): REPQ_ERR_IO (cannot open or read, not a regular file),
 * REPQ_ERR_FORMAT (size not a positive multiple of 3073, a label outside 0..9),
 * REPQ_ERR_INVALID_ARGUMENT (NULL path or outputs, negative offset, offset past the end,
 * offset + limit past the end: a range the file does not hold is refused, never
 * shortened), REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_cifar_load(repq_context *ctx, const char *path, int64_t offset,
                                     int64_t limit, repq_tensor **out_images,
                                     repq_tensor **out_labels);

/* Top-1 accuracy helper: the fraction of rows of F32 `logits` [N, K] whose argmax
 * (the first largest entry) equals the I32 `labels` [N].
 * Errors (recorded on `logits` when it is a tensor: its message is the only thing
 * written): REPQ_ERR_INVALID_ARGUMENT (logits not F32 [N, K], labels not I32 [N], the two
 * N differ, NULL out_accuracy). */
REPQ_API repq_status repq_top1_compute(const repq_tensor *logits, const repq_tensor *labels,
                                       double *out_accuracy);
/* The same, as a count of correct rows: sum it over batches and divide by the number
 * of images once, so that a short last batch weighs what it holds. Errors as
 * repq_top1_compute. */
REPQ_API repq_status repq_top1_count(const repq_tensor *logits, const repq_tensor *labels,
                                     int64_t *out_correct);

#ifdef __cplusplus
}
#endif
#endif
