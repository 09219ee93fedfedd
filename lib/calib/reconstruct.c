/* Weight reconstruction (RepQuant's GPTQ step, method.md section 3): the calibration
 * images run once more through the reparameterized, fake-quantized model; when the
 * pass reaches a linear layer, that layer's weight codes are chosen by GPTQ for the
 * inputs it actually receives (already quantized, after every earlier layer was
 * reconstructed), then the pass goes on with the new weights.
 *
 * With the float-model target (float_target.h) the float model runs beside it, one
 * node (block) at a time: the float pass records the node's layer inputs, then the
 * quantized pass reconstructs the node's layers against them. Only one node's inputs
 * are held. */
#include <string.h>

#include "calib/calib.h"
#include "calib/float_target.h"
#include "calib/gptq.h"
#include "model/qmodel.h"

/* Rows widened to double per Gram update: bounds that scratch whatever the batch. */
#define GRAM_CHUNK 256

typedef struct rebuilder {
    repq_calib *calib; /* records the error messages */
    repq_qmodel *q;
    double *gram;  /* [max_in][max_in] */
    double *widen; /* [GRAM_CHUNK][max_in] */
    double *work;  /* GPTQ's, for the largest layer */
    /* Float-model target only: */
    float **float_in;  /* [num_linear] the float model's input of each layer of the current node */
    float *target;     /* [max out * max in] the weights GPTQ quantizes */
} rebuilder;

static repq_status reconstruct_layer(rebuilder *rb, int32_t id, const float *x, size_t rows)
{
    repq_qmodel *q = rb->q;
    repq_qlinear *l = &q->linear[id];
    size_t in = (size_t)l->in, out = (size_t)l->out;
    memset(rb->gram, 0, in * in * sizeof *rb->gram);
    repq_gptq_gram_add(x, rows, in, rb->widen, GRAM_CHUNK, rb->gram);
    int32_t r, c;
    const float *w = repq_net_linear_weight(q->net, &q->float_params, id, &r, &c);
    repq_status st = REPQ_OK;
    if (rb->float_in) {
        if (!rb->float_in[id] || rows % rb->calib->images != 0)
            return REPQ_ERR_SHAPE;
        double lambda;
        st = repq_float_target_weights(&rb->calib->base.allocator, w, out, in, x, rb->float_in[id], rb->calib->images,
                                       rows / rb->calib->images, rb->target, &lambda);
        w = rb->target;
    }
    if (st == REPQ_OK)
        st = repq_gptq_quantize(w, out, in, rb->gram, REPQ_GPTQ_DAMPING, l->wq, rb->work, l->codes);
    return st ? st : repq_qmodel_dequantize_layer(q, id);
}

static repq_status rebuild(void *user, int32_t slot, float *x, size_t rows, size_t cols)
{
    rebuilder *rb = user;
    repq_qmodel *q = rb->q;
    repq_object *err = &rb->calib->base;
    const repq_net_slot *sl = &q->net->slots[slot];
    repq_status st = repq_act_quant_apply(&q->acts[slot], x, rows, cols);
    const int32_t id = sl->feeds;
    if (st || id < 0)
        return st;
    if ((size_t)q->linear[id].in != cols)
        return repq_fail(err, REPQ_ERR_SHAPE, "weight reconstruction: layer %d expects %d inputs, got %zu", (int)id,
                         (int)q->linear[id].in, cols);
    if ((st = reconstruct_layer(rb, id, x, rows)))
        return repq_fail(err, st, "weight reconstruction of linear layer %d failed", (int)id);
    /* As calibration reports: one step per block, one for the patch embedding and head. */
    const repq_calib *c = rb->calib;
    int32_t total = q->net->num_blocks + 1;
    if (c->progress && sl->point == REPQ_QP_FC2_IN)
        c->progress(c->progress_user, sl->unit + 1, total);
    else if (c->progress && sl->point == REPQ_QP_HEAD_IN)
        c->progress(c->progress_user, total, total);
    return REPQ_OK;
}

