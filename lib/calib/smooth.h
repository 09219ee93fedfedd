/* Internal: SQ-b, MPTQ-ViT's SmoothQuant with a bias term (docs/method.md, "SQ-b").
 *
 * Per input channel c of a linear layer y = W x + bias, from the channel's range
 * [lo_c, hi_c] over the calibration activations and the layer's weight W (one row per
 * output channel, one column per input channel):
 *     delta_c = (lo_c + hi_c) / 2                               the channel's centre
 *     sigma_c = ((hi_c - lo_c) / 2)^alpha / max_o |W[o, c]|^(1 - alpha)
 * ((hi - lo) / 2 is max |X_c - delta_c|). The layer computes the same function of
 * X'_c = (X_c - delta_c) / sigma_c with
 *     W'[:, c] = sigma_c W[:, c]          bias' = bias + W delta   (W before scaling)
 * and X' is made by the producer of X, rewritten the same way for every input:
 *   - a LayerNorm whose output is the layer's whole input (qkv, fc1, Swin's merge
 *     reduction; the head, through the final norm and the pooling, which commutes with
 *     a per-channel affine map): gamma'_c = gamma_c / sigma_c,
 *     beta'_c = (beta_c - delta_c) / sigma_c;
 *   - attention's values, for proj: its input is A V with every row of A summing to
 *     1, so A (V - delta) / sigma = (A V - delta) / sigma, which qkv's v rows make:
 *     W_v'[c, :] = W_v[c, :] / sigma_c, b_v'_c = (b_v_c - delta_c) / sigma_c.
 * Both producers are an affine map per channel, row c of [channels, k] weights plus a
 * bias (a LayerNorm's gamma is the k = 1 case), so one fold serves both.
 *
 * Guards: a channel whose half-range or weight column maximum is not a positive normal
 * float (constant or all-zero channels, zero weight columns), or whose sigma is not
 * a positive normal float, gets sigma = 1; a centre that is not finite gets delta = 0.
 *
 * The functions below are pure over the caller's buffers (no allocation, no global
 * state) except repq_smooth_model, which allocates with `al`. */
#ifndef REPQ_CALIB_SMOOTH_H
#define REPQ_CALIB_SMOOTH_H

#include <stdbool.h>
#include <stddef.h>

#include "model/net.h"

/* Where SQ-b is applied (bits of repq_smooth_config.sites). */
enum {
    REPQ_SQB_NORMS = 1,  /* every LayerNorm -> linear pair (the net's norm_weight) */
    REPQ_SQB_VALUES = 2, /* v -> proj of every block */
    REPQ_SQB_HEAD = 4,   /* final LayerNorm -> pooling -> head */
    REPQ_SQB_ALL = 7
};

/* SmoothQuant's migration strength, which SQ-b keeps. */
#define REPQ_SQB_ALPHA 0.5

typedef struct repq_smooth_config {
    int32_t sites;  /* REPQ_SQB_* bits */
    double alpha;   /* in [0, 1] */
} repq_smooth_config;

/* lo[c] = min(lo[c], x[r, c]), hi[c] = max(hi[c], x[r, c]) over the rows of the
 * row-major [rows, cols] x; start from lo = +inf, hi = -inf. NaN is ignored. */
void repq_smooth_ranges_update(const float *x, size_t rows, size_t cols, float *lo, float *hi);

/* wmax[c] = max_o |w[o, c]| of the row-major [rows, cols] w. */
void repq_smooth_column_max(const float *w, size_t rows, size_t cols, float *wmax);

/* delta and sigma of `channels` channels from their ranges and weight column maxima,
 * with the guards above. alpha in [0, 1]. */
void repq_smooth_factors(const float *lo, const float *hi, const float *wmax, size_t channels, double alpha,
                         float *delta, float *sigma);

/* The producer side, X -> X': for every channel c < channels, row c of the row-major
 * [channels, k] w is divided by sigma_c and bias[c] becomes (bias[c] - delta_c) / sigma_c. */
void repq_smooth_fold_producer(float *w, float *bias, size_t channels, size_t k, const float *delta,
                               const float *sigma);

/* The consumer side: bias += w delta with the w given, then w[:, c] *= sigma_c, for the
 * row-major [rows, cols] w (cols = channels) and bias [rows]. */
void repq_smooth_fold_consumer(float *w, float *bias, size_t rows, size_t cols, const float *delta,
                               const float *sigma);

/* SQ-b on the float parameters p of `net`: one float forward of the n images (U8
 * pixels if pixels_u8, else preprocessed floats) records the range of every channel at
 * each site of cfg->sites (a LayerNorm pair's input; proj's input, A V; the head's
 * pooled input), then each site's factors are folded into p. The folds change nothing
 * the float model computes, up to float rounding. Memory: the forward's scratch and
 * four floats per smoothed channel.
 * Errors: REPQ_ERR_INVALID_ARGUMENT (bad cfg), REPQ_ERR_STATE (a smoothed layer has no
 * bias to fold the shift into), REPQ_ERR_NOMEM, the forward's errors; on failure p may
 * be partly rewritten. */
repq_status repq_smooth_model(repq_object *err, const repq_allocator *al, const repq_net *net, repq_params *p,
                              const void *images, bool pixels_u8, size_t n, const repq_smooth_config *cfg);

#endif
