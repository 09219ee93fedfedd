/* Pillow's resampling (src/libImaging/Resample.c, studied, not copied): for each
 * output pixel a window of input pixels weighted by the filter stretched by the
 * downscaling factor (so shrinking antialiases), the weights normalized to sum 1 in
 * double precision, then rounded to 22-bit fixed point; each pass accumulates in int32
 * from a rounding bias of one half, shifts and clamps to 8 bits. Horizontal pass first
 * (over the rows the vertical pass reads), then vertical; a pass whose size does not
 * change is skipped. */
#include "image/resize.h"

#include <math.h>
#include <string.h>

#include "model/preprocess.h"

#define FIXED_BITS 22 /* 32 bits - 8 bits of pixel - 2 bits of headroom for negative lobes */

static double bicubic(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

static double bilinear(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Weights of one axis for outputs [first, first + count) of an in_size -> out_size
 * resize: output j reads inputs start[j] .. start[j] + taps[j] - 1 with the fixed-point
 * weights weight[j * max_taps ...]. */
typedef struct axis {
    int32_t max_taps;
    int32_t *start, *taps, *weight;
} axis;

static repq_status axis_build(repq_object *err, const repq_allocator *al, int32_t in_size, int32_t out_size,
                              int32_t first, int32_t count, int32_t filter, axis *ax)
{
    double (*fn)(double) = filter == REPQ_RESAMPLE_BILINEAR ? bilinear : bicubic;
    double support = filter == REPQ_RESAMPLE_BILINEAR ? 1.0 : 2.0;
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    support *= filterscale;
    double inv_filterscale = 1.0 / filterscale; /* multiplied, not divided: Pillow's rounding */
    ax->max_taps = (int32_t)ceil(support) * 2 + 1;
    size_t n = (size_t)count, weights;
    double *w = NULL;
    if (!repq_size_mul(n, (size_t)ax->max_taps, &weights))
        return repq_fail(err, REPQ_ERR_OVERFLOW, "resize: too many filter taps");
    ax->start = repq_mem_alloc(al, n * sizeof *ax->start);
    ax->taps = repq_mem_alloc(al, n * sizeof *ax->taps);
    ax->weight = repq_mem_alloc(al, weights * sizeof *ax->weight);
    w = repq_mem_alloc(al, (size_t)ax->max_taps * sizeof *w);
    if (!ax->start || !ax->taps || !ax->weight || !w) {
        repq_mem_free(al, w);
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory for resize weights");
    }
    for (int32_t j = 0; j < count; j++) {
        double center = ((double)(first + j) + 0.5) * scale;
        int32_t lo = (int32_t)(center - support + 0.5), hi = (int32_t)(center + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > in_size)
            hi = in_size;
        int32_t k = hi - lo;
        if (k > ax->max_taps) /* cannot happen with the bounds above; keeps writes in range */
            k = ax->max_taps;
        double sum = 0.0;
        for (int32_t t = 0; t < k; t++) {
            w[t] = fn(((double)(t + lo) - center + 0.5) * inv_filterscale);
            sum += w[t];
        }
        int32_t *fixed = ax->weight + (size_t)j * (size_t)ax->max_taps;
        for (int32_t t = 0; t < k; t++) {
            double v = sum != 0.0 ? w[t] / sum : w[t];
            v *= (double)(1 << FIXED_BITS);
            fixed[t] = (int32_t)(v < 0.0 ? v - 0.5 : v + 0.5);
        }
        ax->start[j] = lo;
        ax->taps[j] = k;
    }
    repq_mem_free(al, w);
    return REPQ_OK;
}

static void axis_release(const repq_allocator *al, axis *ax)
{
    repq_mem_free(al, ax->start);
    repq_mem_free(al, ax->taps);
    repq_mem_free(al, ax->weight);
}

static inline uint8_t fixed_to_u8(int32_t acc)
{
    int32_t v = acc >> FIXED_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

bool repq_resize_target(int32_t width, int32_t height, int32_t shorter, int32_t *out_width, int32_t *out_height)
{
    /* torchvision: the longer side becomes int(shorter * long / short), in double. */
    bool tall = width <= height;
    double longer = (double)shorter * (double)(tall ? height : width) / (double)(tall ? width : height);
    if (!(longer < (double)(1 << 30)))
        return false;
    *out_width = tall ? shorter : (int32_t)longer;
    *out_height = tall ? (int32_t)longer : shorter;
    return true;
}

/* torchvision's CenterCrop: int(round((size - crop) / 2.0)), Python's round (half to even). */
static int32_t centre_offset(int32_t size, int32_t crop)
{
    int32_t d = size - crop, half = d / 2;
    if (d % 2 != 0 && half % 2 != 0)
        half++;
    return half;
}

repq_status repq_resize_crop(repq_object *err, const repq_allocator *al, const repq_rgb_image *src,
                             int32_t shorter, int32_t crop, int32_t filter, uint8_t *dst)
{
    if (!src->pixels || src->width < 1 || src->height < 1 || crop < 1 || shorter < crop ||
        (filter != REPQ_RESAMPLE_BICUBIC && filter != REPQ_RESAMPLE_BILINEAR))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "resize: invalid sizes or filter");
    int32_t w = src->width, h = src->height, nw, nh;
    if (!repq_resize_target(w, h, shorter, &nw, &nh))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "resize: a %d x %d image is too elongated", (int)w, (int)h);
    if (nw < crop || nh < crop)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "resize: %d x %d is smaller than the crop", (int)nw, (int)nh);
    int32_t left = centre_offset(nw, crop), top = centre_offset(nh, crop);
    bool horizontal = nw != w, vertical = nh != h;
    axis ax = {0}, ay = {0};
    repq_status st = REPQ_OK;
    uint8_t *tmp = NULL;
    int32_t *acc = NULL; /* one output row of the vertical pass */
    /* Input rows the vertical pass reads. */
    int32_t row0 = top, rows = crop;
    if (vertical) {
        if ((st = axis_build(err, al, h, nh, top, crop, filter, &ay)))
            goto out;
        row0 = ay.start[0];
        rows = ay.start[crop - 1] + ay.taps[crop - 1] - row0;
    }
    /* tmp: `rows` rows of `crop` RGB pixels, horizontally resampled (or copied). */
    size_t tmp_row = (size_t)crop * 3;
    tmp = repq_mem_alloc(al, (size_t)rows * tmp_row);
    acc = repq_mem_alloc(al, tmp_row * sizeof *acc);
    if (!tmp || !acc) {
        st = repq_fail(err, REPQ_ERR_NOMEM, "out of memory for resizing");
        goto out;
    }
    if (horizontal && (st = axis_build(err, al, w, nw, left, crop, filter, &ax)))
        goto out;
    for (int32_t y = 0; y < rows; y++) {
        const uint8_t *in = src->pixels + (size_t)(row0 + y) * (size_t)w * 3;
        uint8_t *o = tmp + (size_t)y * tmp_row;
        if (!horizontal) {
            memcpy(o, in + (size_t)left * 3, tmp_row);
            continue;
        }
        for (int32_t x = 0; x < crop; x++) {
            const int32_t *k = ax.weight + (size_t)x * (size_t)ax.max_taps;
            const uint8_t *p = in + (size_t)ax.start[x] * 3;
            int32_t r = 1 << (FIXED_BITS - 1), g = r, b = r;
            for (int32_t t = 0; t < ax.taps[x]; t++, p += 3) {
                r += p[0] * k[t];
                g += p[1] * k[t];
                b += p[2] * k[t];
            }
            o[3 * x] = fixed_to_u8(r);
            o[3 * x + 1] = fixed_to_u8(g);
            o[3 * x + 2] = fixed_to_u8(b);
        }
    }
    size_t plane = (size_t)crop * (size_t)crop;
    for (int32_t y = 0; y < crop; y++) {
        uint8_t *orow = dst + (size_t)y * (size_t)crop;
        if (!vertical) {
            const uint8_t *in = tmp + (size_t)y * tmp_row;
            for (int32_t x = 0; x < crop; x++)
                for (int c = 0; c < 3; c++)
                    orow[(size_t)c * plane + (size_t)x] = in[3 * x + c];
            continue;
        }
        /* Tap by tap over the whole row: contiguous, vectorizable; same sums. */
        const int32_t *k = ay.weight + (size_t)y * (size_t)ay.max_taps;
        const uint8_t *in = tmp + (size_t)(ay.start[y] - row0) * tmp_row;
        for (size_t i = 0; i < tmp_row; i++)
            acc[i] = 1 << (FIXED_BITS - 1);
        for (int32_t t = 0; t < ay.taps[y]; t++) {
            const uint8_t *p = in + (size_t)t * tmp_row;
            int32_t kt = k[t];
            for (size_t i = 0; i < tmp_row; i++)
                acc[i] += p[i] * kt;
        }
        for (int32_t x = 0; x < crop; x++)
            for (int c = 0; c < 3; c++)
                orow[(size_t)c * plane + (size_t)x] = fixed_to_u8(acc[3 * x + c]);
    }
out:
    repq_mem_free(al, tmp);
    repq_mem_free(al, acc);
    axis_release(al, &ax);
    axis_release(al, &ay);
    return st;
}
