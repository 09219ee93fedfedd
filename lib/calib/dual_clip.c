/* RepQuant's per-channel dual clipping, librepq's reconstruction (see dual_clip.h). */
#include "calib/dual_clip.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/object.h"

/* Rank candidates per side: 0 and round(2^(k/2)) for k >= 0 below n / 8, at most
 * this many (enough for n up to 2^60). Clipping an eighth of a channel on one side is
 * far beyond the MSE optimum of any bell-shaped or heavier-tailed data at 2 bits and
 * more (a Gaussian's is about 4% a side at 2 bits); the bound also keeps the wanted
 * ranks in the two tails, where selection is one pass (repq_order_statistics). */
#define MAX_RANKS 128
/* Per side: the ranks (or, for a small channel, half its values) and the reference's
 * three quantiles. */
#define MAX_BOUNDS (MAX_RANKS + REPQ_DUAL_CLIP_EXHAUSTIVE_N + REPQ_QUANT_NUM_CANDIDATES)

/* The channel being searched: a contiguous copy of its values. */
typedef struct channel {
    const float *v;
    size_t n;
    int32_t bits;
} channel;

/* SSE of the grid that [lo, hi] gives (or some partial sum above `bound`); INFINITY
 * for an unusable pair. */
static double score(const channel *ch, float lo, float hi, double bound, repq_quant_params *p)
{
    if (!(lo <= hi) || repq_quant_params_from_range(lo, hi, ch->bits, p) != REPQ_OK)
        return INFINITY;
    return repq_quant_sse_lanes(p, ch->v, ch->n, bound);
}

static size_t tail_ranks(size_t n, size_t ranks[MAX_RANKS])
{
    size_t count = 0;
    ranks[count++] = 0;
    for (int k = 0; count < MAX_RANKS; k++) {
        size_t r = (size_t)llround(ldexp(1.0, k / 2) * (k % 2 ? 1.4142135623730951 : 1.0));
        if (r >= n / 8)
            break;
        if (r != ranks[count - 1])
            ranks[count++] = r;
    }
    return count;
}

/* Sorts (they come nearly sorted) and removes repeated values; returns the new count. */
static size_t sort_unique(float *b, size_t count)
{
    repq_sort_small(b, count);
    size_t u = 0;
    for (size_t i = 0; i < count; i++)
        if (u == 0 || b[i] != b[u - 1])
            b[u++] = b[i];
    return u;
}

/* Makes [l, h] the current pair if it scores below *best. */
static bool try_pair(const channel *ch, float l, float h, float *lo, float *hi, double *best)
{
    repq_quant_params p;
    const double sse = score(ch, l, h, *best, &p);
    if (!(sse < *best))
        return false;
    *best = sse;
    *lo = l;
    *hi = h;
    return true;
}

/* Coordinate step on one bound: the best of cands[from, to) with the other bound held. */
static bool step(const channel *ch, const float *cands, size_t from, size_t to, bool upper, float *lo,
                 float *hi, double *best)
{
    bool moved = false;
    const float held = upper ? *hi : *lo; /* scored already: *best */
    for (size_t i = from; i < to; i++)
        if (cands[i] != held)
            moved |= upper ? try_pair(ch, *lo, cands[i], lo, hi, best) : try_pair(ch, cands[i], *hi, lo, hi, best);
    return moved;
}

/* The index of the current bound in cands (it is one of them). */
static size_t index_of(const float *cands, size_t count, float at)
{
    size_t i = 0;
    while (i + 1 < count && cands[i] != at)
        i++;
    return i;
}

/* A later sweep: the candidates within LOCAL_SWEEP places of the current bound. */
#define LOCAL_SWEEP 2
static bool local_step(const channel *ch, const float *cands, size_t count, bool upper, float *lo, float *hi,
                       double *best)
{
    const size_t i = index_of(cands, count, upper ? *hi : *lo);
    const size_t from = i > LOCAL_SWEEP ? i - LOCAL_SWEEP : 0;
    const size_t to = i + LOCAL_SWEEP + 1 < count ? i + LOCAL_SWEEP + 1 : count;
    return step(ch, cands, from, to, upper, lo, hi, best);
}

/* Evenly spaced values strictly between the chosen bound's two neighbours in `cands`. */
static void refine(const channel *ch, const float *cands, size_t count, bool upper, float *lo, float *hi,
                   double *best)
{
    const size_t i = index_of(cands, count, upper ? *hi : *lo);
    const double a = cands[i > 0 ? i - 1 : i], b = cands[i + 1 < count ? i + 1 : i];
    float fine[REPQ_DUAL_CLIP_REFINE - 1];
    size_t nf = 0;
    for (int k = 1; k < REPQ_DUAL_CLIP_REFINE && a < b; k++)
        fine[nf++] = (float)(a + (b - a) * k / REPQ_DUAL_CLIP_REFINE);
    step(ch, fine, 0, nf, upper, lo, hi, best);
}

