/* Tests of lib/io/qmodel_file.c: saving and loading quantized models. A round trip
 * gives bit-identical fake-quant logits; hostile files (edited fields, truncations,
 * failing allocations) are refused cleanly with the right status. */
#include <math.h>
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "io/safetensors.h"
#include "io/qmodel_file.h"
#include "model/qmodel.h"
#include "st_edit.h"
#include "vit_layout.h"
#include "repq/repq.h"

/* Internal, defined in lib/io/qmodel_file.c. */

#define MODEL_PATH REPQ_TEST_DATA "/vit_tiny_cifar10.safetensors"
#define CALIB_IMAGES REPQ_TEST_DATA "/cifar10_calib.bin"
#define TEST_IMAGES REPQ_TEST_DATA "/cifar10_test_dev.bin"
#define N_CALIB 8
#define N_TEST 16

/* The tiny architecture: 6x6 images in 3x3 patches (patch dim 27, odd, so 4-bit rows
 * end on a padding nibble), 8 channels, one block of 2 heads, 3 classes. */
#define TINY_IMG 6
#define TINY_PATCH 3
#define TINY_DIM 8
#define TINY_HIDDEN 32
#define TINY_CLASSES 3
#define TINY_TOKENS 5
#define TINY_IMAGES 6

typedef struct fixture {
    char dir[64];
    repq_model *model;
    repq_qmodel *q8, *q4, *channelwise;
    repq_qmodel *tiny4, *tiny6, *tinymm;
    repq_tensor *test, *test_labels, *tiny_images;
    char q8_path[96], q4_path[96], tiny4_path[96], tiny6_path[96], tinymm_path[96], tiny_float_path[96];
} fixture;

static fixture fx;

/* ---- Helpers ------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float rnd(float amp)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return amp * ((float)(rng_state >> 40) / (float)(1u << 24) * 2.0f - 1.0f);
}

/* A small random float model in timm's naming, written with the safetensors writer. */
static repq_status write_tiny_float_model(const char *path)
{
    const int64_t d = TINY_DIM, h = TINY_HIDDEN, k = TINY_CLASSES, t = TINY_TOKENS, p = TINY_PATCH;
    struct spec { const char *name; int32_t ndim; int64_t shape[4]; float base, amp; } specs[] = {
        {"patch_embed.proj.weight", 4, {d, 3, p, p}, 0, 0.3f}, {"patch_embed.proj.bias", 1, {d}, 0, 0.1f},
        {"cls_token", 3, {1, 1, d}, 0, 0.5f}, {"pos_embed", 3, {1, t, d}, 0, 0.5f},
        {"blocks.0.norm1.weight", 1, {d}, 1, 0.2f}, {"blocks.0.norm1.bias", 1, {d}, 0, 0.2f},
        {"blocks.0.attn.qkv.weight", 2, {3 * d, d}, 0, 0.4f}, {"blocks.0.attn.qkv.bias", 1, {3 * d}, 0, 0.1f},
        {"blocks.0.attn.proj.weight", 2, {d, d}, 0, 0.4f}, {"blocks.0.attn.proj.bias", 1, {d}, 0, 0.1f},
        {"blocks.0.norm2.weight", 1, {d}, 1, 0.2f}, {"blocks.0.norm2.bias", 1, {d}, 0, 0.2f},
        {"blocks.0.mlp.fc1.weight", 2, {h, d}, 0, 0.4f}, {"blocks.0.mlp.fc1.bias", 1, {h}, 0, 0.1f},
        {"blocks.0.mlp.fc2.weight", 2, {d, h}, 0, 0.2f}, {"blocks.0.mlp.fc2.bias", 1, {d}, 0, 0.1f},
        {"norm.weight", 1, {d}, 1, 0.2f}, {"norm.bias", 1, {d}, 0, 0.2f},
        {"head.weight", 2, {k, d}, 0, 0.5f}, {"head.bias", 1, {k}, 0, 0.1f},
    };
    enum { N = sizeof specs / sizeof specs[0] };
    static float storage[4096];
    size_t used = 0;
    repq_allocator al = repq_allocator_of(NULL);
    repq_st_writer *w;
    repq_status st = repq_st_writer_new(NULL, &al, &w);
    for (size_t i = 0; i < N && st == REPQ_OK; i++) {
        size_t n = 1;
        for (int32_t j = 0; j < specs[i].ndim; j++)
            n *= (size_t)specs[i].shape[j];
        assert_true(used + n <= sizeof storage / sizeof storage[0]);
        for (size_t j = 0; j < n; j++)
            storage[used + j] = specs[i].base + rnd(specs[i].amp);
        st = repq_st_writer_add(w, specs[i].name, REPQ_ST_F32, specs[i].ndim, specs[i].shape, storage + used,
                                n * sizeof(float));
        used += n;
    }
    if (st == REPQ_OK)
        st = repq_st_writer_set_metadata(w, "architecture",
                                         "{\"img_size\": 6, \"patch_size\": 3, \"in_chans\": 3, \"num_classes\": 3, "
                                         "\"embed_dim\": 8, \"depth\": 1, \"num_heads\": 2, \"mlp_ratio\": 4.0, "
                                         "\"norm_eps\": 1e-6}");
    if (st == REPQ_OK)
        st = repq_st_writer_set_metadata(w, "preprocess",
                                         "{\"mean\": [0.5, 0.4, 0.3], \"std\": [0.25, 0.2, 0.3], \"scale\": 0.00392156862745098}");
    if (st == REPQ_OK)
        st = repq_st_writer_write(w, path);
    repq_st_writer_free(w);
    return st;
}

static repq_status quantize_method(repq_model *m, repq_tensor *images, int wbits, int abits, int method,
                                   repq_qmodel **chan, repq_qmodel **out)
{
    repq_options *o = NULL;
    repq_calib *c = NULL;
    repq_qmodel *cw = NULL;
    repq_status st;
    if ((st = repq_options_new(&o)) || (st = repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, wbits)) ||
        (st = repq_options_set_int(o, REPQ_OPT_ACT_BITS, abits)) ||
        (st = repq_options_set_int(o, REPQ_OPT_METHOD, method)) || (st = repq_calib_new(NULL, m, o, &c)) ||
        (st = repq_calib_feed(c, images)) || (st = repq_calib_finish(c, &cw)) ||
        (st = repq_qmodel_reparameterize(NULL, cw, out))) {
    }
    repq_calib_free(c);
    repq_options_free(o);
    if (chan)
        *chan = cw;
    else
        repq_qmodel_free(cw);
    return st;
}

static repq_status quantize(repq_model *m, repq_tensor *images, int wbits, int abits, repq_qmodel **chan,
                            repq_qmodel **out)
{
    return quantize_method(m, images, wbits, abits, REPQ_METHOD_REPQ, chan, out);
}

