/* libFuzzer entry point for the JPEG decoder (lib/io/jpeg.c) and the resize that
 * follows it. Whatever decodes must have a size within the pixel limit; it is then
 * resized and cropped as for a 32-pixel model with both filters, which must succeed.
 * Build: meson setup build-fuzz -Dfuzzing=true (see scripts/fuzz.sh).
 * Seeds: tests/fuzz/corpus/jpeg/ (small files of every colour type). */
#include <stdint.h>
#include <stdlib.h>

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    repq_allocator al = repq_allocator_of(NULL);
    repq_rgb_image img;
    repq_status st = repq_jpeg_decode(NULL, &al, data, size, MAX_PIXELS, &img);
    if (st != REPQ_OK) {
        check(img.pixels == NULL);
        return 0;
    }
    check(img.width >= 1 && img.height >= 1 && (int64_t)img.width * img.height <= MAX_PIXELS);
    static uint8_t out[3 * 32 * 32];
    check(repq_resize_crop(NULL, &al, &img, 36, 32, REPQ_RESAMPLE_BICUBIC, out) == REPQ_OK);
    check(repq_resize_crop(NULL, &al, &img, 32, 32, REPQ_RESAMPLE_BILINEAR, out) == REPQ_OK);
    repq_rgb_image_release(&al, &img);
    return 0;
}
