/* Internal: the image loader handle. */
#ifndef REPQ_IMAGE_LOADER_H
#define REPQ_IMAGE_LOADER_H

#include "core/object.h"
#include "repq/image.h"

struct repq_image_loader {
    repq_object base;
    int32_t crop;          /* S, the model's img_size */
    int32_t resize;        /* shorter side after resizing */
    int32_t interpolation; /* repq_resample_filter */
    int32_t threads;
    int64_t max_pixels;
};

/* Whether this build decodes images (meson option `images`). */
bool repq_images_enabled(void);

/* Decode and transform the file at `path` into dst (3 * S * S bytes, planar). Messages,
 * which name the path, go to `err`. Thread-safe for concurrent calls. */
repq_status repq_image_file_prepare(repq_object *err, const repq_image_loader *loader, const char *path,
                                    uint8_t *dst);

/* Fills dst ([count, 3, S, S]) from `paths` on the loader's threads; statuses may be
 * NULL. The first failure's message goes to the loader. */
repq_status repq_image_batch_run(repq_image_loader *l, const char *const *paths, int32_t count, uint8_t *dst,
                                 int32_t *statuses);

#endif