/* With REPQ_WRITE_CORPUS set to a folder, the tiny files are copied there (the seeds
 * of tests/fuzz/corpus/qmodel). */
static void copy_to_corpus(const char *path, const char *name)
{
    const char *dir = getenv("REPQ_WRITE_CORPUS");
    if (!dir)
        return;
    char dst[256];
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    FILE *in = fopen(path, "rb"), *out = fopen(dst, "wb");
    int c;
    while (in && out && (c = fgetc(in)) != EOF)
        fputc(c, out);
    if (in)
        fclose(in);
    if (out)
        fclose(out);
}

static int setup(void **state)
{
    fixture *f = &fx;
    repq_status st;
    snprintf(f->dir, sizeof f->dir, "/tmp/repq_qmodel_file_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->q8_path, sizeof f->q8_path, "%.60s/w8a8.safetensors", f->dir);
    snprintf(f->q4_path, sizeof f->q4_path, "%.60s/w4a4.safetensors", f->dir);
    snprintf(f->tiny4_path, sizeof f->tiny4_path, "%.60s/tiny4.safetensors", f->dir);
    snprintf(f->tiny6_path, sizeof f->tiny6_path, "%.60s/tiny6.safetensors", f->dir);
    snprintf(f->tinymm_path, sizeof f->tinymm_path, "%.60s/tinymm.safetensors", f->dir);
    snprintf(f->tiny_float_path, sizeof f->tiny_float_path, "%.60s/tiny_float.safetensors", f->dir);
    repq_tensor *calib, *calib_labels;
    /* REPQ_TEST_TINY_ONLY skips the bundled model (for valgrind, where calibrating it
     * takes most of an hour); the tests that need it are skipped. */
    if (getenv("REPQ_TEST_TINY_ONLY"))
        goto tiny;
    if (repq_model_load(NULL, MODEL_PATH, NULL, &f->model) ||
        repq_cifar_load(NULL, CALIB_IMAGES, 0, N_CALIB, &calib, &calib_labels) ||
        repq_cifar_load(NULL, TEST_IMAGES, 0, N_TEST, &f->test, &f->test_labels))
        return -1;
    st = quantize(f->model, calib, 8, 8, &f->channelwise, &f->q8);
    if (st == REPQ_OK)
        st = quantize(f->model, calib, 4, 4, NULL, &f->q4);
    repq_tensor_free(calib);
    repq_tensor_free(calib_labels);
    if (st)
        return -1;
tiny:
    /* The tiny model, calibrated on random pixels. */
    static uint8_t pixels[TINY_IMAGES * 3 * TINY_IMG * TINY_IMG];
    for (size_t i = 0; i < sizeof pixels; i++)
        pixels[i] = (uint8_t)(127.5f + rnd(127.0f));
    int64_t ishape[4] = {TINY_IMAGES, 3, TINY_IMG, TINY_IMG};
    repq_model *tiny;
    if (write_tiny_float_model(f->tiny_float_path) ||
        repq_tensor_new(NULL, REPQ_DTYPE_U8, 4, ishape, pixels, &f->tiny_images) ||
        repq_model_load(NULL, f->tiny_float_path, NULL, &tiny))
        return -1;
    st = quantize(tiny, f->tiny_images, 4, 4, f->channelwise ? NULL : &f->channelwise, &f->tiny4);
    if (st == REPQ_OK)
        st = quantize(tiny, f->tiny_images, 6, 8, NULL, &f->tiny6);
    if (st == REPQ_OK)
        st = quantize_method(tiny, f->tiny_images, 8, 8, REPQ_METHOD_MINMAX, NULL, &f->tinymm);
    repq_model_free(tiny);
    if (st || repq_qmodel_save(f->tiny4, f->tiny4_path) || repq_qmodel_save(f->tiny6, f->tiny6_path) ||
        repq_qmodel_save(f->tinymm, f->tinymm_path))
        return -1;
    copy_to_corpus(f->tiny4_path, "tiny_w4a4.safetensors");
    copy_to_corpus(f->tiny6_path, "tiny_w6a8.safetensors");
    copy_to_corpus(f->tinymm_path, "tiny_minmax_w8a8.safetensors");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    repq_qmodel_free(f->q8);
    repq_qmodel_free(f->q4);
    repq_qmodel_free(f->channelwise);
    repq_qmodel_free(f->tiny4);
    repq_qmodel_free(f->tiny6);
    repq_qmodel_free(f->tinymm);
    repq_model_free(f->model);
    repq_tensor_free(f->test);
    repq_tensor_free(f->test_labels);
    repq_tensor_free(f->tiny_images);
    const char *paths[] = {f->q8_path, f->q4_path, f->tiny4_path, f->tiny6_path, f->tinymm_path, f->tiny_float_path};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        unlink(paths[i]);
    rmdir(f->dir);
    return 0;
}

static uint8_t *read_all(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n > 0);
    rewind(fp);
    uint8_t *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *size = (size_t)n;
    return buf;
}

/* Fake-quant logits of both qmodels on `images` must be bit-identical. */
static void assert_same_logits(const repq_qmodel *a, const repq_qmodel *b, repq_tensor *images, int64_t n,
                               int64_t classes)
{
    int64_t shape[2] = {n, classes};
    repq_tensor *la, *lb;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &la), REPQ_OK);
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &lb), REPQ_OK);
    assert_int_equal(repq_qmodel_forward(a, REPQ_FORWARD_FAKE_QUANT, images, la), REPQ_OK);
    assert_int_equal(repq_qmodel_forward(b, REPQ_FORWARD_FAKE_QUANT, images, lb), REPQ_OK);
    size_t bytes = (size_t)(n * classes) * sizeof(float);
    float *xa = malloc(bytes), *xb = malloc(bytes);
    assert_non_null(xa);
    assert_non_null(xb);
    assert_int_equal(repq_tensor_read(la, xa, bytes), REPQ_OK);
    assert_int_equal(repq_tensor_read(lb, xb, bytes), REPQ_OK);
    for (size_t i = 0; i < (size_t)(n * classes); i++)
        assert_true(isfinite(xa[i]));
    assert_memory_equal(xa, xb, bytes);
    free(xa);
    free(xb);
    repq_tensor_free(la);
    repq_tensor_free(lb);
}

