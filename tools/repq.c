/* repq: the command-line front end of librepq (uses the public API only). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h>

#include "repq/repq.h"
#include "cli.h"

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int usage(void)
{
    fprintf(stderr,
            "usage:\n"
            "  repq info MODEL\n"
            "  repq eval MODEL --data FILE [--offset K] [--limit N] [--mode fp32|fake|int] [--json]\n"
            "                [--threads T] [--kernels KERNELS]\n"
            "  repq quantize MODEL --calib FILE [--calib-offset K] [--calib-images N]\n"
            "                --wbits W --abits A [--method repq|minmax] [--weights gptq-float|gptq|rtn]\n"
            "                [--post-gelu two-region|uniform] [--clip reference|dual] [--smooth sqb|off] [--mixed]\n"
            "                [--reference] -o OUT.repq\n"
            "  repq eval MODEL --images DIR [--labels FILE] [--mode fp32|fake|int] [--batch B] [--threads T]\n"
            "                [--limit N] [--json] [IMAGE OPTIONS]\n"
            "  repq quantize MODEL --calib DIR [--calib-images N] ... (images picked evenly over the sorted folder)\n"
            "  repq classify MODEL IMAGE... [--top K] [--mode fp32|fake|int] [--class-names FILE] [--json]\n"
            "                [IMAGE OPTIONS]\n"
            "  repq preprocess MODEL IMAGE... -o OUT [--png] [IMAGE OPTIONS]\n"
            "  repq bench [--model M | --arch PRESET] [--batch B] [--threads T] [--kernels KERNELS]\n"
            "                [--wbits W] [--abits A] [--json]\n"
            "IMAGE OPTIONS override the model's transform: --resize N (shorter side), --crop-pct P,\n"
            "--interpolation bicubic|bilinear.\n"
            "MODEL is a float safetensors file; for eval --mode fake/int it is a .repq file, and info\n"
            "takes either.\n"
            "KERNELS (integer engine, at most): auto (default), scalar, avx2, avxvnni, avx512vnni, amx.\n");
    return 2;
}

int fail(const char *what, repq_status st, const void *handle)
{
    const char *msg = repq_last_error(handle);
    fprintf(stderr, "repq: %s: %s%s%s\n", what, repq_status_string(st), *msg ? ": " : "", msg);
    return 1;
}

static int parse_args(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    a->inputs = (const char **)calloc((size_t)argc + 1, sizeof *a->inputs);
    if (!a->inputs)
        return -1;
    a->limit = 0;
    a->calib_images = 32;
    a->wbits = 8;
    a->abits = 8;
    a->batch = 8;
    a->threads = 1;
    a->top = 5;
    for (int i = 0; i < argc; i++) {
        const char *k = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        struct { const char *name; const char **dst; } strs[] = {
            {"--data", &a->data}, {"--mode", &a->mode}, {"--calib", &a->calib},
            {"--method", &a->method}, {"-o", &a->out}, {"--model", &a->model}, {"--arch", &a->arch},
            {"--kernels", &a->kernels}, {"--weights", &a->weights}, {"--post-gelu", &a->post_gelu},
            {"--clip", &a->clip},
            {"--smooth", &a->smooth},
            {"--images", &a->images}, {"--labels", &a->labels}, {"--class-names", &a->class_names},
            {"--interpolation", &a->interpolation}, {"--crop-pct", &a->crop_pct},
        };
        struct { const char *name; long long *dst; } nums[] = {
            {"--offset", &a->offset}, {"--limit", &a->limit}, {"--calib-offset", &a->calib_offset},
            {"--calib-images", &a->calib_images}, {"--wbits", &a->wbits}, {"--abits", &a->abits},
            {"--batch", &a->batch}, {"--threads", &a->threads}, {"--top", &a->top},
            {"--resize", &a->resize},
        };
        int matched = 0;
        if (strcmp(k, "--json") == 0 || strcmp(k, "--png") == 0) {
            *(k[2] == 'j' ? &a->json : &a->png) = 1;
            continue;
        }
        if (strcmp(k, "--mixed") == 0 || strcmp(k, "--reference") == 0) {
            *(k[2] == 'm' ? &a->mixed : &a->reference) = 1;
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
        if (k[0] == '-' && k[1] != '\0')
            return fprintf(stderr, "repq: unexpected argument '%s'\n", k), -1;
        if (!a->positional)
            a->positional = k;
        else
            a->inputs[a->num_inputs++] = k;
    }
    return 0;
}

static const char *const kernel_names[] = {"auto", "scalar", "avx2", "avxvnni", "avx512vnni", "amx"};

/* --kernels NAME as a repq_kernels value; -1 for an unknown name. */
static int64_t kernels_arg(const args *a)
{
    if (!a->kernels)
        return REPQ_KERNELS_AUTO;
    for (size_t i = 0; i < sizeof kernel_names / sizeof kernel_names[0]; i++)
        if (strcmp(a->kernels, kernel_names[i]) == 0)
            return (int64_t)i;
    return -1;
}

