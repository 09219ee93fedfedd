/* Internal: u8 x u4 -> s32 GEMM over weights packed two per byte.
 *
 *   C[i][j] = sum_p A[i][p] * B[j][p],   B[j][p] in [0, 15]
 *
 * For weights of 4 bits or fewer (their codes w are the values, no offset: the
 * session's corrections handle the zero points). The layout is gemm_s8.h's with
 * each 64-byte block halved: byte x of the 32-byte block holds element x in its
 * low nibble and element x + 32 in its high nibble. The kernel unpacks a panel of
 * a few column groups at a time into caller-provided scratch and runs the 8-bit
 * kernel of the level on it, so results equal the scalar reference bit for bit; the
 * AMX kernel unpacks the whole matrix into the scratch while its tiles run. */
#ifndef REPQ_KERNELS_GEMM_U4_H
#define REPQ_KERNELS_GEMM_U4_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu.h"

/* Bytes of packed storage for an n x k matrix. */
size_t repq_gemm_u8u4_packed_size(size_t n, size_t k);

/* Pack b ([n][k], row stride ldb, every value in [0, 15]) two per byte. */
void repq_gemm_u8u4_pack(size_t n, size_t k, const int8_t *b, size_t ldb, void *packed);

/* Bytes of scratch repq_gemm_u8u4 needs at `level` for matrices of inner dimension
 * at most k whose 8-bit packing (repq_gemm_u8s8_packed_size) takes at most `unpacked`
 * bytes: the AMX level unpacks the whole matrix, the others a panel of a few column
 * groups at a time. 64-byte alignment is best, none is required. */
size_t repq_gemm_u8u4_scratch_size(repq_kernel_level level, size_t k, size_t unpacked);

/* C = A * B^T at the given level; same limits as repq_gemm_u8s8. */
void repq_gemm_u8u4(repq_kernel_level level, size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                    const void *packed, int32_t *c, size_t ldc, void *scratch);

void repq_gemm_u8u4_amx(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const void *packed, int32_t *c,
                        size_t ldc, void *scratch);

void repq_gemm_u8u4_scalar(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const void *packed,
                           int32_t *c, size_t ldc);

#endif