static void round_trip(const repq_qmodel *q, const char *path, repq_tensor *images, int64_t n)
{
    int64_t wbits, abits, classes, reparam, depth;
    assert_int_equal(repq_qmodel_save((repq_qmodel *)q, path), REPQ_OK);
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    repq_qmodel *l = NULL;
    repq_status st = repq_qmodel_load(ctx, path, &l);
    if (st)
        fprintf(stderr, "load: %s\n", repq_last_error(ctx));
    assert_int_equal(st, REPQ_OK);
    assert_int_equal(repq_qmodel_get_int(l, REPQ_QMODEL_WEIGHT_BITS, &wbits), REPQ_OK);
    assert_int_equal(repq_qmodel_get_int(l, REPQ_QMODEL_ACT_BITS, &abits), REPQ_OK);
    assert_int_equal(repq_qmodel_get_int(l, REPQ_QMODEL_REPARAMETERIZED, &reparam), REPQ_OK);
    assert_int_equal(repq_qmodel_get_int(l, REPQ_MODEL_NUM_CLASSES, &classes), REPQ_OK);
    assert_int_equal(repq_qmodel_get_int(l, REPQ_MODEL_DEPTH, &depth), REPQ_OK);
    assert_int_equal(wbits, q->weight_bits);
    assert_int_equal(abits, q->act_bits);
    assert_int_equal(reparam, 1);
    assert_int_equal(depth, q->arch.depth);
    assert_memory_equal(&l->arch, &q->arch, sizeof q->arch);
    /* The float weights are not stored, so only the fake-quant forward is available. */
    int64_t shape[2] = {n, classes};
    repq_tensor *lg;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &lg), REPQ_OK);
    assert_int_equal(repq_qmodel_forward(l, REPQ_FORWARD_FLOAT, images, lg), REPQ_ERR_STATE);
    repq_tensor_free(lg);
    assert_same_logits(q, l, images, n, classes);
    /* Saving the loaded model gives the same bytes. */
    char again[128];
    snprintf(again, sizeof again, "%s.again", path);
    assert_int_equal(repq_qmodel_save(l, again), REPQ_OK);
    size_t s1, s2;
    uint8_t *b1 = read_all(path, &s1), *b2 = read_all(again, &s2);
    assert_int_equal(s1, s2);
    assert_memory_equal(b1, b2, s1);
    free(b1);
    free(b2);
    unlink(again);
    repq_qmodel_free(l);
    repq_context_free(ctx);
}

/* ---- Round trips ---------------------------------------------------------------------- */

static void round_trip_w8a8_is_bit_identical(void **state)
{
    fixture *f = *state;
    if (!f->model)
        skip();
    round_trip(f->q8, f->q8_path, f->test, N_TEST);
}

static void round_trip_w4a4_is_bit_identical_and_packed(void **state)
{
    fixture *f = *state;
    if (!f->model)
        skip();
    round_trip(f->q4, f->q4_path, f->test, N_TEST);
    size_t s8, s4;
    free(read_all(f->q8_path, &s8));
    free(read_all(f->q4_path, &s4));
    /* Two codes per byte: the 4-bit file is about half the size (weights dominate). */
    assert_true(s4 < s8 * 6 / 10);
}

static void round_trip_tiny_models(void **state)
{
    fixture *f = *state;
    round_trip(f->tiny4, f->tiny4_path, f->tiny_images, TINY_IMAGES);
    round_trip(f->tiny6, f->tiny6_path, f->tiny_images, TINY_IMAGES);
    /* The min/max baseline: uniform quantization of the attention probabilities. */
    assert_int_equal(f->tinymm->acts[REPQ_QP_ATTN].kind, REPQ_AQ_UNIFORM);
    round_trip(f->tinymm, f->tinymm_path, f->tiny_images, TINY_IMAGES);
    const char *paths[3] = {f->tiny4_path, f->tiny6_path, f->tinymm_path};
    for (int i = 0; i < 3; i++) {
        size_t size;
        free(read_all(paths[i], &size));
        assert_true(size < 8192); /* small enough for the fuzz corpus */
    }
}

static void save_refuses_a_model_that_is_not_reparameterized(void **state)
{
    fixture *f = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/never.safetensors", f->dir);
    assert_int_equal(repq_qmodel_save(f->channelwise, path), REPQ_ERR_STATE);
    assert_non_null(strstr(repq_last_error(f->channelwise), "reparameterized"));
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(repq_qmodel_save(NULL, path), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_save(f->q8, NULL), REPQ_ERR_INVALID_ARGUMENT);
}

/* ---- Hostile files: edits of a valid file ---------------------------------------------- */

typedef st_edit edit;

/* Load `src` with the edit applied; the status, with a message naming `needle`. */
static repq_status load_edited(const char *src, const edit *e, const char *needle)
{
    char dst[128];
    snprintf(dst, sizeof dst, "%s/edited.safetensors", fx.dir);
    st_edit_write(src, dst, e);
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    repq_qmodel *q = (repq_qmodel *)&q;
    repq_status st = repq_qmodel_load(ctx, dst, &q);
    if (st != REPQ_OK) {
        assert_null(q);
        if (needle && !strstr(repq_last_error(ctx), needle))
            fail_msg("message '%s' does not mention '%s'", repq_last_error(ctx), needle);
    }
    repq_qmodel_free(q);
    repq_context_free(ctx);
    unlink(dst);
    return st;
}

/* The "quant" metadata of `path` with field `key` of activation `index` (or of the
 * header for index < 0) set to `value` (NULL: removed). Free with free(). */
static char *quant_with(const char *path, int index, const char *key, json_t *value)
{
    repq_allocator al = repq_allocator_of(NULL);
    repq_st_file *f;
    assert_int_equal(repq_st_open(NULL, &al, path, &f), REPQ_OK);
    json_t *root = json_loads(repq_st_metadata(f, "quant"), 0, NULL);
    assert_non_null(root);
    json_t *obj = index < 0 ? root : json_array_get(json_object_get(root, "activations"), (size_t)index);
    assert_non_null(obj);
    if (value)
        json_object_set_new(obj, key, value);
    else
        json_object_del(obj, key);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    repq_st_close(f);
    return s;
}

static repq_status load_quant_edit(const char *path, int index, const char *key, json_t *value, const char *needle)
{
    char *q = quant_with(path, index, key, value);
    edit e = {.key = "quant", .value = q};
    repq_status st = load_edited(path, &e, needle);
    free(q);
    return st;
}

static void unchanged_copy_loads(void **state)
{
    fixture *f = *state;
    edit e = {0};
    assert_int_equal(load_edited(f->tiny4_path, &e, NULL), REPQ_OK);
    assert_int_equal(load_edited(f->tiny6_path, &e, NULL), REPQ_OK);
}

