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
    p->source = n->num_params;
    b->ok = b->ok && repq_size_add(b->at, count, &b->at);
    return n->num_params++;
}

/* A linear layer [out, in] over existing weight and bias parameters, fed by `slot`. */
static int32_t link_linear(builder *b, const char *name, int32_t out, int32_t in, int32_t weight, int32_t bias,
                           int32_t slot, int32_t norm_weight, int32_t norm_bias)
{
    repq_net *n = b->net;
    const int32_t id = n->num_linear++;
    repq_net_linear *l = &n->linear[id];
    snprintf(l->name, sizeof l->name, "%s", name);
    l->out = out;
    l->in = in;
    l->weight = weight;
    l->bias = bias;
    n->params[weight].linear = id;
    l->input = slot;
    l->norm_weight = norm_weight;
    l->norm_bias = norm_bias;
    n->slots[slot].feeds = id;
    return id;
}

/* A linear layer named `name` with new weight (stored with `wshape`) and bias parameters. */
static int32_t add_linear(builder *b, int32_t unit, const char *name, int32_t out, int32_t in, int32_t wndim,
                          const int64_t *wshape, int32_t slot, int32_t norm_weight, int32_t norm_bias)
{
    const int32_t weight = add_param(b, unit, wndim, wshape, "%s.weight", name);
    const int64_t bshape[1] = {out};
    const int32_t bias = add_param(b, unit, 1, bshape, "%s.bias", name);
    return link_linear(b, name, out, in, weight, bias, slot, norm_weight, norm_bias);
}

/* ViT slots keep the file layout of format versions 1 and 2: a row of VIT_ROW slots
 * per block (the points PATCH_IN..HEAD_IN), then one row for the once-only points;
 * slot = row * VIT_ROW + point. */
#define VIT_ROW 10

static int32_t vit_slot(const repq_arch *a, int32_t block, repq_qpoint pt)
{
    return (block < 0 ? a->depth : block) * VIT_ROW + (int32_t)pt;
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
    node->cls_token = node->pos_embed = node->rel_bias = -1;
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
    repq_status st = net_alloc(err, al, 8 + 12 * depth, 4 * depth + 2, (depth + 1) * VIT_ROW, depth + 2, &n);
    if (st)
        return st;
    n->arch = *a;
    n->num_blocks = depth;
    n->num_slots = (depth + 1) * VIT_ROW;
    for (int32_t i = 0; i < n->num_slots; i++) {
        const int32_t row = i / VIT_ROW;
        const repq_qpoint pt = (repq_qpoint)(i % VIT_ROW);
        const bool once = pt == REPQ_QP_PATCH_IN || pt == REPQ_QP_HEAD_IN;
        n->slots[i] = (repq_net_slot){.point = pt, .unit = row == depth ? -1 : row, .feeds = -1, .used = (row == depth) == once};
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
        /* Attention scores: t rows of t, or of one window's tokens. */
        const size_t keys = node->windowed ? (size_t)repq_swin_window_area(&node->window) : t;
        const size_t sizes[4] = {t * (size_t)node->dim, t * (size_t)node->hidden, (size_t)node->heads * t * keys,
                                 t * 4 * (size_t)node->in_dim};
        for (int k = 0; k < 4; k++)
            m = sizes[k] > m ? sizes[k] : m;
    }
    return m;
}

/* ---- Swin ------------------------------------------------------------------------------ */

/* The checkpoint tensors of a Swin, consumed in their order by the builder. */
typedef struct swin_cursor {
    builder *b;
    const repq_swin_tensor *t;
    size_t count, at;
} swin_cursor;

/* The next checkpoint tensor as a parameter; it must be of kind `kind`. */
static int32_t take(swin_cursor *c, repq_swin_param kind)
{
    if (c->at >= c->count || c->t[c->at].param != kind) {
        c->b->ok = false;
        return 0;
    }
    const repq_swin_tensor *t = &c->t[c->at];
    const int32_t p = add_param(c->b, 0, t->ndim, t->shape, "%s", t->name);
    c->b->net->params[p].source = (int32_t)c->at++;
    return p;
}

