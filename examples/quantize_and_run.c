/* A complete use of librepq: load a float ViT, calibrate it at W4A4 on 32 images,
 * reparameterize, save, load the saved file back, and classify test images in batches
 * with fake quantization and with integer inference.
 *
 *   cc quantize_and_run.c $(pkg-config --cflags --libs repq) -o quantize_and_run
 *   ./quantize_and_run MODEL.safetensors CALIB.bin TEST.bin [IMAGES [OUT.repq]]
 *
 * The C++, Rust and Go examples (examples/cpp, examples/rust, examples/go) do the same
 * and print the same lines.
 */
#include <stdio.h>
#include <stdlib.h>

#include <repq/repq.h>

#define BATCH 16

static int check(repq_status st, const char *what, const void *handle)
{
    if (st != REPQ_OK)
        fprintf(stderr, "%s: %s (%s)\n", what, repq_status_string(st), repq_last_error(handle));
    return st != REPQ_OK;
}

/* Which forward a batch goes through. */
typedef struct runner {
    repq_model *model;        /* fp32, or */
    repq_qmodel *qmodel;      /* fake quantization, or */
    repq_session *session;    /* integer inference */
} runner;

/* Top-1 over `images` in batches of at most BATCH (the last one shorter): the loop of
 * docs/guide.md. Returns the number of correct images, or -1 after printing the error. */
static int64_t count_correct(repq_context *ctx, const runner *r, repq_tensor *images, repq_tensor *labels,
                             int64_t n, int64_t classes)
{
    int64_t correct = 0;
    for (int64_t begin = 0; begin < n; begin += BATCH) {
        int64_t end = begin + BATCH < n ? begin + BATCH : n, hits = 0;
        int64_t shape[2] = {end - begin, classes};
        repq_tensor *x = NULL, *y = NULL, *logits = NULL;
        int failed = check(repq_tensor_rows_copy(ctx, images, begin, end, &x), "batch", ctx) ||
                     check(repq_tensor_rows_copy(ctx, labels, begin, end, &y), "batch", ctx) ||
                     check(repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, shape, NULL, &logits), "logits", ctx);
        if (!failed) {
            if (r->model)
                failed = check(repq_model_forward(r->model, x, logits), "fp32 forward", r->model);
            else if (r->qmodel)
                failed = check(repq_qmodel_forward(r->qmodel, REPQ_FORWARD_FAKE_QUANT, x, logits),
                               "fake-quant forward", logits);
            else
                failed = check(repq_session_run(r->session, x, logits), "integer run", r->session);
        }
        if (!failed)
            failed = check(repq_top1_count(logits, y, &hits), "top-1", logits);
        repq_tensor_free(x);
        repq_tensor_free(y);
        repq_tensor_free(logits);
        if (failed)
            return -1;
        correct += hits;
    }
    return correct;
}

static void print_top1(const char *what, int64_t correct, int64_t n)
{
    printf("%s top-1: %.2f%% (%lld/%lld)\n", what, 100.0 * (double)correct / (double)n, (long long)correct,
           (long long)n);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.safetensors CALIB.bin TEST.bin [IMAGES [OUT.repq]]\n", argv[0]);
        return 2;
    }
    int64_t limit = argc > 4 ? atoll(argv[4]) : 100;
    const char *out_path = argc > 5 ? argv[5] : "w4a4.repq";
    repq_context *ctx = NULL;
    repq_model *model = NULL;
    repq_tensor *calib = NULL, *calib_labels = NULL, *test = NULL, *labels = NULL;
    repq_options *options = NULL;
    repq_calib *calibrator = NULL;
    repq_qmodel *channelwise = NULL, *qmodel = NULL, *reconstructed = NULL, *loaded = NULL;
    repq_session *session = NULL;
    int rc = 1;

    if (check(repq_context_new(&ctx), "context", NULL) ||
        check(repq_model_load(ctx, argv[1], NULL, &model), "load", ctx) ||
        check(repq_cifar_load(ctx, argv[2], 0, 32, &calib, &calib_labels), "calibration images", ctx) ||
        check(repq_cifar_load(ctx, argv[3], 0, limit, &test, &labels), "test images", ctx))
        goto out;

    /* W4A4 with the default pipeline (SQ-b, RepQ-ViT's quantizers, GPTQ towards the float
     * model); options record their own messages. */
    if (check(repq_options_new(&options), "options", NULL) ||
        check(repq_options_set_int(options, REPQ_OPT_WEIGHT_BITS, 4), "options", options) ||
        check(repq_options_set_int(options, REPQ_OPT_ACT_BITS, 4), "options", options) ||
        check(repq_calib_new(ctx, model, options, &calibrator), "calibrator", ctx) ||
        check(repq_calib_feed(calibrator, calib), "feed", calibrator) ||
        check(repq_calib_finish(calibrator, &channelwise), "calibrate", calibrator) ||
        check(repq_qmodel_reparameterize(ctx, channelwise, &qmodel), "reparameterize", ctx) ||
        check(repq_calib_reconstruct(calibrator, qmodel, &reconstructed), "reconstruct", calibrator) ||
        check(repq_qmodel_save(reconstructed, out_path), "save", reconstructed) ||
        check(repq_qmodel_load(ctx, out_path, &loaded), "load the saved model", ctx) ||
        check(repq_session_new(ctx, loaded, NULL, BATCH, &session), "session", ctx))
        goto out;

    int64_t n = 0, classes = 0;
    repq_tensor_describe(labels, NULL, NULL, &n, 1);
    repq_qmodel_get_int(loaded, REPQ_MODEL_NUM_CLASSES, &classes);
    runner fp32 = {model, NULL, NULL}, fake = {NULL, loaded, NULL}, integer = {NULL, NULL, session};
    int64_t c_fp32 = count_correct(ctx, &fp32, test, labels, n, classes);
    int64_t c_fake = c_fp32 < 0 ? -1 : count_correct(ctx, &fake, test, labels, n, classes);
    int64_t c_int = c_fake < 0 ? -1 : count_correct(ctx, &integer, test, labels, n, classes);
    if (c_int < 0)
        goto out;
    printf("librepq %s: %lld images, W4A4 saved to %s\n", repq_version_string(), (long long)n, out_path);
    print_top1("fp32", c_fp32, n);
    print_top1("fake-quant", c_fake, n);
    print_top1("integer", c_int, n);
    rc = 0;
out:
    repq_session_free(session);
    repq_qmodel_free(loaded);
    repq_qmodel_free(reconstructed);
    repq_qmodel_free(qmodel);
    repq_qmodel_free(channelwise);
    repq_calib_free(calibrator);
    repq_options_free(options);
    repq_tensor_free(test);
    repq_tensor_free(labels);
    repq_tensor_free(calib);
    repq_tensor_free(calib_labels);
    repq_model_free(model);
    repq_context_free(ctx);
    return rc;
}
