/* The public float-model API: load, generate, describe, run. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/tensor.h"
#include "io/safetensors.h"

/* Images run through the float forward in chunks so scratch stays bounded whatever
 * batch the caller hands over; quantizers are fixed by then, so chunking does not change
 * results. */
#define FORWARD_CHUNK 16

/* One parameter from the file into dst: present, of the described shape, finite. */
static repq_status load_one(repq_object *err, const repq_st_file *f, const repq_net_param *want, float *dst)
{
    const repq_st_tensor *t = repq_st_find(f, want->name);
    if (!t)
        return repq_fail(err, REPQ_ERR_FORMAT, "tensor '%s' is missing from the file", want->name);
    bool same = t->ndim == want->ndim;
    for (int32_t i = 0; same && i < want->ndim; i++)
        same = t->shape[i] == want->shape[i];
    if (!same)
        return repq_fail(err, REPQ_ERR_FORMAT, "tensor '%s' has a shape other than the architecture needs",
                         want->name);
    repq_status st = repq_st_read_f32(err, t, dst, want->count);
    if (st)
        return st;
    for (size_t i = 0; i < want->count; i++)
        if (!isfinite(dst[i]))
            return repq_fail(err, REPQ_ERR_NUMERIC, "tensor '%s' holds NaN or infinity at element %zu",
                             want->name, i);
    return REPQ_OK;
}

/* Every parameter the network describes that checkpoints hold, in the net's order. A
 * Swin checkpoint may use timm's older names (patch merging at the end of the stage
 * before, `head`) and carry buffers, which must agree with what the library computes. */
static repq_status load_params(repq_object *err, const repq_allocator *al, const repq_st_file *f,
                               const repq_net *net, repq_params *p)
{
    const repq_swin_arch *swin = &net->arch.swin;
    repq_swin_tensor *names = NULL;
    repq_status st = REPQ_OK;
    if (net->arch.family == REPQ_FAMILY_SWIN) {
        repq_swin_layout layout;
        if ((st = repq_swin_layout_detect(err, swin, f, &layout)) || (st = repq_swin_buffers_check(err, al, swin, f)))
            return st;
        const size_t count = repq_swin_tensors(swin, layout, NULL, 0);
        names = repq_mem_alloc(al, count * sizeof *names);
        if (!names)
            return repq_fail(err, REPQ_ERR_NOMEM, "out of memory loading a Swin model");
        repq_swin_tensors(swin, layout, names, count);
    }
    for (int32_t i = 0; i < net->num_params && st == REPQ_OK; i++) {
        const int32_t at = net->param_order[i];
        repq_net_param want = net->params[at];
        if (want.source < 0)
            continue; /* not in checkpoints: stays zero */
        if (names)
            snprintf(want.name, sizeof want.name, "%s", names[want.source].name);
        st = load_one(err, f, &want, repq_net_param_data(net, p->arena, at));
    }
    repq_mem_free(al, names);
    return st;
}

static repq_status model_alloc(repq_object *err, const repq_allocator *al, const repq_arch *a,
                               repq_model **out)
{
    repq_model *m = repq_mem_alloc(al, sizeof *m);
    if (!m)
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
    repq_object_init(&m->base, REPQ_KIND_MODEL, *al);
    m->arch = *a;
    repq_status st = repq_net_build(err, al, a, &m->net);
    if (st == REPQ_OK)
        st = repq_params_alloc(err, al, m->net, &m->params);
    if (st) {
        repq_net_free(al, m->net);
        repq_mem_free(al, m);
        return st;
    }
    *out = m;
    return REPQ_OK;
}

REPQ_API repq_status repq_model_load(repq_context *ctx, const char *path, const char *preset,
                                     repq_model **out_model)
{
    repq_object *err = repq_context_object(ctx);
    if (!out_model)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_model_load: out_model is NULL");
    *out_model = NULL;
    if (!path)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_model_load: path is NULL");
    repq_allocator al = repq_allocator_of(ctx);
    repq_st_file *f = NULL;
    repq_status st = repq_st_open(err, &al, path, &f);
    if (st)
        return st;
    const char *format = repq_st_metadata(f, "format");
    if (format && strcmp(format, "repq.qmodel") == 0) {
        repq_st_close(f);
        return repq_fail(err, REPQ_ERR_FORMAT, "'%s' is a quantized model (a .repq file, metadata format "
                         "\"repq.qmodel\"), not a float model: load it with repq_qmodel_load", path);
    }
    repq_arch arch;
    st = preset ? repq_arch_from_preset(err, preset, &arch)
                : repq_arch_from_metadata(err, format, repq_st_metadata(f, "architecture"),
                                          repq_st_metadata(f, "preprocess"), &arch);
    repq_model *m = NULL;
    if (st == REPQ_OK)
        st = model_alloc(err, &al, &arch, &m);
    if (st == REPQ_OK)
        st = load_params(err, &al, f, m->net, &m->params);
    if (st == REPQ_OK) {
        m->file_tensors = (int64_t)repq_st_count(f);
        *out_model = m;
    } else {
        repq_model_free(m);
    }
    repq_st_close(f);
    return st;
}

