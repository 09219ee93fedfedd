/* The CIFAR-10 binary format: records of one label byte and three 32x32 planes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/tensor.h"
#include "repq/model.h"

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_RECORD (1 + CIFAR_PIXELS)

static repq_status read_records(repq_object *err, FILE *f, const char *path, int64_t offset,
                                int64_t count, repq_tensor *images, repq_tensor *labels)
{
    if (fseeko(f, (off_t)(offset * CIFAR_RECORD), SEEK_SET) != 0)
        return repq_fail(err, REPQ_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    uint8_t record[CIFAR_RECORD];
    uint8_t *pixels = images->data;
    int32_t *y = labels->data;
    for (int64_t i = 0; i < count; i++) {
        if (fread(record, 1, CIFAR_RECORD, f) != CIFAR_RECORD)
            return repq_fail(err, REPQ_ERR_IO, "%s: short read at record %lld", path, (long long)(offset + i));
        if (record[0] > 9)
            return repq_fail(err, REPQ_ERR_FORMAT, "%s: record %lld has label %d, outside 0..9", path,
                             (long long)(offset + i), record[0]);
        y[i] = record[0];
        memcpy(pixels + (size_t)i * CIFAR_PIXELS, record + 1, CIFAR_PIXELS);
    }
    return REPQ_OK;
}

REPQ_API repq_status repq_cifar_load(repq_context *ctx, const char *path, int64_t offset,
                                     int64_t limit, repq_tensor **out_images,
                                     repq_tensor **out_labels)
{
    repq_object *err = repq_context_object(ctx);
    if (!out_images || !out_labels)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_cifar_load: NULL output");
    *out_images = NULL;
    *out_labels = NULL;
    if (!path)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_cifar_load: path is NULL");
    if (offset < 0)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_cifar_load: negative offset %lld",
                         (long long)offset);
    FILE *f = fopen(path, "rb");
    if (!f)
        return repq_fail(err, REPQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    repq_status st = REPQ_OK;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = repq_fail(err, REPQ_ERR_IO, "%s: not a regular file", path);
        goto out;
    }
    if (sb.st_size == 0 || sb.st_size % CIFAR_RECORD != 0) {
        st = repq_fail(err, REPQ_ERR_FORMAT, "%s: size %lld is not a positive multiple of %d-byte records",
                       path, (long long)sb.st_size, CIFAR_RECORD);
        goto out;
    }
    int64_t records = (int64_t)(sb.st_size / CIFAR_RECORD);
    if (offset >= records) {
        st = repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "%s: offset %lld is past its %lld records", path,
                       (long long)offset, (long long)records);
        goto out;
    }
    int64_t count = records - offset;
    if (limit > count) {
        /* Fewer images than asked for would skew an accuracy silently. */
        st = repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "%s: records [%lld, %lld) were asked for but the file has "
                       "%lld (a limit <= 0 reads to the end)", path, (long long)offset,
                       (long long)offset + (long long)limit, (long long)records);
        goto out;
    }
    if (limit > 0)
        count = limit;
    int64_t ishape[4] = {count, 3, CIFAR_SIDE, CIFAR_SIDE}, lshape[1] = {count};
    repq_tensor *images = NULL, *labels = NULL;
    if ((st = repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, ishape, NULL, &images)) ||
        (st = repq_tensor_new(ctx, REPQ_DTYPE_I32, 1, lshape, NULL, &labels)) ||
        (st = read_records(err, f, path, offset, count, images, labels))) {
        repq_tensor_free(images);
        repq_tensor_free(labels);
        goto out;
    }
    *out_images = images;
    *out_labels = labels;
out:
    fclose(f);
    return st;
}
