/* Building the network description (net.h). */
#include "model/net.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* A description under construction: tables sized for the family's counts. */
typedef struct builder {
    repq_net *net;
    size_t at; /* next arena offset */
    bool ok;   /* false once a size overflowed */
} builder;

static repq_status net_alloc(repq_object *err, const repq_allocator *al, int32_t params, int32_t linear,
                             int32_t slots, int32_t nodes, repq_net **out)
{
    *out = NULL;
    repq_net *n = repq_mem_alloc(al, sizeof *n);
    if (!n)
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory for the network description");
    memset(n, 0, sizeof *n);
    n->params = repq_mem_alloc(al, (size_t)params * sizeof *n->params);
    n->param_order = repq_mem_alloc(al, (size_t)params * sizeof *n->param_order);
    n->linear = repq_mem_alloc(al, (size_t)linear * sizeof *n->linear);
    n->slots = repq_mem_alloc(al, (size_t)slots * sizeof *n->slots);
    n->nodes = repq_mem_alloc(al, (size_t)nodes * sizeof *n->nodes);
    if (!n->params || !n->param_order || !n->linear || !n->slots || !n->nodes) {
        repq_net_free(al, n);
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory for the network description");
    }
    *out = n;
    return REPQ_OK;
}

void repq_net_free(const repq_allocator *al, repq_net *net)
{
    if (!net)
        return;
    repq_mem_free(al, net->params);
    repq_mem_free(al, net->param_order);
    repq_mem_free(al, net->linear);
    repq_mem_free(al, net->slots);
    repq_mem_free(al, net->nodes);
    repq_mem_free(al, net);
}

/* Appends a parameter of the given shape (ndim extents from `shape`) to the arena. */
static int32_t add_param(builder *b, int32_t unit, int32_t ndim, const int64_t *shape, const char *fmt, ...)
{
    repq_net *n = b->net;
    repq_net_param *p = &n->params[n->num_params];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    size_t count = 1;
    for (int32_t i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        b->ok = b->ok && repq_size_mul(count, (size_t)shape[i], &count);
    }
    p->ndim = ndim;
    p->count = count;
    p->offset = b->at;
    p->unit = unit;
    p->linear = -1;
    b->ok = b->ok && repq_size_add(b->at, count, &b->at);
    return n->num_params++;
}

/* A linear layer named `name` with a weight [out, in] (stored with `wshape`) and a bias. */
static int32_t add_linear(builder *b, int32_t unit, const char *name, int32_t out, int32_t in, int32_t wndim,
                          const int64_t *wshape, int32_t slot, int32_t norm_weight, int32_t norm_bias)
{
    repq_net *n = b->net;
    const int32_t id = n->num_linear++;
    repq_net_linear *l = &n->linear[id];
    snprintf(l->name, sizeof l->name, "%s", name);
    l->out = out;
    l->in = in;
    l->weight = add_param(b, unit, wndim, wshape, "%s.weight", name);
    n->params[l->weight].linear = id;
    const int64_t bshape[1] = {out};
    l->bias = add_param(b, unit, 1, bshape, "%s.bias", name);
    l->input = slot;
    l->norm_weight = norm_weight;
    l->norm_bias = norm_bias;
    n->slots[slot].feeds = id;
    return id;
}

/* ViT slots keep the file layout: REPQ_QP_COUNT per block, then one row for the
 * once-only points; slot = row * REPQ_QP_COUNT + point. */
static int32_t vit_slot(const repq_arch *a, int32_t block, repq_qpoint pt)
{
    return (block < 0 ? a->depth : block) * REPQ_QP_COUNT + (int32_t)pt;
}

/* Parameters ordered by unit (the network's own first), then by arena position. */
static void order_params(repq_net *n)
{
    int32_t at = 0;
    for (int32_t unit = -1; at < n->num_params; unit++)
        for (int32_t i = 0; i < n->num_params; i++)
            if (n->params[i].unit == unit)
                n->param_order[at++] = i;
}

static repq_net_node *add_node(repq_net *n, repq_net_op op, int32_t unit)
{
    repq_net_node *node = &n->nodes[n->num_nodes++];
    memset(node, 0, sizeof *node);
    node->op = op;
    node->unit = unit;
    node->norm_weight = node->norm_bias = node->norm2_weight = node->norm2_bias = -1;
    node->cls_token = node->pos_embed = -1;
    for (int i = 0; i < 4; i++)
        node->linear[i] = -1;
    for (int i = 0; i < REPQ_QP_COUNT; i++)
        node->slot[i] = -1;
    return node;
}

