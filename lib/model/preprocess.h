/* Internal: how an image file becomes a model's input (timm's evaluation transform):
 * the shorter side resized to int(img_size / crop_pct) with `interpolation`, the centre
 * img_size x img_size crop, then (x * pixel_scale - mean[c]) / std[c] in the forward. The
 * normalization stays in repq_arch; this struct holds the geometric part. */
#ifndef REPQ_MODEL_PREPROCESS_H
#define REPQ_MODEL_PREPROCESS_H

#include <stdint.h>

/* Pillow's filter numbers, which timm's and torchvision's names map to. */
typedef enum repq_resample_filter {
    REPQ_RESAMPLE_BILINEAR = 2,
    REPQ_RESAMPLE_BICUBIC = 3
} repq_resample_filter;

typedef struct repq_image_prep {
    double crop_pct;       /* (0, 1], as timm keeps it (a double: int(img_size / crop_pct) must match) */
    int32_t interpolation; /* repq_resample_filter */
} repq_image_prep;

/* timm's defaults (DEFAULT_CROP_PCT, bicubic). */
#define REPQ_DEFAULT_CROP_PCT 0.875

#endif
