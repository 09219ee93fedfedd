/* Tests of mixed widths (issue 16, the plumbing of mixed precision): a weight width per
 * linear layer and an activation width per slot, set by repq_calib_set_widths, reach
 * the weight search, every activation search, reparameterization, GPTQ, the file
 * (format version 4) and the integer session. Widths that are all equal give exactly
 * the uniform model; mixed files round-trip bit for bit; the session agrees with fake
 * quantization on the bundled ViT and on the bundled Swin; edited version-4 files are
 * refused with a message. */
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "calib/calib.h"
#include "calib/quantizer.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "kernels/cpu.h"
#include "model/qmodel.h"
#include "repq/repq.h"
#include "data_file.h"
#include "session_checks.h"
#include "swin_small_file.h"
#include "st_edit.h"

#define VIT_MODEL REPQ_TEST_DATA "/vit_tiny_cifar10.safetensors"
#define VIT_CALIB REPQ_TEST_DATA "/cifar10_calib.bin"
#define VIT_TEST REPQ_TEST_DATA "/cifar10_test_dev.bin"
#define SWIN_MODEL REPQ_TEST_DATA "/swin_micro_rand.safetensors"
#define SWIN_INPUTS REPQ_TEST_DATA "/swin_micro_rand_inputs.u8"
#define N_EVAL 600
#define N_SMALL 8
#define N_SWIN 4
#define CLASSES 10 /* the most of any model here (the small Swin has 3) */
#define MIXES 2

/* One calibration's widths and results. */
typedef struct mix {
    int8_t *layer_bits, *slot_bits; /* NULL: the options' */
    repq_qmodel *raw, *rq;          /* channel-wise, and reparameterized */
} mix;

typedef struct fixture {
    repq_model *vit, *swin;
    repq_tensor *calib, *eval, *small, *pair, *swin_images; /* pair: the first 2 of small */
    mix uniform4;      /* options W4A4, no widths set */
    mix equal4_on8;    /* options W8A8, every width set to 4 (the patch input kept at 8) */
    mix equal4_on4;    /* options W4A4, every width set to 4 */
    mix vit_mix[MIXES]; /* random widths from {4, 5, 6, 8} */
    mix swin_mix;
    char dir[64], path[128], path2[128], edited[128];
} fixture;

static fixture fx;

/* ---- Calibrating with widths --------------------------------------------------------- */

static uint64_t next_random(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* n widths drawn from {4, 5, 6, 8} with seed `seed`. */
static int8_t *random_widths(size_t n, uint64_t seed)
{
    static const int8_t choices[4] = {4, 5, 6, 8};
    int8_t *w = malloc(n);
    for (size_t i = 0; w && i < n; i++)
        w[i] = choices[next_random(&seed) % 4];
    return w;
}

static int8_t *equal_widths(size_t n, int8_t bits)
{
    int8_t *w = malloc(n);
    if (w)
        memset(w, bits, n);
    return w;
}

static repq_status calibrate(repq_model *m, repq_tensor *images, int bits, mix *x)
{
    repq_options *o;
    repq_calib *c;
    repq_status st;
    if ((st = repq_options_new(&o)) || (st = repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, bits)) ||
        (st = repq_options_set_int(o, REPQ_OPT_ACT_BITS, bits)) || (st = repq_calib_new(NULL, m, o, &c)))
        return st;
    if (!(st = repq_calib_set_widths(c, x->layer_bits, x->slot_bits)) && !(st = repq_calib_feed(c, images)) &&
        !(st = repq_calib_finish(c, &x->raw)))
        st = repq_qmodel_reparameterize(NULL, x->raw, &x->rq);
    if (st)
        fprintf(stderr, "calibration: %s\n", repq_last_error(c));
    repq_calib_free(c);
    repq_options_free(o);
    return st;
}

static void mix_free(mix *x)
{
    free(x->layer_bits);
    free(x->slot_bits);
    repq_qmodel_free(x->raw);
    repq_qmodel_free(x->rq);
}

static repq_tensor *swin_inputs(void)
{
    static uint8_t images[N_SWIN * 3 * 224 * 224];
    data_file_read(SWIN_INPUTS, images, sizeof images);
    const int64_t shape[4] = {N_SWIN, 3, 224, 224};
    repq_tensor *t = NULL;
    repq_tensor_new(NULL, REPQ_DTYPE_U8, 4, shape, images, &t);
    return t;
}

