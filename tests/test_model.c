/* Tests of lib/model: the float forward against PyTorch's logits and against an
 * independent float64 recomputation; architecture parsing of hostile metadata. */
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

#include "model/model.h"
#include "model/arch.h"
#include "repq/repq.h"
#include "vit_f64.h"

#define MODEL_PATH REPQ_TEST_DATA "/vit_tiny_cifar10.safetensors"
#define TEST_IMAGES REPQ_TEST_DATA "/cifar10_test_dev.bin"
#define REF_LOGITS REPQ_TEST_DATA "/vit_tiny_cifar10_ref.bin"
#define REF_IMAGES 256
#define CLASSES 10

static void forward_matches_pytorch_reference(void **state)
{
    (void)state;
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    repq_model *m;
    repq_status st = repq_model_load(ctx, MODEL_PATH, NULL, &m);
    if (st)
        fail_msg("load: %s", repq_last_error(ctx));
    repq_tensor *images, *labels, *logits;
    assert_int_equal(repq_cifar_load(ctx, TEST_IMAGES, 0, REF_IMAGES, &images, &labels), REPQ_OK);
    int64_t shape[2] = {REF_IMAGES, CLASSES};
    assert_int_equal(repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, shape, NULL, &logits), REPQ_OK);
    assert_int_equal(repq_model_forward(m, images, logits), REPQ_OK);

    static float got[REF_IMAGES * CLASSES], want[REF_IMAGES * CLASSES];
    assert_int_equal(repq_tensor_read(logits, got, sizeof got), REPQ_OK);
    FILE *f = fopen(REF_LOGITS, "rb");
    assert_non_null(f);
    assert_int_equal(fread(want, sizeof(float), REF_IMAGES * CLASSES, f), REF_IMAGES * CLASSES);
    fclose(f);
    double max_diff = 0.0;
    for (int i = 0; i < REF_IMAGES; i++) {
        int ga = 0, wa = 0;
        for (int j = 0; j < CLASSES; j++) {
            double dlt = fabs((double)got[i * CLASSES + j] - (double)want[i * CLASSES + j]);
            max_diff = dlt > max_diff ? dlt : max_diff;
            if (got[i * CLASSES + j] > got[i * CLASSES + ga])
                ga = j;
            if (want[i * CLASSES + j] > want[i * CLASSES + wa])
                wa = j;
        }
        assert_int_equal(ga, wa);
    }
    print_message("max |logit - pytorch| = %.3g over %d images\n", max_diff, REF_IMAGES);
    assert_true(max_diff <= 1e-3);
    repq_tensor_free(images);
    repq_tensor_free(labels);
    repq_tensor_free(logits);
    repq_model_free(m);
    repq_context_free(ctx);
}

static void deit_small_block_matches_float64(void **state)
{
    (void)state;
    repq_model *m;
    assert_int_equal(repq_model_create_random(NULL, "deit_small_patch16_224", 0, 42, &m), REPQ_OK);
    const repq_arch *a = &m->arch;
    size_t n = (size_t)repq_vit_tokens(a) * (size_t)a->embed_dim;
    float *x = malloc(n * sizeof *x);
    double *x64 = malloc(n * sizeof *x64);
    uint64_t seed = 7;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 11) * 0x1.0p-53 * 4.0 - 2.0);
        x64[i] = x[i];
    }
    /* A trained-looking block: LayerNorm gains and biases away from 1 and 0. */
    repq_block_params *blk = &m->params.blocks[3];
    for (int c = 0; c < a->embed_dim; c++) {
        blk->norm1_w[c] = 0.5f + (float)(c % 7) * 0.25f;
        blk->norm2_b[c] = (float)(c % 5) * 0.1f - 0.2f;
    }
    repq_allocator al = m->base.allocator;
    assert_int_equal(repq_net_block_apply(NULL, &al, m->net, &m->net->nodes[1 + 3], &m->params, x, 1), REPQ_OK);
    double *values = vit_f64_params(&m->params);
    assert_non_null(values);
    assert_true(vit_f64_block(a, &m->params, values, 3, x64, 1));
    free(values);
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (x[i] - x64[i]) * (x[i] - x64[i]);
        den += x64[i] * x64[i];
    }
    double rel = sqrt(num / den);
    print_message("deit_small block: relative L2 error vs float64 = %.3g\n", rel);
    assert_true(rel <= 1e-4);
    free(x);
    free(x64);
    repq_model_free(m);
}