/* splitmix64: a tiny, well-mixed generator, so random models are the same everywhere. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fill_uniform(float *x, size_t n, float bound, uint64_t *state)
{
    for (size_t i = 0; i < n; i++)
        x[i] = bound * (2.0f * (float)((double)(next_random(state) >> 11) * 0x1.0p-53) - 1.0f);
}

static void fill_const(float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        x[i] = v;
}

/* The same kind of random parameters for any family, through the network description:
 * small uniform values, linear weights bounded by their fan-in (halved for the layers
 * that feed the residual stream), LayerNorm gains 1. */
static void fill_random(const repq_net *net, repq_params *p, uint64_t *state)
{
    fill_uniform(p->arena, p->arena_floats, 0.02f, state);
    for (int32_t id = 0; id < net->num_linear; id++) {
        const repq_net_linear *l = &net->linear[id];
        const bool residual = strstr(l->name, ".proj") != NULL && strstr(l->name, "patch_embed") == NULL;
        const bool fc2 = strstr(l->name, "mlp.fc2") != NULL;
        const float bound = (residual || fc2 ? 0.5f : 1.0f) / sqrtf((float)l->in);
        fill_uniform(repq_net_param_data(net, p->arena, l->weight), net->params[l->weight].count, bound, state);
    }
    for (int32_t i = 0; i < net->num_nodes; i++) {
        const repq_net_node *node = &net->nodes[i];
        const int32_t gains[2] = {node->norm_weight, node->norm2_weight};
        for (int k = 0; k < 2; k++)
            if (gains[k] >= 0)
                fill_const(repq_net_param_data(net, p->arena, gains[k]), net->params[gains[k]].count, 1.0f);
    }
}

REPQ_API repq_status repq_model_create_random(repq_context *ctx, const char *preset,
                                              int32_t num_classes, uint64_t seed,
                                              repq_model **out_model)
{
    repq_object *err = repq_context_object(ctx);
    if (!out_model)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_model_create_random: out_model is NULL");
    *out_model = NULL;
    repq_arch arch;
    repq_status st = repq_arch_from_preset(err, preset, &arch);
    if (st)
        return st;
    if (num_classes > 100000)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "num_classes %d is too large", (int)num_classes);
    if (num_classes > 0)
        arch.num_classes = arch.swin.num_classes = num_classes;
    repq_allocator al = repq_allocator_of(ctx);
    repq_model *m;
    if ((st = model_alloc(err, &al, &arch, &m)))
        return st;
    /* Uniform weights with a fan-in bound keep activations O(1) through the depth;
     * LayerNorm gains near 1 and small biases resemble a trained network's scales. */
    uint64_t state = seed;
    repq_params *p = &m->params;
    if (arch.family != REPQ_FAMILY_VIT) {
        fill_random(m->net, p, &state);
        *out_model = m;
        return REPQ_OK;
    }
    size_t d = (size_t)arch.embed_dim, h = (size_t)arch.mlp_hidden, pd = (size_t)repq_vit_patch_dim(&arch);
    fill_uniform(p->arena, p->arena_floats, 0.02f, &state);
    fill_uniform(p->patch_w, d * pd, 1.0f / sqrtf((float)pd), &state);
    fill_uniform(p->head_w, (size_t)arch.num_classes * d, 1.0f / sqrtf((float)d), &state);
    fill_const(p->norm_w, d, 1.0f);
    for (int32_t bi = 0; bi < arch.depth; bi++) {
        repq_block_params *b = &p->blocks[bi];
        fill_uniform(b->qkv_w, 3 * d * d, 1.0f / sqrtf((float)d), &state);
        fill_uniform(b->proj_w, d * d, 0.5f / sqrtf((float)d), &state);
        fill_uniform(b->fc1_w, h * d, 1.0f / sqrtf((float)d), &state);
        fill_uniform(b->fc2_w, d * h, 0.5f / sqrtf((float)h), &state);
        fill_const(b->norm1_w, d, 1.0f);
        fill_const(b->norm2_w, d, 1.0f);
    }
    *out_model = m;
    return REPQ_OK;
}