static const char *kernels_name(const repq_session *s)
{
    int64_t k = 0;
    if (repq_session_get_int(s, REPQ_SESSION_KERNELS, &k) || k < 0 ||
        k >= (int64_t)(sizeof kernel_names / sizeof kernel_names[0]))
        return "unknown";
    return kernel_names[k];
}

/* Session options from the command line: threads and kernels. */
repq_status session_options(const args *a, repq_options *o)
{
    repq_status st = repq_options_set_int(o, REPQ_OPT_THREADS, a->threads);
    return st ? st : repq_options_set_int(o, REPQ_OPT_KERNELS, kernels_arg(a));
}

typedef struct info_row {
    const char *label;
    int32_t attr;
} info_row;

/* Keys both a float model and a qmodel answer. */
static const info_row arch_rows[] = {
    {"image size", REPQ_MODEL_IMG_SIZE}, {"patch size", REPQ_MODEL_PATCH_SIZE},
    {"channels", REPQ_MODEL_IN_CHANS}, {"classes", REPQ_MODEL_NUM_CLASSES},
    {"embed dim", REPQ_MODEL_EMBED_DIM}, {"depth", REPQ_MODEL_DEPTH},
    {"heads", REPQ_MODEL_NUM_HEADS}, {"mlp hidden", REPQ_MODEL_MLP_HIDDEN},
    {"tokens", REPQ_MODEL_NUM_TOKENS}, {"tensors", REPQ_MODEL_NUM_TENSORS},
    {"parameters", REPQ_MODEL_NUM_PARAMS}, {"FLOPs per image", REPQ_MODEL_FLOPS_PER_IMAGE},
};

static void print_rows(const info_row *rows, size_t n, repq_status (*get)(const void *, int32_t, int64_t *),
                       const void *handle)
{
    for (size_t i = 0; i < n; i++) {
        int64_t v = 0;
        if (get(handle, rows[i].attr, &v) == REPQ_OK)
            printf("  %-22s %lld\n", rows[i].label, (long long)v);
    }
}

static repq_status model_attr(const void *m, int32_t attr, int64_t *v)
{
    return repq_model_get_int(m, (repq_model_attr)attr, v);
}

static repq_status qmodel_attr(const void *q, int32_t attr, int64_t *v)
{
    return repq_qmodel_get_int(q, attr, v);
}

/* The family and, for a network of stages, each stage's blocks, widths and windows. */
static void print_stages(repq_status (*get)(const void *, int32_t, int64_t *),
                         repq_status (*stage)(const void *, int32_t, int32_t, int64_t *), const void *handle)
{
    int64_t family = 0, stages = 1;
    get(handle, REPQ_MODEL_FAMILY, &family);
    get(handle, REPQ_MODEL_NUM_STAGES, &stages);
    printf("  %-22s %s\n", "family", family == REPQ_FAMILY_SWIN ? "swin" : "vit");
    if (family != REPQ_FAMILY_SWIN)
        return;
    printf("  %-22s %lld\n", "stages", (long long)stages);
    printf("  %8s %6s %6s %6s %7s %7s %7s\n", "stage", "depth", "dim", "heads", "hidden", "tokens", "window");
    const int32_t attrs[6] = {REPQ_STAGE_DEPTH, REPQ_STAGE_EMBED_DIM, REPQ_STAGE_NUM_HEADS, REPQ_STAGE_MLP_HIDDEN,
                              REPQ_STAGE_NUM_TOKENS, REPQ_STAGE_WINDOW_SIZE};
    for (int32_t i = 0; i < stages; i++) {
        int64_t v[6] = {0};
        for (int k = 0; k < 6; k++)
            stage(handle, i, attrs[k], &v[k]);
        printf("  %8d %6lld %6lld %6lld %7lld %7lld %7lld\n", (int)i, (long long)v[0], (long long)v[1],
               (long long)v[2], (long long)v[3], (long long)v[4], (long long)v[5]);
    }
}