static void newer_format_version_is_unsupported(void **state)
{
    fixture *f = *state;
    edit e = {.key = "format_version", .value = "5"};
    assert_int_equal(load_edited(f->tiny4_path, &e, "5"), REPQ_ERR_UNSUPPORTED);
    e.value = "3.1"; /* a newer minor version of a known major is read */
    assert_int_equal(load_edited(f->tiny4_path, &e, NULL), REPQ_OK);
    e.value = "2.7";
    assert_int_equal(load_edited(f->tiny4_path, &e, NULL), REPQ_OK);
    /* Version 1.7 is read too, unless the file holds a two-region quantizer (kind 5,
     * version 2 and later). */
    const bool two = repq_qmodel_two_region_blocks(f->tiny4) > 0;
    e.value = "1.7";
    assert_int_equal(load_edited(f->tiny4_path, &e, two ? "kind 5" : NULL), two ? REPQ_ERR_FORMAT : REPQ_OK);
    const char *bad[] = {"", "one", "0", "1.", "-1", "1.2.3", "99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e.value = bad[i];
        assert_int_equal(load_edited(f->tiny4_path, &e, "format_version"), REPQ_ERR_FORMAT);
    }
    e.value = NULL;
    assert_int_equal(load_edited(f->tiny4_path, &e, "format_version"), REPQ_ERR_FORMAT);
}

static void wrong_metadata_is_refused(void **state)
{
    fixture *f = *state;
    edit e = {.key = "format", .value = "timm.vision_transformer"};
    assert_int_equal(load_edited(f->tiny4_path, &e, "format"), REPQ_ERR_FORMAT);
    e.value = NULL;
    assert_int_equal(load_edited(f->tiny4_path, &e, "format"), REPQ_ERR_FORMAT);
    e = (edit){.key = "quant", .value = NULL};
    assert_int_equal(load_edited(f->tiny4_path, &e, "quant"), REPQ_ERR_FORMAT);
    e.value = "{not json";
    assert_int_equal(load_edited(f->tiny4_path, &e, "quant"), REPQ_ERR_FORMAT);
    e.value = "[1, 2]";
    assert_int_equal(load_edited(f->tiny4_path, &e, "quant"), REPQ_ERR_FORMAT);
    e = (edit){.key = "architecture", .value = NULL};
    assert_int_equal(load_edited(f->tiny4_path, &e, "architecture"), REPQ_ERR_FORMAT);
    /* A different (valid) architecture: the tensors no longer fit it. */
    e.value = "{\"img_size\": 6, \"patch_size\": 3, \"num_classes\": 4, \"embed_dim\": 8, \"depth\": 1, "
              "\"num_heads\": 2}";
    assert_int_equal(load_edited(f->tiny4_path, &e, "head"), REPQ_ERR_FORMAT);
    e.value = "{\"img_size\": 6, \"patch_size\": 3, \"num_classes\": 3, \"embed_dim\": 8, \"depth\": 1, "
              "\"num_heads\": 2, \"mlp_ratio\": 4.0, \"mlp_hidden\": 16}";
    assert_int_equal(load_edited(f->tiny4_path, &e, "mlp_hidden"), REPQ_ERR_FORMAT);
    /* Values in range as doubles that narrow to unusable floats (found by fuzz_arch:
     * norm_eps 1e-70 became 0). */
    e.value = "{\"img_size\": 6, \"patch_size\": 3, \"num_classes\": 3, \"embed_dim\": 8, \"depth\": 1, "
              "\"num_heads\": 2, \"norm_eps\": 9.99999997e-70}";
    assert_int_equal(load_edited(f->tiny4_path, &e, "norm_eps"), REPQ_ERR_UNSUPPORTED);
    e = (edit){.key = "preprocess", .value = "{\"mean\": [0, 0, 0], \"std\": [1, 1e-45, 1], \"scale\": 1}"};
    assert_int_equal(load_edited(f->tiny4_path, &e, "std"), REPQ_ERR_FORMAT);
    e.value = "{\"mean\": [0, 0, 0], \"std\": [1, 1, 1], \"scale\": 1e-42}";
    assert_int_equal(load_edited(f->tiny4_path, &e, "scale"), REPQ_ERR_FORMAT);
    e = (edit){.key = "architecture"};
    /* Absurd sizes are refused before anything is allocated. */
    e.value = "{\"img_size\": 4096, \"patch_size\": 32, \"num_classes\": 100000, \"embed_dim\": 8192, "
              "\"depth\": 256, \"num_heads\": 256, \"mlp_ratio\": 8.0}";
    assert_int_equal(load_edited(f->tiny4_path, &e, NULL), REPQ_ERR_FORMAT);
    e.value = "{\"img_size\": 6, \"patch_size\": 3, \"num_classes\": 3, \"embed_dim\": 8, \"depth\": 1000, "
              "\"num_heads\": 2}";
    assert_int_equal(load_edited(f->tiny4_path, &e, "depth"), REPQ_ERR_UNSUPPORTED);
}

static void missing_or_misshapen_tensors_are_refused(void **state)
{
    fixture *f = *state;
    edit e = {.tensor = "blocks.0.attn.qkv.weight.codes", .drop = true};
    assert_int_equal(load_edited(f->tiny4_path, &e, "blocks.0.attn.qkv.weight.codes"), REPQ_ERR_FORMAT);
    e = (edit){.tensor = "blocks.0.norm2.bias", .drop = true};
    assert_int_equal(load_edited(f->tiny4_path, &e, "blocks.0.norm2.bias"), REPQ_ERR_FORMAT);
    e = (edit){.tensor = "head.weight.zero_points", .drop = true};
    assert_int_equal(load_edited(f->tiny6_path, &e, "head.weight.zero_points"), REPQ_ERR_FORMAT);
    /* Wrong shapes: a 4-bit file's codes unpacked, an extra class, a transposed matrix. */
    e = (edit){.tensor = "head.weight.codes", .dtype = REPQ_ST_U8, .ndim = 2, .shape = {TINY_CLASSES, TINY_DIM}};
    assert_int_equal(load_edited(f->tiny4_path, &e, "head.weight.codes"), REPQ_ERR_FORMAT);
    e = (edit){.tensor = "head.bias", .dtype = REPQ_ST_F32, .ndim = 1, .shape = {TINY_CLASSES + 1}};
    assert_int_equal(load_edited(f->tiny4_path, &e, "head.bias"), REPQ_ERR_FORMAT);
    e = (edit){.tensor = "blocks.0.mlp.fc1.weight.codes", .dtype = REPQ_ST_U8, .ndim = 2,
               .shape = {TINY_DIM, TINY_HIDDEN}};
    assert_int_equal(load_edited(f->tiny6_path, &e, "blocks.0.mlp.fc1.weight.codes"), REPQ_ERR_FORMAT);
    e = (edit){.tensor = "pos_embed", .dtype = REPQ_ST_F32, .ndim = 2, .shape = {TINY_TOKENS, TINY_DIM}};
    assert_int_equal(load_edited(f->tiny6_path, &e, "pos_embed"), REPQ_ERR_FORMAT);
    /* Wrong dtypes. */
    e = (edit){.tensor = "head.weight.scales", .dtype = REPQ_ST_I32, .ndim = 1, .shape = {TINY_CLASSES}};
    assert_int_equal(load_edited(f->tiny6_path, &e, "head.weight.scales"), REPQ_ERR_FORMAT);
    e = (edit){.tensor = "norm.weight", .dtype = REPQ_ST_F16, .ndim = 1, .shape = {TINY_DIM}};
    assert_int_equal(load_edited(f->tiny6_path, &e, "norm.weight"), REPQ_ERR_FORMAT);
}