REPQ_API void repq_model_free(repq_model *model)
{
    if (!repq_object_is(model, REPQ_KIND_MODEL))
        return;
    repq_allocator al = model->base.allocator;
    model->base.kind = 0;
    repq_params_release(&al, &model->params);
    repq_net_free(&al, model->net);
    repq_mem_free(&al, model);
}

/* Tensors (or their parameters) that checkpoints hold: the net's, less the zero biases
 * only reparameterization fills. */
static int64_t checkpoint_params(const repq_net *net, bool floats)
{
    int64_t n = 0;
    for (int32_t i = 0; i < net->num_params; i++)
        if (net->params[i].source >= 0)
            n += floats ? (int64_t)net->params[i].count : 1;
    return n;
}

repq_status repq_net_attr(const repq_net *net, int32_t attr, int64_t *out)
{
    const repq_arch *a = &net->arch;
    switch (attr) {
    case REPQ_MODEL_IMG_SIZE: *out = a->img_size; return REPQ_OK;
    case REPQ_MODEL_PATCH_SIZE: *out = a->patch_size; return REPQ_OK;
    case REPQ_MODEL_IN_CHANS: *out = a->in_chans; return REPQ_OK;
    case REPQ_MODEL_NUM_CLASSES: *out = a->num_classes; return REPQ_OK;
    case REPQ_MODEL_EMBED_DIM: *out = a->embed_dim; return REPQ_OK;
    case REPQ_MODEL_DEPTH: *out = a->depth; return REPQ_OK;
    case REPQ_MODEL_NUM_HEADS: *out = a->num_heads; return REPQ_OK;
    case REPQ_MODEL_MLP_HIDDEN: *out = a->mlp_hidden; return REPQ_OK;
    case REPQ_MODEL_NUM_TOKENS: *out = net->nodes[0].tokens; return REPQ_OK;
    case REPQ_MODEL_NUM_TENSORS: *out = checkpoint_params(net, false); return REPQ_OK;
    case REPQ_MODEL_NUM_PARAMS: *out = checkpoint_params(net, true); return REPQ_OK;
    case REPQ_MODEL_FLOPS_PER_IMAGE: *out = (int64_t)repq_net_flops(net); return REPQ_OK;
    case REPQ_MODEL_FAMILY: *out = a->family; return REPQ_OK;
    case REPQ_MODEL_NUM_STAGES: *out = a->family == REPQ_FAMILY_SWIN ? a->swin.stages : 1; return REPQ_OK;
    case REPQ_MODEL_WINDOW_SIZE: *out = a->family == REPQ_FAMILY_SWIN ? a->swin.window_h : 0; return REPQ_OK;
    }
    return REPQ_ERR_INVALID_ARGUMENT;
}

repq_status repq_net_stage_attr(const repq_net *net, int32_t stage, int32_t attr, int64_t *out)
{
    const repq_arch *a = &net->arch;
    const bool swin = a->family == REPQ_FAMILY_SWIN;
    if (stage < 0 || stage >= (swin ? a->swin.stages : 1))
        return REPQ_ERR_INVALID_ARGUMENT;
    const repq_swin_arch *s = &a->swin;
    const int32_t grid = swin ? repq_swin_stage_grid(s, stage) : 0;
    switch (attr) {
    case REPQ_STAGE_DEPTH: *out = swin ? s->depths[stage] : a->depth; return REPQ_OK;
    case REPQ_STAGE_EMBED_DIM: *out = swin ? repq_swin_stage_dim(s, stage) : a->embed_dim; return REPQ_OK;
    case REPQ_STAGE_NUM_HEADS: *out = swin ? s->num_heads[stage] : a->num_heads; return REPQ_OK;
    case REPQ_STAGE_MLP_HIDDEN: *out = swin ? s->mlp_hidden[stage] : a->mlp_hidden; return REPQ_OK;
    case REPQ_STAGE_NUM_TOKENS: *out = swin ? (int64_t)grid * grid : net->nodes[0].tokens; return REPQ_OK;
    case REPQ_STAGE_WINDOW_SIZE: *out = swin ? repq_swin_block_window(s, stage, 0).win_h : 0; return REPQ_OK;
    }
    return REPQ_ERR_INVALID_ARGUMENT;
}