static repq_status model_stage(const void *m, int32_t stage, int32_t attr, int64_t *v)
{
    return repq_model_get_stage_int(m, stage, (repq_stage_attr)attr, v);
}

static repq_status qmodel_stage(const void *q, int32_t stage, int32_t attr, int64_t *v)
{
    return repq_qmodel_get_stage_int(q, stage, (repq_stage_attr)attr, v);
}

/* Each linear layer's weight and input widths, and the averages
 * weighted by the layers' weight counts (what the widths cost in memory and, per
 * multiply, in arithmetic). */
static void print_layer_widths(const repq_qmodel *q)
{
    int64_t layers = 0;
    repq_qmodel_get_int(q, REPQ_QMODEL_NUM_LAYERS, &layers);
    printf("  %-32s %8s %8s %12s\n", "layer", "w bits", "in bits", "weights");
    double weights = 0.0, wsum = 0.0, asum = 0.0;
    for (int32_t i = 0; i < layers; i++) {
        const char *name = "?";
        int64_t wb = 0, ab = 0, out = 0, in = 0;
        repq_qmodel_get_layer_name(q, i, &name);
        repq_qmodel_get_layer_int(q, i, REPQ_LAYER_WEIGHT_BITS, &wb);
        repq_qmodel_get_layer_int(q, i, REPQ_LAYER_INPUT_BITS, &ab);
        repq_qmodel_get_layer_int(q, i, REPQ_LAYER_OUT_FEATURES, &out);
        repq_qmodel_get_layer_int(q, i, REPQ_LAYER_IN_FEATURES, &in);
        const double n = (double)out * (double)in;
        weights += n;
        wsum += n * (double)wb;
        asum += n * (double)ab;
        printf("  %-32s %8lld %8lld %12lld\n", name, (long long)wb, (long long)ab, (long long)(out * in));
    }
    if (weights > 0.0)
        printf("  %-22s %.3f weight bits, %.3f input bits (averages weighted by weights)\n", "mixed widths",
               wsum / weights, asum / weights);
}

/* Every quantized activation's width, and the average weighted by
 * the values each holds per image (the measure the activation budget is spent in),
 * without the patch embedding's input (activation 0), which keeps its own width. */
static void print_activation_widths(const repq_qmodel *q)
{
    static const char *const kinds[] = {"?", "uniform", "channels", "log", "two-region"};
    int64_t count = 0;
    repq_qmodel_get_int(q, REPQ_QMODEL_NUM_ACTIVATIONS, &count);
    printf("  %-40s %8s %12s  %s\n", "activation", "bits", "values", "kind");
    double values = 0.0, bits = 0.0;
    for (int32_t i = 0; i < count; i++) {
        const char *name = "?";
        int64_t b = 0, v = 0, kind = 0;
        repq_qmodel_get_activation_name(q, i, &name);
        repq_qmodel_get_activation_int(q, i, REPQ_ACTIVATION_BITS, &b);
        repq_qmodel_get_activation_int(q, i, REPQ_ACTIVATION_VALUES, &v);
        repq_qmodel_get_activation_int(q, i, REPQ_ACTIVATION_KIND, &kind);
        if (i > 0) {
            values += (double)v;
            bits += (double)v * (double)b;
        }
        printf("  %-40s %8lld %12lld  %s\n", name, (long long)b, (long long)v,
               kinds[kind >= 1 && kind <= 4 ? kind : 0]);
    }
    if (values > 0.0)
        printf("  %-22s %.3f activation bits (average weighted by values per image, patch input aside)\n", "mixed widths",
               bits / values);
}

