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
    bool mixed;            /* greedy mixed precision (mixed.h) */
    bool finished;
    bool pixels_u8;        /* dtype of the fed images (all batches alike) */
    size_t images;         /* fed so far */
    size_t image_bytes;
    uint8_t *data;         /* images * image_bytes */
    size_t capacity;       /* bytes allocated in data */
    repq_progress_fn progress;
    void *progress_user;
};

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
