/* Internal: greedy mixed precision (MPTQ-ViT; docs/method.md, "Greedy mixed precision",
 * where what goes beyond the paper's abstract is marked as our reconstruction).
 *
 * Every linear layer's weight and every activation that feeds a product (the patch
 * embedding's input excepted: it keeps patch_input_bits) gets a width from
 * REPQ_MIXED_WIDTHS. Sensitivity: the calibrator is run once on the probe images with
 * everything at the widest width, and reparameterized (the base model); then each
 * quantizer alone is searched again at the narrowest width (weights: round to nearest
 * per output channel) and the mean squared difference of the logits from the base
 * model's is measured, with a forward that resumes at the node the quantizer belongs
 * to. The difference from the base model, not the error against the float model:
 * that error is dominated by the other quantizers, and its change by one of them
 * is mostly the cross term, whose sign is noise. Wider widths are given the
 * additive-noise estimate cost(b) = cost(4) ((2^4 - 1) / (2^b - 1))^2 (the squared
 * step of a grid over the same range). Allocation: starting from the widest width, the
 * quantizer whose next narrower width costs the least per bit saved is narrowed,
 * until the average width, weighted by weights (model size) or by activation values
 * per image, is at most the calibrator's weight_bits / act_bits. Costs are assumed to
 * add up (independent noises); they are not measured again after each step. */
#ifndef REPQ_CALIB_MIXED_H
#define REPQ_CALIB_MIXED_H

#include "calib/calib.h"

#define REPQ_MIXED_NUM_WIDTHS 4
extern const int32_t repq_mixed_widths[REPQ_MIXED_NUM_WIDTHS]; /* 8, 6, 5, 4: widest first */

/* Images the sensitivity forwards use (the first ones fed). */
#define REPQ_MIXED_PROBE_IMAGES 8

/* One quantizer the allocation chooses a width for. */
typedef struct repq_mixed_unit {
    bool weight;    /* a linear layer's weight (id: layer), else an activation (id: slot) */
    int32_t id;
    int32_t node;   /* the first node its width changes */
    double size;    /* weights of the layer, or values per image of the activation */
    double cost[REPQ_MIXED_NUM_WIDTHS]; /* logit difference at each width (cost[0] = 0) */
    int32_t level;  /* chosen index into repq_mixed_widths */
} repq_mixed_unit;

/* The greedy allocation over `n` units whose cost[] is set: every unit of the kind
 * (weights if `weights`, else activations) starts at level 0 and is narrowed until the
 * size-weighted average width is at most `budget` bits. Sets each unit's level. Pure:
 * no allocation. REPQ_ERR_INVALID_ARGUMENT if the budget is below the narrowest width. */
repq_status repq_mixed_allocate(repq_mixed_unit *units, size_t n, bool weights, double budget);

/* Measure the sensitivities on the calibrator's images and choose the widths:
 * layer_bits [net->num_linear] and slot_bits [net->num_slots] (the patch input gets
 * patch_input_bits). */
repq_status repq_mixed_choose(repq_calib *c, int8_t *layer_bits, int8_t *slot_bits);

#endif
