/* libFuzzer entry point for the PNG decoder (lib/io/png.c) and the resize that
 * follows it. Whatever decodes must have a size within the pixel limit; it is then
 * resized and cropped as for a 32-pixel model with both filters, which must succeed.
 * Build: meson setup build-fuzz -Dfuzzing=true (see scripts/fuzz.sh).
 * Seeds: tests/fuzz/corpus/png/ (small files of every colour type). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "decoded_image.h"

/* libpng rejects a chunk whose CRC does not match, which almost every mutation breaks:
 * the copy decoded has every complete chunk's CRC recomputed, so that mutations reach
 * the chunk contents. (The CRC check itself is exercised by test_image's corruptions.) */
static uint8_t *fix_crcs(const uint8_t *data, size_t size)
{
    uint8_t *b = malloc(size ? size : 1);
    if (!b)
        return NULL;
    memcpy(b, data, size);
    for (size_t i = 8; i + 12 <= size;) {
        size_t len = (size_t)b[i] << 24 | (size_t)b[i + 1] << 16 | (size_t)b[i + 2] << 8 | b[i + 3];
        if (len > size - i - 12)
            break;
        uint32_t crc = (uint32_t)crc32(0, b + i + 4, (uInt)(len + 4));
        b[i + 8 + len] = (uint8_t)(crc >> 24);
        b[i + 9 + len] = (uint8_t)(crc >> 16);
        b[i + 10 + len] = (uint8_t)(crc >> 8);
        b[i + 11 + len] = (uint8_t)crc;
        i += 12 + len;
    }
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    repq_allocator al = repq_allocator_of(NULL);
    repq_rgb_image img;
    uint8_t *input = fix_crcs(data, size);
    if (!input)
        return 0;
    repq_status st = repq_png_decode(NULL, &al, input, size, MAX_PIXELS, &img);
    free(input);
    check_decoded(&al, st, &img);
    return 0;
}
