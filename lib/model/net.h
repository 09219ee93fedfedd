/* Internal: one description of the network, built from an architecture by the
 * builder of its family. Every stage derives what it needs from it instead of from
 * index arithmetic of its own:
 *   - parameters: timm names, shapes and slices of the parameter arena (loading,
 *     saving, copies);
 *   - linear layers: ids, weight and bias, the activation slot quantizing their input,
 *     and the LayerNorm right before them (the reparameterization pairs);
 *   - activation slots: the quantization point each holds (the qmodel's quantizer
 *     table and the file's "activations" array, in slot order);
 *   - nodes: the ordered operations that the float forward interprets (calling its
 *     hooks with slot numbers) and that the integer session compiles into stages. */
#ifndef REPQ_MODEL_NET_H
#define REPQ_MODEL_NET_H

#include "model/arch.h"

/* A parameter tensor. Its `unit` orders files and loading: -1 for the network's
 * own (stem, final norm, head), else the node unit it belongs to. */
typedef struct repq_net_param {
    char name[80];
    size_t offset, count; /* in floats, within the parameter arena */
    int32_t ndim;
    int64_t shape[4];
    int32_t unit;
    int32_t linear; /* the linear layer this is the weight of, or -1 */
    /* Position in the family's list of checkpoint tensors (Swin: repq_swin_tensors), or
     * -1 for a parameter that float checkpoints do not hold: a zero bias that
     * reparameterization may fill (Swin's patch-merging reduction). */
    int32_t source;
} repq_net_param;

typedef struct repq_net_linear {
    char name[56]; /* timm name of the layer (its weight is name + ".weight") */
    int32_t out, in;
    int32_t weight, bias; /* parameter indices; bias -1 when the layer has none */
    int32_t input;        /* activation slot quantizing its input */
    /* The LayerNorm whose output is this layer's whole input (parameter indices), or
     * -1: a pair that reparameterization folds a channel-wise quantizer into. */
    int32_t norm_weight, norm_bias;
} repq_net_linear;

/* An activation slot: where a quantizer sits. `used` is false for padding slots that
 * the ViT file layout keeps (REPQ_QP_COUNT per block); they hold no quantizer. */
typedef struct repq_net_slot {
    repq_qpoint point;
    int32_t unit;   /* block number, -1 for the once-only points */
    int32_t feeds;  /* the linear layer whose input it quantizes, or -1 */
    bool used;
    /* What users see (repq_qmodel_get_activation_*): the activation's name after its
     * layer ("blocks.3.mlp.fc2.input", "blocks.3.attn.softmax"), its place in the
     * network's order (-1 when unused) and the values it holds per image. */
    char name[64];
    int32_t order;
    int64_t values;
} repq_net_slot;

typedef enum repq_net_op {
    /* Patches through a linear layer into the token rows; ViT: class token and position
     * embedding added (cls_token, pos_embed); Swin: a LayerNorm after (norm_*).
     * linear[0]; slot PATCH_IN. */
    REPQ_OP_PATCH_EMBED = 0,
    /* A pre-norm transformer block, in place on the token rows: x += proj(attn(LN1 x)),
     * x += fc2(gelu(fc1(LN2 x))). linear[0..3] = qkv, proj, fc1, fc2. Attention is global,
     * or `windowed` (Swin: within windows of the token grid, shifted per `window`, with
     * the relative position bias table `rel_bias` and timm's mask added to the scores). */
    REPQ_OP_BLOCK = 1,
    /* Final LayerNorm, pooling (class token, or the average of all tokens with
     * `avg_pool`), head. linear[0]; slot HEAD_IN. */
    REPQ_OP_HEAD = 2,
    /* Patch merging (Swin): each 2x2 group of tokens of a grid x grid input concatenated
     * (repq_swin_merge_rows), LayerNorm (norm_*), linear[0] (the reduction). The output
     * has tokens = (grid / 2)^2 rows of dim channels; in_dim is the input's. Slot MERGE_IN. */
    REPQ_OP_MERGE = 3
} repq_net_op;

