/* Parameter arena of a ViT: one allocation, every tensor a slice of it. */
#include "model/vit.h"

#include <string.h>

typedef struct cursor {
    float *base; /* NULL: only count */
    size_t at;
    bool ok;
} cursor;

static void slice(cursor *c, float **field, size_t count)
{
    size_t next;
    if (!c->ok || !repq_size_add(c->at, count, &next)) {
        c->ok = false;
        return;
    }
    if (c->base)
        *field = c->base + c->at;
    c->at = next;
}

/* Walks the arena in a fixed order; with base == NULL it only counts. */
static bool layout(const repq_vit_arch *a, repq_vit_params *p, float *base, size_t *out_floats)
{
    size_t d = (size_t)a->embed_dim, h = (size_t)a->mlp_hidden, t = (size_t)repq_vit_tokens(a);
    size_t pd = (size_t)repq_vit_patch_dim(a), k = (size_t)a->num_classes;
    cursor c = {base, 0, true};
    repq_vit_params scratch;
    repq_vit_block dummy;
    if (!base)
        p = &scratch;
    /* Factors are bounded by the architecture checks, so these products cannot overflow. */
    slice(&c, &p->patch_w, d * pd);
    slice(&c, &p->patch_b, d);
    slice(&c, &p->cls_token, d);
    slice(&c, &p->pos_embed, t * d);
    for (int32_t i = 0; i < a->depth; i++) {
        repq_vit_block *b = base ? &p->blocks[i] : &dummy;
        slice(&c, &b->norm1_w, d);
        slice(&c, &b->norm1_b, d);
        slice(&c, &b->qkv_w, 3 * d * d);
        slice(&c, &b->qkv_b, 3 * d);
        slice(&c, &b->proj_w, d * d);
        slice(&c, &b->proj_b, d);
        slice(&c, &b->norm2_w, d);
        slice(&c, &b->norm2_b, d);
        slice(&c, &b->fc1_w, h * d);
        slice(&c, &b->fc1_b, h);
        slice(&c, &b->fc2_w, d * h);
        slice(&c, &b->fc2_b, d);
    }
    slice(&c, &p->norm_w, d);
    slice(&c, &p->norm_b, d);
    slice(&c, &p->head_w, k * d);
    slice(&c, &p->head_b, k);
    *out_floats = c.at;
    return c.ok;
}

bool repq_vit_param_count(const repq_vit_arch *a, size_t *out_floats)
{
    return layout(a, NULL, NULL, out_floats);
}

repq_status repq_vit_params_alloc(repq_object *err, const repq_allocator *al,
                                  const repq_vit_arch *a, repq_vit_params *p)
{
    memset(p, 0, sizeof *p);
    size_t floats, bytes;
    if (!repq_vit_param_count(a, &floats) || !repq_size_mul(floats, sizeof(float), &bytes))
        return repq_fail(err, REPQ_ERR_OVERFLOW, "model parameters overflow size_t");
    p->blocks = repq_mem_alloc(al, (size_t)a->depth * sizeof *p->blocks);
    p->arena = repq_mem_alloc(al, bytes);
    if (!p->blocks || !p->arena) {
        repq_vit_params_release(al, p);
        return repq_fail(err, REPQ_ERR_NOMEM, "cannot allocate %zu bytes of model parameters", bytes);
    }
    p->arena_floats = floats;
    layout(a, p, p->arena, &floats);
    return REPQ_OK;
}

repq_status repq_vit_params_copy(repq_object *err, const repq_allocator *al,
                                 const repq_vit_arch *a, const repq_vit_params *src,
                                 repq_vit_params *dst)
{
    repq_status st = repq_vit_params_alloc(err, al, a, dst);
    if (st == REPQ_OK)
        memcpy(dst->arena, src->arena, src->arena_floats * sizeof(float));
    return st;
}

void repq_vit_params_release(const repq_allocator *al, repq_vit_params *p)
{
    repq_mem_free(al, p->arena);
    repq_mem_free(al, p->blocks);
    memset(p, 0, sizeof *p);
}

double repq_vit_flops(const repq_vit_arch *a)
{
    double d = a->embed_dim, h = a->mlp_hidden, t = repq_vit_tokens(a);
    double per_block = t * (3 * d * d + d * d + 2 * d * h) + 2 * t * t * d;
    return 2.0 * (a->depth * per_block + repq_vit_patches(a) * d * repq_vit_patch_dim(a) +
                  a->num_classes * d);
}