static int setup(void **state)
{
    fixture *f = &fx;
    repq_tensor *labels = NULL, *l2 = NULL, *l3 = NULL, *l4 = NULL;
    snprintf(f->dir, sizeof f->dir, "/tmp/repq_mixed_XXXXXX");
    if (!mkdtemp(f->dir) || snprintf(f->path, sizeof f->path, "%s/a.repq", f->dir) >= (int)sizeof f->path ||
        snprintf(f->path2, sizeof f->path2, "%s/b.repq", f->dir) >= (int)sizeof f->path2 ||
        snprintf(f->edited, sizeof f->edited, "%s/edited.repq", f->dir) >= (int)sizeof f->edited)
        return -1;
    if (repq_model_load(NULL, VIT_MODEL, NULL, &f->vit) || repq_model_load(NULL, SWIN_MODEL, NULL, &f->swin) ||
        repq_cifar_load(NULL, VIT_CALIB, 0, 32, &f->calib, &labels) ||
        repq_cifar_load(NULL, VIT_TEST, 0, N_EVAL, &f->eval, &l2) ||
        repq_cifar_load(NULL, VIT_TEST, 0, N_SMALL, &f->small, &l3) ||
        repq_cifar_load(NULL, VIT_TEST, 0, 2, &f->pair, &l4) || !(f->swin_images = swin_inputs()))
        return -1;
    repq_tensor_free(labels);
    repq_tensor_free(l2);
    repq_tensor_free(l3);
    repq_tensor_free(l4);
    const repq_net *net = f->vit->net, *snet = f->swin->net;
    const size_t layers = (size_t)net->num_linear, slots = (size_t)net->num_slots;
    f->equal4_on8 = (mix){equal_widths(layers, 4), equal_widths(slots, 4), NULL, NULL};
    for (int32_t i = 0; f->equal4_on8.slot_bits && i < net->num_slots; i++)
        if (net->slots[i].point == REPQ_QP_PATCH_IN)
            f->equal4_on8.slot_bits[i] = 8;
    f->equal4_on4 = (mix){equal_widths(layers, 4), equal_widths(slots, 4), NULL, NULL};
    for (int32_t i = 0; f->equal4_on4.slot_bits && i < net->num_slots; i++)
        if (net->slots[i].point == REPQ_QP_PATCH_IN)
            f->equal4_on4.slot_bits[i] = 8;
    for (int k = 0; k < MIXES; k++)
        f->vit_mix[k] = (mix){random_widths(layers, 10 + (uint64_t)k), random_widths(slots, 20 + (uint64_t)k),
                              NULL, NULL};
    f->swin_mix = (mix){random_widths((size_t)snet->num_linear, 31), random_widths((size_t)snet->num_slots, 32),
                        NULL, NULL};
    if (calibrate(f->vit, f->calib, 4, &f->uniform4) || calibrate(f->vit, f->calib, 8, &f->equal4_on8) ||
        calibrate(f->vit, f->calib, 4, &f->equal4_on4) || calibrate(f->swin, f->swin_images, 6, &f->swin_mix))
        return -1;
    for (int k = 0; k < MIXES; k++)
        if (calibrate(f->vit, f->calib, 6, &f->vit_mix[k]))
            return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    mix_free(&f->uniform4);
    mix_free(&f->equal4_on8);
    mix_free(&f->equal4_on4);
    for (int k = 0; k < MIXES; k++)
        mix_free(&f->vit_mix[k]);
    mix_free(&f->swin_mix);
    repq_tensor_free(f->calib);
    repq_tensor_free(f->eval);
    repq_tensor_free(f->small);
    repq_tensor_free(f->pair);
    repq_tensor_free(f->swin_images);
    repq_model_free(f->vit);
    repq_model_free(f->swin);
    unlink(f->path);
    unlink(f->path2);
    unlink(f->edited);
    rmdir(f->dir);
    return 0;
}

/* ---- Every width reaches its layer and its slot -------------------------------------- */

/* Each layer's quantizers carry its width and its codes are below 2^width; each used
 * slot's quantizer has the slot's width. */
static void check_widths(const repq_qmodel *q, const int8_t *layer_bits, const int8_t *slot_bits)
{
    for (int32_t id = 0; id < q->num_linear; id++) {
        const repq_qlinear *l = &q->linear[id];
        assert_int_equal(q->layer_bits[id], layer_bits[id]);
        for (int32_t o = 0; o < l->out; o++)
            assert_int_equal(l->wq[o].bits, layer_bits[id]);
        for (size_t j = 0; j < (size_t)l->out * (size_t)l->in; j++)
            if (l->codes[j] >> layer_bits[id])
                fail_msg("layer %d: code %d is not below 2^%d", (int)id, (int)l->codes[j], (int)layer_bits[id]);
        int64_t wb = 0, ab = 0;
        assert_int_equal(repq_qmodel_get_layer_int(q, id, REPQ_LAYER_WEIGHT_BITS, &wb), REPQ_OK);
        assert_int_equal(repq_qmodel_get_layer_int(q, id, REPQ_LAYER_INPUT_BITS, &ab), REPQ_OK);
        assert_int_equal(wb, layer_bits[id]);
        assert_int_equal(ab, slot_bits[q->net->linear[id].input]);
    }
    for (int32_t i = 0; i < q->net->num_slots; i++)
        if (q->net->slots[i].used)
            assert_int_equal(repq_act_quant_bits(&q->acts[i]), slot_bits[i]);
    /* Through the public activation list: each layer's input, found by the layer's own
     * name, has its slot's width. */
    int64_t count = 0;
    assert_int_equal(repq_qmodel_get_int(q, REPQ_QMODEL_NUM_ACTIVATIONS, &count), REPQ_OK);
    for (int32_t id = 0; id < q->num_linear; id++) {
        const char *layer = NULL;
        assert_int_equal(repq_qmodel_get_layer_name(q, id, &layer), REPQ_OK);
        char want[96];
        snprintf(want, sizeof want, "%s.input", layer);
        int found = 0;
        for (int32_t a = 0; a < count; a++) {
            const char *name = NULL;
            int64_t bits = 0;
            assert_int_equal(repq_qmodel_get_activation_name(q, a, &name), REPQ_OK);
            if (strcmp(name, want) != 0)
                continue;
            found++;
            assert_int_equal(repq_qmodel_get_activation_int(q, a, REPQ_ACTIVATION_BITS, &bits), REPQ_OK);
            assert_int_equal(bits, slot_bits[q->net->linear[id].input]);
        }
        if (found != 1)
            fail_msg("activation %s listed %d times", want, found);
    }
}

static void random_widths_reach_every_layer_and_slot(void **state)
{
    fixture *f = *state;
    for (int k = 0; k < MIXES; k++) {
        check_widths(f->vit_mix[k].raw, f->vit_mix[k].layer_bits, f->vit_mix[k].slot_bits);
        check_widths(f->vit_mix[k].rq, f->vit_mix[k].layer_bits, f->vit_mix[k].slot_bits);
        int64_t mixed = 0;
        assert_int_equal(repq_qmodel_get_int(f->vit_mix[k].rq, REPQ_QMODEL_MIXED_WIDTHS, &mixed), REPQ_OK);
        assert_int_equal(mixed, 1);
    }
    check_widths(f->swin_mix.raw, f->swin_mix.layer_bits, f->swin_mix.slot_bits);
    check_widths(f->swin_mix.rq, f->swin_mix.layer_bits, f->swin_mix.slot_bits);
}

