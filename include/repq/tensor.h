/* librepq tensors: dense, row-major, owned by the library. */
#ifndef REPQ_TENSOR_H
#define REPQ_TENSOR_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define REPQ_TENSOR_MAX_DIMS 8

/* Element types. Values are part of the ABI. */
typedef enum repq_dtype {
    REPQ_DTYPE_F32 = 1,
    REPQ_DTYPE_U8 = 2,
    REPQ_DTYPE_I8 = 3,
    REPQ_DTYPE_I32 = 4
} repq_dtype;

typedef struct repq_tensor repq_tensor;

/* Create a tensor of `ndim` dimensions (1..REPQ_TENSOR_MAX_DIMS) with the given shape
 * (every extent >= 1). If `data` is not NULL, the tensor's contents are copied from it
 * (product(shape) elements of dtype); otherwise the tensor is zero-filled.
 * Errors: REPQ_ERR_INVALID_ARGUMENT (bad dtype, ndim, extent or NULL out),
 * REPQ_ERR_OVERFLOW (the byte size overflows size_t), REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_tensor_new(repq_context *ctx, repq_dtype dtype, int32_t ndim,
                                     const int64_t *shape, const void *data,
                                     repq_tensor **out_tensor);
REPQ_API void repq_tensor_free(repq_tensor *tensor);

/* Dtype, rank and shape. `shape_out` receives min(ndim, shape_capacity) extents and
 * may be NULL when shape_capacity is 0. */
REPQ_API repq_status repq_tensor_describe(const repq_tensor *tensor, repq_dtype *out_dtype,
                                          int32_t *out_ndim, int64_t *shape_out,
                                          int32_t shape_capacity);
/* Size of the contents in bytes. */
REPQ_API repq_status repq_tensor_nbytes(const repq_tensor *tensor, size_t *out_nbytes);
/* Copy the contents out to `dst`, which holds `dst_bytes` bytes; it must hold exactly
 * the tensor's byte size. Errors: REPQ_ERR_INVALID_ARGUMENT, REPQ_ERR_SHAPE. */
REPQ_API repq_status repq_tensor_read(repq_tensor *tensor, void *dst, size_t dst_bytes);
/* Overwrite the contents from `src` (exactly the tensor's byte size). */
REPQ_API repq_status repq_tensor_write(repq_tensor *tensor, const void *src, size_t src_bytes);

#ifdef __cplusplus
}
#endif
#endif
