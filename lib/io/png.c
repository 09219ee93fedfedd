/* PNG through libpng, converted to RGB as Pillow's convert("RGB") does: palettes
 * looked up, grey replicated, alpha and tRNS transparency dropped (not composited),
 * 16-bit samples cut to their high byte, except 16-bit greyscale without alpha, which
 * Pillow opens as 32-bit integers ("I") and clips to 255. Gamma, colour profiles and
 * text chunks are ignored, as Pillow ignores them. */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <png.h>

#include "io/image_decode.h"

/* Ancillary chunks (profiles, compressed text) are decompressed by libpng into memory
 * it allocates; keep a hostile file from asking for much. */
#define MAX_CHUNK_BYTES (8u << 20)

typedef struct png_state {
    png_structp png;
    png_infop info;
    repq_object *err;
    const repq_allocator *al;
    int64_t max_pixels;
    const uint8_t *data;
    size_t size, pos;
    repq_status status; /* set before a longjmp that is not libpng's own error */
    bool alloc_failed;  /* libpng's messages for it vary ("Out of memory", "zlib: ...") */
    char message[200];
    repq_rgb_image image;
    uint8_t *native;   /* rows as libpng delivers them: one row, or all for interlaced files */
    png_bytep *rows;   /* row pointers into `native` (interlaced files) */
} png_state;

static void on_error(png_structp png, png_const_charp msg)
{
    png_state *s = png_get_error_ptr(png);
    snprintf(s->message, sizeof s->message, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {}

static png_voidp on_malloc(png_structp png, png_alloc_size_t size)
{
    png_state *s = png_get_mem_ptr(png);
    void *p = repq_mem_alloc(s->al, size);
    if (!p)
        s->alloc_failed = true;
    return p;
}

static void on_free(png_structp png, png_voidp ptr)
{
    png_state *s = png_get_mem_ptr(png);
    repq_mem_free(s->al, ptr);
}

static void on_read(png_structp png, png_bytep dst, size_t n)
{
    png_state *s = png_get_io_ptr(png);
    if (n > s->size - s->pos)
        png_error(png, "truncated file (premature end of PNG data)");
    memcpy(dst, s->data + s->pos, n);
    s->pos += n;
}

static void fail_jump(png_state *s, repq_status st)
{
    s->status = st;
    png_longjmp(s->png, 2);
}

/* One row of `channels` samples of `depth16` ? 16 : 8 bits into RGB. */
static void row_to_rgb(const uint8_t *src, size_t width, int channels, bool depth16, uint8_t *dst)
{
    size_t step = (size_t)channels * (depth16 ? 2 : 1);
    for (size_t x = 0; x < width; x++, src += step, dst += 3) {
        if (channels <= 2) {
            uint8_t g = src[0];
            if (depth16 && channels == 1) {
                unsigned v = (unsigned)src[0] << 8 | src[1];
                g = (uint8_t)(v > 255 ? 255 : v);
            }
            dst[0] = dst[1] = dst[2] = g;
        } else {
            for (int c = 0; c < 3; c++)
                dst[c] = src[(size_t)c * (depth16 ? 2 : 1)];
        }
    }
}

static void decode(png_state *s)
{
    png_structp png = s->png;
    png_infop info = s->info;
    png_set_read_fn(png, s, on_read);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff); /* ours is max_pixels, below */
    png_set_chunk_malloc_max(png, MAX_CHUNK_BYTES);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if ((s->status = repq_rgb_image_alloc(s->err, s->al, "PNG", w, h, s->max_pixels, &s->image)))
        png_longjmp(png, 2);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    else if ((type & PNG_COLOR_MASK_COLOR) == 0 && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    bool depth16 = png_get_bit_depth(png, info) == 16;
    size_t rowbytes = png_get_rowbytes(png, info);
    if (channels < 1 || channels > 4 || rowbytes < (size_t)w * (size_t)channels * (depth16 ? 2u : 1u)) {
        snprintf(s->message, sizeof s->message, "unexpected row layout");
        png_longjmp(png, 1);
    }
    size_t held = passes > 1 ? (size_t)h : 1, bytes;
    if (!repq_size_mul(held, rowbytes, &bytes) || !(s->native = repq_mem_alloc(s->al, bytes)))
        fail_jump(s, repq_fail(s->err, REPQ_ERR_NOMEM, "out of memory for a %u x %u PNG", (unsigned)w,
                               (unsigned)h));
    if (passes > 1) {
        if (!(s->rows = repq_mem_alloc(s->al, held * sizeof *s->rows)))
            fail_jump(s, repq_fail(s->err, REPQ_ERR_NOMEM, "out of memory"));
        for (size_t y = 0; y < held; y++)
            s->rows[y] = s->native + y * rowbytes;
        png_read_image(png, s->rows);
    }
    for (size_t y = 0; y < h; y++) {
        uint8_t *src = s->native + (passes > 1 ? y * rowbytes : 0);
        if (passes == 1)
            png_read_row(png, src, NULL);
        row_to_rgb(src, w, channels, depth16, s->image.pixels + y * (size_t)w * 3);
    }
}

/* setjmp lives in this small frame, whose locals do not change before a longjmp (the
 * state it works on belongs to the caller's frame). */
static bool run_guarded(png_state *s)
{
    if (setjmp(png_jmpbuf(s->png)))
        return false;
    decode(s);
    return true;
}

repq_status repq_png_decode(repq_object *err, const repq_allocator *al, const uint8_t *data, size_t size,
                            int64_t max_pixels, repq_rgb_image *out)
{
    memset(out, 0, sizeof *out);
    png_state s;
    memset(&s, 0, sizeof s);
    s.err = err;
    s.al = al;
    s.max_pixels = max_pixels;
    s.data = data;
    s.size = size;
    s.png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &s, on_error, on_warning, &s, on_malloc, on_free);
    if (s.png)
        s.info = png_create_info_struct(s.png);
    if (!s.png || !s.info) {
        png_destroy_read_struct(s.png ? &s.png : NULL, NULL, NULL);
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory for the PNG decoder");
    }
    bool ok = run_guarded(&s);
    png_destroy_read_struct(&s.png, &s.info, NULL);
    repq_mem_free(al, s.native);
    repq_mem_free(al, s.rows);
    if (ok) {
        *out = s.image;
        return REPQ_OK;
    }
    repq_rgb_image_release(al, &s.image);
    if (s.status)
        return s.status;
    if (s.alloc_failed)
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory in the PNG decoder (%s)", s.message);
    return repq_fail(err, REPQ_ERR_FORMAT, "corrupt PNG: %s", s.message);
}
