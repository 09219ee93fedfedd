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
 * may be NULL when shape_capacity is 0. Errors (recorded on `tensor`):
 * REPQ_ERR_INVALID_ARGUMENT (negative shape_capacity, or NULL shape_out with a positive one). */
REPQ_API repq_status repq_tensor_describe(const repq_tensor *tensor, repq_dtype *out_dtype,
                                          int32_t *out_ndim, int64_t *shape_out,
                                          int32_t shape_capacity);
/* Size of the contents in bytes. Errors: REPQ_ERR_INVALID_ARGUMENT (NULL out_nbytes). */
REPQ_API repq_status repq_tensor_nbytes(const repq_tensor *tensor, size_t *out_nbytes);
/* Copy the contents out to `dst`, which holds `dst_bytes` bytes; it must hold exactly
 * the tensor's byte size. Errors: REPQ_ERR_INVALID_ARGUMENT, REPQ_ERR_SHAPE. A tensor is
 * used by one thread at a time when it may be written (messages included). */
REPQ_API repq_status repq_tensor_read(repq_tensor *tensor, void *dst, size_t dst_bytes);
/* Overwrite the contents from `src` (exactly the tensor's byte size).
 * Errors: REPQ_ERR_INVALID_ARGUMENT, REPQ_ERR_SHAPE. */
REPQ_API repq_status repq_tensor_write(repq_tensor *tensor, const void *src, size_t src_bytes);

/* A new tensor holding rows [begin, end) of `tensor` along its first dimension (a copy;
 * the other dimensions are kept): a batch of images [N, C, H, W] or of labels [N] for
 * batched evaluation (docs/guide.md). The new tensor is freed with repq_tensor_free.
 * Errors (recorded on ctx): REPQ_ERR_INVALID_ARGUMENT (not a tensor, NULL out_tensor,
 * not 0 <= begin < end <= rows), REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_tensor_rows_copy(repq_context *ctx, const repq_tensor *tensor, int64_t begin,
                                           int64_t end, repq_tensor **out_tensor);

#ifdef __cplusplus
}
#endif
#endif