static void deit_small_runs_at_224(void **state)
{
    (void)state;
    repq_model *m;
    assert_int_equal(repq_model_create_random(NULL, "deit_small_patch16_224", 0, 1, &m), REPQ_OK);
    int64_t ishape[4] = {2, 3, 224, 224}, lshape[2] = {2, 1000};
    repq_tensor *images, *logits;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_U8, 4, ishape, NULL, &images), REPQ_OK);
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, lshape, NULL, &logits), REPQ_OK);
    assert_int_equal(repq_model_forward(m, images, logits), REPQ_OK);
    float out[2000];
    assert_int_equal(repq_tensor_read(logits, out, sizeof out), REPQ_OK);
    for (int i = 0; i < 2000; i++)
        assert_true(isfinite(out[i]));
    /* Both images are identical (all zero pixels): so must their logits be, up to float
     * rounding. Not bit for bit: OpenBLAS's sgemm may run the rows of one call through
     * different micro-kernels (edge rows), which round differently (seen with its Zen
     * and Haswell kernels). */
    float scale = 0.0f;
    for (int i = 0; i < 1000; i++)
        scale = fabsf(out[i]) > scale ? fabsf(out[i]) : scale;
    for (int i = 0; i < 1000; i++)
        if (!(fabsf(out[i] - out[1000 + i]) <= 1e-5f * scale))
            fail_msg("logit %d: %.9g and %.9g for the same image", i, out[i], out[1000 + i]);
    repq_tensor_free(images);
    repq_tensor_free(logits);
    repq_model_free(m);
}

static void forward_rejects_bad_tensors(void **state)
{
    (void)state;
    repq_model *m;
    assert_int_equal(repq_model_create_random(NULL, "deit_tiny_patch16_224", 10, 1, &m), REPQ_OK);
    int64_t good[4] = {1, 3, 224, 224}, small[4] = {1, 3, 32, 32}, lg[2] = {1, 10}, lbad[2] = {1, 1000};
    repq_tensor *img, *img_small, *img_i32, *logits, *logits_bad;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 4, good, NULL, &img), REPQ_OK);
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_U8, 4, small, NULL, &img_small), REPQ_OK);
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_I32, 4, good, NULL, &img_i32), REPQ_OK);
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, lg, NULL, &logits), REPQ_OK);
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, lbad, NULL, &logits_bad), REPQ_OK);
    assert_int_equal(repq_model_forward(m, img_small, logits), REPQ_ERR_SHAPE);
    assert_non_null(strstr(repq_last_error(m), "[N, 3, 224, 224]"));
    assert_int_equal(repq_model_forward(m, img_i32, logits), REPQ_ERR_SHAPE);
    assert_int_equal(repq_model_forward(m, img, logits_bad), REPQ_ERR_SHAPE);
    assert_non_null(strstr(repq_last_error(m), "[1, 10]"));
    assert_int_equal(repq_model_forward(m, NULL, logits), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_model_forward(NULL, img, logits), REPQ_ERR_INVALID_ARGUMENT);
    float nan_img[3 * 224 * 224] = {0};
    nan_img[1234] = NAN;
    assert_int_equal(repq_tensor_write(img, nan_img, sizeof nan_img), REPQ_OK);
    assert_int_equal(repq_model_forward(m, img, logits), REPQ_ERR_NUMERIC);
    repq_tensor_free(img);
    repq_tensor_free(img_small);
    repq_tensor_free(img_i32);
    repq_tensor_free(logits);
    repq_tensor_free(logits_bad);
    repq_model_free(m);
}

static void check_arch(const char *json, repq_status want, const char *word)
{
    repq_object err;
    repq_object_init(&err, REPQ_KIND_CONTEXT, repq_allocator_of(NULL));
    repq_arch a;
    repq_status st = repq_arch_from_json(&err, json, NULL, &a);
    if (st != want || (word && !strstr(err.error, word)))
        fail_msg("%s -> %d '%s' (wanted %d with '%s')", json, st, err.error, want, word ? word : "");
}