/* The bundled ViT's activations by hand: 32x32 images in 4x4 patches (64 patches and
 * a class token, 65 tokens), 192 channels, 3 heads, 768 hidden, 10 classes; the ViT
 * file layout puts block b's point p in slot 10 b + p and the once-only points in row
 * `depth`. */
static void check_vit_activation(const repq_qmodel *q, const int8_t *slot_bits, int32_t a, const char *name,
                                 int64_t values, int64_t kind, int32_t slot)
{
    const char *got = NULL;
    int64_t bits = 0, v = 0, k = 0;
    assert_int_equal(repq_qmodel_get_activation_name(q, a, &got), REPQ_OK);
    assert_string_equal(got, name);
    assert_int_equal(repq_qmodel_get_activation_int(q, a, REPQ_ACTIVATION_BITS, &bits), REPQ_OK);
    assert_int_equal(repq_qmodel_get_activation_int(q, a, REPQ_ACTIVATION_VALUES, &v), REPQ_OK);
    assert_int_equal(repq_qmodel_get_activation_int(q, a, REPQ_ACTIVATION_KIND, &k), REPQ_OK);
    assert_int_equal(bits, slot_bits[slot]);
    assert_int_equal(v, values);
    if (kind)
        assert_int_equal(k, kind);
    else if (k != REPQ_ACTIVATION_UNIFORM && k != REPQ_ACTIVATION_TWO_REGION)
        fail_msg("%s: kind %d, not a post-GELU quantizer", name, (int)k);
}

static void activations_are_listed_in_the_network_order(void **state)
{
    fixture *f = *state;
    const int32_t depth = 12, row = 10, t = 65, d = 192, heads = 3, hid = 768;
    static const char *const parts[8] = {"attn.qkv.input", "attn.q", "attn.k", "attn.v",
                                         "attn.softmax", "attn.proj.input", "mlp.fc1.input", "mlp.fc2.input"};
    for (int k = 0; k < 2; k++) {
        const mix *x = &f->vit_mix[k];
        /* Before reparameterization the post-LayerNorm inputs are per channel. */
        const repq_qmodel *qs[2] = {x->raw, x->rq};
        for (int r = 0; r < 2; r++) {
            const repq_qmodel *q = qs[r];
            const int64_t ln_kind = r == 0 ? REPQ_ACTIVATION_CHANNELS : REPQ_ACTIVATION_UNIFORM;
            int64_t count = 0;
            assert_int_equal(repq_qmodel_get_int(q, REPQ_QMODEL_NUM_ACTIVATIONS, &count), REPQ_OK);
            assert_int_equal(count, 2 + 8 * depth);
            check_vit_activation(q, x->slot_bits, 0, "patch_embed.proj.input", 64 * 48, REPQ_ACTIVATION_UNIFORM,
                                 depth * row + 0);
            for (int32_t b = 0; b < depth; b++) {
                const int64_t values[8] = {t * d, t * d, t * d, t * d, heads * t * t, t * d, t * d, t * hid};
                const int64_t kinds[8] = {ln_kind, REPQ_ACTIVATION_UNIFORM, REPQ_ACTIVATION_UNIFORM,
                                          REPQ_ACTIVATION_UNIFORM, REPQ_ACTIVATION_LOG, REPQ_ACTIVATION_UNIFORM,
                                          ln_kind, 0};
                for (int p = 0; p < 8; p++) {
                    char name[64];
                    snprintf(name, sizeof name, "blocks.%d.%s", (int)b, parts[p]);
                    check_vit_activation(q, x->slot_bits, 1 + 8 * b + p, name, values[p], kinds[p], b * row + 1 + p);
                }
            }
            check_vit_activation(q, x->slot_bits, 1 + 8 * depth, "head.input", d, REPQ_ACTIVATION_UNIFORM,
                                 depth * row + 9);
        }
    }
}

/* The Swin's attention probabilities: heads x tokens x window area per block, q, k and v
 * tokens x channels, from the public stage attributes. */
static void swin_activations_follow_the_stages(void **state)
{
    fixture *f = *state;
    const repq_qmodel *q = f->swin_mix.rq;
    int64_t stages = 0, count = 0;
    assert_int_equal(repq_qmodel_get_int(q, REPQ_MODEL_NUM_STAGES, &stages), REPQ_OK);
    assert_int_equal(repq_qmodel_get_int(q, REPQ_QMODEL_NUM_ACTIVATIONS, &count), REPQ_OK);
    int32_t seen = 0;
    for (int32_t st = 0; st < stages; st++) {
        int64_t depth = 0, dim = 0, heads = 0, tokens = 0, win = 0;
        assert_int_equal(repq_qmodel_get_stage_int(q, st, REPQ_STAGE_DEPTH, &depth), REPQ_OK);
        assert_int_equal(repq_qmodel_get_stage_int(q, st, REPQ_STAGE_EMBED_DIM, &dim), REPQ_OK);
        assert_int_equal(repq_qmodel_get_stage_int(q, st, REPQ_STAGE_NUM_HEADS, &heads), REPQ_OK);
        assert_int_equal(repq_qmodel_get_stage_int(q, st, REPQ_STAGE_NUM_TOKENS, &tokens), REPQ_OK);
        assert_int_equal(repq_qmodel_get_stage_int(q, st, REPQ_STAGE_WINDOW_SIZE, &win), REPQ_OK);
        for (int64_t b = 0; b < depth; b++) {
            char want[64];
            snprintf(want, sizeof want, "layers.%d.blocks.%d.attn.", (int)st, (int)b);
            for (int32_t a = 0; a < count; a++) {
                const char *name = NULL;
                int64_t v = 0;
                assert_int_equal(repq_qmodel_get_activation_name(q, a, &name), REPQ_OK);
                if (strncmp(name, want, strlen(want)) != 0 || strstr(name, ".input"))
                    continue;
                assert_int_equal(repq_qmodel_get_activation_int(q, a, REPQ_ACTIVATION_VALUES, &v), REPQ_OK);
                const char *part = name + strlen(want);
                if (strcmp(part, "softmax") == 0)
                    assert_int_equal(v, heads * tokens * win * win);
                else
                    assert_int_equal(v, tokens * dim);
                seen++;
            }
        }
    }
    int64_t layers = 0;
    assert_int_equal(repq_qmodel_get_int(q, REPQ_QMODEL_NUM_LAYERS, &layers), REPQ_OK);
    /* Every activation is a layer's input or one of a block's four. */
    assert_int_equal(seen, count - layers);
}