static void print_qmodel(const char *path, const repq_qmodel *q)
{
    int64_t method = 0;
    repq_qmodel_get_int(q, REPQ_QMODEL_METHOD, &method);
    printf("quantized model: %s\n  %-22s %s\n", path, "method", method == REPQ_METHOD_MINMAX ? "minmax" : "repq");
    const info_row rows[] = {{"weight bits", REPQ_QMODEL_WEIGHT_BITS}, {"activation bits", REPQ_QMODEL_ACT_BITS},
                             {"reparameterized", REPQ_QMODEL_REPARAMETERIZED},
                             {"two-region GELU blocks", REPQ_QMODEL_TWO_REGION_BLOCKS}};
    print_rows(rows, sizeof rows / sizeof rows[0], qmodel_attr, q);
    print_rows(arch_rows, sizeof arch_rows / sizeof arch_rows[0], qmodel_attr, q);
    print_stages(qmodel_attr, qmodel_stage, q);
    int64_t mixed = 0;
    repq_qmodel_get_int(q, REPQ_QMODEL_MIXED_WIDTHS, &mixed);
    if (mixed) {
        print_layer_widths(q);
        print_activation_widths(q);
    }
}

/* A float model, or a quantized one (.repq); a file that is neither gets the float
 * loader's message, or the quantized loader's for a .repq name. */
static int cmd_info(repq_context *ctx, const args *a)
{
    if (!a->positional)
        return usage();
    const size_t len = strlen(a->positional);
    const bool repq_name = len >= 5 && strcmp(a->positional + len - 5, ".repq") == 0;
    repq_qmodel *q;
    repq_status st;
    if (repq_name) {
        if ((st = repq_qmodel_load(ctx, a->positional, &q)))
            return fail("loading the quantized model", st, ctx);
        print_qmodel(a->positional, q);
        repq_qmodel_free(q);
        return 0;
    }
    repq_model *m;
    if ((st = repq_model_load(ctx, a->positional, NULL, &m))) {
        char why[512];
        snprintf(why, sizeof why, "%s", repq_last_error(ctx));
        if (repq_qmodel_load(ctx, a->positional, &q) == REPQ_OK) {
            print_qmodel(a->positional, q);
            repq_qmodel_free(q);
            return 0;
        }
        fprintf(stderr, "repq: loading the model: %s%s%s\n", repq_status_string(st), *why ? ": " : "", why);
        return 1;
    }
    printf("model: %s\n", a->positional);
    print_rows(arch_rows, sizeof arch_rows / sizeof arch_rows[0], model_attr, m);
    print_stages(model_attr, model_stage, m);
    repq_model_free(m);
    return 0;
}

/* user: the stage's name. */
void progress_bar(void *user, int32_t done, int32_t total)
{
    int width = 30, filled = total > 0 ? (int)((int64_t)width * done / total) : width;
    fprintf(stderr, "\r%-14s [%.*s%*s] %d/%d", (const char *)user, filled, "##############################",
            width - filled, "", (int)done, (int)total);
    if (done == total)
        fputc('\n', stderr);
}

static double now_ms(void) { return 1e3 * now_seconds(); }

