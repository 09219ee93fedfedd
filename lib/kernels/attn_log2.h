/* Internal: attention probabilities given as log2 codes (see softmax_log2.h)
 * times V, with shifts instead of multiplies.
 *
 * For output row i and column j, with c = codes[i][t] and h = ceil(c / 2):
 *   E[i][j] = sum over t with c even, c < sentinel, h <= F of (v[t][j] - zv) * 2^(F - h)
 *   D[i][j] = the same over odd c
 * The accumulators leave out the terms with h > F; the caller gets them (down to
 * h = 2F) by running the same accumulators on the codes c - 2F (repq_attn_v_finish).
 * The real result is s_attn * s_v * 2^-F * (E + sqrt(2) * D).
 * Overflow bound: every token adds to E or D at most 255 * 2^F in magnitude, so
 * sqrt(2) * tokens * 255 * 2^F < 2^31 keeps E and D in int32;
 * repq_attn_v_frac_bits_max gives the largest such F (14 for 197 tokens).
 */
#ifndef REPQ_KERNELS_ATTN_LOG2_H
#define REPQ_KERNELS_ATTN_LOG2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu.h"

/* Largest F in [0, 24] satisfying the bound above, or -1 if none does. */
int repq_attn_v_frac_bits_max(size_t tokens);

/* E and D accumulators (each rows x dim, row stride ldacc) for `rows` code rows
 * (stride ldcodes) against v ([tokens][dim], stride ldv, zero point zv). */
void repq_attn_v_accumulate(repq_kernel_level level, size_t rows, size_t tokens, size_t dim,
                            const uint8_t *codes, size_t ldcodes, int32_t sentinel, const uint8_t *v,
                            size_t ldv, int32_t zv, int frac_bits, int32_t *e, int32_t *d, size_t ldacc);

/* Scratch bytes (any alignment; 64 is best) repq_attn_v_accumulate_gemm needs for
 * `tokens` tokens, `dim` columns and frac_bits F. */
size_t repq_attn_v_gemm_scratch_size(size_t tokens, size_t dim, int frac_bits);

/* The same E and D as repq_attn_v_accumulate, bit for bit, computed as u8 x s8
 * GEMMs (AVX-512 VNNI level and up; lower levels run repq_attn_v_accumulate's loop,
 * the AVX2 levels with V widened to int32 in the scratch).
 * Every weight 2^e (e = F - h) is a single power of two, so it lies in one byte
 * "plane" p = e / 8 with value 2^(e % 8) <= 128: for even and odd codes and each of
 * the P = F/8 + 1 planes, a u8 matrix W_p[i][t] multiplies v - 128 (s8, packed once
 * per call), and
 *   E[i][j] = sum_p 2^(8p) (sum_t W_p[i][t] (v[t][j] - 128)) + (128 - zv) sum_t W[i][t]
 * in wrapping 32-bit arithmetic, which is exact because E fits in int32 (the bound
 * in the header comment). When the entries outside the fullest plane are under 1/32
 * of the entries per other plane, they are added one token at a time instead and
 * only that plane goes through the GEMM (same sums, so the same bits).
 * Needs v codes in [0, 255], frac_bits in [0, 24], tokens <= REPQ_GEMM_U8S8_MAX_K
 * and the scratch above. */
void repq_attn_v_accumulate_gemm(repq_kernel_level level, size_t rows, size_t tokens, size_t dim,
                                 const uint8_t *codes, size_t ldcodes, int32_t sentinel, const uint8_t *v,
                                 size_t ldv, int32_t zv, int frac_bits, int32_t *e, int32_t *d, size_t ldacc,
                                 void *scratch);

/* The k operand of q k^T: rows [tokens][hd] of u8 codes (stride ldk) minus `off`
 * (0 or 128, so the result is s8), in the GEMM's packed layout, exactly what
 * converting them and calling repq_gemm_u8s8_pack gives (packed_size(tokens, hd)
 * bytes). */
void repq_attn_pack_k(repq_kernel_level level, size_t tokens, size_t hd, const uint8_t *k, size_t ldk,
                      int32_t off, void *packed);

/* tail[i] = codes[i] - 2F for the codes of the terms that E and D leave out
 * (2F < c < sentinel, i.e. ceil(c/2) > F), the sentinel for the others; returns
 * whether there is any such code. Running the accumulators on tail with the same F
 * gives E2 and D2 below. sentinel <= 255, F <= 24. */
bool repq_attn_v_tail_codes(size_t n, const uint8_t *codes, int32_t sentinel, int frac_bits, uint8_t *tail);

/* Attention x v as codes of the next quantizer (qscale, qzp, bits). e, d hold the
 * terms with ceil(c/2) <= F (frac_bits F); e2, d2 (NULL: none) the terms with
 * F < ceil(c/2) <= 2F, accumulated by the same kernels on the codes c - 2F (weights
 * 2^(2F - ceil(c/2))). Per element, in double,
 *   o = (float)(ce * (E 2^F + E2) + co * (D 2^F + D2))
 * where the caller sets ce = a_even * s_v * 2^-2F and co = a_odd * s_v * 2^-2F, a_even
 * and a_odd being the attention levels of codes 0 and 1 scaled to 2^0 (s_attn and
 * float(sqrt2) * s_attn for the log-sqrt2 quantizer), so o is the sum of the levels
 * times v - zv, times s_v, rounded once to float. Then out = the code of o as
 * repq_quantize_f32_u8 gives it (float division, round half to even, clamp to
 * [0, 2^bits - 1]). */
void repq_attn_v_finish(repq_kernel_level level, size_t rows, size_t dim, const int32_t *e, const int32_t *d,
                        const int32_t *e2, const int32_t *d2, size_t ldacc, int frac_bits, double ce, double co,
                        float qscale, int32_t qzp, int32_t bits, uint8_t *out, size_t ldout);

#endif
