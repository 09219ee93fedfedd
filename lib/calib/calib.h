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
    int32_t smooth;        /* repq_smooth */
    int32_t smooth_sites;  /* REPQ_SQB_* bits where SQ-b applies (all; tests narrow it) */
    bool finished;
    bool pixels_u8;        /* dtype of the fed images (all batches alike) */
    size_t images;         /* fed so far */
    size_t image_bytes;
    uint8_t *data;         /* images * image_bytes */
    size_t capacity;       /* bytes allocated in data */
    repq_progress_fn progress;
    void *progress_user;
};

#endif
