/* u8 x u4 GEMM: nibble packing, the scalar reference, and the panel-unpacking
 * driver over the 8-bit kernels. */
#include "kernels/gemm_u4.h"

#include <string.h>

#include <immintrin.h>

#include "kernels/gemm_s8.h"
#include "kernels/unpack_u4.h"

#define GROUP 16
#define QUAD 4
#define BLOCK (GROUP * QUAD)
#define HALF_BLOCK (BLOCK / 2)
/* Column groups unpacked per panel: the AVX-512 kernel's register tile width. */
#define PANEL_GROUPS 4
/* Rows from which the AMX level unpacks the whole matrix (repq_gemm_u8u4_amx); fewer
 * rows barely use each weight, and panels that stay in L1 unpack faster (bench_kernels,
 * m = 1 and 8: 0.40 and 0.36 of the 8-bit speed by panels, 0.32 whole). */
#define AMX_WHOLE_MIN_ROWS 32

static size_t div_up(size_t a, size_t b) { return (a + b - 1) / b; }

size_t repq_gemm_u8u4_packed_size(size_t n, size_t k)
{
    return div_up(n, GROUP) * div_up(k, QUAD) * HALF_BLOCK;
}

/* Element e of the 8-bit block (column e / 4, k offset e % 4) of group g, quad q. */
static size_t nibble_byte(size_t g, size_t q, size_t kq, size_t e)
{
    return (g * kq + q) * HALF_BLOCK + e % HALF_BLOCK;
}

void repq_gemm_u8u4_pack(size_t n, size_t k, const int8_t *b, size_t ldb, void *packed)
{
    const size_t kq = div_up(k, QUAD);
    uint8_t *out = packed;
    memset(out, 0, repq_gemm_u8u4_packed_size(n, k));
    for (size_t j = 0; j < n; j++)
        for (size_t p = 0; p < k; p++) {
            const size_t e = (j % GROUP) * QUAD + p % QUAD;
            const uint8_t v = (uint8_t)(b[j * ldb + p] & 0x0f);
            out[nibble_byte(j / GROUP, p / QUAD, kq, e)] |= (uint8_t)(e < HALF_BLOCK ? v : v << 4);
        }
}

void repq_gemm_u8u4_scalar(size_t m, size_t n, size_t k, const uint8_t *a, size_t lda, const void *packed,
                           int32_t *c, size_t ldc)
{
    const size_t kq = div_up(k, QUAD);
    const uint8_t *bp = packed;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            int32_t sum = 0;
            for (size_t p = 0; p < k; p++) {
                const size_t e = (j % GROUP) * QUAD + p % QUAD;
                const uint8_t byte = bp[nibble_byte(j / GROUP, p / QUAD, kq, e)];
                sum += (int32_t)a[i * lda + p] * (e < HALF_BLOCK ? byte & 0x0f : byte >> 4);
            }
            c[i * ldc + j] = sum;
        }
}

size_t repq_gemm_u8u4_scratch_size(repq_kernel_level level, size_t k, size_t unpacked)
{
    /* PANEL_GROUPS groups as an n = 16 * PANEL_GROUPS matrix of the 8-bit layout; the
     * AMX level takes panels too below AMX_WHOLE_MIN_ROWS rows. */
    const size_t panel = repq_gemm_u8s8_packed_size(GROUP * PANEL_GROUPS, k);
    return level == REPQ_LEVEL_AMX && unpacked > panel ? unpacked : panel;
}

/* Half blocks -> blocks: low nibbles to bytes 0-31, high nibbles to 32-63. The
 * session unpacks every 4-bit weight once per pass, so at batch 1 this runs about
 * as often as the GEMM reads the bytes: hence explicit vector forms. The scalar
 * level never unpacks (repq_gemm_u8u4_scalar reads the nibbles), so the SIMD levels
 * are checked against that reference through the whole GEMM. */
__attribute__((target("avx2"))) static void unpack_blocks_avx2(const uint8_t *in, size_t blocks, uint8_t *out)
{
    const __m256i low = _mm256_set1_epi8(0x0f);
    for (size_t b = 0; b < blocks; b++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(in + b * HALF_BLOCK));
        _mm256_storeu_si256((__m256i *)(void *)(out + b * BLOCK), _mm256_and_si256(v, low));
        _mm256_storeu_si256((__m256i *)(void *)(out + b * BLOCK + HALF_BLOCK),
                            _mm256_and_si256(_mm256_srli_epi16(v, 4), low));
    }
}

static void unpack_blocks(repq_kernel_level level, const uint8_t *in, size_t blocks, uint8_t *out)
{
    if (level >= REPQ_LEVEL_AVX512VNNI)
        repq_u4_unpack_avx512(in, blocks, out);
    else
        unpack_blocks_avx2(in, blocks, out);
}

void repq_gemm_u8u4(repq_kernel_level level, size_t m, size_t n, size_t k, const uint8_t *a, size_t lda,
                    const void *packed, int32_t *c, size_t ldc, void *scratch)
{
    if (level == REPQ_LEVEL_SCALAR) {
        repq_gemm_u8u4_scalar(m, n, k, a, lda, packed, c, ldc);
        return;
    }
    if (level == REPQ_LEVEL_AMX && m >= AMX_WHOLE_MIN_ROWS) {
        repq_gemm_u8u4_amx(m, n, k, a, lda, packed, c, ldc, scratch);
        return;
    }
    const size_t kq = div_up(k, QUAD), groups = div_up(n, GROUP);
    const uint8_t *bp = packed;
    uint8_t *panel = scratch;
    for (size_t g0 = 0; g0 < groups; g0 += PANEL_GROUPS) {
        const size_t ng = groups - g0 < PANEL_GROUPS ? groups - g0 : PANEL_GROUPS;
        const size_t cols = n - g0 * GROUP < ng * GROUP ? n - g0 * GROUP : ng * GROUP;
        /* The panel is the 8-bit packing of these columns, slack included (zeroed so
         * the AMX kernel's tail reads stay defined). */
        const size_t bytes = ng * kq * BLOCK;
        unpack_blocks(level, bp + g0 * kq * HALF_BLOCK, ng * kq, panel);
        memset(panel + bytes, 0, repq_gemm_u8s8_packed_size(cols, k) - bytes);
        repq_gemm_u8s8(level, m, cols, k, a, lda, panel, c + g0 * GROUP, ldc);
    }
}
