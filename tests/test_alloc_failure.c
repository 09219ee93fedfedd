/* Allocation-failure injection: the N-th allocation of a whole load -> calibrate ->
 * reparameterize -> save -> load -> session -> run cycle fails, for every N until the
 * stage it falls in succeeds. Each failure must come back as REPQ_ERR_NOMEM with nothing leaked
 * (the counting allocator checks that every block was released; ASan checks the rest). */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "repq/repq.h"
#include "swin_small_file.h"

#define MODEL_PATH REPQ_TEST_DATA "/vit_tiny_cifar10.safetensors"
#define CALIB_IMAGES REPQ_TEST_DATA "/cifar10_calib.bin"

typedef struct counting {
    long calls;      /* allocations attempted */
    long fail_at;    /* the attempt that fails (1-based), 0 for none */
    long live;       /* blocks not yet released */
} counting;

static void *counting_alloc(void *user, size_t size, size_t alignment)
{
    counting *c = user;
    if (++c->calls == c->fail_at)
        return NULL;
    size_t rounded = (size + alignment - 1) / alignment * alignment;
    void *p = aligned_alloc(alignment, rounded);
    if (p)
        c->live++;
    return p;
}

static void counting_release(void *user, void *ptr)
{
    counting *c = user;
    if (ptr) {
        c->live--;
        free(ptr);
    }
}

/* The cycle, split into stages so that each failure loop repeats only its own stage;
 * the objects a stage needs come from the stages before it, made without injection. */
typedef struct prepared {
    const char *model_path; /* the float checkpoint */
    bool cifar;             /* stage_load also reads calibration images (ViT) */
    int64_t classes;
    repq_model *model;
    repq_tensor *images, *labels, *logits;
    repq_qmodel *channelwise, *layerwise;
    char saved[32];
} prepared;

typedef repq_status (*stage_fn)(repq_context *ctx, prepared *p);

static repq_status stage_load(repq_context *ctx, prepared *p)
{
    repq_model *m = NULL;
    repq_tensor *images = NULL, *labels = NULL;
    repq_status st;
    if (!(st = repq_model_load(ctx, p->model_path, NULL, &m)) && p->cifar)
        st = repq_cifar_load(ctx, CALIB_IMAGES, 0, 2, &images, &labels);
    repq_model_free(m);
    repq_tensor_free(images);
    repq_tensor_free(labels);
    return st;
}

static repq_status stage_calibrate(repq_context *ctx, prepared *p)
{
    repq_calib *c = NULL;
    repq_options *o = NULL;
    repq_qmodel *q = NULL, *r = NULL, *g = NULL;
    repq_status st;
    /* SQ-b and the float target (the defaults) are injected in the Swin stage; here the
     * plain pipeline keeps the run short (every failure reruns it up to that point). */
    if (!(st = repq_options_new(&o)) && !(st = repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, 4)) &&
        !(st = repq_options_set_int(o, REPQ_OPT_SMOOTH, REPQ_SMOOTH_OFF)) &&
        !(st = repq_options_set_int(o, REPQ_OPT_GPTQ_TARGET, REPQ_GPTQ_TARGET_QUANTIZED_INPUT)) &&
        !(st = repq_calib_new(ctx, p->model, o, &c)) && !(st = repq_calib_feed(c, p->images)) &&
        !(st = repq_calib_finish(c, &q)) && !(st = repq_qmodel_reparameterize(ctx, q, &r)))
        st = repq_calib_reconstruct(c, r, &g);
    repq_qmodel_free(q);
    repq_qmodel_free(r);
    repq_qmodel_free(g);
    repq_calib_free(c);
    repq_options_free(o);
    return st;
}

/* Every calibration option of docs/method.md at once: dual clipping, SQ-b and greedy
 * mixed precision (its sensitivity forwards, the widths, the file format 4), then GPTQ
 * towards the float model (its node-by-node passes). */
