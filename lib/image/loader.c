/* The public image API: loaders, single files and batches on worker threads. */
#include "image/loader.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/tensor.h"
#include "image/resize.h"
#include "io/image_decode.h"
#include "model/model.h"
#include "model/qmodel.h"

#define DEFAULT_MAX_PIXELS 89478485 /* Pillow's Image.MAX_IMAGE_PIXELS */
#define MAX_FILE_BYTES ((size_t)1 << 30)
#define MAX_RESIZE 65536
#define MAX_THREADS 256

bool repq_images_enabled(void)
{
#ifdef REPQ_HAVE_IMAGES
    return true;
#else
    return false;
#endif
}

static repq_status disabled(repq_object *err)
{
    return repq_fail(err, REPQ_ERR_UNSUPPORTED, "this build of librepq has no image support (-Dimages=disabled)");
}

/* timm: math.floor(img_size / crop_pct), the double quotient. */
static int32_t resize_for(int32_t crop, double crop_pct)
{
    double r = floor((double)crop / crop_pct);
    return r > MAX_RESIZE ? MAX_RESIZE : (int32_t)r;
}

static repq_status loader_new(repq_context *ctx, const repq_arch *a, repq_image_loader **out)
{
    repq_allocator al = repq_allocator_of(ctx);
    repq_image_loader *l = repq_mem_alloc(&al, sizeof *l);
    if (!l)
        return repq_fail(repq_context_object(ctx), REPQ_ERR_NOMEM, "out of memory");
    repq_object_init(&l->base, REPQ_KIND_IMAGE_LOADER, al);
    l->crop = a->img_size;
    double pct = a->image.crop_pct > 0.0 ? a->image.crop_pct : REPQ_DEFAULT_CROP_PCT;
    l->resize = resize_for(l->crop, pct);
    if (l->resize < l->crop)
        l->resize = l->crop;
    l->interpolation = a->image.interpolation == REPQ_RESAMPLE_BILINEAR ? REPQ_RESAMPLE_BILINEAR
                                                                       : REPQ_RESAMPLE_BICUBIC;
    l->threads = 1;
    l->max_pixels = DEFAULT_MAX_PIXELS;
    *out = l;
    return REPQ_OK;
}

REPQ_API repq_status repq_image_loader_new(repq_context *ctx, const repq_model *model,
                                           repq_image_loader **out_loader)
{
    repq_object *err = repq_context_object(ctx);
    if (!out_loader)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_image_loader_new: out_loader is NULL");
    *out_loader = NULL;
    if (!repq_images_enabled())
        return disabled(err);
    if (!repq_object_is(model, REPQ_KIND_MODEL))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_image_loader_new: model is not a model");
    return loader_new(ctx, &model->arch, out_loader);
}

REPQ_API repq_status repq_image_loader_new_quantized(repq_context *ctx, const repq_qmodel *qmodel,
                                                     repq_image_loader **out_loader)
{
    repq_object *err = repq_context_object(ctx);
    if (!out_loader)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_image_loader_new_quantized: out_loader is NULL");
    *out_loader = NULL;
    if (!repq_images_enabled())
        return disabled(err);
    if (!repq_object_is(qmodel, REPQ_KIND_QMODEL))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_image_loader_new_quantized: not a qmodel");
    return loader_new(ctx, &qmodel->arch, out_loader);
}

REPQ_API void repq_image_loader_free(repq_image_loader *loader)
{
    if (!repq_object_is(loader, REPQ_KIND_IMAGE_LOADER))
        return;
    repq_allocator al = loader->base.allocator;
    loader->base.kind = 0;
    repq_mem_free(&al, loader);
}

REPQ_API repq_status repq_image_loader_set_int(repq_image_loader *loader, repq_image_param param,
                                               int64_t value)
{
    if (!repq_images_enabled())
        return REPQ_ERR_UNSUPPORTED;
    if (!repq_object_is(loader, REPQ_KIND_IMAGE_LOADER))
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_object *err = &loader->base;
    switch (param) {
    case REPQ_IMAGE_RESIZE_SIZE:
        if (value < loader->crop || value > MAX_RESIZE)
            return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "resize size %lld is outside [%d, %d]",
                             (long long)value, (int)loader->crop, MAX_RESIZE);
        loader->resize = (int32_t)value;
        return REPQ_OK;
    case REPQ_IMAGE_INTERPOLATION:
        if (value != REPQ_INTERPOLATION_BICUBIC && value != REPQ_INTERPOLATION_BILINEAR)
            return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "interpolation %lld is neither bicubic (3) nor bilinear (2)",
                             (long long)value);
        loader->interpolation = (int32_t)value;
        return REPQ_OK;
    case REPQ_IMAGE_MAX_PIXELS:
        if (value < 1 || value > ((int64_t)1 << 40))
            return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "max pixels %lld is outside [1, 2^40]", (long long)value);
        loader->max_pixels = value;
        return REPQ_OK;
    case REPQ_IMAGE_THREADS:
        if (value < 1 || value > MAX_THREADS)
            return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "threads %lld is outside [1, %d]", (long long)value,
                             MAX_THREADS);
        loader->threads = (int32_t)value;
        return REPQ_OK;
    case REPQ_IMAGE_CROP_SIZE:
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "the crop size is the model's image size (read-only)");
    case REPQ_IMAGE_CROP_PCT:
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "crop_pct is set with repq_image_loader_set_float");
    }
    return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "unknown image parameter %d", (int)param);
}

