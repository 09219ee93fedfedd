/* The library's Swin model end to end, against independent references: the float
 * forward against timm's float64 logits and the float64 recomputation of
 * tests/swin_f64.c, the network description against the checkpoint's tensors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "io/safetensors.h"
#include "model/model.h"
#include "model/qmodel.h"
#include "repq/repq.h"
#include "swin_f64.h"

#define SWIN_MODEL REPQ_TEST_DATA "/swin_micro_rand.safetensors"
#define SWIN_INPUTS REPQ_TEST_DATA "/swin_micro_rand_inputs.u8"
#define SWIN_REF REPQ_TEST_DATA "/swin_micro_rand_ref.bin"

enum { N = 4, K = 10, PIXELS = 3 * 224 * 224 };

static void read_exactly(const char *path, void *dst, size_t size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    const size_t got = fread(dst, 1, size, f);
    const int extra = fgetc(f);
    fclose(f);
    if (got != size || extra != EOF)
        fail_msg("%s is not %zu bytes", path, size);
}

static repq_tensor *inputs(repq_context *ctx)
{
    static uint8_t images[N * PIXELS];
    read_exactly(SWIN_INPUTS, images, sizeof images);
    const int64_t shape[4] = {N, 3, 224, 224};
    repq_tensor *t;
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, shape, images, &t), REPQ_OK);
    return t;
}

static double max_abs_vs_reference(repq_model *m, repq_tensor *images)
{
    repq_context *ctx = NULL;
    const int64_t shape[2] = {N, K};
    repq_tensor *logits;
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, shape, NULL, &logits), REPQ_OK);
    assert_int_equal(repq_model_forward(m, images, logits), REPQ_OK);
    float got[N * K], want[N * K];
    assert_int_equal(repq_tensor_read(logits, got, sizeof got), REPQ_OK);
    read_exactly(SWIN_REF, want, sizeof want);
    double worst = 0.0;
    for (int i = 0; i < N * K; i++)
        worst = fmax(worst, fabs((double)got[i] - (double)want[i]));
    repq_tensor_free(logits);
    return worst;
}

/* timm's tensor names of before 0.9: patch merging at the end of the stage before,
 * the head without ".fc". */
static void legacy_name(const char *name, char *out, size_t cap)
{
    int stage;
    if (strstr(name, ".downsample.") && sscanf(name, "layers.%d.", &stage) == 1)
        snprintf(out, cap, "layers.%d%s", stage - 1, strchr(name + 7, '.'));
    else if (strncmp(name, "head.fc.", 8) == 0)
        snprintf(out, cap, "head.%s", name + 8);
    else
        snprintf(out, cap, "%s", name);
}

/* The float forward of swin_micro_rand (F16 weights) equals timm's float64 logits; the
 * same weights in the older layout load to the same logits. */
static void float_forward_matches_timm(void **state)
{
    (void)state;
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    repq_tensor *images = inputs(ctx);
    repq_model *m;
    assert_int_equal(repq_model_load(ctx, SWIN_MODEL, NULL, &m), REPQ_OK);
    const double err = max_abs_vs_reference(m, images);
    printf("swin_micro_rand: library float forward vs timm float64, max abs error %.3g\n", err);
    assert_true(err <= 1e-4);

    repq_allocator al = repq_allocator_of(NULL);
    repq_st_file *f;
    assert_int_equal(repq_st_open(NULL, &al, SWIN_MODEL, &f), REPQ_OK);
    repq_st_writer *w;
    assert_int_equal(repq_st_writer_new(NULL, &al, &w), REPQ_OK);
    for (size_t i = 0; i < repq_st_count(f); i++) {
        const repq_st_tensor *t = repq_st_tensor_at(f, i);
        char name[128];
        legacy_name(t->name, name, sizeof name);
        assert_int_equal(repq_st_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data, t->nbytes), REPQ_OK);
    }
    const char *keys[3] = {"format", "architecture", "preprocess"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(repq_st_writer_set_metadata(w, keys[i], repq_st_metadata(f, keys[i])), REPQ_OK);
    char path[] = "/tmp/repq_swin_legacyXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(repq_st_writer_write(w, path), REPQ_OK);
    repq_st_writer_free(w);
    repq_st_close(f);
    repq_model *old;
    assert_int_equal(repq_model_load(ctx, path, NULL, &old), REPQ_OK);
    assert_true(max_abs_vs_reference(old, images) == err);
    repq_model_free(old);
    unlink(path);
    close(fd);

    int64_t v;
    assert_int_equal(repq_model_get_int(m, REPQ_MODEL_DEPTH, &v), REPQ_OK);
    assert_int_equal(v, 8); /* all blocks of the four stages */
    assert_int_equal(repq_model_get_int(m, REPQ_MODEL_NUM_TENSORS, &v), REPQ_OK);
    assert_int_equal(v, 121);
    repq_model_free(m);
    repq_tensor_free(images);
    repq_context_free(ctx);
}

