/* Internal: tensor layout, visible to the stages of the library. */
#ifndef REPQ_CORE_TENSOR_H
#define REPQ_CORE_TENSOR_H

#include "core/object.h"
#include "repq/tensor.h"

struct repq_tensor {
    repq_object base;
    repq_dtype dtype;
    int32_t ndim;
    int64_t shape[REPQ_TENSOR_MAX_DIMS];
    size_t numel;
    size_t nbytes;
    void *data;
};

size_t repq_dtype_size(repq_dtype dtype);
/* repq_tensor_new for a handle that keeps an allocator instead of a context: messages go
 * to `err` (may be NULL), memory comes from `al`. */
repq_status repq_tensor_create(repq_object *err, const repq_allocator *al, repq_dtype dtype, int32_t ndim,
                               const int64_t *shape, const void *data, repq_tensor **out_tensor);
/* True if `t` is a live tensor of `dtype` with exactly `ndim` dimensions. */
bool repq_tensor_is(const repq_tensor *t, repq_dtype dtype, int32_t ndim);

#endif
