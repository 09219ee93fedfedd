/* Internal: u8 x s8 -> s32 GEMM over pre-packed weights.
 *
 *   C[i][j] = sum_p A[i][p] * B[j][p]      (0 <= i < m, 0 <= j < n, 0 <= p < k)
 *
 * A is uint8 row-major with leading dimension lda; B is int8 weights given as
 * [n][k] row-major and packed once by repq_gemm_u8s8_pack. Results are exact:
 * |A*B| <= 255*128 so any k <= 65536 cannot overflow int32 (the true limit is
 * k <= 65793). Every level returns the same bits as the scalar reference.
 *
 * Packed layout (shared by all levels): columns in groups of 16, K in quads of 4
 * (K padded with zeros to a multiple of 4, N padded with zero columns to 16).
 * Group g, quad q occupies 64 bytes at offset (g*KQ + q)*64, KQ = ceil(k/4), and
 * byte 4*j + t of it is B[16g + j][4q + t]. One such block is one vpdpbusd operand,
 * and 16 consecutive blocks of a group are one AMX B tile. The buffer ends with
 * 15 blocks of slack so that a tile load at the last group's k tail stays inside
 * it (the AMX kernel multiplies those bytes by zeros).
 */
#ifndef REPQ_KERNELS_GEMM_S8_H
#define REPQ_KERNELS_GEMM_S8_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu.h"

#define REPQ_GEMM_U8S8_MAX_K 65536

/* Bytes of packed storage for an n x k weight matrix (a multiple of 64). */
size_t repq_gemm_u8s8_packed_size(size_t n, size_t k);

/* Pack b ([n][k], row stride ldb) into `packed` (packed_size bytes; 64-byte
 * alignment is best but not required). */
void repq_gemm_u8s8_pack(size_t n, size_t k, const int8_t *b, size_t ldb, void *packed);

/* C = A * B^T at the given level. m, n >= 1; 1 <= k <= REPQ_GEMM_U8S8_MAX_K.
 * The AMX level needs the process's tile-data permission, which
 * repq_cpu_detect() requests before it reports the level. */
void repq_gemm_u8s8(repq_kernel_level level, size_t m, size_t n, size_t k, const uint8_t *a,
                    size_t lda, const void *packed, int32_t *c, size_t ldc);

void repq_gemm_u8s8_scalar(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                           const void *packed, int32_t *c, size_t ldc);
void repq_gemm_u8s8_avx2(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                         const void *packed, int32_t *c, size_t ldc);
void repq_gemm_u8s8_avxvnni(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const void *packed,
                            int32_t *c, size_t ldc);
void repq_gemm_u8s8_avx512vnni(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                               const void *packed, int32_t *c, size_t ldc);
void repq_gemm_u8s8_amx(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const void *packed,
                        int32_t *c, size_t ldc);

#endif
