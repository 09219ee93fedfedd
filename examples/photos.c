/* Photos in: calibrate a float ViT on a folder of JPEG/PNG photos and evaluate the
 * integer model on an ImageNet-style folder (one sub-folder per class), with the model's
 * own timm transform (docs/images.md).
 *
 *   cc photos.c $(pkg-config --cflags --libs repq) -o photos
 *   ./photos MODEL.safetensors CALIB_DIR VAL_DIR
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
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.safetensors CALIB_DIR VAL_DIR\n", argv[0]);
        return 2;
    }
    enum { BATCH = 8 };
    repq_context *ctx = NULL;
    repq_model *model = NULL;
    repq_image_loader *loader = NULL;
    repq_image_folder *calib_dir = NULL, *val_dir = NULL;
    repq_tensor *images = NULL, *labels = NULL, *logits = NULL;
    repq_calib *calibrator = NULL;
    repq_qmodel *q = NULL, *rq = NULL;
    repq_session *session = NULL;
    int rc = 1;
    if (check(repq_context_new(&ctx), "context", NULL) ||
        check(repq_model_load(ctx, argv[1], NULL, &model), "loading the model", ctx) ||
        check(repq_image_loader_new(ctx, model, &loader), "image loader", ctx) ||
        check(repq_image_loader_set_int(loader, REPQ_IMAGE_THREADS, 2), "decoding threads", loader) ||
        check(repq_image_folder_open(ctx, argv[2], NULL, &calib_dir), "calibration folder", ctx) ||
        check(repq_image_folder_open(ctx, argv[3], NULL, &val_dir), "validation folder", ctx))
        goto out;
    int64_t size = 0, classes = 0, n_calib = 0, n_val = 0;
    repq_model_get_int(model, REPQ_MODEL_IMG_SIZE, &size);
    repq_model_get_int(model, REPQ_MODEL_NUM_CLASSES, &classes);
    repq_image_folder_size(calib_dir, &n_calib, NULL);
    repq_image_folder_size(val_dir, &n_val, NULL);
    int64_t ishape[4] = {BATCH, 3, size, size}, lshape[1] = {BATCH}, oshape[2] = {BATCH, classes};
    if (check(repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, ishape, NULL, &images), "images", ctx) ||
        check(repq_tensor_new(ctx, REPQ_DTYPE_I32, 1, lshape, NULL, &labels), "labels", ctx) ||
        check(repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, oshape, NULL, &logits), "logits", ctx) ||
        check(repq_calib_new(ctx, model, NULL, &calibrator), "calibrator", ctx))
        goto out;
    /* Calibrate on the first BATCH photos (a failed file would be zeroed: stop instead). */
    if (n_calib < BATCH) {
        fprintf(stderr, "the calibration folder needs at least %d images\n", BATCH);
        goto out;
    }
    if (check(repq_image_folder_load(loader, calib_dir, 0, BATCH, images, labels, NULL), "calibration images", loader) ||
        check(repq_calib_feed(calibrator, images), "feeding", calibrator) ||
        check(repq_calib_finish(calibrator, &q), "calibrating", calibrator) ||
        check(repq_qmodel_reparameterize(ctx, q, &rq), "reparameterizing", ctx) ||
        check(repq_session_new(ctx, rq, NULL, BATCH, &session), "session", ctx))
        goto out;
    /* Evaluate whole batches of the validation folder; skip batches with a bad file. */
    long hits = 0, seen = 0;
    for (int64_t first = 0; first + BATCH <= n_val; first += BATCH) {
        int32_t statuses[BATCH], y[BATCH];
        float out[BATCH * 1000];
        if (classes > 1000)
            break;
        if (repq_image_folder_load(loader, val_dir, first, BATCH, images, labels, statuses) != REPQ_OK) {
            fprintf(stderr, "skipping a batch: %s\n", repq_last_error(loader));
            continue;
        }
        if (check(repq_session_run(session, images, logits), "running", session))
            goto out;
        repq_tensor_read(labels, y, sizeof y);
        repq_tensor_read(logits, out, (size_t)(BATCH * classes) * sizeof *out);
        for (int i = 0; i < BATCH; i++) {
            int best = 0;
            for (int c = 1; c < classes; c++)
                if (out[i * classes + c] > out[i * classes + best])
                    best = c;
            hits += best == y[i];
            seen++;
        }
    }
    printf("W8A8 integer model: top-1 %.2f%% on %ld images of %s\n", seen ? 100.0 * hits / seen : 0.0, seen, argv[3]);
    rc = 0;
out:
    repq_session_free(session);
    repq_qmodel_free(rq);
    repq_qmodel_free(q);
    repq_calib_free(calibrator);
    repq_tensor_free(logits);
    repq_tensor_free(labels);
    repq_tensor_free(images);
    repq_image_folder_free(val_dir);
    repq_image_folder_free(calib_dir);
    repq_image_loader_free(loader);
    repq_model_free(model);
    repq_context_free(ctx);
    return rc;
}