static void code_over_bits(uint8_t *b, size_t n) { (void)n; b[3] = 64; }     /* 6-bit codes: < 64 */
static void padding_nibble(uint8_t *b, size_t n) { (void)n; b[13] |= 0x10; } /* 27 codes: 14 bytes/row */
static void nan_first(uint8_t *b, size_t n) { (void)n; float x = NAN; memcpy(b, &x, 4); }
static void inf_last(uint8_t *b, size_t n) { float x = -INFINITY; memcpy(b + n - 4, &x, 4); }
static void negative_first(uint8_t *b, size_t n) { (void)n; float x = -0.01f; memcpy(b, &x, 4); }
static void zero_first(uint8_t *b, size_t n) { (void)n; memset(b, 0, 4); }
static void huge_first(uint8_t *b, size_t n) { (void)n; float x = 3e38f; memcpy(b, &x, 4); }
static void zp_huge(uint8_t *b, size_t n) { (void)n; int32_t z = (1 << 23) + 1; memcpy(b, &z, 4); }

static void bad_codes_and_values_are_refused(void **state)
{
    fixture *f = *state;
    edit e = {.tensor = "blocks.0.mlp.fc2.weight.codes", .patch = code_over_bits};
    assert_int_equal(load_edited(f->tiny6_path, &e, "code 64"), REPQ_ERR_FORMAT);
    e = (edit){.tensor = "patch_embed.proj.weight.codes", .patch = padding_nibble};
    assert_int_equal(load_edited(f->tiny4_path, &e, "padding"), REPQ_ERR_FORMAT);
    e = (edit){.tensor = "blocks.0.attn.proj.weight.scales", .patch = nan_first};
    assert_int_equal(load_edited(f->tiny4_path, &e, "blocks.0.attn.proj"), REPQ_ERR_FORMAT);
    e.patch = negative_first;
    assert_int_equal(load_edited(f->tiny4_path, &e, "blocks.0.attn.proj"), REPQ_ERR_FORMAT);
    e.patch = zero_first;
    assert_int_equal(load_edited(f->tiny4_path, &e, "blocks.0.attn.proj"), REPQ_ERR_FORMAT);
    e.patch = huge_first; /* finite, but its levels overflow */
    assert_int_equal(load_edited(f->tiny4_path, &e, "blocks.0.attn.proj"), REPQ_ERR_FORMAT);
    e = (edit){.tensor = "head.weight.zero_points", .patch = zp_huge};
    assert_int_equal(load_edited(f->tiny6_path, &e, "head"), REPQ_ERR_FORMAT);
    e = (edit){.tensor = "pos_embed", .patch = nan_first};
    assert_int_equal(load_edited(f->tiny6_path, &e, "pos_embed"), REPQ_ERR_FORMAT);
    e = (edit){.tensor = "blocks.0.norm1.weight", .patch = inf_last};
    assert_int_equal(load_edited(f->tiny6_path, &e, "blocks.0.norm1.weight"), REPQ_ERR_FORMAT);
}

/* Activation indices of the tiny model (depth 1): block 0 then the once-only row. */
#define ACT(block, point) ((block) * VIT_ACT_ROW + (point))

static void bad_quantizers_are_refused(void **state)
{
    fixture *f = *state;
    const char *p = f->tiny4_path;
    /* Kinds against their points. */
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_QKV_IN), "kind", json_integer(REPQ_AQ_UNIFORM_CHANNEL),
                                     "kind 2"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_ATTN), "kind", json_integer(REPQ_AQ_LOG_SQRT2), "kind 3"),
                     REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_Q), "kind", json_integer(REPQ_AQ_LOG2_PARITY), "kind 4"),
                     REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_PROJ_IN), "kind", json_integer(REPQ_AQ_NONE), "kind 0"),
                     REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_PATCH_IN), "kind", json_integer(REPQ_AQ_UNIFORM),
                                     "not a quantization point"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(1, REPQ_QP_FC1_IN), "kind", json_integer(REPQ_AQ_UNIFORM), NULL),
                     REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_K), "kind", json_integer(99), "kind"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_K), "kind", json_string("uniform"), "kind"), REPQ_ERR_FORMAT);
    /* Bits: out of range, or disagreeing with the header. */
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_V), "bits", json_integer(9), "bits"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_V), "bits", json_integer(1), "bits"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_V), "bits", json_integer(8), "header"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_ATTN), "bits", json_integer(9), "bits"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, -1, "weight_bits", json_integer(9), "weight_bits"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, -1, "act_bits", json_integer(9), "act_bits"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, -1, "act_bits", json_integer(5), "header"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, -1, "patch_input_bits", NULL, "patch_input_bits"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, -1, "method", json_integer(7), "method"), REPQ_ERR_FORMAT);
    /* A 4-bit file's packed codes read as 8-bit: shapes no longer match. */
    assert_int_equal(load_quant_edit(p, -1, "weight_bits", json_integer(8), "codes"), REPQ_ERR_FORMAT);
    /* 6-bit codes (up to 63) read as 5-bit ones. */
    assert_int_equal(load_quant_edit(f->tiny6_path, -1, "weight_bits", json_integer(5), "code"), REPQ_ERR_FORMAT);
    /* Scales and zero points. */
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_Q), "scale", json_real(-0.5), "scale"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_Q), "scale", json_real(0.0), "scale"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_Q), "scale", json_real(1e-40), NULL), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_Q), "scale", json_real(1e300), "scale"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_Q), "scale", json_real(3e38), "overflows"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_Q), "scale", json_string("NaN"), "scale"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_ATTN), "scale", NULL, "scale"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_Q), "zero_point", json_integer(1 << 24), "zero_point"),
                     REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_Q), "zero_point", json_real(1.5), "zero_point"),
                     REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_ATTN), "base", json_integer(REPQ_LOG_2), "base"),
                     REPQ_ERR_FORMAT);
    /* The table itself. */
    assert_int_equal(load_quant_edit(p, -1, "activations", json_array(), "activations"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, -1, "activations", NULL, "activations"), REPQ_ERR_FORMAT);
}

/* The two-region quantizer of fc2's input: the real 4-bit model has some (the round
 * trip above covers them); each broken field is refused with a message naming it. */
