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

typedef struct named {
    char name[96];
    float *dst;
    int32_t ndim;
    int64_t shape[4];
} named;

static named tensor_spec(const char *name, float *dst, int32_t ndim, int64_t d0, int64_t d1,
                         int64_t d2, int64_t d3)
{
    named n;
    snprintf(n.name, sizeof n.name, "%s", name);
    n.dst = dst;
    n.ndim = ndim;
    n.shape[0] = d0;
    n.shape[1] = d1;
    n.shape[2] = d2;
    n.shape[3] = d3;
    return n;
}

static repq_status load_one(repq_object *err, const repq_st_file *f, const named *want)
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
    size_t count = 1;
    for (int32_t i = 0; i < want->ndim; i++)
        count *= (size_t)want->shape[i];
    repq_status st = repq_st_read_f32(err, t, want->dst, count);
    if (st)
        return st;
    for (size_t i = 0; i < count; i++)
        if (!isfinite(want->dst[i]))
            return repq_fail(err, REPQ_ERR_NUMERIC, "tensor '%s' holds NaN or infinity at element %zu",
                             want->name, i);
    return REPQ_OK;
}

static repq_status load_params(repq_object *err, const repq_st_file *f, const repq_vit_arch *a,
                               repq_vit_params *p)
{
    int64_t d = a->embed_dim, h = a->mlp_hidden, t = repq_vit_tokens(a), k = a->num_classes;
    int64_t ps = a->patch_size, c = a->in_chans;
    named top[] = {
        tensor_spec("patch_embed.proj.weight", p->patch_w, 4, d, c, ps, ps),
        tensor_spec("patch_embed.proj.bias", p->patch_b, 1, d, 0, 0, 0),
        tensor_spec("cls_token", p->cls_token, 3, 1, 1, d, 0),
        tensor_spec("pos_embed", p->pos_embed, 3, 1, t, d, 0),
        tensor_spec("norm.weight", p->norm_w, 1, d, 0, 0, 0),
        tensor_spec("norm.bias", p->norm_b, 1, d, 0, 0, 0),
        tensor_spec("head.weight", p->head_w, 2, k, d, 0, 0),
        tensor_spec("head.bias", p->head_b, 1, k, 0, 0, 0),
    };
    repq_status st;
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if ((st = load_one(err, f, &top[i])))
            return st;
    for (int32_t bi = 0; bi < a->depth; bi++) {
        const repq_vit_block *b = &p->blocks[bi];
        struct { const char *suffix; float *dst; int32_t ndim; int64_t d0, d1; } parts[] = {
            {"norm1.weight", b->norm1_w, 1, d, 0}, {"norm1.bias", b->norm1_b, 1, d, 0},
            {"attn.qkv.weight", b->qkv_w, 2, 3 * d, d}, {"attn.qkv.bias", b->qkv_b, 1, 3 * d, 0},
            {"attn.proj.weight", b->proj_w, 2, d, d}, {"attn.proj.bias", b->proj_b, 1, d, 0},
            {"norm2.weight", b->norm2_w, 1, d, 0}, {"norm2.bias", b->norm2_b, 1, d, 0},
            {"mlp.fc1.weight", b->fc1_w, 2, h, d}, {"mlp.fc1.bias", b->fc1_b, 1, h, 0},
            {"mlp.fc2.weight", b->fc2_w, 2, d, h}, {"mlp.fc2.bias", b->fc2_b, 1, d, 0},
        };
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
            char name[96];
            snprintf(name, sizeof name, "blocks.%d.%s", (int)bi, parts[i].suffix);
            named want = tensor_spec(name, parts[i].dst, parts[i].ndim, parts[i].d0, parts[i].d1, 0, 0);
            if ((st = load_one(err, f, &want)))
                return st;
        }
    }
    return REPQ_OK;
}