repq_status repq_quant_search_dual(const float *x, size_t n, size_t stride, int32_t bits, float *scratch,
                                   repq_quant_params *out, double *mse)
{
    if (!out || bits < REPQ_QUANT_MIN_BITS || bits > REPQ_QUANT_MAX_BITS)
        return REPQ_ERR_INVALID_ARGUMENT;
    /* The reference's candidates and answer (as repq_quant_search finds it: same
     * permutation of the values in scratch, same order of additions). */
    float ref_lo[REPQ_QUANT_NUM_CANDIDATES], ref_hi[REPQ_QUANT_NUM_CANDIDATES];
    repq_quant_params ref;
    double ref_sse;
    repq_status st = repq_quant_candidate_ranges(x, n, stride, scratch, ref_lo, ref_hi);
    if (st != REPQ_OK ||
        (st = repq_quant_best_range(scratch, n, bits, ref_lo, ref_hi, REPQ_QUANT_NUM_CANDIDATES, &ref, &ref_sse)))
        return st;

    float lows[MAX_BOUNDS], highs[MAX_BOUNDS];
    size_t nl = 0, nh = 0;
    const bool exhaustive = n <= REPQ_DUAL_CLIP_EXHAUSTIVE_N;
    if (exhaustive) {
        /* Every value of the lower half is a lower bound, every one of the upper half an
         * upper bound. */
        repq_sort_small(scratch, n);
        for (size_t i = 0; i <= (n - 1) / 2; i++)
            lows[nl++] = scratch[i];
        for (size_t i = n / 2; i < n; i++)
            highs[nh++] = scratch[i];
    } else {
        /* Order statistics of both tails, selected in the scratch copy. */
        size_t r[MAX_RANKS], ranks[2 * MAX_RANKS], nr = tail_ranks(n, r), nk = 0;
        for (size_t i = 0; i < nr; i++)
            ranks[nk++] = r[i];
        for (size_t i = nr; i-- > 0;)
            if (n - 1 - r[i] > ranks[nk - 1])
                ranks[nk++] = n - 1 - r[i];
        repq_order_statistics(scratch, n, ranks, nk);
        for (size_t i = 0; i < nr; i++) {
            lows[nl++] = scratch[r[i]];
            highs[nh++] = scratch[n - 1 - r[i]];
        }
    }
    for (int c = 0; c < REPQ_QUANT_NUM_CANDIDATES; c++) {
        lows[nl++] = ref_lo[c];
        highs[nh++] = ref_hi[c];
    }
    nl = sort_unique(lows, nl);
    nh = sort_unique(highs, nh);

    const channel ch = {scratch, n, bits};
    repq_quant_params cand;
    float lo = ref_lo[0], hi = ref_hi[0];
    double best = INFINITY;
    for (int c = 0; c < REPQ_QUANT_NUM_CANDIDATES; c++)
        try_pair(&ch, ref_lo[c], ref_hi[c], &lo, &hi, &best);
    for (size_t i = 0; exhaustive && i < nl; i++)
        for (size_t j = 0; j < nh; j++)
            try_pair(&ch, lows[i], highs[j], &lo, &hi, &best);
    bool moved = !exhaustive && step(&ch, highs, 0, nh, true, &lo, &hi, &best);
    moved = !exhaustive && (step(&ch, lows, 0, nl, false, &lo, &hi, &best) || moved);
    for (int sweep = 1; sweep < REPQ_DUAL_CLIP_MAX_SWEEPS && moved; sweep++) {
        moved = local_step(&ch, highs, nh, true, &lo, &hi, &best);
        moved |= local_step(&ch, lows, nl, false, &lo, &hi, &best);
    }
    refine(&ch, highs, nh, true, &lo, &hi, &best);
    refine(&ch, lows, nl, false, &lo, &hi, &best);

    /* Kept only where it beats the reference, both summed in the same order. */
    const double ref_lanes = repq_quant_sse_lanes(&ref, scratch, n, INFINITY);
    const double cand_lanes = score(&ch, lo, hi, INFINITY, &cand);
    const bool dual = cand_lanes < ref_lanes;
    *out = dual ? cand : ref;
    if (mse)
        *mse = (dual ? cand_lanes : ref_lanes) / (double)n;
    return REPQ_OK;
}

repq_status repq_quant_search_cols_dual(const float *m, size_t rows, size_t cols, int32_t bits, float *scratch,
                                        repq_quant_params *out)
{
    if (!m || !out || rows == 0 || cols == 0)
        return REPQ_ERR_INVALID_ARGUMENT;
    size_t total;
    if (!repq_size_mul(rows, cols, &total))
        return REPQ_ERR_OVERFLOW;
    for (size_t c = 0; c < cols; c++) {
        repq_status st = repq_quant_search_dual(m + c, rows, cols, bits, scratch, &out[c], NULL);
        if (st != REPQ_OK)
            return st;
    }
    return REPQ_OK;
}
