/* Internal: JPEG and PNG files decoded to 8-bit RGB the way Pillow's
 * Image.open(path).convert("RGB") decodes them (docs/images.md lists the rules). */
#ifndef REPQ_IO_IMAGE_DECODE_H
#define REPQ_IO_IMAGE_DECODE_H

#include "core/object.h"

/* Interleaved RGB, `width * 3` bytes a row, from the decoder's allocator. */
typedef struct repq_rgb_image {
    int32_t width, height;
    uint8_t *pixels;
} repq_rgb_image;

/* Decode `size` bytes of a JPEG or PNG file; the format comes from the signature, not
 * the name. Images of more than `max_pixels` pixels (width x height) are refused with
 * REPQ_ERR_UNSUPPORTED after the header is read and before the pixels are allocated.
 * Errors: REPQ_ERR_FORMAT (not JPEG/PNG, truncated, corrupt), REPQ_ERR_UNSUPPORTED,
 * REPQ_ERR_NOMEM (also when images are left out of the build: REPQ_ERR_UNSUPPORTED).
 * Messages go to `err` (may be NULL). Thread-safe: no state outside the call. */
repq_status repq_image_decode(repq_object *err, const repq_allocator *al, const uint8_t *data, size_t size,
                              int64_t max_pixels, repq_rgb_image *out);
void repq_rgb_image_release(const repq_allocator *al, repq_rgb_image *img);

/* The two decoders behind it, for the fuzz targets and tests. */
repq_status repq_jpeg_decode(repq_object *err, const repq_allocator *al, const uint8_t *data, size_t size,
                             int64_t max_pixels, repq_rgb_image *out);
repq_status repq_png_decode(repq_object *err, const repq_allocator *al, const uint8_t *data, size_t size,
                            int64_t max_pixels, repq_rgb_image *out);

/* Shared by the decoders: refuse a zero or too large size, else allocate the pixels. */
repq_status repq_rgb_image_alloc(repq_object *err, const repq_allocator *al, const char *format, uint32_t width,
                                 uint32_t height, int64_t max_pixels, repq_rgb_image *out);

#endif
