/* Format sniffing and the pixel buffer the decoders share. */
#include "io/image_decode.h"

#include <string.h>

repq_status repq_rgb_image_alloc(repq_object *err, const repq_allocator *al, const char *format, uint32_t width,
                                 uint32_t height, int64_t max_pixels, repq_rgb_image *out)
{
    if (width == 0 || height == 0)
        return repq_fail(err, REPQ_ERR_FORMAT, "%s header gives a %u x %u image", format, (unsigned)width,
                         (unsigned)height);
    uint64_t pixels = (uint64_t)width * height;
    if (max_pixels <= 0 || pixels > (uint64_t)max_pixels)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED,
                         "%s image of %u x %u pixels is larger than the limit of %lld pixels", format,
                         (unsigned)width, (unsigned)height, (long long)max_pixels);
    size_t bytes;
    if (width > INT32_MAX / 3 || height > INT32_MAX || !repq_size_mul((size_t)pixels, 3, &bytes))
        return repq_fail(err, REPQ_ERR_OVERFLOW, "%s image of %u x %u pixels is too large", format,
                         (unsigned)width, (unsigned)height);
    out->pixels = repq_mem_alloc(al, bytes);
    if (!out->pixels)
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory for a %u x %u image", (unsigned)width,
                         (unsigned)height);
    out->width = (int32_t)width;
    out->height = (int32_t)height;
    return REPQ_OK;
}

void repq_rgb_image_release(const repq_allocator *al, repq_rgb_image *img)
{
    if (!img)
        return;
    repq_mem_free(al, img->pixels);
    memset(img, 0, sizeof *img);
}

repq_status repq_image_decode(repq_object *err, const repq_allocator *al, const uint8_t *data, size_t size,
                              int64_t max_pixels, repq_rgb_image *out)
{
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memset(out, 0, sizeof *out);
#ifndef REPQ_HAVE_IMAGES
    return repq_fail(err, REPQ_ERR_UNSUPPORTED, "this build of librepq has no image support");
#endif
    if (size == 0)
        return repq_fail(err, REPQ_ERR_FORMAT, "empty file");
    if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return repq_jpeg_decode(err, al, data, size, max_pixels, out);
    if (size >= 8 && memcmp(data, png_magic, 8) == 0)
        return repq_png_decode(err, al, data, size, max_pixels, out);
    return repq_fail(err, REPQ_ERR_FORMAT, "not a JPEG or PNG file (unknown signature)");
}