static repq_status stage_calibrate_options(repq_context *ctx, prepared *p)
{
    repq_calib *c = NULL;
    repq_options *o = NULL;
    repq_qmodel *q = NULL, *r = NULL, *g = NULL;
    repq_status st;
    if (!(st = repq_options_new(&o)) && !(st = repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, 5)) &&
        !(st = repq_options_set_int(o, REPQ_OPT_ACT_BITS, 5)) && !(st = repq_options_set_int(o, REPQ_OPT_DUAL_CLIP, 1)) &&
        !(st = repq_options_set_int(o, REPQ_OPT_SMOOTH, REPQ_SMOOTH_SQB)) &&
        !(st = repq_options_set_int(o, REPQ_OPT_MIXED, 1)) &&
        !(st = repq_options_set_int(o, REPQ_OPT_GPTQ_TARGET, REPQ_GPTQ_TARGET_FLOAT_MODEL)) &&
        !(st = repq_calib_new(ctx, p->model, o, &c)) && !(st = repq_calib_feed(c, p->images)) &&
        !(st = repq_calib_finish(c, &q)) && !(st = repq_qmodel_reparameterize(ctx, q, &r)))
        st = repq_calib_reconstruct(c, r, &g);
    repq_qmodel_free(q);
    repq_qmodel_free(r);
    repq_qmodel_free(g);
    repq_calib_free(c);
    repq_options_free(o);
    return st;
}

static repq_status stage_save_load(repq_context *ctx, prepared *p)
{
    repq_qmodel *q = NULL;
    repq_status st = repq_qmodel_save(p->layerwise, p->saved);
    if (!st)
        st = repq_qmodel_load(ctx, p->saved, &q);
    repq_qmodel_free(q);
    return st;
}

/* The qmodel is loaded with the injecting context too: the weights its sessions share
 * come from its allocator, the sessions' scratch from theirs. Two sessions, so that the
 * second one's use of the shared weights is exercised as well. */
static repq_status stage_run(repq_context *ctx, prepared *p)
{
    repq_qmodel *q = NULL;
    repq_session *s = NULL, *s2 = NULL;
    repq_tensor *logits = NULL;
    int64_t shape[2] = {2, p->classes};
    repq_status st;
    if (!(st = repq_qmodel_load(ctx, p->saved, &q)) &&
        !(st = repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, shape, NULL, &logits)) &&
        !(st = repq_session_new(ctx, q, NULL, 2, &s)) && !(st = repq_session_new(ctx, q, NULL, 1, &s2)) &&
        !(st = repq_session_run(s, p->images, logits)))
        st = repq_session_get_int(s2, REPQ_SESSION_MAX_BATCH, &shape[0]);
    repq_session_free(s);
    repq_session_free(s2);
    repq_qmodel_free(q);
    repq_tensor_free(logits);
    return st;
}

#ifdef REPQ_HAVE_IMAGES
/* Image files: a loader, a progressive JPEG, a 16-bit interlaced PNG and a photo that
 * is resized, one by one and as a batch, and a folder listing. libpng allocates through
 * the context's allocator too; libjpeg uses its own. */
static repq_status stage_images(repq_context *ctx, prepared *p)
{
    const char *paths[] = {REPQ_TEST_DATA "/images/decode/jpeg_progressive.jpg",
                           REPQ_TEST_DATA "/images/decode/png_ct6_16_interlaced.png",
                           REPQ_TEST_DATA "/photos/n03240683_drilling_platform.JPEG"};
    repq_image_loader *l = NULL;
    repq_image_folder *folder = NULL;
    repq_tensor *one = NULL, *batch = NULL, *labels = NULL;
    int64_t shape[4] = {3, 3, 32, 32}, lshape[1] = {3};
    repq_status st;
    if (!(st = repq_image_loader_new(ctx, p->model, &l)) && !(st = repq_image_load(l, paths[0], &one)) &&
        !(st = repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, shape, NULL, &batch)) &&
        !(st = repq_tensor_new(ctx, REPQ_DTYPE_I32, 1, lshape, NULL, &labels)) &&
        !(st = repq_image_load_batch(l, paths, 3, batch, NULL)) &&
        !(st = repq_image_folder_open(ctx, REPQ_TEST_DATA "/images", NULL, &folder)))
        st = repq_image_folder_load(l, folder, 0, 3, batch, labels, NULL);
    repq_image_folder_free(folder);
    repq_tensor_free(one);
    repq_tensor_free(batch);
    repq_tensor_free(labels);
    repq_image_loader_free(l);
    return st;
}
#endif