static int cmd_quantize(repq_context *ctx, const args *a)
{
    if (!a->positional || !a->calib || !a->out)
        return usage();
    int method = REPQ_METHOD_REPQ;
    if (a->method && strcmp(a->method, "minmax") == 0)
        method = REPQ_METHOD_MINMAX;
    else if (a->method && strcmp(a->method, "repq") != 0)
        return fprintf(stderr, "repq: --method is repq or minmax\n"), 2;
    /* The defaults are the best combination measured (docs/accuracy.md); --reference is
     * the RepQ-ViT reference's pipeline and --method minmax the naive baseline, with
     * neither smoothing nor reconstruction unless asked for. Explicit flags win. */
    const bool plain = a->reference || method == REPQ_METHOD_MINMAX;
    const char *weights = a->weights ? a->weights : plain ? "rtn" : "gptq-float";
    const char *post_gelu_name = a->post_gelu ? a->post_gelu : a->reference ? "uniform" : "two-region";
    const char *smooth_name = a->smooth ? a->smooth : plain ? "off" : "sqb";
    const bool gptq_float = strcmp(weights, "gptq-float") == 0;
    const bool gptq = gptq_float || strcmp(weights, "gptq") == 0;
    if (!gptq && strcmp(weights, "rtn") != 0)
        return fprintf(stderr, "repq: --weights is gptq-float, gptq or rtn\n"), 2;
    int post_gelu = REPQ_POST_GELU_TWO_REGION;
    if (strcmp(post_gelu_name, "uniform") == 0)
        post_gelu = REPQ_POST_GELU_UNIFORM;
    else if (strcmp(post_gelu_name, "two-region") != 0)
        return fprintf(stderr, "repq: --post-gelu is two-region or uniform\n"), 2;
    const bool dual_clip = a->clip && strcmp(a->clip, "dual") == 0;
    if (a->clip && !dual_clip && strcmp(a->clip, "reference") != 0)
        return fprintf(stderr, "repq: --clip is reference or dual\n"), 2;
    int smooth = REPQ_SMOOTH_OFF;
    if (strcmp(smooth_name, "sqb") == 0)
        smooth = REPQ_SMOOTH_SQB;
    else if (strcmp(smooth_name, "off") != 0)
        return fprintf(stderr, "repq: --smooth is sqb or off\n"), 2;
    repq_model *m = NULL;
    repq_tensor *images = NULL, *labels = NULL;
    repq_options *o = NULL;
    repq_calib *c = NULL;
    repq_qmodel *q = NULL, *r = NULL, *g = NULL;
    int rc = 1;
    repq_status st;
    if ((st = repq_model_load(ctx, a->positional, NULL, &m))) {
        rc = fail("loading the model", st, ctx);
        goto out;
    }
    struct stat calib_stat;
    if (stat(a->calib, &calib_stat) == 0 && S_ISDIR(calib_stat.st_mode)) {
        if (cli_calibration_images(ctx, a, m, &images))
            goto out;
    } else if ((st = repq_cifar_load(ctx, a->calib, a->calib_offset, a->calib_images, &images, &labels))) {
        rc = fail("reading the calibration images", st, ctx);
        goto out;
    }
    if ((st = repq_options_new(&o)) || (st = repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, a->wbits)) ||
        (st = repq_options_set_int(o, REPQ_OPT_ACT_BITS, a->abits)) ||
        (st = repq_options_set_int(o, REPQ_OPT_METHOD, method)) ||
        (st = repq_options_set_int(o, REPQ_OPT_POST_GELU, post_gelu)) ||
        (st = repq_options_set_int(o, REPQ_OPT_DUAL_CLIP, dual_clip)) ||
        (st = repq_options_set_int(o, REPQ_OPT_SMOOTH, smooth)) ||
        (st = repq_options_set_int(o, REPQ_OPT_MIXED, a->mixed)) ||
        (st = repq_options_set_int(o, REPQ_OPT_GPTQ_TARGET,
                                   gptq_float ? REPQ_GPTQ_TARGET_FLOAT_MODEL : REPQ_GPTQ_TARGET_QUANTIZED_INPUT))) {
        rc = fail("setting options", st, o);
        goto out;
    }
    if ((st = repq_calib_new(ctx, m, o, &c))) {
        rc = fail("creating the calibrator", st, ctx);
        goto out;
    }
    if (isatty(fileno(stderr)))
        repq_calib_set_progress(c, progress_bar, "calibrating");
    double t0 = now_ms();
    if ((st = repq_calib_feed(c, images)) || (st = repq_calib_finish(c, &q))) {
        rc = fail("calibrating", st, c);
        goto out;
    }
    double t1 = now_ms();
    if ((st = repq_qmodel_reparameterize(ctx, q, &r))) {
        rc = fail("reparameterizing", st, ctx);
        goto out;
    }
    double t2 = now_ms();
    if (gptq) {
        if (isatty(fileno(stderr)))
            repq_calib_set_progress(c, progress_bar, "reconstructing");
        if ((st = repq_calib_reconstruct(c, r, &g))) {
            rc = fail("reconstructing the weights", st, c);
            goto out;
        }
    }
    double t3 = now_ms();
    if ((st = repq_qmodel_save(g ? g : r, a->out))) {
        rc = fail("saving", st, g ? g : r);
        goto out;
    }
    int64_t n = 0;
    repq_tensor_describe(images, NULL, NULL, &n, 1);
    printf("quantized W%lldA%lld%s (%s%s%s) on %lld calibration images: calibration %.0f ms, "
           "reparameterization %.0f ms",
           a->wbits, a->abits, a->mixed ? " mixed (average widths)" : "",
           method == REPQ_METHOD_MINMAX         ? "minmax"
           : post_gelu == REPQ_POST_GELU_UNIFORM ? "repq, post-GELU single grid"
                                                 : "repq, post-GELU two-region",
           dual_clip ? ", post-LayerNorm dual clipping" : "",
           smooth == REPQ_SMOOTH_SQB ? ", SQ-b" : "", (long long)n, t1 - t0, t2 - t1);
    if (gptq)
        printf(", GPTQ weight reconstruction%s %.0f ms", gptq_float ? " towards the float model" : "", t3 - t2);
    printf(" -> %s\n", a->out);
    rc = 0;
