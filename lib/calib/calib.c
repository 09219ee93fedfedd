/* The calibrator: observes the float model on calibration images, as the reference
 * does, with quantization already on, and searches every quantizer. */
#include <string.h>

#include "calib/calib.h"
#include "calib/dual_clip.h"
#include "calib/mixed.h"
#include "calib/smooth.h"
#include "core/options.h"
#include "core/tensor.h"
#include "model/model.h"
#include "calib/quantizer.h"
#include "model/qmodel.h"

REPQ_API repq_status repq_calib_set_progress(repq_calib *c, repq_progress_fn fn, void *user)
{
    if (!repq_object_is(c, REPQ_KIND_CALIB))
        return REPQ_ERR_INVALID_ARGUMENT;
    c->progress = fn;
    c->progress_user = user;
    return REPQ_OK;
}

static void report(const repq_calib *c, int32_t done)
{
    if (c->progress)
        c->progress(c->progress_user, done, c->model->net->num_blocks + 1);
}

REPQ_API repq_status repq_calib_new(repq_context *ctx, repq_model *model,
                                    const repq_options *options, repq_calib **out_calib)
{
    repq_object *err = repq_context_object(ctx);
    if (!out_calib)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_calib_new: out_calib is NULL");
    *out_calib = NULL;
    if (!repq_object_is(model, REPQ_KIND_MODEL))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_calib_new: model is not a model");
    if (options && !repq_object_is(options, REPQ_KIND_OPTIONS))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_calib_new: options is not an options object");
    repq_options defaults;
    repq_options_defaults(&defaults);
    const repq_options *o = options ? options : &defaults;
    repq_allocator al = repq_allocator_of(ctx);
    repq_calib *c = repq_mem_alloc(&al, sizeof *c);
    if (!c)
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
    repq_object_init(&c->base, REPQ_KIND_CALIB, al);
    c->model = model;
    c->weight_bits = o->weight_bits;
    c->act_bits = o->act_bits;
    c->patch_input_bits = o->patch_input_bits;
    c->method = o->method;
    c->post_gelu = o->post_gelu;
    c->dual_clip = o->dual_clip;
    c->mixed = o->mixed != 0;
    c->smooth = o->smooth;
    c->smooth_sites = REPQ_SQB_ALL;
    c->gptq_target = o->gptq_target;
    *out_calib = c;
    return REPQ_OK;
}

REPQ_API void repq_calib_free(repq_calib *c)
{
    if (!repq_object_is(c, REPQ_KIND_CALIB))
        return;
    repq_allocator al = c->base.allocator;
    c->base.kind = 0;
    repq_mem_free(&al, c->data);
    repq_mem_free(&al, c->layer_bits);
    repq_mem_free(&al, c->slot_bits);
    repq_mem_free(&al, c);
}

/* A copy of widths[0..n) in *dst (freed first; NULL stays NULL). */
static repq_status copy_widths(repq_calib *c, const int8_t *widths, int32_t n, const char *what, int8_t **dst)
{
    for (int32_t i = 0; widths && i < n; i++)
        if (widths[i] < REPQ_QUANT_MIN_BITS || widths[i] > REPQ_QUANT_MAX_BITS)
            return repq_fail(&c->base, REPQ_ERR_INVALID_ARGUMENT, "repq_calib_set_widths: %s %d has %d bits "
                             "(want %d..%d)", what, (int)i, (int)widths[i], REPQ_QUANT_MIN_BITS, REPQ_QUANT_MAX_BITS);
    int8_t *copy = NULL;
    if (widths && !(copy = repq_mem_alloc(&c->base.allocator, (size_t)n)))
        return repq_fail(&c->base, REPQ_ERR_NOMEM, "repq_calib_set_widths: out of memory");
    if (copy)
        memcpy(copy, widths, (size_t)n);
    repq_mem_free(&c->base.allocator, *dst);
    *dst = copy;
    return REPQ_OK;
}

repq_status repq_calib_set_widths(repq_calib *c, const int8_t *layer_weight_bits, const int8_t *slot_act_bits)
{
    if (!repq_object_is(c, REPQ_KIND_CALIB))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (c->finished)
        return repq_fail(&c->base, REPQ_ERR_STATE, "repq_calib_set_widths: the calibrator is already finished");
    const repq_net *net = c->model->net;
    /* Both checked before either is replaced: a refused call changes nothing. */
    int8_t *layers = NULL, *slots = NULL;
    repq_status st = copy_widths(c, layer_weight_bits, net->num_linear, "linear layer", &layers);
    if (st == REPQ_OK)
        st = copy_widths(c, slot_act_bits, net->num_slots, "activation slot", &slots);
    if (st) {
        repq_mem_free(&c->base.allocator, layers);
        return st;
    }
    repq_mem_free(&c->base.allocator, c->layer_bits);
    repq_mem_free(&c->base.allocator, c->slot_bits);
    c->layer_bits = layers;
    c->slot_bits = slots;
    return REPQ_OK;
}

