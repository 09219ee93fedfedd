/* Parameter arena: one allocation laid out by the network description, every tensor a
 * slice of it, with the per-block view the ViT stages read. */
#include "model/net.h"

#include <string.h>

/* Points the view's fields at their slices of the arena. */
static void resolve(const repq_net *n, repq_params *p)
{
    float *arena = p->arena;
    for (int32_t i = 0; i < n->num_nodes; i++) {
        const repq_net_node *node = &n->nodes[i];
        const repq_net_linear *l = node->linear[0] >= 0 ? &n->linear[node->linear[0]] : NULL;
        switch (node->op) {
        case REPQ_OP_PATCH_EMBED:
            p->patch_w = repq_net_param_data(n, arena, l->weight);
            p->patch_b = repq_net_param_data(n, arena, l->bias);
            p->cls_token = node->cls_token >= 0 ? repq_net_param_data(n, arena, node->cls_token) : NULL;
            p->pos_embed = node->pos_embed >= 0 ? repq_net_param_data(n, arena, node->pos_embed) : NULL;
            break;
        case REPQ_OP_MERGE: /* read through the node by the stages that run it */
            break;
        case REPQ_OP_BLOCK: {
            repq_block_params *b = &p->blocks[node->unit];
            const repq_net_linear *qkv = l, *proj = &n->linear[node->linear[1]], *fc1 = &n->linear[node->linear[2]],
                                  *fc2 = &n->linear[node->linear[3]];
            b->norm1_w = repq_net_param_data(n, arena, node->norm_weight);
            b->norm1_b = repq_net_param_data(n, arena, node->norm_bias);
            b->norm2_w = repq_net_param_data(n, arena, node->norm2_weight);
            b->norm2_b = repq_net_param_data(n, arena, node->norm2_bias);
            b->qkv_w = repq_net_param_data(n, arena, qkv->weight);
            b->qkv_b = repq_net_param_data(n, arena, qkv->bias);
            b->proj_w = repq_net_param_data(n, arena, proj->weight);
            b->proj_b = repq_net_param_data(n, arena, proj->bias);
            b->fc1_w = repq_net_param_data(n, arena, fc1->weight);
            b->fc1_b = repq_net_param_data(n, arena, fc1->bias);
            b->fc2_w = repq_net_param_data(n, arena, fc2->weight);
            b->fc2_b = repq_net_param_data(n, arena, fc2->bias);
            break;
        }
        case REPQ_OP_HEAD:
            p->norm_w = repq_net_param_data(n, arena, node->norm_weight);
            p->norm_b = repq_net_param_data(n, arena, node->norm_bias);
            p->head_w = repq_net_param_data(n, arena, l->weight);
            p->head_b = repq_net_param_data(n, arena, l->bias);
            break;
        }
    }
}

repq_status repq_params_alloc(repq_object *err, const repq_allocator *al, const repq_net *n,
                                  repq_params *p)
{
    memset(p, 0, sizeof *p);
    size_t bytes;
    if (!repq_size_mul(n->param_floats, sizeof(float), &bytes))
        return repq_fail(err, REPQ_ERR_OVERFLOW, "model parameters overflow size_t");
    p->blocks = repq_mem_alloc(al, (size_t)(n->num_blocks > 0 ? n->num_blocks : 1) * sizeof *p->blocks);
    p->arena = repq_mem_alloc(al, bytes);
    if (!p->blocks || !p->arena) {
        repq_params_release(al, p);
        return repq_fail(err, REPQ_ERR_NOMEM, "cannot allocate %zu bytes of model parameters", bytes);
    }
    p->arena_floats = n->param_floats;
    resolve(n, p);
    return REPQ_OK;
}

repq_status repq_params_copy(repq_object *err, const repq_allocator *al, const repq_net *n,
                                 const repq_params *src, repq_params *dst)
{
    repq_status st = repq_params_alloc(err, al, n, dst);
    if (st == REPQ_OK)
        memcpy(dst->arena, src->arena, src->arena_floats * sizeof(float));
    return st;
}

void repq_params_release(const repq_allocator *al, repq_params *p)
{
    repq_mem_free(al, p->arena);
    repq_mem_free(al, p->blocks);
    memset(p, 0, sizeof *p);
}