out:
    repq_qmodel_free(q);
    repq_qmodel_free(r);
    repq_qmodel_free(g);
    repq_calib_free(c);
    repq_options_free(o);
    repq_tensor_free(images);
    repq_tensor_free(labels);
    repq_model_free(m);
    return rc;
}

repq_status runner_open(repq_context *ctx, const args *a, const char *mode, int32_t max_batch, runner *r)
{
    memset(r, 0, sizeof *r);
    repq_status st;
    if (strcmp(mode, "fp32") == 0) {
        if ((st = repq_model_load(ctx, a->positional, NULL, &r->model)))
            return fail("loading the model", st, ctx), st;
        repq_model_get_int(r->model, REPQ_MODEL_NUM_CLASSES, &r->classes);
        return REPQ_OK;
    }
    if ((st = repq_qmodel_load(ctx, a->positional, &r->qmodel)))
        return fail("loading the quantized model", st, ctx), st;
    repq_qmodel_get_int(r->qmodel, REPQ_MODEL_NUM_CLASSES, &r->classes);
    if (strcmp(mode, "int") != 0)
        return REPQ_OK;
    repq_options *o = NULL;
    if ((st = repq_options_new(&o)) || (st = session_options(a, o)))
        fail("setting options (--threads, --kernels)", st, o);
    else if ((st = repq_session_new(ctx, r->qmodel, o, max_batch, &r->session)))
        fail("creating the session", st, ctx);
    else if (isatty(STDERR_FILENO))
        fprintf(stderr, "repq: integer kernels: %s\n", kernels_name(r->session));
    repq_options_free(o);
    if (st)
        runner_close(r);
    return st;
}

repq_status runner_run(runner *r, repq_tensor *images, repq_tensor *logits)
{
    repq_status st = REPQ_OK;
    if (r->model && (st = repq_model_forward(r->model, images, logits)))
        fail("running the model", st, r->model);
    else if (r->session && (st = repq_session_run(r->session, images, logits)))
        fail("running the session", st, r->session);
    else if (r->qmodel && !r->session && (st = repq_qmodel_forward(r->qmodel, REPQ_FORWARD_FAKE_QUANT, images, logits)))
        fail("running the fake-quant model", st, r->qmodel);
    return st;
}

void runner_close(runner *r)
{
    repq_session_free(r->session);
    repq_qmodel_free(r->qmodel);
    repq_model_free(r->model);
    memset(r, 0, sizeof *r);
}

/* Runs the model the mode names over all images, reporting any failure itself. */
static repq_status run_mode(repq_context *ctx, const args *a, const char *mode, repq_tensor *images,
                            repq_tensor **out_logits, double *out_seconds)
{
    int64_t n = 0;
    repq_tensor_describe(images, NULL, NULL, &n, 1);
    runner r;
    repq_status st = runner_open(ctx, a, mode, (int32_t)n, &r);
    if (st)
        return st;
    int64_t shape[2] = {n, r.classes};
    if ((st = repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, shape, NULL, out_logits))) {
        fail("allocating logits", st, ctx);
    } else {
        double t0 = now_seconds();
        st = runner_run(&r, images, *out_logits);
        *out_seconds = now_seconds() - t0;
    }
    runner_close(&r);
    return st;
}

