/* Internal: timm's evaluation transform of a decoded image, reproduced bit for bit:
 * torchvision's Resize(shorter side) with Pillow's resampling (Image.resize), then
 * CenterCrop. Only the pixels the crop keeps are computed; each output pixel of
 * Pillow's separable two-pass filter depends on its own coefficients only, so the
 * result is the same as resizing the whole image and cropping. */
#ifndef REPQ_IMAGE_RESIZE_H
#define REPQ_IMAGE_RESIZE_H

#include "core/object.h"
#include "io/image_decode.h"

/* torchvision's shorter-side resize: the size (w, h) the image is resized to; false if
 * the longer side would exceed 2^30 (an absurdly elongated image). */
bool repq_resize_target(int32_t width, int32_t height, int32_t shorter, int32_t *out_width,
                        int32_t *out_height);

/* Resize `src` so that its shorter side is `shorter` (>= crop) with `filter`
 * (repq_resample_filter), crop the centre `crop` x `crop`, and write it planar
 * (R plane, G plane, B plane) to `dst` (3 * crop * crop bytes). Scratch memory comes
 * from `al`. Errors: REPQ_ERR_INVALID_ARGUMENT, REPQ_ERR_OVERFLOW, REPQ_ERR_NOMEM. */
/* Errors: REPQ_ERR_UNSUPPORTED (see repq_resize_target), and the above. */
repq_status repq_resize_crop(repq_object *err, const repq_allocator *al, const repq_rgb_image *src,
                             int32_t shorter, int32_t crop, int32_t filter, uint8_t *dst);

#endif