/* A zero bias [out] that no checkpoint holds, named after its layer. */
static int32_t synthetic_bias(builder *b, const char *layer, int64_t out)
{
    const int64_t shape[1] = {out};
    const int32_t p = add_param(b, 0, 1, shape, "%s.bias", layer);
    b->net->params[p].source = -1;
    return p;
}

static int32_t add_slot(repq_net *n, repq_qpoint pt, int32_t unit)
{
    n->slots[n->num_slots] = (repq_net_slot){.point = pt, .unit = unit, .feeds = -1, .used = true};
    return n->num_slots++;
}

static void swin_block(swin_cursor *c, const repq_swin_arch *s, int32_t stage, int32_t block, int32_t unit)
{
    builder *b = c->b;
    repq_net *n = b->net;
    const int32_t d = repq_swin_stage_dim(s, stage), hid = s->mlp_hidden[stage], grid = repq_swin_stage_grid(s, stage);
    repq_net_node *node = add_node(n, REPQ_OP_BLOCK, unit);
    node->tokens = grid * grid;
    node->grid = grid;
    node->dim = d;
    node->heads = s->num_heads[stage];
    node->hidden = hid;
    node->windowed = true;
    node->q_scaled = true;
    node->window = repq_swin_block_window(s, stage, block);
    for (int pt = REPQ_QP_QKV_IN; pt <= REPQ_QP_FC2_IN; pt++)
        node->slot[pt] = add_slot(n, (repq_qpoint)pt, unit);
    char name[64];
    node->norm_weight = take(c, REPQ_SWIN_NORM1_W);
    node->norm_bias = take(c, REPQ_SWIN_NORM1_B);
    snprintf(name, sizeof name, "layers.%d.blocks.%d.attn.qkv", (int)stage, (int)block);
    const int32_t qkv_w = take(c, REPQ_SWIN_QKV_W);
    const int32_t qkv_b = s->qkv_bias ? take(c, REPQ_SWIN_QKV_B) : synthetic_bias(b, name, 3 * (int64_t)d);
    node->linear[0] = link_linear(b, name, 3 * d, d, qkv_w, qkv_b, node->slot[REPQ_QP_QKV_IN], node->norm_weight,
                                  node->norm_bias);
    node->rel_bias = take(c, REPQ_SWIN_REL_BIAS_TABLE);
    snprintf(name, sizeof name, "layers.%d.blocks.%d.attn.proj", (int)stage, (int)block);
    const int32_t proj_w = take(c, REPQ_SWIN_PROJ_W), proj_b = take(c, REPQ_SWIN_PROJ_B);
    node->linear[1] = link_linear(b, name, d, d, proj_w, proj_b, node->slot[REPQ_QP_PROJ_IN], -1, -1);
    node->norm2_weight = take(c, REPQ_SWIN_NORM2_W);
    node->norm2_bias = take(c, REPQ_SWIN_NORM2_B);
    snprintf(name, sizeof name, "layers.%d.blocks.%d.mlp.fc1", (int)stage, (int)block);
    const int32_t fc1_w = take(c, REPQ_SWIN_FC1_W), fc1_b = take(c, REPQ_SWIN_FC1_B);
    node->linear[2] = link_linear(b, name, hid, d, fc1_w, fc1_b, node->slot[REPQ_QP_FC1_IN], node->norm2_weight,
                                  node->norm2_bias);
    snprintf(name, sizeof name, "layers.%d.blocks.%d.mlp.fc2", (int)stage, (int)block);
    const int32_t fc2_w = take(c, REPQ_SWIN_FC2_W), fc2_b = take(c, REPQ_SWIN_FC2_B);
    node->linear[3] = link_linear(b, name, d, hid, fc2_w, fc2_b, node->slot[REPQ_QP_FC2_IN], -1, -1);
}

