/* Benchmark of the quantization stages: calibration (repq_calib_finish),
 * reparameterization and the optional GPTQ weight reconstruction, in seconds and as a
 * multiple of the baseline measured in the same run: the OpenBLAS fp32 forward
 * (repq_model_forward) of the same calibration images. Models: the bundled CIFAR-10
 * ViT on 32 calibration images, and deit_tiny_patch16_224 / deit_small_patch16_224 with
 * random weights on 8 random 224x224 images (timing only; their accuracy means nothing).
 * Calibration is timed with RepQ-ViT alone (two-region post-GELU quantizer), with each
 * option of docs/method.md alone, and with everything on. RepQ-ViT alone is
 * reparameterized and reconstructed with GPTQ (its own target); the SQ-b model, the
 * library's default calibration, and the everything-on model are reparameterized and
 * reconstructed with GPTQ towards the float model (REPQ_GPTQ_TARGET_FLOAT_MODEL), and
 * their calibration plus that is the whole pipeline's time: the default's and
 * everything on. Mixed precision, and with it the everything-on model, is skipped for
 * deit_small (a forward per quantizer: about a minute there). Mixed precision measures
 * sensitivities only at average widths strictly between 4 and 8, so the bundled model is
 * also timed at W6A6.
 *
 * Usage: bench_calib [data_dir [model_filter]] */
#include <math.h>
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

/* The calibrations timed: RepQ-ViT alone, then one option at a time (SQ-b is the
 * default's), then everything on. */
typedef struct variant {
    const char *name;
    int post_gelu_uniform, dual_clip, smooth, mixed;
} variant;

static const variant variants[] = {
    {"calibration, RepQ-ViT alone", 0, 0, 0, 0},
    {"post-GELU single grid", 1, 0, 0, 0},
    {"dual clipping", 0, 1, 0, 0},
    {"SQ-b", 0, 0, 1, 0},
    {"mixed precision", 0, 0, 0, 1},
    {"dual clipping + SQ-b + mixed", 0, 1, 1, 1},
};
enum { VARIANTS = sizeof variants / sizeof variants[0], DEFAULT = 3, ALL_ON = VARIANTS - 1 };

/* Seconds (best of BEST_OF runs) of: [0] the fp32 forward, [1 + v] calibration variant v,
 * [1 + VARIANTS] reparameterization and [2 + VARIANTS] GPTQ of RepQ-ViT alone,
 * [3 + VARIANTS] reparameterization and GPTQ towards the float model of the default
 * (SQ-b) model and [4 + VARIANTS] of the everything-on model. Variants with mixed
 * precision are skipped (NAN) unless `with_mixed`. */