static void bad_two_region_quantizers_are_refused(void **state)
{
    fixture *f = *state;
    if (!f->model)
        skip();
    const repq_arch *a = &f->q4->arch;
    int at = -1;
    for (int32_t b = 0; b < a->depth && at < 0; b++)
        if (f->q4->acts[vit_act_index(a, b, REPQ_QP_FC2_IN)].kind == REPQ_AQ_TWO_REGION)
            at = ACT(b, REPQ_QP_FC2_IN);
    assert_true(at >= 0);
    const char *p = f->q4_path;
    edit e = {0};
    assert_int_equal(load_edited(p, &e, NULL), REPQ_OK);
    /* Version 2 marks the files that version-1 readers cannot read; the others stay 1. */
    repq_allocator al = repq_allocator_of(NULL);
    repq_st_file *sf;
    assert_int_equal(repq_st_open(NULL, &al, p, &sf), REPQ_OK);
    assert_string_equal(repq_st_metadata(sf, "format_version"), "2");
    repq_st_close(sf);
    assert_int_equal(repq_st_open(NULL, &al, f->q8_path, &sf), REPQ_OK);
    const bool two = repq_qmodel_two_region_blocks(f->q8) > 0;
    assert_string_equal(repq_st_metadata(sf, "format_version"), two ? "2" : "1");
    repq_st_close(sf);
    assert_int_equal(load_quant_edit(p, at, "neg_shift", json_integer(8), "neg_shift"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, at, "neg_shift", json_integer(-1), "neg_shift"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, at, "neg_shift", NULL, "neg_shift"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, at, "zero_point", json_integer(300), "zero_point"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, at, "zero_point", json_integer(16), "two-region"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, at, "bits", json_integer(6), "header"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, at, "scale", json_real(1e-38), "two-region"), REPQ_ERR_FORMAT);
    assert_int_equal(load_quant_edit(p, at, "scale", NULL, "scale"), REPQ_ERR_FORMAT);
    /* Largest code 0 + 15 * 2^5 = 480: beyond 8 bits. */
    char *q = quant_with(p, at, "zero_point", json_integer(0));
    json_t *root = json_loads(q, 0, NULL);
    json_object_set_new(json_array_get(json_object_get(root, "activations"), (size_t)at), "neg_shift",
                        json_integer(5));
    char *q2 = json_dumps(root, JSON_COMPACT);
    e = (edit){.key = "quant", .value = q2};
    assert_int_equal(load_edited(p, &e, "two-region"), REPQ_ERR_FORMAT);
    free(q2);
    json_decref(root);
    free(q);
    /* In a file that says version 1, which cannot hold kind 5. */
    e = (edit){.key = "format_version", .value = "1"};
    assert_int_equal(load_edited(p, &e, "kind 5"), REPQ_ERR_FORMAT);
    /* Anywhere but fc2's input. */
    assert_int_equal(load_quant_edit(p, ACT(0, REPQ_QP_PROJ_IN), "kind", json_integer(REPQ_AQ_TWO_REGION),
                                     "kind 5"), REPQ_ERR_FORMAT);
}

static void float_model_file_is_refused(void **state)
{
    fixture *f = *state;
    repq_context *ctx;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    repq_qmodel *q = (repq_qmodel *)&q;
    assert_int_equal(repq_qmodel_load(ctx, MODEL_PATH, &q), REPQ_ERR_FORMAT);
    assert_null(q);
    assert_non_null(strstr(repq_last_error(ctx), "timm.vision_transformer"));
    assert_int_equal(repq_qmodel_load(ctx, f->tiny_float_path, &q), REPQ_ERR_FORMAT);
    assert_non_null(strstr(repq_last_error(ctx), "format"));
    assert_int_equal(repq_qmodel_load(ctx, TEST_IMAGES, &q), REPQ_ERR_FORMAT);
    char missing[128];
    snprintf(missing, sizeof missing, "%s/does-not-exist", f->dir);
    assert_int_equal(repq_qmodel_load(ctx, missing, &q), REPQ_ERR_IO);
    assert_int_equal(repq_qmodel_load(ctx, f->dir, &q), REPQ_ERR_IO);
    assert_int_equal(repq_qmodel_load(ctx, NULL, &q), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_qmodel_load(ctx, f->tiny4_path, NULL), REPQ_ERR_INVALID_ARGUMENT);
    /* A NULL context works too (the message is lost). */
    assert_int_equal(repq_qmodel_load(NULL, MODEL_PATH, &q), REPQ_ERR_FORMAT);
    repq_context_free(ctx);
}

/* Every proper prefix of a valid file is refused, from an exact-size buffer (so that
 * AddressSanitizer sees any read past the end). */
static void every_truncation_fails_cleanly(void **state)
{
    fixture *f = *state;
    const char *paths[2] = {f->tiny4_path, f->tiny6_path};
    repq_allocator al = repq_allocator_of(NULL);
    for (int k = 0; k < 2; k++) {
        size_t size;
        uint8_t *whole = read_all(paths[k], &size);
        for (size_t len = 0; len < size; len++) {
            uint8_t *prefix = malloc(len ? len : 1);
            memcpy(prefix, whole, len);
            repq_object err = {0};
            repq_qmodel *q = (repq_qmodel *)&q;
            repq_status st = repq_qmodel_parse_memory(&err, &al, prefix, len, &q);
            if (st == REPQ_OK)
                fail_msg("a prefix of %zu of %zu bytes loaded", len, size);
            assert_null(q);
            assert_true(err.error[0] != '\0');
            free(prefix);
        }
        repq_object err = {0};
        repq_qmodel *q;
        assert_int_equal(repq_qmodel_parse_memory(&err, &al, whole, size, &q), REPQ_OK);
        repq_qmodel_free(q);
        free(whole);
    }
}


/* ---- Saving never loses the file it replaces ------------------------------------------ */

