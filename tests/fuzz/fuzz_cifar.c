/* libFuzzer entry point for the CIFAR-10 binary reader.
 *
 * The first two bytes of the input choose the record offset and limit, the rest is
 * the file, handed to repq_cifar_load through an in-memory file (memfd). Whatever it
 * accepts must have consistent shapes and labels in 0..9.
 * Build: meson setup build-fuzz -Dfuzzing=true (see scripts/fuzz.sh).
 * Seeds: tests/fuzz/corpus/cifar/. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "repq/repq.h"

#define RECORD 3073

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

static int file_fd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    if (file_fd < 0) {
        file_fd = memfd_create("cifar", 0);
        check(file_fd >= 0);
    }
    int64_t offset = data[0] % 8, limit = data[1] % 8; /* limit 0: every record */
    check(ftruncate(file_fd, 0) == 0);
    size_t n = size - 2;
    check(n == 0 || pwrite(file_fd, data + 2, n, 0) == (ssize_t)n);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", file_fd);
    repq_context *ctx;
    check(repq_context_new(&ctx) == REPQ_OK);
    repq_tensor *images = NULL, *labels = NULL;
    repq_status st = repq_cifar_load(ctx, path, offset, limit, &images, &labels);
    if (st == REPQ_OK) {
        int64_t records = (int64_t)(n / RECORD), want = records - offset;
        check(limit <= want); /* a range past the end is refused */
        if (limit > 0)
            want = limit;
        check(n % RECORD == 0 && want > 0);
        int64_t shape[4];
        int32_t ndim;
        repq_dtype dt;
        check(repq_tensor_describe(images, &dt, &ndim, shape, 4) == REPQ_OK);
        check(dt == REPQ_DTYPE_U8 && ndim == 4 && shape[0] == want && shape[1] == 3 && shape[2] == 32 &&
              shape[3] == 32);
        int32_t *y = malloc((size_t)want * sizeof *y);
        check(y != NULL);
        check(repq_tensor_read(labels, y, (size_t)want * sizeof *y) == REPQ_OK);
        for (int64_t i = 0; i < want; i++)
            check(y[i] >= 0 && y[i] <= 9 && y[i] == data[2 + (offset + i) * RECORD]);
        free(y);
    } else {
        check(images == NULL && labels == NULL && repq_last_error(ctx)[0] != '\0');
    }
    repq_tensor_free(images);
    repq_tensor_free(labels);
    repq_context_free(ctx);
    return 0;
}