static void swin_merge(swin_cursor *c, const repq_swin_arch *s, int32_t stage)
{
    builder *b = c->b;
    repq_net *n = b->net;
    const int32_t din = repq_swin_stage_dim(s, stage - 1), grid = repq_swin_stage_grid(s, stage - 1);
    repq_net_node *node = add_node(n, REPQ_OP_MERGE, stage);
    node->grid = grid;
    node->tokens = (grid / 2) * (grid / 2);
    node->in_dim = din;
    node->dim = 2 * din;
    node->slot[REPQ_QP_MERGE_IN] = add_slot(n, REPQ_QP_MERGE_IN, stage);
    node->norm_weight = take(c, REPQ_SWIN_MERGE_NORM_W);
    node->norm_bias = take(c, REPQ_SWIN_MERGE_NORM_B);
    char name[64];
    snprintf(name, sizeof name, "layers.%d.downsample.reduction", (int)stage);
    const int32_t w = take(c, REPQ_SWIN_MERGE_REDUCTION_W);
    node->linear[0] = link_linear(b, name, 2 * din, 4 * din, w, synthetic_bias(b, name, 2 * (int64_t)din),
                                  node->slot[REPQ_QP_MERGE_IN], node->norm_weight, node->norm_bias);
}

repq_status repq_net_build_swin(repq_object *err, const repq_allocator *al, const repq_arch *a, repq_net **out)
{
    *out = NULL;
    const repq_swin_arch *s = &a->swin;
    const size_t count = repq_swin_tensors(s, REPQ_SWIN_LAYOUT_TIMM, NULL, 0);
    repq_swin_tensor *t = repq_mem_alloc(al, count * sizeof *t);
    if (!t)
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory for the network description");
    repq_swin_tensors(s, REPQ_SWIN_LAYOUT_TIMM, t, count);
    const int32_t blocks = a->depth, merges = s->stages - 1;
    repq_net *n;
    repq_status st = net_alloc(err, al, (int32_t)count + merges + (s->qkv_bias ? 0 : blocks), 4 * blocks + merges + 2,
                               8 * blocks + merges + 2, blocks + merges + 2, &n);
    if (st) {
        repq_mem_free(al, t);
        return st;
    }
    n->arch = *a;
    n->num_blocks = blocks;
    builder b = {n, 0, true};
    swin_cursor c = {&b, t, count, 0};
    const int32_t c0 = s->embed_dim, grid0 = repq_swin_stage_grid(s, 0);

    repq_net_node *patch = add_node(n, REPQ_OP_PATCH_EMBED, -1);
    patch->grid = grid0;
    patch->tokens = grid0 * grid0;
    patch->dim = c0;
    patch->slot[REPQ_QP_PATCH_IN] = add_slot(n, REPQ_QP_PATCH_IN, -1);
    const int32_t pw = take(&c, REPQ_SWIN_PATCH_W), pb = take(&c, REPQ_SWIN_PATCH_B);
    patch->linear[0] = link_linear(&b, "patch_embed.proj", c0, s->in_chans * s->patch_size * s->patch_size, pw, pb,
                                   patch->slot[REPQ_QP_PATCH_IN], -1, -1);
    patch->norm_weight = take(&c, REPQ_SWIN_PATCH_NORM_W);
    patch->norm_bias = take(&c, REPQ_SWIN_PATCH_NORM_B);

    int32_t unit = 0;
    for (int32_t stage = 0; stage < s->stages; stage++) {
        if (stage > 0)
            swin_merge(&c, s, stage);
        for (int32_t blk = 0; blk < s->depths[stage]; blk++)
            swin_block(&c, s, stage, blk, unit++);
    }

    const int32_t dl = repq_swin_stage_dim(s, s->stages - 1), gl = repq_swin_stage_grid(s, s->stages - 1);
    repq_net_node *head = add_node(n, REPQ_OP_HEAD, -1);
    head->grid = gl;
    head->tokens = gl * gl;
    head->dim = dl;
    head->avg_pool = true;
    head->slot[REPQ_QP_HEAD_IN] = add_slot(n, REPQ_QP_HEAD_IN, -1);
    head->norm_weight = take(&c, REPQ_SWIN_NORM_W);
    head->norm_bias = take(&c, REPQ_SWIN_NORM_B);
    const int32_t hw = take(&c, REPQ_SWIN_HEAD_W), hb = take(&c, REPQ_SWIN_HEAD_B);
    head->linear[0] = link_linear(&b, "head.fc", s->num_classes, dl, hw, hb, head->slot[REPQ_QP_HEAD_IN], -1, -1);
    repq_mem_free(al, t);
    if (!b.ok || c.at != count) {
        repq_net_free(al, n);
        return repq_fail(err, REPQ_ERR_OVERFLOW, "Swin parameters overflow size_t or do not match the architecture");
    }
    n->param_floats = b.at;
    for (int32_t i = 0; i < n->num_params; i++)
        n->param_order[i] = i;
    *out = n;
    return REPQ_OK;
}

