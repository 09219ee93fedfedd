#include "core/tensor.h"

#include <string.h>

size_t repq_dtype_size(repq_dtype dtype)
{
    switch (dtype) {
    case REPQ_DTYPE_F32: return 4;
    case REPQ_DTYPE_U8: return 1;
    case REPQ_DTYPE_I8: return 1;
    case REPQ_DTYPE_I32: return 4;
    }
    return 0;
}

bool repq_tensor_is(const repq_tensor *t, repq_dtype dtype, int32_t ndim)
{
    return repq_object_is(t, REPQ_KIND_TENSOR) && t->dtype == dtype && t->ndim == ndim;
}

REPQ_API repq_status repq_tensor_new(repq_context *ctx, repq_dtype dtype, int32_t ndim,
                                     const int64_t *shape, const void *data,
                                     repq_tensor **out_tensor)
{
    repq_allocator allocator = repq_allocator_of(ctx);
    return repq_tensor_create(repq_context_object(ctx), &allocator, dtype, ndim, shape, data, out_tensor);
}

repq_status repq_tensor_create(repq_object *err, const repq_allocator *al, repq_dtype dtype, int32_t ndim,
                               const int64_t *shape, const void *data, repq_tensor **out_tensor)
{
    if (!out_tensor)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_tensor_new: out_tensor is NULL");
    *out_tensor = NULL;
    size_t esize = repq_dtype_size(dtype);
    if (esize == 0)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_tensor_new: unknown dtype %d", (int)dtype);
    if (ndim < 1 || ndim > REPQ_TENSOR_MAX_DIMS)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT,
                         "repq_tensor_new: ndim %d is outside [1, %d]", (int)ndim, REPQ_TENSOR_MAX_DIMS);
    if (!shape)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_tensor_new: shape is NULL");
    size_t numel = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 1)
            return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT,
                             "repq_tensor_new: extent %lld of dimension %d is not positive",
                             (long long)shape[i], (int)i);
        if ((uint64_t)shape[i] > SIZE_MAX || !repq_size_mul(numel, (size_t)shape[i], &numel))
            return repq_fail(err, REPQ_ERR_OVERFLOW, "repq_tensor_new: element count overflows");
    }
    size_t nbytes;
    if (!repq_size_mul(numel, esize, &nbytes))
        return repq_fail(err, REPQ_ERR_OVERFLOW, "repq_tensor_new: byte size overflows");
    repq_allocator allocator = *al;
    repq_tensor *t = repq_mem_alloc(&allocator, sizeof *t);
    if (!t)
        return repq_fail(err, REPQ_ERR_NOMEM, "repq_tensor_new: out of memory");
    repq_object_init(&t->base, REPQ_KIND_TENSOR, allocator);
    t->data = repq_mem_alloc(&allocator, nbytes);
    if (!t->data) {
        repq_mem_free(&allocator, t);
        return repq_fail(err, REPQ_ERR_NOMEM, "repq_tensor_new: cannot allocate %zu bytes", nbytes);
    }
    t->dtype = dtype;
    t->ndim = ndim;
    for (int32_t i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->numel = numel;
    t->nbytes = nbytes;
    if (data)
        memcpy(t->data, data, nbytes);
    *out_tensor = t;
    return REPQ_OK;
}

REPQ_API void repq_tensor_free(repq_tensor *t)
{
    if (!repq_object_is(t, REPQ_KIND_TENSOR))
        return;
    repq_allocator allocator = t->base.allocator;
    t->base.kind = 0;
    repq_mem_free(&allocator, t->data);
    repq_mem_free(&allocator, t);
}

REPQ_API repq_status repq_tensor_describe(const repq_tensor *t, repq_dtype *out_dtype,
                                          int32_t *out_ndim, int64_t *shape_out,
                                          int32_t shape_capacity)
{
    if (!repq_object_is(t, REPQ_KIND_TENSOR))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (shape_capacity < 0 || (shape_capacity > 0 && !shape_out))
        return repq_fail((repq_object *)&t->base, REPQ_ERR_INVALID_ARGUMENT,
                         "repq_tensor_describe: shape_capacity %d needs a shape_out of as many extents",
                         (int)shape_capacity);
    if (out_dtype)
        *out_dtype = t->dtype;
    if (out_ndim)
        *out_ndim = t->ndim;
    for (int32_t i = 0; i < t->ndim && i < shape_capacity; i++)
        shape_out[i] = t->shape[i];
    return REPQ_OK;
}

REPQ_API repq_status repq_tensor_nbytes(const repq_tensor *t, size_t *out_nbytes)
{
    if (!repq_object_is(t, REPQ_KIND_TENSOR))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (!out_nbytes)
        return repq_fail((repq_object *)&t->base, REPQ_ERR_INVALID_ARGUMENT, "repq_tensor_nbytes: out_nbytes is NULL");
    *out_nbytes = t->nbytes;
    return REPQ_OK;
}

REPQ_API repq_status repq_tensor_read(repq_tensor *t, void *dst, size_t dst_bytes)
{
    if (!repq_object_is(t, REPQ_KIND_TENSOR))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (!dst)
        return repq_fail(&t->base, REPQ_ERR_INVALID_ARGUMENT, "repq_tensor_read: dst is NULL");
    if (dst_bytes != t->nbytes)
        return repq_fail(&t->base, REPQ_ERR_SHAPE,
                         "repq_tensor_read: buffer holds %zu bytes, tensor has %zu", dst_bytes, t->nbytes);
    memcpy(dst, t->data, t->nbytes);
    return REPQ_OK;
}

REPQ_API repq_status repq_tensor_write(repq_tensor *t, const void *src, size_t src_bytes)
{
    if (!repq_object_is(t, REPQ_KIND_TENSOR))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (!src)
        return repq_fail(&t->base, REPQ_ERR_INVALID_ARGUMENT, "repq_tensor_write: src is NULL");
    if (src_bytes != t->nbytes)
        return repq_fail(&t->base, REPQ_ERR_SHAPE,
                         "repq_tensor_write: buffer holds %zu bytes, tensor has %zu", src_bytes, t->nbytes);
    memcpy(t->data, src, t->nbytes);
    return REPQ_OK;
}

REPQ_API repq_status repq_tensor_rows_copy(repq_context *ctx, const repq_tensor *t, int64_t begin, int64_t end,
                                           repq_tensor **out_tensor)
{
    repq_object *err = repq_context_object(ctx);
    if (!out_tensor)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_tensor_rows_copy: out_tensor is NULL");
    *out_tensor = NULL;
    if (!repq_object_is(t, REPQ_KIND_TENSOR))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_tensor_rows_copy: the source is not a tensor");
    if (begin < 0 || begin >= end || end > t->shape[0])
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT,
                         "repq_tensor_rows_copy: rows [%lld, %lld) are not a non-empty range of the tensor's %lld",
                         (long long)begin, (long long)end, (long long)t->shape[0]);
    int64_t shape[REPQ_TENSOR_MAX_DIMS];
    for (int32_t i = 0; i < t->ndim; i++)
        shape[i] = t->shape[i];
    shape[0] = end - begin;
    /* Rows are contiguous: row r starts r * (nbytes / rows) bytes in. */
    size_t row_bytes = t->nbytes / (size_t)t->shape[0];
    return repq_tensor_new(ctx, t->dtype, t->ndim, shape, (const uint8_t *)t->data + (size_t)begin * row_bytes,
                           out_tensor);
}
