/* repq: the command-line front end of librepq (uses the public API only). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "repq/repq.h"

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int usage(void)
{
    fprintf(stderr,
            "usage:\n"
            "  repq info MODEL\n"
            "  repq eval MODEL --data FILE [--offset K] [--limit N] [--mode fp32|fake|int] [--json]\n"
            "  repq quantize MODEL --calib FILE [--calib-offset K] [--calib-images N]\n"
            "                --wbits W --abits A [--method repq|minmax] -o OUT.repq\n"
            "  repq bench [--model M | --arch PRESET] [--batch B] [--threads T] [--json]\n"
            "MODEL is a float safetensors file; for eval --mode fake/int it is a .repq file.\n");
    return 2;
}

static int fail(const char *what, repq_status st, const void *handle)
{
    const char *msg = repq_last_error(handle);
    fprintf(stderr, "repq: %s: %s%s%s\n", what, repq_status_string(st), *msg ? ": " : "", msg);
    return 1;
}

/* Arguments of the form --name VALUE; flags without value are listed in `flags`. */
typedef struct args {
    const char *positional;
    const char *data, *mode, *calib, *method, *out, *model, *arch;
    long long offset, limit, calib_offset, calib_images, wbits, abits, batch, threads;
    int json;
} args;

static int parse_args(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    a->limit = 0;
    a->calib_images = 32;
    a->wbits = 8;
    a->abits = 8;
    a->batch = 8;
    a->threads = 1;
    for (int i = 0; i < argc; i++) {
        const char *k = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        struct { const char *name; const char **dst; } strs[] = {
            {"--data", &a->data}, {"--mode", &a->mode}, {"--calib", &a->calib},
            {"--method", &a->method}, {"-o", &a->out}, {"--model", &a->model}, {"--arch", &a->arch},
        };
        struct { const char *name; long long *dst; } nums[] = {
            {"--offset", &a->offset}, {"--limit", &a->limit}, {"--calib-offset", &a->calib_offset},
            {"--calib-images", &a->calib_images}, {"--wbits", &a->wbits}, {"--abits", &a->abits},
            {"--batch", &a->batch}, {"--threads", &a->threads},
        };
        int matched = 0;
        if (strcmp(k, "--json") == 0) {
            a->json = 1;
            continue;
        }
        for (size_t j = 0; j < sizeof strs / sizeof strs[0] && !matched; j++)
            if (strcmp(k, strs[j].name) == 0) {
                if (!v)
                    return fprintf(stderr, "repq: %s needs a value\n", k), -1;
                *strs[j].dst = v;
                matched = 1;
            }
        for (size_t j = 0; j < sizeof nums / sizeof nums[0] && !matched; j++)
            if (strcmp(k, nums[j].name) == 0) {
                char *end;
                if (!v || (*nums[j].dst = strtoll(v, &end, 10), *end != '\0' || end == v))
                    return fprintf(stderr, "repq: %s needs an integer\n", k), -1;
                matched = 1;
            }
        if (matched) {
            i++;
            continue;
        }
        if (k[0] == '-' || a->positional)
            return fprintf(stderr, "repq: unexpected argument '%s'\n", k), -1;
        a->positional = k;
    }
    return 0;
}

static int cmd_info(repq_context *ctx, const args *a)
{
    if (!a->positional)
        return usage();
    repq_model *m;
    repq_status st = repq_model_load(ctx, a->positional, NULL, &m);
    if (st)
        return fail("loading the model", st, ctx);
    struct { const char *label; repq_model_attr attr; } rows[] = {
        {"image size", REPQ_MODEL_IMG_SIZE}, {"patch size", REPQ_MODEL_PATCH_SIZE},
        {"channels", REPQ_MODEL_IN_CHANS}, {"classes", REPQ_MODEL_NUM_CLASSES},
        {"embed dim", REPQ_MODEL_EMBED_DIM}, {"depth", REPQ_MODEL_DEPTH},
        {"heads", REPQ_MODEL_NUM_HEADS}, {"mlp hidden", REPQ_MODEL_MLP_HIDDEN},
        {"tokens", REPQ_MODEL_NUM_TOKENS}, {"tensors", REPQ_MODEL_NUM_TENSORS},
        {"parameters", REPQ_MODEL_NUM_PARAMS}, {"FLOPs per image", REPQ_MODEL_FLOPS_PER_IMAGE},
    };
    printf("model: %s\n", a->positional);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t v = 0;
        repq_model_get_int(m, rows[i].attr, &v);
        printf("  %-16s %lld\n", rows[i].label, (long long)v);
    }
    repq_model_free(m);
    return 0;
}

static int cmd_eval(repq_context *ctx, const args *a)
{
    if (!a->positional || !a->data)
        return usage();
    const char *mode = a->mode ? a->mode : "fp32";
    repq_tensor *images = NULL, *labels = NULL, *logits = NULL;
    repq_model *m = NULL;
    repq_status st = repq_cifar_load(ctx, a->data, a->offset, a->limit, &images, &labels);
    if (st)
        return fail("reading the images", st, ctx);
    int rc = 1;
    int64_t n, classes = 0;
    repq_tensor_describe(labels, NULL, NULL, &n, 1);
    if (strcmp(mode, "fp32") != 0) {
        fprintf(stderr, "repq: --mode %s needs a quantized model (not yet available)\n", mode);
        goto out;
    }
    if ((st = repq_model_load(ctx, a->positional, NULL, &m))) {
        rc = fail("loading the model", st, ctx);
        goto out;
    }
    repq_model_get_int(m, REPQ_MODEL_NUM_CLASSES, &classes);
    int64_t shape[2] = {n, classes};
    if ((st = repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, shape, NULL, &logits))) {
        rc = fail("allocating logits", st, ctx);
        goto out;
    }
    double t0 = now_seconds();
    st = repq_model_forward(m, images, logits);
    double secs = now_seconds() - t0;
    if (st) {
        rc = fail("running the model", st, m);
        goto out;
    }
    double top1;
    repq_top1_compute(logits, labels, &top1);
    printf("mode %s: top-1 %.2f%% on %lld images, %.1f images/s\n", mode, 100.0 * top1,
           (long long)n, (double)n / secs);
    if (a->json)
        printf("{\"mode\": \"%s\", \"top1\": %.6f, \"images\": %lld, \"seconds\": %.6f, "
               "\"images_per_s\": %.3f}\n",
               mode, top1, (long long)n, secs, (double)n / secs);
    rc = 0;
out:
    repq_tensor_free(images);
    repq_tensor_free(labels);
    repq_tensor_free(logits);
    repq_model_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    args a;
    if (parse_args(argc - 2, argv + 2, &a) != 0)
        return 2;
    repq_context *ctx;
    if (repq_context_new(&ctx) != REPQ_OK)
        return 1;
    int rc;
    if (strcmp(argv[1], "info") == 0)
        rc = cmd_info(ctx, &a);
    else if (strcmp(argv[1], "eval") == 0)
        rc = cmd_eval(ctx, &a);
    else
        rc = usage();
    repq_context_free(ctx);
    return rc;
}
