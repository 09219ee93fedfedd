/* Internal: 4-bit weight blocks (gemm_u4.h's half blocks) to the 8-bit packed layout
 * (gemm_s8.h's blocks), for the kernels that unpack: the panel driver of gemm_u4.c and
 * the AMX kernel, which unpacks a whole matrix while its tiles run. */
#ifndef REPQ_KERNELS_UNPACK_U4_H
#define REPQ_KERNELS_UNPACK_U4_H

#include <stddef.h>
#include <stdint.h>

#include <immintrin.h>

/* Bytes of one packed block and of its 4-bit half. */
#define REPQ_U4_BLOCK 64
#define REPQ_U4_HALF_BLOCK 32

/* Half blocks -> blocks: low nibbles to bytes 0-31, high nibbles to 32-63. */
__attribute__((target("avx512f,avx512bw"))) static inline void repq_u4_unpack_avx512(const uint8_t *in,
                                                                                   size_t blocks, uint8_t *out)
{
    const __m512i low = _mm512_set1_epi8(0x0f);
    for (size_t b = 0; b < blocks; b++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(in + b * REPQ_U4_HALF_BLOCK));
        const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
        _mm512_storeu_si512((void *)(out + b * REPQ_U4_BLOCK), _mm512_and_si512(both, low));
    }
}

/* Blocks of a matrix still to unpack: [done, total) of src into dst. */
typedef struct repq_u4_job {
    const uint8_t *src;
    uint8_t *dst;
    size_t done, total;
} repq_u4_job;

/* Unpack up to block `upto` (at most total). */
__attribute__((target("avx512f,avx512bw"))) static inline void repq_u4_job_until(repq_u4_job *j, size_t upto)
{
    upto = upto < j->total ? upto : j->total;
    if (upto > j->done) {
        repq_u4_unpack_avx512(j->src + j->done * REPQ_U4_HALF_BLOCK, upto - j->done,
                              j->dst + j->done * REPQ_U4_BLOCK);
        j->done = upto;
    }
}

#endif