static int cmd_eval(repq_context *ctx, const args *a)
{
    const char *mode = a->mode ? a->mode : "fp32";
    if (strcmp(mode, "fp32") != 0 && strcmp(mode, "fake") != 0 && strcmp(mode, "int") != 0)
        return fprintf(stderr, "repq: --mode is fp32, fake or int\n"), 2;
    if (a->positional && a->images && !a->data)
        return cmd_eval_images(ctx, a, mode);
    if (!a->positional || !a->data || a->images)
        return usage();
    repq_tensor *images = NULL, *labels = NULL, *logits = NULL;
    repq_status st = repq_cifar_load(ctx, a->data, a->offset, a->limit, &images, &labels);
    if (st)
        return fail("reading the images", st, ctx);
    int64_t n = 0;
    repq_tensor_describe(labels, NULL, NULL, &n, 1);
    double secs = 0.0, top1 = 0.0;
    st = run_mode(ctx, a, mode, images, &logits, &secs);
    if (st == REPQ_OK) {
        repq_top1_compute(logits, labels, &top1);
        printf("mode %s: top-1 %.2f%% on %lld images, %.1f images/s\n", mode, 100.0 * top1, (long long)n,
               (double)n / secs);
        if (a->json)
            printf("{\"mode\": \"%s\", \"top1\": %.6f, \"images\": %lld, \"seconds\": %.6f, "
                   "\"images_per_s\": %.3f}\n",
                   mode, top1, (long long)n, secs, (double)n / secs);
    }
    repq_tensor_free(images);
    repq_tensor_free(labels);
    repq_tensor_free(logits);
    return st ? 1 : 0;
}

/* Deterministic pseudo-random pixels for benchmarks (the speed does not depend on them). */
static void fill_pixels(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(seed >> 24);
    }
}

/* Runs `run` for at least a second (and twice); returns images/s. */
static repq_status time_runs(repq_status (*run)(void *, repq_tensor *, repq_tensor *), void *h,
                             repq_tensor *images, repq_tensor *logits, int64_t batch, double *out_ips)
{
    repq_status st = run(h, images, logits); /* warm-up */
    if (st)
        return st;
    double t0 = now_seconds(), elapsed;
    long runs = 0;
    do {
        if ((st = run(h, images, logits)))
            return st;
        runs++;
        elapsed = now_seconds() - t0;
    } while (elapsed < 1.0 || runs < 2);
    *out_ips = (double)(runs * batch) / elapsed;
    return REPQ_OK;
}

static repq_status run_float(void *h, repq_tensor *images, repq_tensor *logits)
{
    return repq_model_forward(h, images, logits);
}

static repq_status run_int(void *h, repq_tensor *images, repq_tensor *logits)
{
    return repq_session_run(h, images, logits);
}

