/* What both image fuzz targets require of a decoder's result: a failure leaves no
 * pixels; a decoded image is within the pixel limit and resizes and crops, as for a
 * 32-pixel model, with both filters. Header-only: each target is one executable. */
#ifndef REPQ_FUZZ_DECODED_IMAGE_H
#define REPQ_FUZZ_DECODED_IMAGE_H

#include <stdint.h>

#include "image/resize.h"
#include "io/image_decode.h"
#include "model/preprocess.h"

/* Small enough that libFuzzer's RSS limit is never the finding and runs stay fast
 * (a mutated header may announce up to this many pixels of garbage to decode). */
#define MAX_PIXELS (1 << 18)

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

static void check_decoded(const repq_allocator *al, repq_status st, repq_rgb_image *img)
{
    if (st != REPQ_OK) {
        check(img->pixels == NULL);
        return;
    }
    check(img->width >= 1 && img->height >= 1 && (int64_t)img->width * img->height <= MAX_PIXELS);
    static uint8_t out[3 * 32 * 32];
    check(repq_resize_crop(NULL, al, img, 36, 32, REPQ_RESAMPLE_BICUBIC, out) == REPQ_OK);
    check(repq_resize_crop(NULL, al, img, 32, 32, REPQ_RESAMPLE_BILINEAR, out) == REPQ_OK);
    repq_rgb_image_release(al, img);
}

#endif