#define BASE "\"img_size\": 32, \"patch_size\": 4, \"num_classes\": 10, \"embed_dim\": 192, "
static void architecture_metadata_is_checked(void **state)
{
    (void)state;
    check_arch("{" BASE "\"depth\": 12, \"num_heads\": 3}", REPQ_OK, NULL);
    check_arch("{" BASE "\"depth\": 0, \"num_heads\": 3}", REPQ_ERR_UNSUPPORTED, "depth");
    check_arch("{" BASE "\"depth\": -4, \"num_heads\": 3}", REPQ_ERR_UNSUPPORTED, "depth");
    check_arch("{" BASE "\"depth\": 12, \"num_heads\": 5}", REPQ_ERR_UNSUPPORTED, "divide");
    check_arch("{\"img_size\": 1099511627776, \"patch_size\": 1, \"num_classes\": 10, \"embed_dim\": 8, "
               "\"depth\": 1, \"num_heads\": 1}", REPQ_ERR_UNSUPPORTED, "img_size");
    check_arch("{\"img_size\": 4096, \"patch_size\": 1, \"num_classes\": 10, \"embed_dim\": 8, "
               "\"depth\": 1, \"num_heads\": 1}", REPQ_ERR_UNSUPPORTED, "tokens");
    check_arch("{" BASE "\"depth\": 12}", REPQ_ERR_FORMAT, "num_heads");
    check_arch("{" BASE "\"depth\": \"12\", \"num_heads\": 3}", REPQ_ERR_FORMAT, "not an integer");
    check_arch("{" BASE "\"depth\": 2, \"num_heads\": 3, \"mlp_ratio\": 1e300}", REPQ_ERR_UNSUPPORTED, "mlp_ratio");
    check_arch("{" BASE "\"depth\": 2, \"num_heads\": 3, \"norm_eps\": -1}", REPQ_ERR_UNSUPPORTED, "norm_eps");
    check_arch("{" BASE "\"depth\": 2, \"num_heads\": 3, \"act\": \"relu\"}", REPQ_ERR_UNSUPPORTED, "act");
    check_arch("{" BASE "\"depth\": 2, \"num_heads\": 3, \"global_pool\": \"avg\"}", REPQ_ERR_UNSUPPORTED, "global_pool");
    check_arch("{\"img_size\": 30, \"patch_size\": 4, \"num_classes\": 10, \"embed_dim\": 8, \"depth\": 1, "
               "\"num_heads\": 1}", REPQ_ERR_UNSUPPORTED, "divide");
    check_arch("[1, 2]", REPQ_ERR_FORMAT, "object");
    check_arch("{\"img_size\": 32,", REPQ_ERR_FORMAT, "JSON");
    check_arch(NULL, REPQ_ERR_FORMAT, "preset");
    /* Values that pass a check in double but not once narrowed to float (found by fuzzing). */
    check_arch("{" BASE "\"depth\": 2, \"num_heads\": 3, \"norm_eps\": 1e-70}", REPQ_ERR_UNSUPPORTED, "norm_eps");
    check_arch("{" BASE "\"depth\": 2, \"num_heads\": 3, \"norm_eps\": 9999999.97e-07}", REPQ_ERR_UNSUPPORTED, "norm_eps");
}

static void check_preprocess(const char *json, repq_status want)
{
    repq_arch a;
    repq_status st = repq_arch_from_json(NULL, "{" BASE "\"depth\": 1, \"num_heads\": 3}", json, &a);
    if (st != want)
        fail_msg("preprocess %s -> %d, wanted %d", json, st, want);
}

static void preprocess_metadata_is_checked(void **state)
{
    (void)state;
    check_preprocess("{\"mean\": [0.5, 0.5, 0.5], \"std\": [0.2, 0.2, 0.2], \"scale\": 0.0039}", REPQ_OK);
    check_preprocess("{\"mean\": [1e39, 0, 0]}", REPQ_ERR_FORMAT);
    check_preprocess("{\"std\": [1e-45, 1, 1]}", REPQ_ERR_FORMAT);
    check_preprocess("{\"std\": [0, 1, 1]}", REPQ_ERR_FORMAT);
    check_preprocess("{\"scale\": 1e39}", REPQ_ERR_FORMAT);
    check_preprocess("{\"scale\": 1e-45}", REPQ_ERR_FORMAT);
    check_preprocess("{\"mean\": [1, 2]}", REPQ_ERR_FORMAT);
    check_preprocess("[]", REPQ_ERR_FORMAT);
}