REPQ_API repq_status repq_image_loader_set_float(repq_image_loader *loader, repq_image_param param, double value)
{
    if (!repq_images_enabled())
        return REPQ_ERR_UNSUPPORTED;
    if (!repq_object_is(loader, REPQ_KIND_IMAGE_LOADER))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (param != REPQ_IMAGE_CROP_PCT)
        return repq_fail(&loader->base, REPQ_ERR_INVALID_ARGUMENT, "image parameter %d is not a float", (int)param);
    if (!(value > 0.0 && value <= 1.0) || resize_for(loader->crop, value) > MAX_RESIZE - 1)
        return repq_fail(&loader->base, REPQ_ERR_INVALID_ARGUMENT, "crop_pct %g is outside (0, 1] (or too small)", value);
    loader->resize = resize_for(loader->crop, value);
    return REPQ_OK;
}

REPQ_API repq_status repq_image_loader_get_int(const repq_image_loader *loader, repq_image_param param,
                                               int64_t *out_value)
{
    if (!repq_images_enabled())
        return REPQ_ERR_UNSUPPORTED;
    if (!repq_object_is(loader, REPQ_KIND_IMAGE_LOADER) || !out_value)
        return REPQ_ERR_INVALID_ARGUMENT;
    switch (param) {
    case REPQ_IMAGE_CROP_SIZE: *out_value = loader->crop; return REPQ_OK;
    case REPQ_IMAGE_RESIZE_SIZE: *out_value = loader->resize; return REPQ_OK;
    case REPQ_IMAGE_INTERPOLATION: *out_value = loader->interpolation; return REPQ_OK;
    case REPQ_IMAGE_MAX_PIXELS: *out_value = loader->max_pixels; return REPQ_OK;
    case REPQ_IMAGE_THREADS: *out_value = loader->threads; return REPQ_OK;
    case REPQ_IMAGE_CROP_PCT: break;
    }
    return REPQ_ERR_INVALID_ARGUMENT;
}