/* The float pass's hook: keep the inputs of the node's linear layers. */
static repq_status record_float_input(void *user, int32_t slot, float *x, size_t rows, size_t cols)
{
    rebuilder *rb = user;
    const int32_t id = rb->q->net->slots[slot].feeds;
    if (id < 0)
        return REPQ_OK;
    size_t bytes;
    if (rb->float_in[id])
        return repq_fail(&rb->calib->base, REPQ_ERR_SHAPE, "weight reconstruction: layer %d's input seen twice",
                         (int)id);
    if (!repq_size_mul(rows, cols, &bytes) || !repq_size_mul(bytes, sizeof(float), &bytes))
        return repq_fail(&rb->calib->base, REPQ_ERR_OVERFLOW, "weight reconstruction: layer %d's input is too large",
                         (int)id);
    rb->float_in[id] = repq_mem_alloc(&rb->calib->base.allocator, bytes);
    if (!rb->float_in[id])
        return repq_fail(&rb->calib->base, REPQ_ERR_NOMEM, "weight reconstruction: out of memory");
    memcpy(rb->float_in[id], x, bytes);
    return REPQ_OK;
}

/* Node by node: the float model's pass over a node, then the quantized pass. Each
 * pass keeps its own stream between nodes. */
static repq_status rebuild_beside_float(rebuilder *rb, float *logits)
{
    repq_calib *c = rb->calib;
    repq_qmodel *q = rb->q;
    const repq_net *net = q->net;
    const repq_allocator *al = &c->base.allocator;
    size_t stream = 0, bytes = 0;
    for (int32_t i = 0; i < net->num_nodes; i++) {
        size_t f = repq_net_stream_floats(net, i);
        stream = f > stream ? f : stream;
    }
    if (!repq_size_mul(stream, c->images, &bytes) || !repq_size_mul(bytes, sizeof(float), &bytes))
        return repq_fail(&c->base, REPQ_ERR_OVERFLOW, "weight reconstruction: the calibration batch is too large");
    repq_mem_chain chain = {0};
    float **saved_float = repq_mem_chain_alloc(al, &chain, (size_t)net->num_nodes, sizeof(float *));
    float **saved_quant = repq_mem_chain_alloc(al, &chain, (size_t)net->num_nodes, sizeof(float *));
    float *streams[4];
    for (int k = 0; k < 4; k++)
        streams[k] = repq_mem_chain_alloc(al, &chain, bytes > 0 ? bytes : 1, 1);
    rb->float_in = repq_mem_chain_alloc(al, &chain, (size_t)q->num_linear, sizeof(float *));
    repq_status st = saved_float && saved_quant && streams[0] && streams[1] && streams[2] && streams[3] && rb->float_in
                         ? REPQ_OK
                         : repq_fail(&c->base, REPQ_ERR_NOMEM, "weight reconstruction: out of memory");
    repq_hook record = {record_float_input, rb, true, NULL, false};
    repq_hook rebuild_hook = {rebuild, rb, true, NULL, false};
    for (int32_t i = 0; i < net->num_nodes && st == REPQ_OK; i++) {
        /* Node i reads saved[i - 1] (node i - 1's output) and writes saved[i]: two
         * buffers per pass, alternating. */
        saved_float[i] = streams[i % 2];
        saved_quant[i] = streams[2 + i % 2];
        const repq_net_resume float_walk = {i, true, saved_float, i + 1};
        const repq_net_resume quant_walk = {i, true, saved_quant, i + 1};
        st = repq_net_forward_resume(&c->base, al, net, &q->float_params, c->data, c->pixels_u8, c->images, &record,
                                     &float_walk, logits);
        if (st == REPQ_OK)
            st = repq_net_forward_resume(&c->base, al, net, &q->fq_params, c->data, c->pixels_u8, c->images,
                                         &rebuild_hook, &quant_walk, logits);
        for (int32_t id = 0; id < q->num_linear; id++) {
            repq_mem_free(al, rb->float_in[id]);
            rb->float_in[id] = NULL;
        }
        if (i > 0)
            saved_float[i - 1] = saved_quant[i - 1] = NULL;
    }
    rb->float_in = NULL;
    repq_mem_chain_free(al, &chain);
    return st;
}

static bool same_arch(const repq_arch *a, const repq_arch *b)
{
    bool same = a->family == b->family && a->img_size == b->img_size && a->patch_size == b->patch_size &&
                a->in_chans == b->in_chans && a->num_classes == b->num_classes && a->embed_dim == b->embed_dim &&
                a->depth == b->depth && a->num_heads == b->num_heads && a->mlp_hidden == b->mlp_hidden;
    if (same && a->family == REPQ_FAMILY_SWIN) {
        const repq_swin_arch *x = &a->swin, *y = &b->swin;
        same = x->stages == y->stages && x->window_h == y->window_h && x->window_w == y->window_w;
        for (int32_t s = 0; same && s < x->stages; s++)
            same = x->depths[s] == y->depths[s] && x->num_heads[s] == y->num_heads[s] &&
                   x->mlp_hidden[s] == y->mlp_hidden[s];
    }
    return same;
}