REPQ_API repq_status repq_model_get_stage_int(const repq_model *model, int32_t stage, repq_stage_attr attr,
                                              int64_t *out_value)
{
    if (!repq_object_is(model, REPQ_KIND_MODEL) || !out_value)
        return REPQ_ERR_INVALID_ARGUMENT;
    return repq_net_stage_attr(model->net, stage, (int32_t)attr, out_value);
}

REPQ_API repq_status repq_model_get_int(const repq_model *model, repq_model_attr attr,
                                        int64_t *out_value)
{
    if (!repq_object_is(model, REPQ_KIND_MODEL))
        return REPQ_ERR_INVALID_ARGUMENT;
    /* The message is the one thing a call may write in a model (model.h). */
    repq_object *err = (repq_object *)&model->base;
    if (!out_value)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_model_get_int: out_value is NULL");
    if (attr == REPQ_MODEL_NUM_TENSORS && model->file_tensors > 0) {
        *out_value = model->file_tensors;
        return REPQ_OK;
    }
    if (repq_net_attr(model->net, (int32_t)attr, out_value) != REPQ_OK)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_model_get_int: unknown attribute %d", (int)attr);
    return REPQ_OK;
}

repq_status repq_images_check(repq_object *err, const repq_arch *a, const repq_tensor *images,
                              size_t *out_n, bool *out_u8)
{
    if (!repq_object_is(images, REPQ_KIND_TENSOR))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "images is not a tensor");
    if (images->dtype != REPQ_DTYPE_U8 && images->dtype != REPQ_DTYPE_F32)
        return repq_fail(err, REPQ_ERR_SHAPE, "images must be U8 or F32");
    if (images->ndim != 4 || images->shape[1] != a->in_chans || images->shape[2] != a->img_size ||
        images->shape[3] != a->img_size)
        return repq_fail(err, REPQ_ERR_SHAPE, "images must be [N, %d, %d, %d]", a->in_chans,
                         a->img_size, a->img_size);
    if (images->dtype == REPQ_DTYPE_F32) {
        const float *x = images->data;
        for (size_t i = 0; i < images->numel; i++)
            if (!isfinite(x[i]))
                return repq_fail(err, REPQ_ERR_NUMERIC, "images hold NaN or infinity at element %zu", i);
    }
    *out_n = (size_t)images->shape[0];
    *out_u8 = images->dtype == REPQ_DTYPE_U8;
    return REPQ_OK;
}

repq_status repq_logits_check(repq_object *err, const repq_arch *a, const repq_tensor *logits,
                              size_t n)
{
    if (!repq_object_is(logits, REPQ_KIND_TENSOR))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "logits is not a tensor");
    if (!repq_tensor_is(logits, REPQ_DTYPE_F32, 2) || logits->shape[0] != (int64_t)n ||
        logits->shape[1] != a->num_classes)
        return repq_fail(err, REPQ_ERR_SHAPE, "logits must be F32 [%zu, %d]", n, a->num_classes);
    return REPQ_OK;
}

repq_status repq_net_forward_tensors(repq_object *err, const repq_allocator *al, const repq_net *net,
                                     const repq_params *p, const repq_hook *hook,
                                     repq_tensor *images, repq_tensor *logits)
{
    const repq_arch *a = &net->arch;
    size_t n;
    bool u8;
    repq_status st = repq_images_check(err, a, images, &n, &u8);
    if (st || (st = repq_logits_check(err, a, logits, n)))
        return st;
    size_t per_image = images->nbytes / n, k = (size_t)a->num_classes;
    for (size_t i = 0; i < n; i += FORWARD_CHUNK) {
        size_t c = n - i < FORWARD_CHUNK ? n - i : FORWARD_CHUNK;
        st = repq_net_forward(err, al, net, p, (const uint8_t *)images->data + i * per_image, u8, c, hook,
                              (float *)logits->data + i * k);
        if (st)
            return st;
    }
    return REPQ_OK;
}

REPQ_API repq_status repq_model_forward(repq_model *model, repq_tensor *images, repq_tensor *logits)
{
    if (!repq_object_is(model, REPQ_KIND_MODEL))
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_clear_error(&model->base);
    repq_status st = repq_net_forward_tensors(&model->base, &model->base.allocator, model->net, &model->params,
                                              NULL, images, logits);
    return repq_fail_default(&model->base, st, "repq_model_forward");
}