static void activation_queries_check_their_arguments(void **state)
{
    fixture *f = *state;
    const repq_qmodel *q = f->vit_mix[0].rq;
    int64_t count = 0, v = 0;
    const char *name = NULL;
    assert_int_equal(repq_qmodel_get_int(q, REPQ_QMODEL_NUM_ACTIVATIONS, &count), REPQ_OK);
    assert_int_equal(repq_qmodel_get_activation_int(q, -1, REPQ_ACTIVATION_BITS, &v), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_get_activation_int(q, (int32_t)count, REPQ_ACTIVATION_BITS, &v),
                     REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_get_activation_int(q, 0, (repq_activation_attr)0, &v), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_get_activation_int(q, 0, (repq_activation_attr)4, &v), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_get_activation_int(q, 0, REPQ_ACTIVATION_BITS, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_get_activation_int(NULL, 0, REPQ_ACTIVATION_BITS, &v), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_get_activation_int((const repq_qmodel *)(const void *)f->vit, 0,
                                                    REPQ_ACTIVATION_BITS, &v),
                     REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_get_activation_name(q, (int32_t)count, &name), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_get_activation_name(q, -1, &name), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_get_activation_name(q, 0, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_get_activation_name(NULL, 0, &name), REPQ_ERR_INVALID_ARGUMENT);
    assert_null(name);
}

/* Before reparameterization a layer's codes are its float weights' nearest codes on
 * per-row quantizers searched at the layer's width: recomputed here with the
 * quantizer's primitives from the qmodel's float weights (SQ-b, on by default, rewrote
 * the model's). repq_qmodel_quantize_layer gives the same from a model
 * calibrated at another width, and rebuilds that layer's fake-quant weight. */
static void layer_codes_are_searched_at_the_layer_width(void **state)
{
    fixture *f = *state;
    const mix *x = &f->vit_mix[0];
    repq_qmodel *q;
    assert_int_equal(repq_qmodel_clone(NULL, &x->raw->base.allocator, f->uniform4.raw, &q), REPQ_OK);
    for (int32_t id = 0; id < q->num_linear; id++) {
        int32_t r, c;
        const float *w = repq_net_linear_weight(x->raw->net, &x->raw->float_params, id, &r, &c);
        repq_quant_params *wq = calloc((size_t)r, sizeof *wq);
        uint8_t *codes = malloc((size_t)r * (size_t)c);
        float *scratch = malloc((size_t)c * sizeof(float));
        assert_non_null(wq);
        assert_non_null(codes);
        assert_non_null(scratch);
        assert_int_equal(repq_quant_search_rows(w, (size_t)r, (size_t)c, x->layer_bits[id], REPQ_RANGE_PERCENTILE,
                                                scratch, wq), REPQ_OK);
        for (int32_t o = 0; o < r; o++)
            assert_int_equal(repq_quant_quantize(&wq[o], w + (size_t)o * (size_t)c, (size_t)c,
                                                 codes + (size_t)o * (size_t)c), REPQ_OK);
        assert_memory_equal(x->raw->linear[id].codes, codes, (size_t)r * (size_t)c);
        assert_memory_equal(x->raw->linear[id].wq, wq, (size_t)r * sizeof *wq);
        assert_int_equal(repq_qmodel_quantize_layer(NULL, q, id, x->layer_bits[id]), REPQ_OK);
        assert_int_equal(q->layer_bits[id], x->layer_bits[id]);
        assert_memory_equal(q->linear[id].codes, codes, (size_t)r * (size_t)c);
        assert_memory_equal(q->linear[id].wq, wq, (size_t)r * sizeof *wq);
        const float *fq = repq_net_linear_weight(q->net, &q->fq_params, id, &r, &c);
        for (size_t j = 0; j < (size_t)r * (size_t)c; j++) {
            const repq_quant_params *p = &wq[j / (size_t)c];
            assert_true(fq[j] == p->scale * (float)((int32_t)codes[j] - p->zero_point));
        }
        free(wq);
        free(codes);
        free(scratch);
    }
    assert_int_equal(repq_qmodel_quantize_layer(NULL, q, -1, 4), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_quantize_layer(NULL, q, q->num_linear, 4), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_quantize_layer(NULL, q, 0, 1), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_quantize_layer(NULL, q, 0, 9), REPQ_ERR_INVALID_ARGUMENT);
    repq_qmodel_free(q);
}

/* GPTQ keeps each layer's quantizers, so its codes stay at the layer's width. */
static void reconstruction_keeps_each_layer_width(void **state)
{
    fixture *f = *state;
    mix *x = &f->vit_mix[1];
    repq_options *o;
    repq_calib *c;
    repq_qmodel *raw, *g;
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, 6), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_ACT_BITS, 6), REPQ_OK);
    assert_int_equal(repq_calib_new(NULL, f->vit, o, &c), REPQ_OK);
    assert_int_equal(repq_calib_set_widths(c, x->layer_bits, x->slot_bits), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, f->calib), REPQ_OK);
    assert_int_equal(repq_calib_finish(c, &raw), REPQ_OK);
    assert_int_equal(repq_calib_reconstruct(c, x->rq, &g), REPQ_OK);
    check_widths(g, x->layer_bits, x->slot_bits);
    size_t changed = 0;
    for (int32_t id = 0; id < g->num_linear; id++)
        changed += memcmp(g->linear[id].codes, x->rq->linear[id].codes,
                          (size_t)g->linear[id].out * (size_t)g->linear[id].in) != 0;
    assert_true(changed > 0);
    repq_qmodel_free(g);
    repq_qmodel_free(raw);
    repq_calib_free(c);
    repq_options_free(o);
}

