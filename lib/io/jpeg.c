/* JPEG through libjpeg-turbo, with Pillow's choices: the library's default decoding
 * (islow IDCT, fancy upsampling), greyscale replicated, CMYK and YCCK read as Adobe
 * (inverted) CMYK and converted with Pillow's cmyk2rgb. libjpeg reports errors by
 * calling error_exit, which by default exit()s: ours longjmps back here instead. */
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "io/image_decode.h"

/* A progressive file may hold any number of scans, each a pass over the whole image;
 * real encoders write about ten. */
#define MAX_SCANS 500

typedef struct jpeg_failure {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_failure;

typedef struct jpeg_state {
    struct jpeg_decompress_struct cinfo;
    jpeg_failure failure;
    struct jpeg_progress_mgr progress;
    repq_object *err;
    const repq_allocator *al;
    int64_t max_pixels;
    repq_status status; /* set before a longjmp that is not libjpeg's own error */
    repq_rgb_image image;
    uint8_t *cmyk_row;
} jpeg_state;

static void on_error(j_common_ptr c)
{
    jpeg_failure *f = (jpeg_failure *)c->err;
    c->err->format_message(c, f->message);
    longjmp(f->jump, 1);
}

/* A file that ends early is an error for Pillow too ("image file is truncated"); other
 * warnings (extraneous bytes, a bad restart marker) are recovered from, as Pillow does. */
static void on_message(j_common_ptr c, int level)
{
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) {
        jpeg_failure *f = (jpeg_failure *)c->err;
        snprintf(f->message, sizeof f->message, "truncated file (premature end of JPEG data)");
        longjmp(f->jump, 1);
    }
}

static void on_progress(j_common_ptr c)
{
    if (((j_decompress_ptr)c)->input_scan_number > MAX_SCANS) {
        jpeg_failure *f = (jpeg_failure *)c->err;
        snprintf(f->message, sizeof f->message, "more than %d scans", MAX_SCANS);
        longjmp(f->jump, 1);
    }
}

/* Pillow's cmyk2rgb after its "CMYK;I" unpacking (Adobe files store inverted CMYK):
 * with c, m, y, k the inverted samples, channel = nk - round(c' * nk / 255) where c' =
 * 255 - c and nk = 255 - k' = k, computed in Pillow's integer rounding. */
static uint8_t cmyk_channel(uint8_t inverted_c, uint8_t inverted_k)
{
    int c = 255 - inverted_c, nk = inverted_k;
    int t = c * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static void decode(jpeg_state *s)
{
    struct jpeg_decompress_struct *ci = &s->cinfo;
    jpeg_read_header(ci, TRUE);
    bool cmyk = ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK;
    bool grey = ci->jpeg_color_space == JCS_GRAYSCALE;
    if (!cmyk && !grey && ci->num_components != 3) {
        s->status = repq_fail(s->err, REPQ_ERR_UNSUPPORTED, "JPEG with %d colour components",
                              (int)ci->num_components);
        longjmp(s->failure.jump, 2);
    }
    ci->out_color_space = cmyk ? JCS_CMYK : grey ? JCS_GRAYSCALE : JCS_RGB;
    if ((s->status = repq_rgb_image_alloc(s->err, s->al, "JPEG", ci->image_width, ci->image_height,
                                          s->max_pixels, &s->image)))
        longjmp(s->failure.jump, 2);
    if (cmyk && !(s->cmyk_row = repq_mem_alloc(s->al, (size_t)s->image.width * 4))) {
        s->status = repq_fail(s->err, REPQ_ERR_NOMEM, "out of memory");
        longjmp(s->failure.jump, 2);
    }
    jpeg_start_decompress(ci);
    size_t w = (size_t)s->image.width;
    while (ci->output_scanline < ci->output_height) {
        uint8_t *row = s->image.pixels + (size_t)ci->output_scanline * w * 3;
        JSAMPROW target = cmyk ? s->cmyk_row : row;
        jpeg_read_scanlines(ci, &target, 1);
        if (grey) {
            for (size_t x = w; x-- > 0;)
                row[3 * x] = row[3 * x + 1] = row[3 * x + 2] = row[x];
        } else if (cmyk) {
            for (size_t x = 0; x < w; x++) {
                const uint8_t *p = s->cmyk_row + 4 * x;
                for (int c = 0; c < 3; c++)
                    row[3 * x + (size_t)c] = cmyk_channel(p[c], p[3]);
            }
        }
    }
    jpeg_finish_decompress(ci);
}

/* setjmp lives in these small frames, whose locals do not change before a longjmp
 * (the state they work on belongs to the caller's frame). */
static bool create_guarded(jpeg_state *s)
{
    if (setjmp(s->failure.jump))
        return false;
    jpeg_create_decompress(&s->cinfo);
    return true;
}

static bool run_guarded(jpeg_state *s, const uint8_t *data, size_t size)
{
    if (setjmp(s->failure.jump))
        return false;
    jpeg_mem_src(&s->cinfo, data, (unsigned long)size);
    decode(s);
    return true;
}

repq_status repq_jpeg_decode(repq_object *err, const repq_allocator *al, const uint8_t *data, size_t size,
                             int64_t max_pixels, repq_rgb_image *out)
{
    memset(out, 0, sizeof *out);
    if (size > (unsigned long)-1)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "JPEG file too large");
    jpeg_state s;
    memset(&s, 0, sizeof s);
    s.err = err;
    s.al = al;
    s.max_pixels = max_pixels;
    s.cinfo.err = jpeg_std_error(&s.failure.mgr);
    s.failure.mgr.error_exit = on_error;
    s.failure.mgr.emit_message = on_message;
    s.progress.progress_monitor = on_progress;
    bool ok = create_guarded(&s);
    if (ok) {
        s.cinfo.progress = &s.progress;
        ok = run_guarded(&s, data, size);
    }
    jpeg_destroy_decompress(&s.cinfo);
    repq_mem_free(al, s.cmyk_row);
    if (ok) {
        *out = s.image;
        return REPQ_OK;
    }
    repq_rgb_image_release(al, &s.image);
    if (s.status)
        return s.status;
    return repq_fail(err, REPQ_ERR_FORMAT, "corrupt JPEG: %s", s.failure.message);
}