repq_status repq_net_build_vit(repq_object *err, const repq_allocator *al, const repq_arch *a,
                               repq_net **out)
{
    const int32_t depth = a->depth;
    repq_net *n;
    repq_status st = net_alloc(err, al, 8 + 12 * depth, 4 * depth + 2, (depth + 1) * REPQ_QP_COUNT, depth + 2, &n);
    if (st)
        return st;
    n->arch = *a;
    n->num_blocks = depth;
    n->num_slots = (depth + 1) * REPQ_QP_COUNT;
    for (int32_t i = 0; i < n->num_slots; i++) {
        const int32_t row = i / REPQ_QP_COUNT;
        const repq_qpoint pt = (repq_qpoint)(i % REPQ_QP_COUNT);
        const bool once = pt == REPQ_QP_PATCH_IN || pt == REPQ_QP_HEAD_IN;
        n->slots[i] = (repq_net_slot){pt, row == depth ? -1 : row, -1, (row == depth) == once};
    }
    builder b = {n, 0, true};
    const int64_t d = a->embed_dim, h = a->mlp_hidden, t = repq_vit_tokens(a), k = a->num_classes;
    const int64_t c = a->in_chans, ps = a->patch_size;

    repq_net_node *patch = add_node(n, REPQ_OP_PATCH_EMBED, -1);
    patch->tokens = (int32_t)t;
    patch->dim = (int32_t)d;
    patch->slot[REPQ_QP_PATCH_IN] = vit_slot(a, -1, REPQ_QP_PATCH_IN);
    const int64_t pshape[4] = {d, c, ps, ps};
    patch->linear[0] = add_linear(&b, -1, "patch_embed.proj", (int32_t)d, repq_vit_patch_dim(a), 4, pshape,
                                  patch->slot[REPQ_QP_PATCH_IN], -1, -1);
    const int64_t cls[3] = {1, 1, d}, pos[3] = {1, t, d};
    patch->cls_token = add_param(&b, -1, 3, cls, "cls_token");
    patch->pos_embed = add_param(&b, -1, 3, pos, "pos_embed");

    const int64_t vec_d[1] = {d};
    for (int32_t bi = 0; bi < depth; bi++) {
        repq_net_node *blk = add_node(n, REPQ_OP_BLOCK, bi);
        blk->tokens = (int32_t)t;
        blk->dim = (int32_t)d;
        blk->heads = a->num_heads;
        blk->hidden = (int32_t)h;
        for (int pt = REPQ_QP_QKV_IN; pt <= REPQ_QP_FC2_IN; pt++)
            blk->slot[pt] = vit_slot(a, bi, (repq_qpoint)pt);
        char name[48];
        blk->norm_weight = add_param(&b, bi, 1, vec_d, "blocks.%d.norm1.weight", (int)bi);
        blk->norm_bias = add_param(&b, bi, 1, vec_d, "blocks.%d.norm1.bias", (int)bi);
        const int64_t qkv[2] = {3 * d, d}, proj[2] = {d, d}, fc1[2] = {h, d}, fc2[2] = {d, h};
        snprintf(name, sizeof name, "blocks.%d.attn.qkv", (int)bi);
        blk->linear[0] = add_linear(&b, bi, name, (int32_t)(3 * d), (int32_t)d, 2, qkv, blk->slot[REPQ_QP_QKV_IN],
                                    blk->norm_weight, blk->norm_bias);
        snprintf(name, sizeof name, "blocks.%d.attn.proj", (int)bi);
        blk->linear[1] = add_linear(&b, bi, name, (int32_t)d, (int32_t)d, 2, proj, blk->slot[REPQ_QP_PROJ_IN], -1, -1);
        blk->norm2_weight = add_param(&b, bi, 1, vec_d, "blocks.%d.norm2.weight", (int)bi);
        blk->norm2_bias = add_param(&b, bi, 1, vec_d, "blocks.%d.norm2.bias", (int)bi);
        snprintf(name, sizeof name, "blocks.%d.mlp.fc1", (int)bi);
        blk->linear[2] = add_linear(&b, bi, name, (int32_t)h, (int32_t)d, 2, fc1, blk->slot[REPQ_QP_FC1_IN],
                                    blk->norm2_weight, blk->norm2_bias);
        snprintf(name, sizeof name, "blocks.%d.mlp.fc2", (int)bi);
        blk->linear[3] = add_linear(&b, bi, name, (int32_t)d, (int32_t)h, 2, fc2, blk->slot[REPQ_QP_FC2_IN], -1, -1);
    }

    repq_net_node *head = add_node(n, REPQ_OP_HEAD, -1);
    head->tokens = (int32_t)t;
    head->dim = (int32_t)d;
    head->slot[REPQ_QP_HEAD_IN] = vit_slot(a, -1, REPQ_QP_HEAD_IN);
    head->norm_weight = add_param(&b, -1, 1, vec_d, "norm.weight");
    head->norm_bias = add_param(&b, -1, 1, vec_d, "norm.bias");
    const int64_t hshape[2] = {k, d};
    head->linear[0] = add_linear(&b, -1, "head", (int32_t)k, (int32_t)d, 2, hshape, head->slot[REPQ_QP_HEAD_IN],
                                 -1, -1);
    if (!b.ok) {
        repq_net_free(al, n);
        return repq_fail(err, REPQ_ERR_OVERFLOW, "model parameters overflow size_t");
    }
    n->param_floats = b.at;
    order_params(n);
    *out = n;
    return REPQ_OK;
}

size_t repq_net_largest_activation(const repq_net *net)
{
    const repq_arch *a = &net->arch;
    size_t m = (size_t)repq_vit_patches(a) * (size_t)repq_vit_patch_dim(a);
    for (int32_t i = 0; i < net->num_nodes; i++) {
        const repq_net_node *node = &net->nodes[i];
        const size_t t = (size_t)node->tokens;
        const size_t sizes[3] = {t * (size_t)node->dim, t * (size_t)node->hidden, (size_t)node->heads * t * t};
        for (int k = 0; k < 3; k++)
            m = sizes[k] > m ? sizes[k] : m;
    }
    return m;
}
