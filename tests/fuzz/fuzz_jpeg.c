/* libFuzzer entry point for the JPEG decoder (lib/io/jpeg.c) and the resize that
 * follows it. Whatever decodes must have a size within the pixel limit; it is then
 * resized and cropped as for a 32-pixel model with both filters, which must succeed.
 * Build: meson setup build-fuzz -Dfuzzing=true (see scripts/fuzz.sh).
 * Seeds: tests/fuzz/corpus/jpeg/ (small files of every colour type). */
#include <stdint.h>
#include <stdlib.h>

#include "decoded_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    repq_allocator al = repq_allocator_of(NULL);
    repq_rgb_image img;
    repq_status st = repq_jpeg_decode(NULL, &al, data, size, MAX_PIXELS, &img);
    check_decoded(&al, st, &img);
    return 0;
}