REPQ_API repq_status repq_calib_feed(repq_calib *c, repq_tensor *images)
{
    if (!repq_object_is(c, REPQ_KIND_CALIB))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (c->finished)
        return repq_fail(&c->base, REPQ_ERR_STATE, "repq_calib_feed: the calibrator is already finished");
    size_t n;
    bool u8;
    repq_status st = repq_images_check(&c->base, &c->model->arch, images, &n, &u8);
    if (st)
        return st;
    if (c->images > 0 && u8 != c->pixels_u8)
        return repq_fail(&c->base, REPQ_ERR_SHAPE, "repq_calib_feed: every batch must have the same dtype");
    size_t need;
    if (!repq_size_add(c->images * c->image_bytes, images->nbytes, &need))
        return repq_fail(&c->base, REPQ_ERR_OVERFLOW, "repq_calib_feed: too many images");
    if (need > c->capacity) {
        size_t cap = need > 2 * c->capacity ? need : 2 * c->capacity;
        uint8_t *grown = repq_mem_alloc(&c->base.allocator, cap);
        if (!grown)
            return repq_fail(&c->base, REPQ_ERR_NOMEM, "repq_calib_feed: cannot hold %zu bytes of images", cap);
        if (c->data)
            memcpy(grown, c->data, c->images * c->image_bytes);
        repq_mem_free(&c->base.allocator, c->data);
        c->data = grown;
        c->capacity = cap;
    }
    c->image_bytes = images->nbytes / n;
    memcpy(c->data + c->images * c->image_bytes, images->data, images->nbytes);
    c->images += n;
    c->pixels_u8 = u8;
    return REPQ_OK;
}

typedef struct observer {
    const repq_calib *calib;
    repq_object *err;
    repq_qmodel *q;
    float *scratch;
} observer;

/* The reference's choice of quantizer for each point (reference.md), or the naive
 * baseline's: layer-wise min/max everywhere, uniform after softmax. */
repq_status repq_calib_search_slot(const repq_calib *c, const repq_net *net, const repq_allocator *al, int32_t slot,
                                   int32_t bits, float *x, size_t rows, size_t cols, float *scratch,
                                   repq_act_quant *aq)
{
    const repq_net_slot *sl = &net->slots[slot];
    const repq_qpoint point = sl->point;
    /* The input of a linear layer right after a LayerNorm: channel-wise, for the fold. */
    const bool post_ln = sl->feeds >= 0 && net->linear[sl->feeds].norm_weight >= 0;
    size_t n = rows * cols;
    if (c->method == REPQ_METHOD_MINMAX) {
        aq->kind = REPQ_AQ_UNIFORM;
        return repq_quant_minmax(x, n, 1, bits, &aq->uniform, NULL);
    }
    if (point == REPQ_QP_ATTN) {
        aq->kind = REPQ_AQ_LOG_SQRT2;
        return repq_logq_search(x, n, 1, bits, REPQ_LOG_SQRT2, scratch, &aq->log, NULL);
    }
    if (post_ln) {
        aq->kind = REPQ_AQ_UNIFORM_CHANNEL;
        if (repq_act_quant_set_channels(al, aq, (int32_t)cols) != REPQ_OK)
            return REPQ_ERR_NOMEM;
        if (c->dual_clip)
            return repq_quant_search_cols_dual(x, rows, cols, bits, scratch, aq->per_channel);
        return repq_quant_search_cols(x, rows, cols, bits, REPQ_RANGE_PERCENTILE, scratch,
                                      aq->per_channel);
    }
    aq->kind = REPQ_AQ_UNIFORM;
    double mse;
    repq_status st = repq_quant_search(x, n, 1, bits, scratch, &aq->uniform, &mse);
    if (st || point != REPQ_QP_FC2_IN || c->post_gelu != REPQ_POST_GELU_TWO_REGION)
        return st;
    /* OPT-m: the two-region quantizer where it has less error than the layer-wise one. */
    double two_mse;
    if ((st = repq_tworeg_search(x, n, &aq->uniform, scratch, &aq->two, &two_mse)))
        return st;
    if (!(two_mse < mse))
        return REPQ_OK;
    /* Equal steps (m = 0) are a single grid with another split: kept as one, which
     * every reader and kernel knows. */
    if (aq->two.neg_shift == 0)
        aq->uniform = (repq_quant_params){aq->two.scale, aq->two.zero_point, aq->two.bits};
    else
        aq->kind = REPQ_AQ_TWO_REGION;
    return REPQ_OK;
}

static repq_status search_point(observer *ob, int32_t slot, float *x, size_t rows, size_t cols)
{
    repq_qmodel *q = ob->q;
    const int8_t *widths = ob->calib->slot_bits;
    int32_t bits = widths                                            ? widths[slot]
                   : q->net->slots[slot].point == REPQ_QP_PATCH_IN ? q->patch_input_bits
                                                                   : q->act_bits;
    return repq_calib_search_slot(ob->calib, q->net, &q->base.allocator, slot, bits, x, rows, cols, ob->scratch,
                                  &q->acts[slot]);
}