static void presets_are_known(void **state)
{
    (void)state;
    const char *names[] = {"deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224",
                           "vit_small_patch16_224", "vit_base_patch16_224"};
    const int dims[] = {192, 384, 768, 384, 768};
    for (int i = 0; i < 5; i++) {
        repq_arch a;
        assert_int_equal(repq_arch_from_preset(NULL, names[i], &a), REPQ_OK);
        assert_int_equal(a.embed_dim, dims[i]);
        assert_int_equal(repq_vit_tokens(&a), 197);
    }
    repq_arch a;
    assert_int_equal(repq_arch_from_preset(NULL, "resnet50", &a), REPQ_ERR_UNSUPPORTED);
    repq_model *m = (repq_model *)1;
    assert_int_equal(repq_model_load(NULL, MODEL_PATH, "no_such_preset", &m), REPQ_ERR_UNSUPPORTED);
    assert_null(m);
    /* The CIFAR file does not have ImageNet shapes: a preset that mismatches is refused. */
    assert_int_equal(repq_model_load(NULL, MODEL_PATH, "deit_tiny_patch16_224", &m), REPQ_ERR_FORMAT);
    assert_int_equal(repq_model_load(NULL, "/nonexistent/model.safetensors", NULL, &m), REPQ_ERR_IO);
}

static void model_info_counts_parameters(void **state)
{
    (void)state;
    repq_model *m;
    assert_int_equal(repq_model_load(NULL, MODEL_PATH, NULL, &m), REPQ_OK);
    int64_t v;
    assert_int_equal(repq_model_get_int(m, REPQ_MODEL_NUM_TENSORS, &v), REPQ_OK);
    assert_int_equal(v, 152);
    /* Sum of the element counts of the 152 tensors listed in the model's README:
     * 192*48+192 + 192 + 65*192 + 12*(4*192 + 576*192+576 + 192*192+192 + 768*192+768
     * + 192*768+192) + 2*192 + 10*192+10 = 5,362,762. */
    assert_int_equal(repq_model_get_int(m, REPQ_MODEL_NUM_PARAMS, &v), REPQ_OK);
    assert_int_equal(v, 5362762);
    assert_int_equal(repq_model_get_int(m, (repq_model_attr)999, &v), REPQ_ERR_INVALID_ARGUMENT);
    repq_model_free(m);
}

static void cifar_reader_checks_input(void **state)
{
    (void)state;
    repq_tensor *img, *lab;
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    /* A range past the end is refused, not shortened. */
    assert_int_equal(repq_cifar_load(ctx, TEST_IMAGES, 4999, 2, &img, &lab), REPQ_ERR_INVALID_ARGUMENT);
    assert_null(img);
    assert_non_null(strstr(repq_last_error(ctx), "records [4999, 5001) were asked for but the file has 5000"));
    repq_context_free(ctx);
    assert_int_equal(repq_cifar_load(NULL, TEST_IMAGES, 4999, 1, &img, &lab), REPQ_OK);
    int64_t shape[4];
    assert_int_equal(repq_tensor_describe(img, NULL, NULL, shape, 4), REPQ_OK);
    assert_int_equal(shape[0], 1);
    int32_t label;
    assert_int_equal(repq_tensor_read(lab, &label, sizeof label), REPQ_OK);
    assert_int_equal(label, 9); /* the file is sorted by class, truck last */
    repq_tensor_free(img);
    repq_tensor_free(lab);
    assert_int_equal(repq_cifar_load(NULL, TEST_IMAGES, 5000, 1, &img, &lab), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_cifar_load(NULL, TEST_IMAGES, -1, 1, &img, &lab), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_cifar_load(NULL, MODEL_PATH, 0, 1, &img, &lab), REPQ_ERR_FORMAT);
    assert_int_equal(repq_cifar_load(NULL, "/nonexistent", 0, 1, &img, &lab), REPQ_ERR_IO);
    assert_null(img);
    char path[] = "/tmp/repq_cifar_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    uint8_t rec[3073] = {11};
    assert_int_equal(write(fd, rec, sizeof rec), (ssize_t)sizeof rec);
    close(fd);
    assert_int_equal(repq_cifar_load(NULL, path, 0, 0, &img, &lab), REPQ_ERR_FORMAT);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_matches_pytorch_reference),
        cmocka_unit_test(deit_small_block_matches_float64),
        cmocka_unit_test(deit_small_runs_at_224),
        cmocka_unit_test(forward_rejects_bad_tensors),
        cmocka_unit_test(architecture_metadata_is_checked),
        cmocka_unit_test(preprocess_metadata_is_checked),
        cmocka_unit_test(presets_are_known),
        cmocka_unit_test(model_info_counts_parameters),
        cmocka_unit_test(cifar_reader_checks_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