/* The whole file in memory from `al`; *out_size may be 0 (the decoder names that). */
static repq_status read_file(repq_object *err, const repq_allocator *al, const char *path, uint8_t **out,
                             size_t *out_size)
{
    *out = NULL;
    *out_size = 0;
    /* Non-blocking open: a FIFO or device named like a picture must not hang the load. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return repq_fail(err, REPQ_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return repq_fail(err, REPQ_ERR_IO, "not a regular file");
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return repq_fail(err, REPQ_ERR_NOMEM, "cannot open: %s", strerror(errno));
    }
    repq_status st = REPQ_OK;
    if ((uint64_t)sb.st_size > MAX_FILE_BYTES)
        st = repq_fail(err, REPQ_ERR_UNSUPPORTED, "file of %lld bytes is larger than %zu", (long long)sb.st_size,
                       MAX_FILE_BYTES);
    else if (sb.st_size > 0) {
        size_t n = (size_t)sb.st_size;
        uint8_t *buf = repq_mem_alloc(al, n);
        if (!buf)
            st = repq_fail(err, REPQ_ERR_NOMEM, "out of memory for a file of %zu bytes", n);
        else if (fread(buf, 1, n, f) != n) {
            repq_mem_free(al, buf);
            st = repq_fail(err, REPQ_ERR_IO, "read error");
        } else {
            *out = buf;
            *out_size = n;
        }
    }
    fclose(f);
    return st;
}

repq_status repq_image_file_prepare(repq_object *err, const repq_image_loader *l, const char *path, uint8_t *dst)
{
    const repq_allocator *al = &l->base.allocator;
    repq_object local;
    repq_object_init(&local, REPQ_KIND_IMAGE_LOADER, *al);
    uint8_t *bytes = NULL;
    size_t size = 0;
    repq_rgb_image img = {0};
    repq_status st = read_file(&local, al, path, &bytes, &size);
    if (st == REPQ_OK)
        st = repq_image_decode(&local, al, bytes, size, l->max_pixels, &img);
    repq_mem_free(al, bytes);
    if (st == REPQ_OK)
        st = repq_resize_crop(&local, al, &img, l->resize, l->crop, l->interpolation, dst);
    repq_rgb_image_release(al, &img);
    if (st)
        return repq_fail(err, st, "%s: %s", path, local.error);
    return REPQ_OK;
}

REPQ_API repq_status repq_image_load(repq_image_loader *loader, const char *path, repq_tensor **out_image)
{
    if (out_image)
        *out_image = NULL;
    if (!repq_images_enabled())
        return REPQ_ERR_UNSUPPORTED;
    if (!repq_object_is(loader, REPQ_KIND_IMAGE_LOADER))
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_object *err = &loader->base;
    if (!path || !out_image)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_image_load: path or out_image is NULL");
    int64_t shape[4] = {1, 3, loader->crop, loader->crop};
    repq_tensor *t;
    repq_status st = repq_tensor_create(err, &loader->base.allocator, REPQ_DTYPE_U8, 4, shape, NULL, &t);
    if (st)
        return st;
    if ((st = repq_image_file_prepare(err, loader, path, t->data))) {
        repq_tensor_free(t);
        return st;
    }
    *out_image = t;
    return REPQ_OK;
}

/* Work shared by the threads of one batch: the next file to take and the first failure. */
typedef struct batch {
    const repq_image_loader *loader;
    const char *const *paths;
    int32_t count;
    uint8_t *dst;
    int32_t *statuses;
    pthread_mutex_t lock;
    int32_t next;
    int32_t first_failed;
    repq_object *err; /* receives the message of the first failure */
} batch;

static void *batch_worker(void *arg)
{
    batch *b = arg;
    size_t per_image = 3 * (size_t)b->loader->crop * (size_t)b->loader->crop;
    repq_object local;
    repq_object_init(&local, REPQ_KIND_IMAGE_LOADER, b->loader->base.allocator);
    for (;;) {
        pthread_mutex_lock(&b->lock);
        int32_t i = b->next < b->count ? b->next++ : -1;
        pthread_mutex_unlock(&b->lock);
        if (i < 0)
            return NULL;
        uint8_t *dst = b->dst + (size_t)i * per_image;
        repq_status st = b->paths[i] ? repq_image_file_prepare(&local, b->loader, b->paths[i], dst)
                                     : repq_fail(&local, REPQ_ERR_INVALID_ARGUMENT, "path %d is NULL", (int)i);
        if (st)
            memset(dst, 0, per_image);
        b->statuses[i] = (int32_t)st;
        if (st) {
            pthread_mutex_lock(&b->lock);
            if (b->first_failed < 0 || i < b->first_failed) {
                b->first_failed = i;
                memcpy(b->err->error, local.error, sizeof local.error);
            }
            pthread_mutex_unlock(&b->lock);
        }
    }
}

repq_status repq_image_batch_run(repq_image_loader *l, const char *const *paths, int32_t count, uint8_t *dst,
                                 int32_t *statuses)
{
    repq_object *err = &l->base;
    int32_t *own = NULL;
    if (!statuses) {
        own = repq_mem_alloc(&l->base.allocator, (size_t)count * sizeof *own);
        if (!own)
            return repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
        statuses = own;
    }
    batch b = {.loader = l, .paths = paths, .count = count, .dst = dst, .statuses = statuses,
               .next = 0, .first_failed = -1, .err = err};
    repq_status st = REPQ_OK;
    if (pthread_mutex_init(&b.lock, NULL) != 0) {
        repq_mem_free(&l->base.allocator, own);
        return repq_fail(err, REPQ_ERR_NOMEM, "cannot create a mutex");
    }
    int32_t extra = (l->threads < count ? l->threads : count) - 1, started = 0;
    pthread_t tids[MAX_THREADS];
    while (started < extra && pthread_create(&tids[started], NULL, batch_worker, &b) == 0)
        started++;
    batch_worker(&b); /* this thread works too; with no thread started it does all */
    for (int32_t i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    pthread_mutex_destroy(&b.lock);
    if (b.first_failed >= 0)
        st = (repq_status)statuses[b.first_failed];
    repq_mem_free(&l->base.allocator, own);
    return st;
}

REPQ_API repq_status repq_image_load_batch(repq_image_loader *loader, const char *const *paths, int32_t count,
                                           repq_tensor *images, int32_t *out_statuses)
{
    if (!repq_images_enabled())
        return REPQ_ERR_UNSUPPORTED;
    if (!repq_object_is(loader, REPQ_KIND_IMAGE_LOADER))
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_object *err = &loader->base;
    if (!paths || count < 1)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_image_load_batch: no paths");
    if (!repq_tensor_is(images, REPQ_DTYPE_U8, 4) || images->shape[0] != count || images->shape[1] != 3 ||
        images->shape[2] != loader->crop || images->shape[3] != loader->crop)
        return repq_fail(err, REPQ_ERR_SHAPE, "images must be U8 [%d, 3, %d, %d]", (int)count, (int)loader->crop,
                         (int)loader->crop);
    return repq_image_batch_run(loader, paths, count, images->data, out_statuses);
}