enum { STAGES = VARIANTS + 5 };
static int measure(repq_model *m, repq_tensor *images, int bits, int with_mixed, double secs[STAGES])
{
    int64_t dims[4], n_classes = 0;
    repq_tensor_describe(images, NULL, NULL, dims, 4);
    repq_model_get_int(m, REPQ_MODEL_NUM_CLASSES, &n_classes);
    int64_t shape[2] = {dims[0], n_classes};
    repq_tensor *logits;
    if (check(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &logits), "logits"))
        return 1;
    for (int i = 0; i < STAGES; i++)
        secs[i] = 1e30;
    int failed = 0;
    for (int run = 0; run < BEST_OF && !failed; run++) {
        double t0 = now();
        failed |= check(repq_model_forward(m, images, logits), "fp32 forward");
        double t = now() - t0;
        secs[0] = t < secs[0] ? t : secs[0];
        for (int v = 0; v < VARIANTS && !failed; v++) {
            const variant *x = &variants[v];
            if (x->mixed && !with_mixed) {
                secs[1 + v] = NAN;
                if (v == ALL_ON)
                    secs[4 + VARIANTS] = NAN;
                continue;
            }
            repq_options *o = NULL;
            repq_calib *c = NULL;
            repq_qmodel *q = NULL, *r = NULL, *g = NULL;
            failed |= check(repq_options_new(&o), "options") ||
                      check(repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, bits), "options") ||
                      check(repq_options_set_int(o, REPQ_OPT_ACT_BITS, bits), "options") ||
                      check(repq_options_set_int(o, REPQ_OPT_POST_GELU, x->post_gelu_uniform ? REPQ_POST_GELU_UNIFORM
                                                                                               : REPQ_POST_GELU_TWO_REGION),
                            "options") ||
                      check(repq_options_set_int(o, REPQ_OPT_DUAL_CLIP, x->dual_clip), "options") ||
                      check(repq_options_set_int(o, REPQ_OPT_SMOOTH, x->smooth), "options") ||
                      check(repq_options_set_int(o, REPQ_OPT_MIXED, x->mixed), "options") ||
                      check(repq_options_set_int(o, REPQ_OPT_GPTQ_TARGET, v == 0 ? REPQ_GPTQ_TARGET_QUANTIZED_INPUT
                                                                                  : REPQ_GPTQ_TARGET_FLOAT_MODEL),
                            "options");
            double t1 = now();
            failed |= failed || check(repq_calib_new(NULL, m, o, &c), "calibrator") ||
                      check(repq_calib_feed(c, images), "feed") || check(repq_calib_finish(c, &q), "calibration");
            double t2 = now();
            /* Reparameterization and GPTQ of RepQ-ViT alone; both, with the float
             * target, of the default and of the everything-on model. */
            if (v == 0 || v == DEFAULT || v == ALL_ON) {
                failed |= failed || check(repq_qmodel_reparameterize(NULL, q, &r), "reparameterization");
                double t3 = now();
                failed |= failed || check(repq_calib_reconstruct(c, r, &g), "reconstruction");
                double t4 = now();
                if (v == 0) {
                    secs[1 + VARIANTS] = t3 - t2 < secs[1 + VARIANTS] ? t3 - t2 : secs[1 + VARIANTS];
                    secs[2 + VARIANTS] = t4 - t3 < secs[2 + VARIANTS] ? t4 - t3 : secs[2 + VARIANTS];
                } else {
                    double *s = &secs[(v == DEFAULT ? 3 : 4) + VARIANTS];
                    *s = t4 - t2 < *s ? t4 - t2 : *s;
                }
            }
            secs[1 + v] = t2 - t1 < secs[1 + v] ? t2 - t1 : secs[1 + v];
            repq_qmodel_free(g);
            repq_qmodel_free(r);
            repq_qmodel_free(q);
            repq_calib_free(c);
            repq_options_free(o);
        }
    }
    repq_tensor_free(logits);
    return failed;
}

static void row(const char *model, int64_t images, int bits, const double secs[STAGES])
{
    printf("| %-24s | %3lld | W%dA%d | %7.3f |", model, (long long)images, bits, bits, secs[0]);
    for (int i = 1; i < STAGES; i++) {
        if (isnan(secs[i]))
            printf(" - |");
        else
            printf(" %7.3f (%5.1fx) |", secs[i], secs[i] / secs[0]);
    }
    printf(" %7.3f |", secs[1 + DEFAULT] + secs[3 + VARIANTS]);
    if (isnan(secs[1 + ALL_ON]))
        printf(" - |\n");
    else
        printf(" %7.3f |\n", secs[1 + ALL_ON] + secs[4 + VARIANTS]);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "data";
    const char *filter = argc > 2 ? argv[2] : NULL;
    printf("Quantization stages, seconds (best of %d) and multiples of the fp32 forward of the same images\n",
           BEST_OF);
    printf("| model | images | bits | fp32 forward |");
    for (int v = 0; v < VARIANTS; v++)
        printf(" %s%s |", v ? "calibration, " : "", variants[v].name);
    printf(" reparameterization | GPTQ reconstruction | default: reparameterization + GPTQ towards the float model |"
           " everything on: reparameterization + GPTQ towards the float model | default: the whole pipeline |"
           " everything on: the whole pipeline |\n|");
    for (int i = 0; i < STAGES + 5; i++)
        printf("---|");
    printf("\n");
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
        for (int bits = 8; bits >= 4 && !failed; bits -= 2)
            if (!(failed = measure(m, images, bits, 1, secs)))
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
            (failed = measure(m, images, 4, i == 0, secs)))
            failed = 1;
        else
            row(presets[i], 8, 4, secs);
        free(pixels);
        repq_tensor_free(images);
        repq_model_free(m);
    }
    return failed;
}