/* Fails allocation 1, 2, ... of the stage until it succeeds without a failure. */
static long inject(const char *name, stage_fn stage, prepared *p)
{
    long n;
    for (n = 1;; n++) {
        counting c = {0, n, 0};
        repq_context *ctx;
        assert_int_equal(repq_context_new(&ctx), REPQ_OK);
        assert_int_equal(repq_context_set_allocator(ctx, counting_alloc, counting_release, &c), REPQ_OK);
        repq_status st = stage(ctx, p);
        repq_context_free(ctx);
        if (c.live != 0)
            fail_msg("%s: allocation %ld failing leaked %ld blocks (status %d)", name, n, c.live, st);
        if (st == REPQ_OK) {
            assert_true(c.calls < n); /* no allocation failed: the stage is complete */
            break;
        }
        if (st != REPQ_ERR_NOMEM)
            fail_msg("%s: allocation %ld failing gave %s, not REPQ_ERR_NOMEM", name, n, repq_status_string(st));
    }
    print_message("%-44s %4ld allocations, each failure reported cleanly\n", name, n - 1);
    return n - 1;
}

/* Everything up to the saved qmodel made without injection, then every stage with it. */
static void inject_all_stages(prepared *p)
{
    snprintf(p->saved, sizeof p->saved, "/tmp/repq_alloc_XXXXXX");
    int fd = mkstemp(p->saved);
    assert_true(fd >= 0);
    close(fd);
    repq_calib *c;
    assert_int_equal(repq_model_load(NULL, p->model_path, NULL, &p->model), REPQ_OK);
    assert_int_equal(repq_calib_new(NULL, p->model, NULL, &c), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, p->images), REPQ_OK);
    assert_int_equal(repq_calib_finish(c, &p->channelwise), REPQ_OK);
    assert_int_equal(repq_qmodel_reparameterize(NULL, p->channelwise, &p->layerwise), REPQ_OK);
    assert_int_equal(repq_qmodel_save(p->layerwise, p->saved), REPQ_OK);
    long total = inject("load model and images", stage_load, p) +
                 inject("calibrate, reparameterize, reconstruct", stage_calibrate, p) +
                 inject("save and load qmodel", stage_save_load, p) + inject("session and run", stage_run, p);
    /* On the small Swin only: every unit of mixed precision is a forward, and the
     * bundled ViT's ~150 of them times each injected failure would take minutes. */
    if (!p->cifar)
        total += inject("calibrate with dual clipping, SQ-b, mixed, GPTQ", stage_calibrate_options, p);
#ifdef REPQ_HAVE_IMAGES
    if (p->cifar) /* the image files are decoded for the bundled 32x32 model */
        total += inject("image loader, files, batch, folder", stage_images, p);
#endif
    assert_true(total > 10);
    repq_calib_free(c);
    repq_qmodel_free(p->channelwise);
    repq_qmodel_free(p->layerwise);
    repq_model_free(p->model);
    unlink(p->saved);
}

static void every_allocation_failure_is_reported_and_clean(void **state)
{
    (void)state;
    prepared p;
    memset(&p, 0, sizeof p);
    p.model_path = MODEL_PATH;
    p.cifar = true;
    p.classes = 10;
    assert_int_equal(repq_cifar_load(NULL, CALIB_IMAGES, 0, 2, &p.images, &p.labels), REPQ_OK);
    inject_all_stages(&p);
    repq_tensor_free(p.images);
    repq_tensor_free(p.labels);
}

/* The same on a small Swin (swin_small_file.h) whose file also carries timm's old
 * buffers (checked while loading): window attention, patch merging and its folded
 * quantizer, the Swin file format and the session's window stages. */
static void every_allocation_failure_is_reported_and_clean_on_swin(void **state)
{
    (void)state;
    char path[32];
    snprintf(path, sizeof path, "/tmp/repq_alloc_swin_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(swin_small_write(path, SWIN_SMALL_ARCH, 3, true), REPQ_OK);
    prepared p;
    memset(&p, 0, sizeof p);
    p.model_path = path;
    p.classes = 3;
    /* Two 32x32 images: a gradient and noise. */
    static uint8_t px[2 * 3 * 32 * 32];
    uint64_t s = 17;
    for (size_t i = 0; i < sizeof px / 2; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        px[i] = (uint8_t)(i % 32 * 4 + i / 32 % 32 * 3);
        px[sizeof px / 2 + i] = (uint8_t)(s >> 56);
    }
    const int64_t shape[4] = {2, 3, 32, 32};
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_U8, 4, shape, px, &p.images), REPQ_OK);
    inject_all_stages(&p);
    repq_tensor_free(p.images);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_allocation_failure_is_reported_and_clean),
        cmocka_unit_test(every_allocation_failure_is_reported_and_clean_on_swin),
    };
    /* REPQ_TEST_FILTER runs only the tests whose names match (e.g. "*swin"). */
    if (getenv("REPQ_TEST_FILTER"))
        cmocka_set_test_filter(getenv("REPQ_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