/* Rows a node's linear layers see per image: the patch rows (not the class token), one
 * pooled row at the head, else the node's tokens. */
static double linear_rows(const repq_net_node *node)
{
    if (node->op == REPQ_OP_HEAD)
        return 1.0;
    if (node->op == REPQ_OP_PATCH_EMBED && node->cls_token >= 0)
        return node->tokens - 1.0;
    return (double)node->tokens;
}

/* A count held in a double, as int64_t (saturated: the cast of a larger double is
 * undefined, and a hostile architecture can describe one). */
static int64_t count_of(double v)
{
    return v < 0x1p62 ? (int64_t)v : (int64_t)1 << 62;
}

/* Name and size of the activation at point `pt` of `node`. */
static void describe_slot(const repq_net *n, const repq_net_node *node, int pt, repq_net_slot *slot)
{
    const double tokens = node->tokens;
    if (slot->feeds >= 0) {
        const repq_net_linear *l = &n->linear[slot->feeds];
        snprintf(slot->name, sizeof slot->name, "%s.input", l->name);
        slot->values = count_of(linear_rows(node) * l->in);
        return;
    }
    /* q, k, v and the attention probabilities: named after the block's attention
     * module, the qkv layer's name without its last part. */
    const char *qkv = node->linear[0] >= 0 ? n->linear[node->linear[0]].name : "attn";
    const char *dot = strrchr(qkv, '.');
    const int prefix = dot ? (int)(dot - qkv) : (int)strlen(qkv);
    const char *part = pt == REPQ_QP_Q ? "q" : pt == REPQ_QP_K ? "k" : pt == REPQ_QP_V ? "v" : "softmax";
    snprintf(slot->name, sizeof slot->name, "%.*s.%s", prefix, qkv, part);
    const double keys = node->windowed ? (double)repq_swin_window_area(&node->window) : tokens;
    slot->values = count_of(pt == REPQ_QP_ATTN ? node->heads * tokens * keys : tokens * node->dim);
}

/* Every used slot's name, size and place in the network's order. */
static void describe_slots(repq_net *n)
{
    for (int32_t i = 0; i < n->num_slots; i++) {
        n->slots[i].order = -1;
        n->slots[i].name[0] = '\0';
        n->slots[i].values = 0;
    }
    n->num_activations = 0;
    for (int32_t i = 0; i < n->num_nodes; i++) {
        const repq_net_node *node = &n->nodes[i];
        for (int pt = 0; pt < REPQ_QP_COUNT; pt++) {
            const int32_t s = node->slot[pt];
            if (s < 0 || !n->slots[s].used)
                continue;
            describe_slot(n, node, pt, &n->slots[s]);
            n->slots[s].order = n->num_activations++;
        }
    }
}

repq_status repq_net_build(repq_object *err, const repq_allocator *al, const repq_arch *a, repq_net **out)
{
    repq_status st = a->family == REPQ_FAMILY_SWIN ? repq_net_build_swin(err, al, a, out)
                                                   : repq_net_build_vit(err, al, a, out);
    if (st == REPQ_OK)
        describe_slots(*out);
    return st;
}

int32_t repq_net_activation_slot(const repq_net *net, int32_t index)
{
    for (int32_t i = 0; index >= 0 && i < net->num_slots; i++)
        if (net->slots[i].order == index)
            return i;
    return -1;
}

double repq_net_flops(const repq_net *net)
{
    double total = 0.0;
    for (int32_t i = 0; i < net->num_nodes; i++) {
        const repq_net_node *node = &net->nodes[i];
        /* Rows through the node's linear layers: the head sees one pooled row. */
        const double rows = linear_rows(node);
        for (int k = 0; k < 4; k++)
            if (node->linear[k] >= 0)
                total += rows * net->linear[node->linear[k]].out * net->linear[node->linear[k]].in;
        if (node->op == REPQ_OP_BLOCK) {
            const double keys = node->windowed ? repq_swin_window_area(&node->window) : node->tokens;
            total += 2.0 * node->tokens * keys * node->dim; /* q k^T and attention x v */
        }
    }
    return 2.0 * total;
}