typedef struct repq_net_node {
    repq_net_op op;
    int32_t unit;          /* the unit its slots and parameters belong to (-1: none) */
    int32_t tokens;        /* token rows per image at this node */
    int32_t dim, heads, hidden;
    int32_t norm_weight, norm_bias;   /* BLOCK: norm1; HEAD: the final norm (parameter indices) */
    int32_t norm2_weight, norm2_bias; /* BLOCK: norm2 */
    int32_t cls_token, pos_embed;     /* PATCH_EMBED of a ViT */
    int32_t linear[4];
    int32_t slot[REPQ_QP_COUNT];      /* slot of each point the node quantizes, -1 elsewhere */
    int32_t grid;                     /* side of the token grid at the node's input (Swin) */
    int32_t in_dim;                   /* MERGE */
    bool windowed;                    /* BLOCK: window attention */
    bool q_scaled;                    /* BLOCK: q is scaled by 1/sqrt(head_dim) before its quantizer */
    bool avg_pool;                    /* HEAD */
    repq_swin_window window;          /* BLOCK with windowed */
    int32_t rel_bias;                 /* BLOCK with windowed: [(2 win_h - 1)(2 win_w - 1), heads] */
} repq_net_node;

typedef struct repq_net {
    repq_arch arch;
    int32_t num_params, num_linear, num_slots, num_nodes;
    size_t param_floats;
    repq_net_param *params;
    repq_net_linear *linear;
    repq_net_slot *slots;
    repq_net_node *nodes;
    int32_t *param_order; /* [num_params]: parameters by unit, the network's first */
    int32_t num_blocks;   /* transformer blocks: calibration reports one step each */
    int32_t num_activations; /* used slots */
} repq_net;

/* The description of the architecture's family. */
repq_status repq_net_build(repq_object *err, const repq_allocator *al, const repq_arch *a, repq_net **out);
/* The description of a ViT/DeiT (class token, global attention). */
repq_status repq_net_build_vit(repq_object *err, const repq_allocator *al, const repq_arch *a,
                               repq_net **out);
/* The description of a Swin Transformer (a->swin), in timm's current tensor names. */
repq_status repq_net_build_swin(repq_object *err, const repq_allocator *al, const repq_arch *a,
                                repq_net **out);
void repq_net_free(const repq_allocator *al, repq_net *net);
/* The slot of activation `index` (0 <= index < num_activations, the network's order:
 * by node, then by quantization point), or -1. */
int32_t repq_net_activation_slot(const repq_net *net, int32_t index);

/* Allocate a zeroed arena laid out by `net` and point the ViT view's fields into it. */
repq_status repq_params_alloc(repq_object *err, const repq_allocator *al, const repq_net *net,
                                  repq_params *p);
repq_status repq_params_copy(repq_object *err, const repq_allocator *al, const repq_net *net,
                                 const repq_params *src, repq_params *dst);
void repq_params_release(const repq_allocator *al, repq_params *p);

/* Float forward of `n` images through the nodes of `net`. `images` are [n, C, H, W],
 * U8 pixels if `pixels_u8` else preprocessed floats. Writes logits [n, num_classes].
 * `hook` may be NULL. Allocates its scratch with `al`. */
repq_status repq_net_forward(repq_object *err, const repq_allocator *al, const repq_net *net,
                             const repq_params *p, const void *images, bool pixels_u8, size_t n,
                             const repq_hook *hook, float *logits);

/* Saving and reusing the residual stream between nodes, so that forwards which differ
 * only from some node on (one quantizer changed) skip the nodes before it. */
typedef struct repq_net_resume {
    int32_t first_node; /* > 0: start there, the stream read from saved[first_node - 1] */
    bool save;          /* write node i's output stream to saved[i] where saved[i] != NULL */
    float **saved;      /* [num_nodes]: n * repq_net_stream_floats(net, i) floats each */
    int32_t end_node;   /* > 0: stop before this node (its input is then saved[end_node - 1]) */
} repq_net_resume;

/* Floats per image of the stream a node hands to the next (0 for the head). */
size_t repq_net_stream_floats(const repq_net *net, int32_t node);

/* repq_net_forward with `resume` (NULL: the plain forward). The caller guarantees that
 * the saved stream came from the same images and everything before first_node. */
repq_status repq_net_forward_resume(repq_object *err, const repq_allocator *al, const repq_net *net,
                                    const repq_params *p, const void *images, bool pixels_u8, size_t n,
                                    const repq_hook *hook, const repq_net_resume *resume, float *logits);

/* Block node `node` of `net` applied in place to x [n, tokens, dim] (for tests). */
repq_status repq_net_block_apply(repq_object *err, const repq_allocator *al, const repq_net *net,
                                 const repq_net_node *node, const repq_params *p, float *x, size_t n);

/* Multiply-adds x 2 of one image: the linear layers and the attention products. */
double repq_net_flops(const repq_net *net);

/* Floats of the largest activation one image hands to a hook. */
size_t repq_net_largest_activation(const repq_net *net);

/* A parameter's data within an arena laid out by `net`. */
static inline float *repq_net_param_data(const repq_net *net, float *arena, int32_t param)
{
    return arena + net->params[param].offset;
}

#endif