/* ---- All-equal widths are the uniform model ------------------------------------------ */

static void assert_same_quantizers(const repq_qmodel *a, const repq_qmodel *b)
{
    assert_int_equal(a->num_linear, b->num_linear);
    for (int32_t id = 0; id < a->num_linear; id++) {
        const size_t n = (size_t)a->linear[id].out;
        assert_int_equal(a->layer_bits[id], b->layer_bits[id]);
        assert_memory_equal(a->linear[id].codes, b->linear[id].codes, n * (size_t)a->linear[id].in);
        assert_memory_equal(a->linear[id].wq, b->linear[id].wq, n * sizeof *a->linear[id].wq);
    }
    for (int32_t i = 0; i < a->net->num_slots; i++) {
        const repq_act_quant *x = &a->acts[i], *y = &b->acts[i];
        /* Only the parameters of the quantizer's kind mean anything (a search may leave
         * a rejected candidate in the others, a file does not hold them). */
        assert_int_equal(x->kind, y->kind);
        if (x->kind == REPQ_AQ_UNIFORM)
            assert_memory_equal(&x->uniform, &y->uniform, sizeof x->uniform);
        if (x->kind == REPQ_AQ_LOG_SQRT2 || x->kind == REPQ_AQ_LOG2_PARITY)
            assert_memory_equal(&x->log, &y->log, sizeof x->log);
        if (x->kind == REPQ_AQ_TWO_REGION)
            assert_memory_equal(&x->two, &y->two, sizeof x->two);
        assert_int_equal(x->channels, y->channels);
        if (x->channels > 0)
            assert_memory_equal(x->per_channel, y->per_channel, (size_t)x->channels * sizeof *x->per_channel);
    }
    assert_memory_equal(a->fq_params.arena, b->fq_params.arena, a->fq_params.arena_floats * sizeof(float));
}

static void read_file(const char *path, uint8_t **bytes, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *size = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *bytes = malloc(*size);
    assert_non_null(*bytes);
    assert_int_equal(fread(*bytes, 1, *size, fp), *size);
    fclose(fp);
}

static void assert_same_file(const char *a, const char *b)
{
    uint8_t *x, *y;
    size_t nx, ny;
    read_file(a, &x, &nx);
    read_file(b, &y, &ny);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
    free(x);
    free(y);
}

static char *file_metadata(const char *path, const char *key)
{
    repq_allocator al = repq_allocator_of(NULL);
    repq_st_file *sf;
    assert_int_equal(repq_st_open(NULL, &al, path, &sf), REPQ_OK);
    const char *v = repq_st_metadata(sf, key);
    char *copy = v ? strdup(v) : NULL;
    repq_st_close(sf);
    return copy;
}

static void equal_widths_give_the_uniform_model(void **state)
{
    fixture *f = *state;
    /* The same codes and quantizers whatever the options said, before and after the fold. */
    assert_same_quantizers(f->equal4_on8.raw, f->uniform4.raw);
    assert_same_quantizers(f->equal4_on8.rq, f->uniform4.rq);
    assert_same_quantizers(f->equal4_on4.rq, f->uniform4.rq);
    int64_t mixed = -1;
    assert_int_equal(repq_qmodel_get_int(f->equal4_on8.rq, REPQ_QMODEL_MIXED_WIDTHS, &mixed), REPQ_OK);
    assert_int_equal(mixed, 1); /* 4 bits everywhere, the options said 8 */
    assert_int_equal(repq_qmodel_get_int(f->equal4_on4.rq, REPQ_QMODEL_MIXED_WIDTHS, &mixed), REPQ_OK);
    assert_int_equal(mixed, 0);
    /* Widths equal to the options' write the uniform file, byte for byte, at its old version. */
    assert_int_equal(repq_qmodel_save(f->uniform4.rq, f->path), REPQ_OK);
    assert_int_equal(repq_qmodel_save(f->equal4_on4.rq, f->path2), REPQ_OK);
    assert_same_file(f->path, f->path2);
    char *version = file_metadata(f->path, "format_version");
    assert_string_equal(version, repq_qmodel_two_region_blocks(f->uniform4.rq) > 0 ? "2" : "1");
    free(version);
    char *quant = file_metadata(f->path, "quant");
    assert_null(strstr(quant, "layer_bits"));
    free(quant);
}

/* ---- Files ----------------------------------------------------------------------------- */

static size_t classes_of(const repq_qmodel *q)
{
    int64_t k = 0;
    assert_int_equal(repq_qmodel_get_int(q, REPQ_MODEL_NUM_CLASSES, &k), REPQ_OK);
    assert_true(k >= 1 && k <= CLASSES);
    return (size_t)k;
}

/* Logits [n, classes_of(q)] of `images` into out, by fake quantization or a session. */
static void logits_of(const repq_qmodel *q, bool session, repq_kernel_level level, repq_tensor *images, float *out)
{
    const size_t n = (size_t)images->shape[0], k = classes_of(q);
    const int64_t shape[2] = {(int64_t)n, (int64_t)k};
    repq_tensor *y;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &y), REPQ_OK);
    if (session) {
        repq_options *o;
        repq_session *s;
        assert_int_equal(repq_options_new(&o), REPQ_OK);
        assert_int_equal(repq_options_set_int(o, REPQ_OPT_KERNELS, (int64_t)level + 1), REPQ_OK);
        if (repq_session_new(NULL, q, o, (int32_t)n, &s))
            fail_msg("session: %s", repq_last_error(NULL));
        if (repq_session_run(s, images, y))
            fail_msg("run: %s", repq_last_error(s));
        repq_session_free(s);
        repq_options_free(o);
    } else {
        assert_int_equal(repq_qmodel_forward(q, REPQ_FORWARD_FAKE_QUANT, images, y), REPQ_OK);
    }
    assert_int_equal(repq_tensor_read(y, out, n * k * sizeof(float)), REPQ_OK);
    repq_tensor_free(y);
}