static repq_status observe(void *user, int32_t slot, float *x, size_t rows, size_t cols)
{
    observer *ob = user;
    repq_act_quant *aq = &ob->q->acts[slot];
    const repq_net_slot *sl = &ob->q->net->slots[slot];
    /* Each quantizer is searched the first time data reaches it, then applied, so later
     * layers calibrate on the outputs of already quantized ones. */
    if (aq->kind == REPQ_AQ_NONE) {
        repq_status st = search_point(ob, slot, x, rows, cols);
        if (st)
            return repq_fail(ob->err, st, "calibration: searching the quantizer of point %d in block %d failed",
                             (int)sl->point, (int)sl->unit);
    }
    repq_status st = repq_act_quant_apply(aq, x, rows, cols);
    if (sl->point == REPQ_QP_FC2_IN && st == REPQ_OK)
        report(ob->calib, sl->unit + 2);
    return st;
}

/* Greedy mixed precision: the widths of every quantizer, then the calibration at them. */
static repq_status choose_widths(repq_calib *c)
{
    const repq_net *net = c->model->net;
    const repq_allocator *al = &c->base.allocator;
    int8_t *layer_bits = repq_mem_alloc(al, (size_t)net->num_linear);
    int8_t *slot_bits = repq_mem_alloc(al, (size_t)net->num_slots);
    repq_status st = layer_bits && slot_bits ? REPQ_OK : repq_fail(&c->base, REPQ_ERR_NOMEM, "mixed precision: out of memory");
    if (st == REPQ_OK)
        st = repq_mixed_choose(c, layer_bits, slot_bits);
    if (st == REPQ_OK)
        st = repq_calib_set_widths(c, layer_bits, slot_bits);
    repq_mem_free(al, layer_bits);
    repq_mem_free(al, slot_bits);
    return st;
}

REPQ_API repq_status repq_calib_finish(repq_calib *c, repq_qmodel **out_qmodel)
{
    if (!repq_object_is(c, REPQ_KIND_CALIB))
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_clear_error(&c->base);
    if (!out_qmodel)
        return repq_fail(&c->base, REPQ_ERR_INVALID_ARGUMENT, "repq_calib_finish: out_qmodel is NULL");
    *out_qmodel = NULL;
    if (c->finished)
        return repq_fail(&c->base, REPQ_ERR_STATE, "repq_calib_finish: already finished");
    if (c->images == 0)
        return repq_fail(&c->base, REPQ_ERR_STATE, "repq_calib_finish: no calibration image was fed");
    repq_status st = c->mixed ? choose_widths(c) : REPQ_OK;
    if (st == REPQ_OK)
        st = repq_calib_run(c, out_qmodel);
    if (st)
        return repq_fail_default(&c->base, st, "repq_calib_finish");
    c->finished = true;
    return REPQ_OK;
}

repq_status repq_calib_run(repq_calib *c, repq_qmodel **out_qmodel)
{
    const repq_allocator *al = &c->base.allocator;
    const repq_arch *a = &c->model->arch;
    repq_qmodel *q;
    repq_status st = repq_qmodel_alloc(&c->base, al, a, &q);
    if (st)
        return st;
    q->weight_bits = c->weight_bits;
    q->act_bits = c->act_bits;
    q->patch_input_bits = c->patch_input_bits;
    q->method = c->method;
    q->has_float_weights = 1;
    q->reparameterized = c->method == REPQ_METHOD_MINMAX;
    for (int32_t id = 0; id < q->num_linear; id++)
        q->layer_bits[id] = c->layer_bits ? c->layer_bits[id] : (int8_t)c->weight_bits;
    memcpy(q->float_params.arena, c->model->params.arena, q->float_params.arena_floats * sizeof(float));
    report(c, 0);
    if (c->smooth == REPQ_SMOOTH_SQB) {
        repq_smooth_config sqb = {c->smooth_sites, REPQ_SQB_ALPHA};
        st = repq_smooth_model(&c->base, al, q->net, &q->float_params, c->data, c->pixels_u8, c->images, &sqb);
    }
    if (st == REPQ_OK)
        st = repq_qmodel_quantize_weights(&c->base, q, false);
    if (st == REPQ_OK)
        report(c, 1);
    float *logits = NULL;
    observer ob = {c, &c->base, q, NULL};
    size_t scratch_floats = c->images * repq_net_largest_activation(q->net);
    if (st == REPQ_OK) {
        ob.scratch = repq_mem_alloc(al, scratch_floats * sizeof(float));
        logits = repq_mem_alloc(al, c->images * (size_t)a->num_classes * sizeof(float));
        if (!ob.scratch || !logits)
            st = repq_fail(&c->base, REPQ_ERR_NOMEM, "calibration: out of memory");
    }
    repq_hook hook = {observe, &ob, true, NULL, false};
    if (st == REPQ_OK)
        st = repq_net_forward(&c->base, al, q->net, &q->fq_params, c->data, c->pixels_u8, c->images, &hook,
                              logits);
    repq_mem_free(al, ob.scratch);
    repq_mem_free(al, logits);
    if (st) {
        repq_qmodel_free(q);
        return st;
    }
    *out_qmodel = q;
    return REPQ_OK;
}