REPQ_API repq_status repq_calib_reconstruct(repq_calib *c, const repq_qmodel *src, repq_qmodel **out)
{
    if (out)
        *out = NULL;
    if (!repq_object_is(c, REPQ_KIND_CALIB))
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_object *err = &c->base;
    repq_clear_error(err);
    if (!out)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_calib_reconstruct: out_qmodel is NULL");
    if (!repq_object_is(src, REPQ_KIND_QMODEL))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_calib_reconstruct: not a qmodel");
    if (!c->finished)
        return repq_fail(err, REPQ_ERR_STATE, "repq_calib_reconstruct: the calibrator is not finished");
    if (!src->reparameterized || !src->has_float_weights)
        return repq_fail(err, REPQ_ERR_STATE,
                         "repq_calib_reconstruct: needs a reparameterized qmodel with its float weights "
                         "(from repq_qmodel_reparameterize, not from a file)");
    if (!same_arch(&c->model->arch, &src->arch))
        return repq_fail(err, REPQ_ERR_SHAPE, "repq_calib_reconstruct: the qmodel's architecture is not the calibrated model's");
    const repq_allocator *al = &c->base.allocator;
    repq_qmodel *q;
    repq_status st = repq_qmodel_clone(err, al, src, &q);
    if (st)
        return st;
    size_t max_in = 0, max_work = 0, gram_bytes = 0, widen_bytes = 0, work_bytes = 0, logit_bytes = 0;
    size_t max_weights = 0, target_bytes = 0;
    bool fits = true;
    for (int32_t id = 0; id < q->num_linear; id++) {
        size_t in = (size_t)q->linear[id].in, work = repq_gptq_work_doubles((size_t)q->linear[id].out, in);
        size_t weights = (size_t)q->linear[id].out * in; /* the qmodel's layers exist: no overflow */
        fits = fits && work > 0;
        max_in = in > max_in ? in : max_in;
        max_work = work > max_work ? work : max_work;
        max_weights = weights > max_weights ? weights : max_weights;
    }
    fits = fits && repq_size_mul(max_in, max_in, &gram_bytes) &&
           repq_size_mul(gram_bytes, sizeof(double), &gram_bytes) &&
           repq_size_mul(GRAM_CHUNK, max_in, &widen_bytes) &&
           repq_size_mul(widen_bytes, sizeof(double), &widen_bytes) &&
           repq_size_mul(max_work, sizeof(double), &work_bytes) &&
           repq_size_mul(c->images, (size_t)q->arch.num_classes * sizeof(float), &logit_bytes) &&
           repq_size_mul(max_weights, sizeof(float), &target_bytes);
    if (!fits) {
        repq_qmodel_free(q);
        return repq_fail(err, REPQ_ERR_OVERFLOW, "weight reconstruction: the layers are too large for this machine");
    }
    const bool float_target = c->gptq_target == REPQ_GPTQ_TARGET_FLOAT_MODEL;
    rebuilder rb = {c, q, repq_mem_alloc(al, gram_bytes), repq_mem_alloc(al, widen_bytes),
                    repq_mem_alloc(al, work_bytes), NULL, float_target ? repq_mem_alloc(al, target_bytes) : NULL};
    float *logits = repq_mem_alloc(al, logit_bytes);
    if (!rb.gram || !rb.widen || !rb.work || !logits || (float_target && !rb.target))
        st = repq_fail(err, REPQ_ERR_NOMEM, "weight reconstruction: out of memory");
    repq_hook hook = {rebuild, &rb, true, NULL, false};
    if (st == REPQ_OK && float_target)
        st = rebuild_beside_float(&rb, logits);
    else if (st == REPQ_OK)
        st = repq_net_forward(err, al, q->net, &q->fq_params, c->data, c->pixels_u8, c->images, &hook, logits);
    repq_mem_free(al, rb.gram);
    repq_mem_free(al, rb.widen);
    repq_mem_free(al, rb.work);
    repq_mem_free(al, rb.target);
    repq_mem_free(al, logits);
    if (st) {
        repq_qmodel_free(q);
        return repq_fail_default(err, st, "repq_calib_reconstruct");
    }
    *out = q;
    return REPQ_OK;
}