static void round_trip(fixture *f, const mix *x, repq_tensor *images)
{
    assert_int_equal(repq_qmodel_save(x->rq, f->path), REPQ_OK);
    char *version = file_metadata(f->path, "format_version");
    assert_string_equal(version, "4");
    free(version);
    repq_qmodel *back;
    assert_int_equal(repq_qmodel_load(NULL, f->path, &back), REPQ_OK);
    check_widths(back, x->layer_bits, x->slot_bits);
    assert_same_quantizers(back, x->rq);
    assert_int_equal(repq_qmodel_save(back, f->path2), REPQ_OK);
    assert_same_file(f->path, f->path2);
    const size_t n = (size_t)images->shape[0];
    float *a = malloc(n * CLASSES * sizeof(float)), *b = malloc(n * CLASSES * sizeof(float));
    assert_non_null(a);
    assert_non_null(b);
    const repq_kernel_level best = repq_kernel_level_best(repq_cpu_detect());
    for (int session = 0; session < 2; session++) {
        logits_of(x->rq, session, best, images, a);
        logits_of(back, session, best, images, b);
        assert_memory_equal(a, b, n * classes_of(back) * sizeof(float));
    }
    free(a);
    free(b);
    repq_qmodel_free(back);
}

static void mixed_files_round_trip_bit_identically(void **state)
{
    fixture *f = *state;
    for (int k = 0; k < MIXES; k++)
        round_trip(f, &f->vit_mix[k], f->small);
    round_trip(f, &f->swin_mix, f->swin_images);
}

/* ---- The session runs mixed layers ------------------------------------------------------ */

static size_t argmax(const float *r, size_t k)
{
    size_t best = 0;
    for (size_t j = 1; j < k; j++)
        if (r[j] > r[best])
            best = j;
    return best;
}

/* Same top-1 as fake quantization on >= 99.5% of the images and logits within max_rms
 * (relative RMS). The two differ only where the float and the integer softmax round an
 * attention code differently (tests/test_infer.c), and a quantized network amplifies
 * each such flip downstream. The ViT gets the bound of uniform W4A4 (0.04; measured on
 * these mixes 0.006 and 0.014). The random-weight Swin amplifies more: on its four
 * images uniform W6A6 measured 0.018, uniform W4A4 and W5A5 0.000, these widths with
 * 8-bit activations 0.000, with its mixed activations 0.023, and the mix here 0.050,
 * with every top-1 the same: it gets 0.08. */
static void agreement(const repq_qmodel *q, repq_tensor *images, const char *name, double max_rms)
{
    const size_t n = (size_t)images->shape[0], k = classes_of(q);
    float *a = malloc(n * k * sizeof(float)), *b = malloc(n * k * sizeof(float));
    assert_non_null(a);
    assert_non_null(b);
    logits_of(q, false, REPQ_LEVEL_SCALAR, images, a);
    logits_of(q, true, repq_kernel_level_best(repq_cpu_detect()), images, b);
    size_t same = 0;
    double err = 0.0, ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        same += argmax(a + i * k, k) == argmax(b + i * k, k);
        for (size_t j = 0; j < k; j++) {
            const double e = (double)a[i * k + j] - (double)b[i * k + j];
            err += e * e;
            ref += (double)a[i * k + j] * (double)a[i * k + j];
        }
    }
    const double agree = 100.0 * (double)same / (double)n, rms = sqrt(err / ref);
    printf("[ %s ] %zu images: same top-1 %.2f%%, logit rel. rms diff %.4f\n", name, n, agree, rms);
    assert_true(agree >= 99.5);
    assert_true(rms <= max_rms);
    free(a);
    free(b);
}

/* The ViT mixes on N_EVAL images, the Swin mix on its four; REPQ_TEST_QUICK (sanitizer
 * builds) keeps only the Swin's. */
static void session_agrees_with_fake_quant(void **state)
{
    fixture *f = *state;
    char name[32];
    for (int k = 0; k < MIXES && !getenv("REPQ_TEST_QUICK"); k++) {
        snprintf(name, sizeof name, "ViT mix %d", k);
        agreement(f->vit_mix[k].rq, f->eval, name, 0.04);
    }
    agreement(f->swin_mix.rq, f->swin_images, "Swin mix", 0.08);
}

static void every_level_gives_the_same_bits(void **state)
{
    fixture *f = *state;
    static float ref[N_SMALL * CLASSES], got[N_SMALL * CLASSES];
    const repq_kernel_level best = repq_kernel_level_best(repq_cpu_detect());
    const repq_qmodel *qs[MIXES + 1] = {f->vit_mix[0].rq, f->vit_mix[1].rq, f->swin_mix.rq};
    repq_tensor *images[MIXES + 1] = {f->small, f->small, f->swin_images};
    for (int m = 0; m < MIXES + 1; m++) {
        const size_t bytes = (size_t)images[m]->shape[0] * classes_of(qs[m]) * sizeof(float);
        logits_of(qs[m], true, REPQ_LEVEL_SCALAR, images[m], ref);
        for (int lv = REPQ_LEVEL_AVX2; lv <= (int)best; lv++) {
            logits_of(qs[m], true, (repq_kernel_level)lv, images[m], got);
            if (memcmp(ref, got, bytes))
                fail_msg("model %d: level %s differs from scalar", m, repq_kernel_level_name((repq_kernel_level)lv));
        }
    }
}

static void run_allocates_nothing(void **state)
{
    fixture *f = *state;
    for (int k = 0; k < MIXES; k++)
        session_runs_allocate_nothing(f->vit_mix[k].rq, f->small, f->pair, CLASSES);
}

