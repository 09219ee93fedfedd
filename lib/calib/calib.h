/* Internal: the calibrator's state, shared by calibration (calib.c) and weight
 * reconstruction (reconstruct.c), which reuses the fed images. */
#ifndef REPQ_CALIB_CALIB_H
#define REPQ_CALIB_CALIB_H

#include <stdbool.h>

#include "model/model.h"
#include "repq/quant.h"

struct repq_calib {
    repq_object base;
    repq_model *model;
    int32_t weight_bits, act_bits, patch_input_bits, method;
    int32_t post_gelu;     /* repq_post_gelu */
    int8_t *layer_bits;    /* [net->num_linear] weight widths, NULL: weight_bits */
    int8_t *slot_bits;     /* [net->num_slots] activation widths, NULL: act_bits (patch_input_bits) */
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

#endif