static int cmd_bench(repq_context *ctx, const args *a)
{
    const char *arch = a->arch ? a->arch : "deit_small_patch16_224";
    if (a->batch < 1 || a->batch > 1024 || a->threads < 1 || a->threads > 256)
        return fprintf(stderr, "repq: --batch must be in 1..1024 and --threads in 1..256\n"), 2;
    repq_model *m = NULL;
    repq_options *o = NULL;
    repq_calib *c = NULL;
    repq_qmodel *q = NULL, *r = NULL;
    repq_session *s = NULL;
    repq_tensor *images = NULL, *logits = NULL;
    repq_status st;
    int rc = 1;
    st = a->model ? repq_model_load(ctx, a->model, NULL, &m) : repq_model_create_random(ctx, arch, 0, 1, &m);
    if (st) {
        rc = fail("creating the model", st, ctx);
        goto out;
    }
    int64_t size = 0, chans = 0, classes = 0;
    repq_model_get_int(m, REPQ_MODEL_IMG_SIZE, &size);
    repq_model_get_int(m, REPQ_MODEL_IN_CHANS, &chans);
    repq_model_get_int(m, REPQ_MODEL_NUM_CLASSES, &classes);
    int64_t ishape[4] = {a->batch, chans, size, size}, lshape[2] = {a->batch, classes};
    if ((st = repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, ishape, NULL, &images)) ||
        (st = repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, lshape, NULL, &logits))) {
        rc = fail("allocating tensors", st, ctx);
        goto out;
    }
    size_t nbytes = 0;
    repq_tensor_nbytes(images, &nbytes);
    uint8_t *pixels = malloc(nbytes);
    if (!pixels)
        goto out;
    fill_pixels(pixels, nbytes, 7);
    repq_tensor_write(images, pixels, nbytes);
    free(pixels);
    if ((st = repq_options_new(&o)) || (st = repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, a->wbits)) ||
        (st = repq_options_set_int(o, REPQ_OPT_ACT_BITS, a->abits)) || (st = session_options(a, o))) {
        rc = fail("setting options", st, o);
        goto out;
    }
    if ((st = repq_calib_new(ctx, m, o, &c)) || (st = repq_calib_feed(c, images)) ||
        (st = repq_calib_finish(c, &q)) || (st = repq_qmodel_reparameterize(ctx, q, &r)) ||
        (st = repq_session_new(ctx, r, o, (int32_t)a->batch, &s))) {
        rc = fail("quantizing", st, c && !q ? (const void *)c : (const void *)ctx);
        goto out;
    }
    openblas_set_num_threads((int)a->threads);
    double fp32 = 0, int8 = 0;
    if ((st = time_runs(run_float, m, images, logits, a->batch, &fp32))) {
        rc = fail("running fp32", st, m);
        goto out;
    }
    if ((st = time_runs(run_int, s, images, logits, a->batch, &int8))) {
        rc = fail("running int", st, s);
        goto out;
    }
    const char *name = a->model ? a->model : arch;
    const char *kernels = kernels_name(s);
    printf("%-28s %5s %7s %10s %14s %14s %8s\n", "model", "batch", "threads", "kernels", "fp32 images/s",
           "int images/s", "ratio");
    printf("%-28s %5lld %7lld %10s %14.1f %14.1f %7.2fx\n", name, a->batch, a->threads, kernels, fp32, int8,
           int8 / fp32);
    if (a->json)
        printf("{\"model\": \"%s\", \"batch\": %lld, \"threads\": %lld, \"wbits\": %lld, \"abits\": %lld, "
               "\"kernels\": \"%s\", \"fp32_images_per_s\": %.3f, \"int_images_per_s\": %.3f, \"ratio\": %.4f}\n",
               name, a->batch, a->threads, a->wbits, a->abits, kernels, fp32, int8, int8 / fp32);
    rc = 0;
out:
    repq_session_free(s);
    repq_qmodel_free(r);
    repq_qmodel_free(q);
    repq_calib_free(c);
    repq_options_free(o);
    repq_tensor_free(images);
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
    if (kernels_arg(&a) < 0)
        return fprintf(stderr, "repq: unknown --kernels '%s' (auto, scalar, avx2, avxvnni, avx512vnni, amx)\n",
                       a.kernels), 2;
    if (a.num_inputs > 0 && strcmp(argv[1], "classify") != 0 && strcmp(argv[1], "preprocess") != 0)
        return fprintf(stderr, "repq: unexpected argument '%s'\n", a.inputs[0]), 2;
    repq_context *ctx;
    if (repq_context_new(&ctx) != REPQ_OK)
        return 1;
    int rc;
    if (strcmp(argv[1], "info") == 0)
        rc = cmd_info(ctx, &a);
    else if (strcmp(argv[1], "eval") == 0)
        rc = cmd_eval(ctx, &a);
    else if (strcmp(argv[1], "quantize") == 0)
        rc = cmd_quantize(ctx, &a);
    else if (strcmp(argv[1], "bench") == 0)
        rc = cmd_bench(ctx, &a);
    else if (strcmp(argv[1], "classify") == 0)
        rc = cmd_classify(ctx, &a);
    else if (strcmp(argv[1], "preprocess") == 0)
        rc = cmd_preprocess(ctx, &a);
    else
        rc = usage();
    repq_context_free(ctx);
    free(a.inputs);
    return rc;
}
