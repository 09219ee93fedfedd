/* A complete use of librepq: load a float ViT, calibrate it on 32 images, reparameterize,
 * and classify test images with integer inference.
 *
 *   cc quantize_and_run.c $(pkg-config --cflags --libs repq) -o quantize_and_run
 *   ./quantize_and_run MODEL.safetensors CALIB.bin TEST.bin [IMAGES]
 */
#include <stdio.h>
#include <stdlib.h>

#include <repq/repq.h>

static int check(repq_status st, const char *what, const void *handle)
{
    if (st != REPQ_OK)
        fprintf(stderr, "%s: %s (%s)\n", what, repq_status_string(st), repq_last_error(handle));
    return st != REPQ_OK;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.safetensors CALIB.bin TEST.bin [IMAGES]\n", argv[0]);
        return 2;
    }
    int64_t limit = argc > 4 ? atoll(argv[4]) : 100;
    repq_context *ctx = NULL;
    repq_model *model = NULL;
    repq_tensor *calib = NULL, *calib_labels = NULL, *test = NULL, *labels = NULL, *logits = NULL;
    repq_options *options = NULL;
    repq_calib *calibrator = NULL;
    repq_qmodel *channelwise = NULL, *qmodel = NULL;
    repq_session *session = NULL;
    int rc = 1;

    if (check(repq_context_new(&ctx), "context", NULL) ||
        check(repq_model_load(ctx, argv[1], NULL, &model), "load", ctx) ||
        check(repq_cifar_load(ctx, argv[2], 0, 32, &calib, &calib_labels), "calibration images", ctx) ||
        check(repq_cifar_load(ctx, argv[3], 0, limit, &test, &labels), "test images", ctx))
        goto out;

    /* W4A4 with RepQ-ViT's quantizers. */
    if (check(repq_options_new(&options), "options", NULL) ||
        check(repq_options_set_int(options, REPQ_OPT_WEIGHT_BITS, 4), "options", options) ||
        check(repq_options_set_int(options, REPQ_OPT_ACT_BITS, 4), "options", options) ||
        check(repq_calib_new(ctx, model, options, &calibrator), "calibrator", ctx) ||
        check(repq_calib_feed(calibrator, calib), "feed", calibrator) ||
        check(repq_calib_finish(calibrator, &channelwise), "calibrate", calibrator) ||
        check(repq_qmodel_reparameterize(ctx, channelwise, &qmodel), "reparameterize", ctx))
        goto out;

    int64_t n = 0, classes = 0;
    repq_tensor_describe(labels, NULL, NULL, &n, 1);
    repq_qmodel_get_int(qmodel, REPQ_MODEL_NUM_CLASSES, &classes);
    int64_t shape[2] = {n, classes};
    double fp32 = 0, int8 = 0;
    if (check(repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, shape, NULL, &logits), "logits", ctx) ||
        check(repq_model_forward(model, test, logits), "fp32 forward", model) ||
        check(repq_top1_compute(logits, labels, &fp32), "top-1", NULL) ||
        check(repq_session_new(ctx, qmodel, NULL, (int32_t)n, &session), "session", ctx) ||
        check(repq_session_run(session, test, logits), "integer run", session) ||
        check(repq_top1_compute(logits, labels, &int8), "top-1", NULL))
        goto out;
    printf("librepq %s: %lld images, fp32 top-1 %.2f%%, W4A4 integer top-1 %.2f%%\n",
           repq_version_string(), (long long)n, 100 * fp32, 100 * int8);
    rc = 0;
out:
    repq_session_free(session);
    repq_qmodel_free(qmodel);
    repq_qmodel_free(channelwise);
    repq_calib_free(calibrator);
    repq_options_free(options);
    repq_tensor_free(logits);
    repq_tensor_free(test);
    repq_tensor_free(labels);
    repq_tensor_free(calib);
    repq_tensor_free(calib_labels);
    repq_model_free(model);
    repq_context_free(ctx);
    return rc;
}