/* A second Swin geometry (tests/swin_small_file.h: windows shifted on odd blocks, 32x32
 * images, so the CIFAR images serve) at random widths: round trip and agreement on the
 * N_EVAL test images. Its file is the fuzz seed of version 4
 * (tests/fuzz/corpus/qmodel/swin_small_mixed.safetensors, written when
 * REPQ_WRITE_CORPUS names a folder). */
static void small_swin_at_random_widths(void **state)
{
    fixture *f = *state;
    char path[160];
    snprintf(path, sizeof path, "%s/small_float.safetensors", f->dir);
    assert_int_equal(swin_small_write(path, SWIN_SMALL_ARCH, 9, false), REPQ_OK);
    repq_model *m;
    assert_int_equal(repq_model_load(NULL, path, NULL, &m), REPQ_OK);
    unlink(path);
    mix x = {random_widths((size_t)m->net->num_linear, 41), random_widths((size_t)m->net->num_slots, 42), NULL,
             NULL};
    assert_int_equal(calibrate(m, f->small, 5, &x), REPQ_OK);
    check_widths(x.rq, x.layer_bits, x.slot_bits);
    round_trip(f, &x, f->small);
    agreement(x.rq, f->eval, "small Swin mix", 0.04);
    const char *corpus = getenv("REPQ_WRITE_CORPUS");
    if (corpus) {
        char seed[256];
        snprintf(seed, sizeof seed, "%s/swin_small_mixed.safetensors", corpus);
        assert_int_equal(repq_qmodel_save(x.rq, seed), REPQ_OK);
    }
    mix_free(&x);
    repq_model_free(m);
}

/* ---- Hostile version-4 files ------------------------------------------------------------ */

/* The "quant" metadata of `path` with layer_bits[index] set to `value` (index -1: the
 * whole "layer_bits" entry replaced by value, NULL: removed). Free with free(). */
static char *quant_with_layer_bits(const char *path, int index, json_t *value)
{
    char *text = file_metadata(path, "quant");
    json_t *root = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(root);
    if (index >= 0)
        assert_int_equal(json_array_set_new(json_object_get(root, "layer_bits"), (size_t)index, value), 0);
    else if (value)
        json_object_set_new(root, "layer_bits", value);
    else
        json_object_del(root, "layer_bits");
    char *out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(root);
    assert_non_null(out);
    return out;
}

/* Load `src` edited by `e`: must fail with `want`, the message naming `needle`. */
static void refused(fixture *f, const st_edit *e, repq_status want, const char *needle)
{
    st_edit_write(f->path, f->edited, e);
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    repq_qmodel *q = (repq_qmodel *)&q;
    const repq_status st = repq_qmodel_load(ctx, f->edited, &q);
    if (st != want)
        fail_msg("edited file: status %d (want %d), message '%s'", (int)st, (int)want, repq_last_error(ctx));
    assert_null(q);
    if (!strstr(repq_last_error(ctx), needle))
        fail_msg("message '%s' does not mention '%s'", repq_last_error(ctx), needle);
    repq_context_free(ctx);
}

static void refused_layer_bits(fixture *f, int index, json_t *value, const char *needle)
{
    char *quant = quant_with_layer_bits(f->path, index, value);
    const st_edit e = {.key = "quant", .value = quant};
    refused(f, &e, REPQ_ERR_FORMAT, needle);
    free(quant);
}

/* The first layer of `q` with width `bits`, or -1. */
static int32_t layer_of_width(const repq_qmodel *q, int bits)
{
    for (int32_t id = 0; id < q->num_linear; id++)
        if (q->layer_bits[id] == bits)
            return id;
    return -1;
}

static void code_above_five_bits(uint8_t *bytes, size_t n)
{
    if (n > 0)
        bytes[0] = 32;
}

static void hostile_version_4_files_are_refused(void **state)
{
    fixture *f = *state;
    const repq_qmodel *q = f->vit_mix[0].rq;
    assert_int_equal(repq_qmodel_save((repq_qmodel *)q, f->path), REPQ_OK);
    const int32_t l4 = layer_of_width(q, 4), l5 = layer_of_width(q, 5), l6 = layer_of_width(q, 6),
                  l8 = layer_of_width(q, 8);
    assert_true(l4 >= 0 && l5 >= 0 && l6 >= 0 && l8 >= 0);
    char name[96];
    /* Edited widths: the packed shape no longer fits, or the codes exceed the new width. */
    snprintf(name, sizeof name, "%s.weight.codes", q->net->linear[l8].name);
    refused_layer_bits(f, l8, json_integer(4), name);
    snprintf(name, sizeof name, "%s.weight.codes", q->net->linear[l4].name);
    refused_layer_bits(f, l4, json_integer(5), name);
    refused_layer_bits(f, l6, json_integer(5), "is not below 2^5");
    /* Out of range, wrong type, wrong length, missing. */
    refused_layer_bits(f, l6, json_integer(9), "layer_bits[");
    refused_layer_bits(f, l6, json_integer(1), "layer_bits[");
    refused_layer_bits(f, l6, json_string("6"), "layer_bits[");
    refused_layer_bits(f, -1, json_array(), "'layer_bits' is not an array of");
    refused_layer_bits(f, -1, json_integer(6), "'layer_bits' is not an array of");
    refused_layer_bits(f, -1, NULL, "'layer_bits'");
    /* An older version cannot hold per-layer widths. */
    const st_edit old = {.key = "format_version", .value = "3"};
    refused(f, &old, REPQ_ERR_FORMAT, "format_version 4");
    /* A code at or above 2^width in a 5-bit layer's stored codes. */
    snprintf(name, sizeof name, "%s.weight.codes", q->net->linear[l5].name);
    const st_edit high = {.tensor = name, .patch = code_above_five_bits};
    refused(f, &high, REPQ_ERR_FORMAT, "is not below 2^5");
    /* A 4-bit layer's codes stored one per byte. */
    snprintf(name, sizeof name, "%s.weight.codes", q->net->linear[l4].name);
    const st_edit unpacked = {.tensor = name, .dtype = REPQ_ST_U8, .ndim = 2,
                              .shape = {q->linear[l4].out, q->linear[l4].in}};
    refused(f, &unpacked, REPQ_ERR_FORMAT, name);
    /* A 6-bit layer's codes packed two per byte. */
    snprintf(name, sizeof name, "%s.weight.codes", q->net->linear[l6].name);
    const st_edit packed = {.tensor = name, .dtype = REPQ_ST_U8, .ndim = 2,
                            .shape = {q->linear[l6].out, (q->linear[l6].in + 1) / 2}};
    refused(f, &packed, REPQ_ERR_FORMAT, name);
    /* An activation quantizer's own bits out of range. */
    char *text = file_metadata(f->path, "quant");
    json_t *root = json_loads(text, 0, NULL);
    free(text);
    json_t *acts = json_object_get(root, "activations");
    for (size_t i = 0; i < json_array_size(acts); i++)
        if (json_object_get(json_array_get(acts, i), "bits")) {
            json_object_set_new(json_array_get(acts, i), "bits", json_integer(9));
            break;
        }
    char *quant = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(root);
    const st_edit bad_act = {.key = "quant", .value = quant};
    refused(f, &bad_act, REPQ_ERR_FORMAT, "bits = 9");
    free(quant);
    /* The untouched file loads. */
    repq_qmodel *back;
    assert_int_equal(repq_qmodel_load(NULL, f->path, &back), REPQ_OK);
    repq_qmodel_free(back);
}

