/* Internal: the calibrator's state, shared by calibration (calib.c) and weight
 * reconstruction (reconstruct.c), which reuses the fed images. */
#ifndef REPQ_CALIB_CALIB_H
#define REPQ_CALIB_CALIB_H

#include <stdbool.h>

#include "model/model.h"
#include "model/qmodel.h"
#include "repq/quant.h"

struct repq_calib {
    repq_object base;
    repq_model *model;
    int32_t weight_bits, act_bits, patch_input_bits, method;
    int32_t post_gelu;     /* repq_post_gelu */
    int32_t dual_clip;     /* REPQ_OPT_DUAL_CLIP */
    bool mixed;            /* greedy mixed precision (mixed.h) */
    int8_t *layer_bits;    /* [net->num_linear] weight widths, NULL: weight_bits */
    int8_t *slot_bits;     /* [net->num_slots] activation widths, NULL: act_bits (patch_input_bits) */
    int32_t smooth;        /* repq_smooth */
    int32_t smooth_sites;  /* REPQ_SQB_* bits where SQ-b applies (all; tests narrow it) */
    int32_t gptq_target;   /* repq_gptq_target, read by repq_calib_reconstruct */
    bool finished;
    bool pixels_u8;        /* dtype of the fed images (all batches alike) */
    size_t images;         /* fed so far */
    size_t image_bytes;
    uint8_t *data;         /* images * image_bytes */
    size_t capacity;       /* bytes allocated in data */
    repq_progress_fn progress;
    void *progress_user;
};

/* Per-layer weight widths (indexed by the net's linear-layer id, net->num_linear
 * entries) and per-slot activation widths (by slot id, net->num_slots entries), each
 * entry in 2..8, replacing the uniform widths of the options for the next
 * repq_calib_finish; NULL keeps the options' width (the patch-input slot keeps
 * patch_input_bits unless slot_act_bits is given; entries of unused slots are checked
 * but unused). The arrays are copied. Weight quantization, the requantization after
 * reparameterization and GPTQ then use each layer's width.
 * Errors (recorded on `c`): REPQ_ERR_INVALID_ARGUMENT (not a calibrator, an entry out
 * of range), REPQ_ERR_STATE (already finished), REPQ_ERR_NOMEM. */
repq_status repq_calib_set_widths(repq_calib *c, const int8_t *layer_weight_bits, const int8_t *slot_act_bits);

/* Search the quantizer of `slot` at `bits` on its calibration data x [rows, cols]
 * into aq (kind NONE on entry), with the calibrator's choice of quantizer kind.
 * scratch: rows * cols floats. */
repq_status repq_calib_search_slot(const repq_calib *c, const repq_net *net, const repq_allocator *al, int32_t slot,
                                   int32_t bits, float *x, size_t rows, size_t cols, float *scratch,
                                   repq_act_quant *aq);

/* One calibration pass over the fed images at the calibrator's widths, into a new
 * qmodel; the calibrator stays open. */
repq_status repq_calib_run(repq_calib *c, repq_qmodel **out_qmodel);

#endif