static repq_status model_alloc(repq_object *err, const repq_allocator *al, const repq_vit_arch *a,
                               repq_model **out)
{
    repq_model *m = repq_mem_alloc(al, sizeof *m);
    if (!m)
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
    repq_object_init(&m->base, REPQ_KIND_MODEL, *al);
    m->arch = *a;
    repq_status st = repq_vit_params_alloc(err, al, a, &m->params);
    if (st) {
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
    repq_vit_arch arch;
    st = preset ? repq_vit_arch_from_preset(err, preset, &arch)
                : repq_vit_arch_from_json(err, repq_st_metadata(f, "architecture"),
                                          repq_st_metadata(f, "preprocess"), &arch);
    repq_model *m = NULL;
    if (st == REPQ_OK)
        st = model_alloc(err, &al, &arch, &m);
    if (st == REPQ_OK)
        st = load_params(err, f, &arch, &m->params);
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

REPQ_API repq_status repq_model_create_random(repq_context *ctx, const char *preset,
                                              int32_t num_classes, uint64_t seed,
                                              repq_model **out_model)
{
    repq_object *err = repq_context_object(ctx);
    if (!out_model)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_model_create_random: out_model is NULL");
    *out_model = NULL;
    repq_vit_arch arch;
    repq_status st = repq_vit_arch_from_preset(err, preset, &arch);
    if (st)
        return st;
    if (num_classes > 100000)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "num_classes %d is too large", (int)num_classes);
    if (num_classes > 0)
        arch.num_classes = num_classes;
    repq_allocator al = repq_allocator_of(ctx);
    repq_model *m;
    if ((st = model_alloc(err, &al, &arch, &m)))
        return st;
    /* Uniform weights with a fan-in bound keep activations O(1) through the depth;
     * LayerNorm gains near 1 and small biases resemble a trained network's scales. */
    uint64_t state = seed;
    repq_vit_params *p = &m->params;
    size_t d = (size_t)arch.embed_dim, h = (size_t)arch.mlp_hidden, pd = (size_t)repq_vit_patch_dim(&arch);
    fill_uniform(p->arena, p->arena_floats, 0.02f, &state);
    fill_uniform(p->patch_w, d * pd, 1.0f / sqrtf((float)pd), &state);
    fill_uniform(p->head_w, (size_t)arch.num_classes * d, 1.0f / sqrtf((float)d), &state);
    fill_const(p->norm_w, d, 1.0f);
    for (int32_t bi = 0; bi < arch.depth; bi++) {
        repq_vit_block *b = &p->blocks[bi];
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
    repq_vit_params_release(&al, &model->params);
    repq_mem_free(&al, model);
}

repq_status repq_vit_arch_attr(const repq_vit_arch *a, int32_t attr, int64_t *out)
{
    switch (attr) {
    case REPQ_MODEL_IMG_SIZE: *out = a->img_size; return REPQ_OK;
    case REPQ_MODEL_PATCH_SIZE: *out = a->patch_size; return REPQ_OK;
    case REPQ_MODEL_IN_CHANS: *out = a->in_chans; return REPQ_OK;
    case REPQ_MODEL_NUM_CLASSES: *out = a->num_classes; return REPQ_OK;
    case REPQ_MODEL_EMBED_DIM: *out = a->embed_dim; return REPQ_OK;
    case REPQ_MODEL_DEPTH: *out = a->depth; return REPQ_OK;
    case REPQ_MODEL_NUM_HEADS: *out = a->num_heads; return REPQ_OK;
    case REPQ_MODEL_MLP_HIDDEN: *out = a->mlp_hidden; return REPQ_OK;
    case REPQ_MODEL_NUM_TOKENS: *out = repq_vit_tokens(a); return REPQ_OK;
    case REPQ_MODEL_NUM_TENSORS: *out = 4 + 12 * (int64_t)a->depth + 4; return REPQ_OK;
    case REPQ_MODEL_NUM_PARAMS: {
        size_t n;
        repq_vit_param_count(a, &n);
        *out = (int64_t)n;
        return REPQ_OK;
    }
    case REPQ_MODEL_FLOPS_PER_IMAGE: *out = (int64_t)repq_vit_flops(a); return REPQ_OK;
    }
    return REPQ_ERR_INVALID_ARGUMENT;
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
    if (repq_vit_arch_attr(&model->arch, (int32_t)attr, out_value) != REPQ_OK)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_model_get_int: unknown attribute %d", (int)attr);
    return REPQ_OK;
}

repq_status repq_images_check(repq_object *err, const repq_vit_arch *a, const repq_tensor *images,
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

repq_status repq_logits_check(repq_object *err, const repq_vit_arch *a, const repq_tensor *logits,
                              size_t n)
{
    if (!repq_object_is(logits, REPQ_KIND_TENSOR))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "logits is not a tensor");
    if (!repq_tensor_is(logits, REPQ_DTYPE_F32, 2) || logits->shape[0] != (int64_t)n ||
        logits->shape[1] != a->num_classes)
        return repq_fail(err, REPQ_ERR_SHAPE, "logits must be F32 [%zu, %d]", n, a->num_classes);
    return REPQ_OK;
}

repq_status repq_vit_forward_tensors(repq_object *err, const repq_allocator *al, const repq_vit_arch *a,
                                     const repq_vit_params *p, const repq_vit_hook *hook,
                                     repq_tensor *images, repq_tensor *logits)
{
    size_t n;
    bool u8;
    repq_status st = repq_images_check(err, a, images, &n, &u8);
    if (st || (st = repq_logits_check(err, a, logits, n)))
        return st;
    size_t per_image = images->nbytes / n, k = (size_t)a->num_classes;
    for (size_t i = 0; i < n; i += FORWARD_CHUNK) {
        size_t c = n - i < FORWARD_CHUNK ? n - i : FORWARD_CHUNK;
        st = repq_vit_forward(err, al, a, p, (const uint8_t *)images->data + i * per_image, u8, c, hook,
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
    repq_status st = repq_vit_forward_tensors(&model->base, &model->base.allocator, &model->arch, &model->params,
                                              NULL, images, logits);
    return repq_fail_default(&model->base, st, "repq_model_forward");
}