/* ---- repq_calib_set_widths' arguments ---------------------------------------------------- */

static void set_widths_checks_its_arguments(void **state)
{
    fixture *f = *state;
    const repq_net *net = f->vit->net;
    assert_int_equal(repq_calib_set_widths(NULL, NULL, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_calib_set_widths((repq_calib *)f->vit, NULL, NULL), REPQ_ERR_INVALID_ARGUMENT);
    repq_calib *c;
    assert_int_equal(repq_calib_new(NULL, f->vit, NULL, &c), REPQ_OK);
    int8_t *layers = equal_widths((size_t)net->num_linear, 6), *slots = equal_widths((size_t)net->num_slots, 5);
    assert_non_null(layers);
    assert_non_null(slots);
    assert_int_equal(repq_calib_set_widths(c, layers, slots), REPQ_OK);
    /* A refused call changes nothing: the widths set before stay. */
    const int8_t bad[4] = {1, 9, 0, -3};
    for (int i = 0; i < 4; i++) {
        int8_t *which = i % 2 ? slots : layers;
        const int8_t keep = which[3];
        which[3] = bad[i];
        assert_int_equal(repq_calib_set_widths(c, layers, slots), REPQ_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(repq_last_error(c), i % 2 ? "activation slot 3" : "linear layer 3"));
        which[3] = keep;
    }
    /* Copied: the caller's arrays may change or go once set. */
    layers[0] = 2;
    assert_int_equal(repq_calib_feed(c, f->small), REPQ_OK);
    repq_qmodel *q;
    assert_int_equal(repq_calib_finish(c, &q), REPQ_OK);
    for (int32_t id = 0; id < q->num_linear; id++)
        assert_int_equal(q->layer_bits[id], 6);
    for (int32_t i = 0; i < net->num_slots; i++)
        if (net->slots[i].used)
            assert_int_equal(repq_act_quant_bits(&q->acts[i]), 5);
    assert_int_equal(repq_calib_set_widths(c, NULL, NULL), REPQ_ERR_STATE);
    assert_non_null(strstr(repq_last_error(c), "finished"));
    repq_qmodel_free(q);
    repq_calib_free(c);
    /* NULL keeps the options' widths, the patch input its own. */
    repq_options *o;
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, 5), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_ACT_BITS, 6), REPQ_OK);
    assert_int_equal(repq_options_set_int(o, REPQ_OPT_PATCH_INPUT_BITS, 7), REPQ_OK);
    assert_int_equal(repq_calib_new(NULL, f->vit, o, &c), REPQ_OK);
    layers[0] = 6;
    assert_int_equal(repq_calib_set_widths(c, layers, slots), REPQ_OK);
    assert_int_equal(repq_calib_set_widths(c, NULL, NULL), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, f->small), REPQ_OK);
    assert_int_equal(repq_calib_finish(c, &q), REPQ_OK);
    for (int32_t id = 0; id < q->num_linear; id++)
        assert_int_equal(q->layer_bits[id], 5);
    for (int32_t i = 0; i < net->num_slots; i++)
        if (net->slots[i].used)
            assert_int_equal(repq_act_quant_bits(&q->acts[i]), net->slots[i].point == REPQ_QP_PATCH_IN ? 7 : 6);
    repq_qmodel_free(q);
    repq_calib_free(c);
    repq_options_free(o);
    free(layers);
    free(slots);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_widths_checks_its_arguments),
        cmocka_unit_test(random_widths_reach_every_layer_and_slot),
        cmocka_unit_test(activations_are_listed_in_the_network_order),
        cmocka_unit_test(swin_activations_follow_the_stages),
        cmocka_unit_test(activation_queries_check_their_arguments),
        cmocka_unit_test(layer_codes_are_searched_at_the_layer_width),
        cmocka_unit_test(reconstruction_keeps_each_layer_width),
        cmocka_unit_test(equal_widths_give_the_uniform_model),
        cmocka_unit_test(mixed_files_round_trip_bit_identically),
        cmocka_unit_test(hostile_version_4_files_are_refused),
        cmocka_unit_test(every_level_gives_the_same_bits),
        cmocka_unit_test(run_allocates_nothing),
        cmocka_unit_test(session_agrees_with_fake_quant),
        cmocka_unit_test(small_swin_at_random_widths),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
