/* Benchmark of the quantization stages: calibration (repq_calib_finish),
 * reparameterization and the optional GPTQ weight reconstruction, in seconds and as a
 * multiple of the baseline measured in the same run: the OpenBLAS fp32 forward
 * (repq_model_forward) of the same calibration images. Models: the bundled CIFAR-10
 * ViT on 32 calibration images, and deit_tiny_patch16_224 / deit_small_patch16_224 with
 * random weights on 8 random 224x224 images (timing only; their accuracy means nothing).
 *
 * Usage: bench_calib [data_dir [model_filter]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "repq/repq.h"

#define BEST_OF 3

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int check(repq_status st, const char *what)
{
    if (st)
        fprintf(stderr, "bench_calib: %s: %s\n", what, repq_status_string(st));
    return st != REPQ_OK;
}

/* Seconds of each stage (best of BEST_OF runs): fp32 forward, calibration,
 * reparameterization, reconstruction, calibration with the reference's single-grid
 * post-GELU quantizer (the difference is the two-region search), and calibration with
 * SQ-b (the difference is its statistics forward and folds). */
enum { STAGES = 6 };
static int measure(repq_model *m, repq_tensor *images, int bits, double secs[STAGES])
{
    int64_t dims[4], n_classes = 0;
    repq_tensor_describe(images, NULL, NULL, dims, 4);
    repq_model_get_int(m, REPQ_MODEL_NUM_CLASSES, &n_classes);
    int64_t shape[2] = {dims[0], n_classes};
    repq_tensor *logits;
    repq_options *o, *single, *sqb;
    if (check(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &logits), "logits") ||
        check(repq_options_new(&o), "options") || check(repq_options_new(&single), "options") ||
        check(repq_options_new(&sqb), "options"))
        return 1;
    repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, bits);
    repq_options_set_int(o, REPQ_OPT_ACT_BITS, bits);
    repq_options_set_int(single, REPQ_OPT_WEIGHT_BITS, bits);
    repq_options_set_int(single, REPQ_OPT_ACT_BITS, bits);
    repq_options_set_int(single, REPQ_OPT_POST_GELU, REPQ_POST_GELU_UNIFORM);
    repq_options_set_int(sqb, REPQ_OPT_WEIGHT_BITS, bits);
    repq_options_set_int(sqb, REPQ_OPT_ACT_BITS, bits);
    repq_options_set_int(sqb, REPQ_OPT_SMOOTH, REPQ_SMOOTH_SQB);
    for (int i = 0; i < STAGES; i++)
        secs[i] = 1e30;
    int failed = 0;
    for (int run = 0; run < BEST_OF && !failed; run++) {
        repq_calib *c = NULL, *c1 = NULL, *c2 = NULL;
        repq_qmodel *q = NULL, *r = NULL, *g = NULL, *q1 = NULL, *q2 = NULL;
        double t[STAGES + 1];
        t[0] = now();
        failed |= check(repq_model_forward(m, images, logits), "fp32 forward");
        t[1] = now();
        failed |= failed || check(repq_calib_new(NULL, m, o, &c), "calibrator") ||
                  check(repq_calib_feed(c, images), "feed") || check(repq_calib_finish(c, &q), "calibration");
        t[2] = now();
        failed |= failed || check(repq_qmodel_reparameterize(NULL, q, &r), "reparameterization");
        t[3] = now();
        failed |= failed || check(repq_calib_reconstruct(c, r, &g), "reconstruction");
        t[4] = now();
        failed |= failed || check(repq_calib_new(NULL, m, single, &c1), "calibrator") ||
                  check(repq_calib_feed(c1, images), "feed") || check(repq_calib_finish(c1, &q1), "calibration");
        t[5] = now();
        failed |= failed || check(repq_calib_new(NULL, m, sqb, &c2), "calibrator") ||
                  check(repq_calib_feed(c2, images), "feed") || check(repq_calib_finish(c2, &q2), "calibration");
        t[6] = now();
        for (int i = 0; i < STAGES; i++)
            secs[i] = t[i + 1] - t[i] < secs[i] ? t[i + 1] - t[i] : secs[i];
        repq_qmodel_free(q2);
        repq_calib_free(c2);
        repq_qmodel_free(q1);
        repq_calib_free(c1);
        repq_qmodel_free(g);
        repq_qmodel_free(r);
        repq_qmodel_free(q);
        repq_calib_free(c);
    }
    repq_options_free(o);
    repq_options_free(single);
    repq_options_free(sqb);
    repq_tensor_free(logits);
    return failed;
}

static void row(const char *model, int64_t images, int bits, const double secs[STAGES])
{
    printf("| %-24s | %3lld | W%dA%d | %7.3f | %7.3f (%5.1fx) | %7.3f (%5.1fx) | %7.3f (%5.1fx) | %7.3f (%5.2fx) "
           "| %7.3f (%5.1fx) |\n",
           model, (long long)images, bits, bits, secs[0], secs[1], secs[1] / secs[0], secs[4], secs[4] / secs[0],
           secs[5], secs[5] / secs[0], secs[2], secs[2] / secs[0], secs[3], secs[3] / secs[0]);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "data";
    const char *filter = argc > 2 ? argv[2] : NULL;
    printf("Quantization stages, seconds (best of %d) and multiples of the fp32 forward of the same images\n",
           BEST_OF);
    printf("| model | images | bits | fp32 forward | calibration | calibration, post-GELU single grid | "
           "calibration with SQ-b | reparameterization | GPTQ reconstruction |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    int failed = 0;
    if (!filter || strstr("cifar10_vit_tiny", filter)) {
        char model_path[4096], calib_path[4096];
        snprintf(model_path, sizeof model_path, "%s/vit_tiny_cifar10.safetensors", dir);
        snprintf(calib_path, sizeof calib_path, "%s/cifar10_calib.bin", dir);
        repq_model *m = NULL;
        repq_tensor *images = NULL, *labels = NULL;
        double secs[STAGES];
        if (check(repq_model_load(NULL, model_path, NULL, &m), model_path) ||
            check(repq_cifar_load(NULL, calib_path, 0, 32, &images, &labels), calib_path))
            failed = 1;
        for (int bits = 8; bits >= 4 && !failed; bits -= 4)
            if (!(failed = measure(m, images, bits, secs)))
                row("cifar10_vit_tiny", 32, bits, secs);
        repq_tensor_free(images);
        repq_tensor_free(labels);
        repq_model_free(m);
    }
    const char *presets[] = {"deit_tiny_patch16_224", "deit_small_patch16_224"};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0] && !failed; i++) {
        if (filter && !strstr(presets[i], filter))
            continue;
        repq_model *m = NULL;
        repq_tensor *images = NULL;
        int64_t shape[4] = {8, 3, 224, 224};
        size_t bytes = 8 * 3 * 224 * 224;
        unsigned char *pixels = malloc(bytes);
        unsigned state = 12345;
        for (size_t b = 0; pixels && b < bytes; b++)
            pixels[b] = (unsigned char)((state = state * 1103515245u + 12345u) >> 24);
        double secs[STAGES];
        if (!pixels || check(repq_model_create_random(NULL, presets[i], 0, 1, &m), presets[i]) ||
            check(repq_tensor_new(NULL, REPQ_DTYPE_U8, 4, shape, pixels, &images), "images") ||
            (failed = measure(m, images, 4, secs)))
            failed = 1;
        else
            row(presets[i], 8, 4, secs);
        free(pixels);
        repq_tensor_free(images);
        repq_model_free(m);
    }
    return failed;
}