static double *widen(const float *x, size_t n)
{
    double *y = malloc(n * sizeof *y);
    assert_non_null(y);
    for (size_t i = 0; i < n; i++)
        y[i] = x[i];
    return y;
}

/* One swin_tiny block of stage 0 with shifted windows (56 x 56 tokens, window 7, shift
 * 3, 3 heads of 32), random weights with LayerNorm and bias tables away from 1 and 0,
 * against the float64 recomputation. */
static void shifted_block_matches_float64(void **state)
{
    (void)state;
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    repq_model *m;
    assert_int_equal(repq_model_create_random(ctx, "swin_tiny_patch4_window7_224", 0, 11, &m), REPQ_OK);
    const repq_net *net = m->net;
    const repq_net_node *node = NULL;
    for (int32_t i = 0; i < net->num_nodes && !node; i++)
        if (net->nodes[i].op == REPQ_OP_BLOCK && net->nodes[i].unit == 1)
            node = &net->nodes[i];
    assert_non_null(node);
    assert_true(node->windowed && node->window.shift_h == 3 && node->window.win_h == 7);
    float *arena = m->params.arena;
    float *g1 = repq_net_param_data(net, arena, node->norm_weight), *b2 = repq_net_param_data(net, arena, node->norm2_bias);
    float *table = repq_net_param_data(net, arena, node->rel_bias);
    const size_t d = (size_t)node->dim, t = (size_t)node->tokens;
    uint64_t seed = 99;
    for (size_t c = 0; c < d; c++) {
        g1[c] = 0.5f + (float)(c % 7) * 0.25f;
        b2[c] = (float)(c % 5) * 0.1f - 0.2f;
    }
    for (size_t i = 0; i < net->params[node->rel_bias].count; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        table[i] = (float)((double)(seed >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    }
    float *x = malloc(t * d * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < t * d; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 11) * 0x1.0p-53 * 4.0 - 2.0);
    }
    double *x64 = widen(x, t * d);
    repq_allocator al = repq_allocator_of(NULL);
    assert_int_equal(repq_net_block_apply(NULL, &al, net, node, &m->params, x, 1), REPQ_OK);

    const repq_net_linear *qkv = &net->linear[node->linear[0]], *proj = &net->linear[node->linear[1]];
    const repq_net_linear *fc1 = &net->linear[node->linear[2]], *fc2 = &net->linear[node->linear[3]];
    const int32_t ids[15] = {node->norm_weight, node->norm_bias, qkv->weight, qkv->bias, node->rel_bias,
                             proj->weight, proj->bias, node->norm2_weight, node->norm2_bias, fc1->weight,
                             fc1->bias, fc2->weight, fc2->bias, -1, -1};
    double *v[13];
    for (int i = 0; i < 13; i++)
        v[i] = widen(repq_net_param_data(net, arena, ids[i]), net->params[ids[i]].count);
    swin_f64_block bp = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12]};
    assert_true(swin_f64_block_apply(&m->arch.swin, 0, 1, &bp, x64, 1));
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < t * d; i++) {
        num += ((double)x[i] - x64[i]) * ((double)x[i] - x64[i]);
        den += x64[i] * x64[i];
    }
    printf("swin_tiny shifted block vs float64: relative error %.3g\n", sqrt(num / den));
    assert_true(sqrt(num / den) <= 1e-5);
    for (int i = 0; i < 13; i++)
        free(v[i]);
    free(x);
    free(x64);
    repq_model_free(m);
    repq_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(float_forward_matches_timm),
        cmocka_unit_test(shifted_block_matches_float64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