/* Entries of `dir` whose name starts with `prefix` (temporary files start with "."). */
static int entries_starting(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

/* A fresh folder holding `name`, a good save of tiny4; its path in `dir`/`path`. */
static void folder_with_saved_file(char *dir, size_t dcap, char *path, size_t pcap, const char *name)
{
    snprintf(dir, dcap, "%s/save_XXXXXX", fx.dir);
    assert_non_null(mkdtemp(dir));
    snprintf(path, pcap, "%s/%s", dir, name);
    assert_int_equal(repq_qmodel_save(fx.tiny4, path), REPQ_OK);
}

static void assert_file_is(const char *path, const uint8_t *bytes, size_t size)
{
    size_t got;
    uint8_t *now = read_all(path, &got);
    assert_int_equal(got, size);
    assert_memory_equal(now, bytes, size);
    free(now);
}

/* After a failed save: the old bytes are still there, no temporary file is; then the
 * folder is removed. Frees `old`. */
static void assert_old_file_kept_and_clean_up(const char *dir, const char *path, uint8_t *old, size_t old_size)
{
    assert_file_is(path, old, old_size);
    assert_int_equal(entries_starting(dir, "."), 0);
    free(old);
    unlink(path);
    rmdir(dir);
}

static void save_over_a_file_replaces_it_and_keeps_its_mode(void **state)
{
    (void)state;
    char dir[128], path[192];
    folder_with_saved_file(dir, sizeof dir, path, sizeof path, "model.repq");
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(repq_qmodel_save(fx.tiny6, path), REPQ_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0640);
    repq_qmodel *q;
    assert_int_equal(repq_qmodel_load(NULL, path, &q), REPQ_OK);
    assert_same_logits(fx.tiny6, q, fx.tiny_images, TINY_IMAGES, TINY_CLASSES);
    repq_qmodel_free(q);
    assert_int_equal(entries_starting(dir, ""), 1);
    unlink(path);
    rmdir(dir);
}

/* A write that fails part-way (the file-size limit is below the new file's size): the old
 * file is intact and no temporary file is left. */
static void a_write_failing_part_way_leaves_the_old_file(void **state)
{
    (void)state;
    char dir[128], path[192];
    folder_with_saved_file(dir, sizeof dir, path, sizeof path, "model.repq");
    size_t old_size;
    uint8_t *old = read_all(path, &old_size);
    /* Beyond the limit write() fails with EFBIG instead of killing the process. */
    void (*previous_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit saved, small;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small = saved;
    small.rlim_cur = 1000; /* the header and part of the data */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    repq_status st = repq_qmodel_save(fx.tiny6, path);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, previous_handler);
    assert_int_equal(st, REPQ_ERR_IO);
    const char *msg = repq_last_error(fx.tiny6);
    if (!strstr(msg, "model.repq") || !strstr(msg, "unchanged"))
        fail_msg("message: %s", msg);
    assert_old_file_kept_and_clean_up(dir, path, old, old_size);
}

/* A folder the saving process may not write to. As root, permissions do not apply, so
 * the save runs in a child that becomes "nobody" first. */
static void a_read_only_folder_leaves_the_old_file(void **state)
{
    (void)state;
    char dir[128], path[192];
    folder_with_saved_file(dir, sizeof dir, path, sizeof path, "model.repq");
    size_t old_size;
    uint8_t *old = read_all(path, &old_size);
    assert_int_equal(chmod(fx.dir, 0755), 0);
    assert_int_equal(chmod(dir, 0555), 0);
    assert_int_equal(chmod(path, 0644), 0);
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(10);
        repq_status st = repq_qmodel_save(fx.tiny6, path);
        const char *msg = repq_last_error(fx.tiny6);
        _exit(st != REPQ_ERR_IO ? 11 : !strstr(msg, "Permission denied") ? 12 : 0);
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(chmod(dir, 0700), 0);
    assert_int_equal(chmod(fx.dir, 0700), 0);
    assert_old_file_kept_and_clean_up(dir, path, old, old_size);
}

static void a_directory_destination_is_refused(void **state)
{
    (void)state;
    char dir[128], path[192];
    folder_with_saved_file(dir, sizeof dir, path, sizeof path, "model.repq");
    char sub[224];
    snprintf(sub, sizeof sub, "%s/folder", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(repq_qmodel_save(fx.tiny6, sub), REPQ_ERR_IO);
    assert_non_null(strstr(repq_last_error(fx.tiny6), "is a directory"));
    struct stat sb;
    assert_int_equal(stat(sub, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(entries_starting(sub, ""), 0);
    assert_int_equal(entries_starting(dir, "."), 0);
    /* Not a regular file either: a FIFO is refused before anything is written. */
    char fifo[224];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(repq_qmodel_save(fx.tiny6, fifo), REPQ_ERR_IO);
    assert_non_null(strstr(repq_last_error(fx.tiny6), "not a regular file"));
    assert_int_equal(entries_starting(dir, "."), 0);
    unlink(fifo);
    rmdir(sub);
    unlink(path);
    rmdir(dir);
}

/* A symbolic link is followed: its target is written and the link kept. A dangling link
 * creates its target; one into a missing folder fails and leaves nothing. */
static void symbolic_links_are_followed(void **state)
{
    (void)state;
    char dir[128], path[192], link[224], dangling[224], broken[224], target[224];
    folder_with_saved_file(dir, sizeof dir, path, sizeof path, "model.repq");
    snprintf(link, sizeof link, "%s/link.repq", dir);
    assert_int_equal(symlink("model.repq", link), 0);
    assert_int_equal(repq_qmodel_save(fx.tiny6, link), REPQ_OK);
    struct stat sb;
    assert_int_equal(lstat(link, &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    repq_qmodel *q;
    assert_int_equal(repq_qmodel_load(NULL, path, &q), REPQ_OK);
    assert_same_logits(fx.tiny6, q, fx.tiny_images, TINY_IMAGES, TINY_CLASSES);
    repq_qmodel_free(q);

    snprintf(dangling, sizeof dangling, "%s/dangling.repq", dir);
    snprintf(target, sizeof target, "%s/created.repq", dir);
    assert_int_equal(symlink("created.repq", dangling), 0);
    assert_int_equal(repq_qmodel_save(fx.tiny4, dangling), REPQ_OK);
    assert_int_equal(lstat(dangling, &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    assert_int_equal(lstat(target, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(repq_qmodel_load(NULL, dangling, &q), REPQ_OK);
    repq_qmodel_free(q);

    snprintf(broken, sizeof broken, "%s/broken.repq", dir);
    assert_int_equal(symlink("no-such-folder/x.repq", broken), 0);
    assert_int_equal(repq_qmodel_save(fx.tiny4, broken), REPQ_ERR_IO);
    assert_non_null(strstr(repq_last_error(fx.tiny4), "broken.repq"));
    assert_int_equal(lstat(broken, &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    assert_int_equal(entries_starting(dir, "."), 0);
    assert_int_equal(entries_starting(dir, ""), 5); /* model, link, dangling, created, broken */
    unlink(broken);
    unlink(dangling);
    unlink(target);
    unlink(link);
    unlink(path);
    rmdir(dir);
}

/* ---- Loading never accepts a damaged file ---------------------------------------------- */

/* Every single-bit flip at every byte of a saved file: each must be refused, or load a
 * model that saves to exactly the original bytes (a flip in the checksum entry's key,
 * which leaves a file without a checksum and otherwise unchanged). */
static void every_bit_flip_is_refused_or_harmless(void **state)
{
    fixture *f = *state;
    const char *paths[2] = {f->tiny4_path, f->tiny6_path};
    repq_allocator al = repq_allocator_of(NULL);
    char resaved[128];
    snprintf(resaved, sizeof resaved, "%s/resaved.repq", f->dir);
    for (int k = 0; k < 2; k++) {
        size_t size;
        uint8_t *whole = read_all(paths[k], &size);
        size_t key_at = 0;
        assert_int_equal(repq_st_checksum_locate(whole, size, &key_at), 1);
        key_at -= strlen("repq_checksum\":\"crc32c:");
        size_t refused = 0, loaded = 0;
        for (size_t at = 0; at < size; at++) {
            for (int bit = 0; bit < 8; bit++) {
                whole[at] ^= (uint8_t)(1u << bit);
                repq_object err = {0};
                repq_qmodel *q = NULL;
                repq_status st = repq_qmodel_parse_memory(&err, &al, whole, size, &q);
                whole[at] ^= (uint8_t)(1u << bit);
                if (st != REPQ_OK) {
                    assert_true(err.error[0] != '\0');
                    refused++;
                    continue;
                }
                loaded++;
                if (at < key_at || at >= key_at + strlen("repq_checksum"))
                    fail_msg("file %d: flipping bit %d of byte %zu loads", k, bit, at);
                assert_int_equal(repq_qmodel_save(q, resaved), REPQ_OK);
                assert_file_is(resaved, whole, size);
                repq_qmodel_free(q);
            }
        }
        assert_true(loaded > 0 && loaded <= 8 * strlen("repq_checksum"));
        assert_int_equal(refused + loaded, 8 * size);
        free(whole);
    }
    unlink(resaved);
}

/* The message of a damaged file says so; a file written before checksums loads. */
static void damage_is_named_and_old_files_load(void **state)
{
    fixture *f = *state;
    size_t size;
    uint8_t *whole = read_all(f->tiny4_path, &size);
    repq_allocator al = repq_allocator_of(NULL);
    repq_object err = {0};
    repq_qmodel *q = NULL;
    whole[size - 100] ^= 0x10; /* a weight code or a float parameter */
    assert_int_equal(repq_qmodel_parse_memory(&err, &al, whole, size, &q), REPQ_ERR_FORMAT);
    assert_non_null(strstr(err.error, "checksum mismatch: the file is damaged"));
    free(whole);
    /* The fuzz seeds were written before the checksum existed. */
    const char *old = REPQ_TEST_SOURCE "/tests/fuzz/corpus/qmodel/tiny_w4a4.safetensors";
    whole = read_all(old, &size);
    assert_int_equal(repq_st_checksum_locate(whole, size, &(size_t){0}), 0);
    free(whole);
    assert_int_equal(repq_qmodel_load(NULL, old, &q), REPQ_OK);
    repq_qmodel_free(q);
}

/* ---- Allocation failures ---------------------------------------------------------------- */

/* An allocator that fails its `fail_at`-th call (1-based; 0: never) and counts live blocks. */
typedef struct failing_alloc {
    int calls, fail_at, live;
} failing_alloc;

static void *failing_alloc_fn(void *user, size_t size, size_t align)
{
    failing_alloc *fa = user;
    if (++fa->calls == fa->fail_at)
        return NULL;
    void *p = aligned_alloc(align, (size + align - 1) / align * align);
    if (p)
        fa->live++;
    return p;
}

static void failing_release_fn(void *user, void *ptr)
{
    failing_alloc *fa = user;
    if (ptr)
        fa->live--;
    free(ptr);
}

static void load_allocation_failures_are_clean(void **state)
{
    fixture *f = *state;
    bool loaded = false;
    for (int n = 1; n < 1000 && !loaded; n++) {
        failing_alloc fa = {0, n, 0};
        repq_context *ctx;
        assert_int_equal(repq_context_new(&ctx), REPQ_OK);
        assert_int_equal(repq_context_set_allocator(ctx, failing_alloc_fn, failing_release_fn, &fa), REPQ_OK);
        repq_qmodel *q = (repq_qmodel *)&q;
        repq_status st = repq_qmodel_load(ctx, f->tiny4_path, &q);
        if (st == REPQ_OK) {
            loaded = true;
            assert_true(fa.calls < n); /* no allocation failed */
            fa.fail_at = 0;
            assert_same_logits(f->tiny4, q, f->tiny_images, TINY_IMAGES, TINY_CLASSES);
            /* Saving with the same allocator, failing in turn at each of its calls. */
            char path[128];
            snprintf(path, sizeof path, "%s/nomem.safetensors", f->dir);
            bool saved = false;
            for (int m = 1; m < 1000 && !saved; m++) {
                fa.calls = 0;
                fa.fail_at = m;
                int live = fa.live;
                st = repq_qmodel_save(q, path);
                saved = st == REPQ_OK;
                if (!saved) {
                    assert_int_equal(st, REPQ_ERR_NOMEM);
                    assert_int_equal(access(path, F_OK), -1);
                }
                assert_int_equal(fa.live, live);
            }
            assert_true(saved);
            unlink(path);
            repq_qmodel_free(q);
        } else {
            assert_int_equal(st, REPQ_ERR_NOMEM);
            assert_null(q);
            assert_true(repq_last_error(ctx)[0] != '\0');
        }
        assert_int_equal(fa.live, 0);
        repq_context_free(ctx);
    }
    assert_true(loaded);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_w8a8_is_bit_identical),
        cmocka_unit_test(round_trip_w4a4_is_bit_identical_and_packed),
        cmocka_unit_test(round_trip_tiny_models),
        cmocka_unit_test(save_refuses_a_model_that_is_not_reparameterized),
        cmocka_unit_test(unchanged_copy_loads),
        cmocka_unit_test(newer_format_version_is_unsupported),
        cmocka_unit_test(wrong_metadata_is_refused),
        cmocka_unit_test(missing_or_misshapen_tensors_are_refused),
        cmocka_unit_test(bad_codes_and_values_are_refused),
        cmocka_unit_test(bad_quantizers_are_refused),
        cmocka_unit_test(bad_two_region_quantizers_are_refused),
        cmocka_unit_test(float_model_file_is_refused),
        cmocka_unit_test(every_truncation_fails_cleanly),
        cmocka_unit_test(load_allocation_failures_are_clean),
        cmocka_unit_test(save_over_a_file_replaces_it_and_keeps_its_mode),
        cmocka_unit_test(a_write_failing_part_way_leaves_the_old_file),
        cmocka_unit_test(a_read_only_folder_leaves_the_old_file),
        cmocka_unit_test(a_directory_destination_is_refused),
        cmocka_unit_test(symbolic_links_are_followed),
        cmocka_unit_test(every_bit_flip_is_refused_or_harmless),
        cmocka_unit_test(damage_is_named_and_old_files_load),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
