/* The ablation study of docs/accuracy.md (not a test: about a minute per row and
 * calibration set on one core). For one configuration, calibrates the bundled model on
 * disjoint sets of 32 calibration images, reparameterizes (and reconstructs with GPTQ if
 * asked), and evaluates the fake-quant model on the 5,000 test images: top-1, the logit
 * mean squared error against fp32 (summed over the 10 logits, averaged over images) and
 * the share of predictions equal to fp32's, per set, then the mean and standard
 * deviation. Sets run on `threads` threads.
 *
 *   ablation WBITS ABITS FLAGS FIRST_SET LAST_SET THREADS
 *
 * FLAGS: "-" or a comma list of dual (REPQ_OPT_DUAL_CLIP), sqb (REPQ_OPT_SMOOTH), mixed
 * (REPQ_OPT_MIXED), gptq (repq_calib_reconstruct), gptq-float (the same with
 * REPQ_GPTQ_TARGET_FLOAT_MODEL), uniform-gelu (REPQ_POST_GELU_UNIFORM). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repq/repq.h"

#define MODEL_PATH REPQ_TEST_DATA "/vit_tiny_cifar10.safetensors"
#define CALIB_IMAGES REPQ_TEST_DATA "/cifar10_calib.bin"
#define TEST_IMAGES REPQ_TEST_DATA "/cifar10_test_dev.bin"
#define SET_SIZE 32
#define MAX_SETS 64

typedef struct config {
    int wbits, abits, dual, sqb, mixed, gptq, gptq_float, uniform_gelu;
} config;

typedef struct row {
    double top1, mse, same;
    int done;
} row;

typedef struct study {
    config cfg;
    repq_model *model;
    repq_tensor *test, *labels;
    const float *fp32;
    int64_t n;
    int first, last, next;
    row rows[MAX_SETS];
    pthread_mutex_t lock;
} study;

static int fail(const char *what, repq_status st, const void *obj)
{
    fprintf(stderr, "ablation: %s: %s (%s)\n", what, repq_status_string(st), obj ? repq_last_error(obj) : "");
    return 1;
}

static int argmax(const float *v, int k)
{
    int best = 0;
    for (int j = 1; j < k; j++)
        if (v[j] > v[best])
            best = j;
    return best;
}

static int one_set(study *s, int set, row *out)
{
    const config *g = &s->cfg;
    repq_tensor *calib = NULL, *calib_labels = NULL, *logits = NULL;
    repq_options *o = NULL;
    repq_calib *c = NULL;
    repq_qmodel *q = NULL, *r = NULL, *gq = NULL;
    float *got = NULL;
    int rc = 1;
    repq_status st;
    const int64_t shape[2] = {s->n, 10};
    if ((st = repq_cifar_load(NULL, CALIB_IMAGES, (int64_t)set * SET_SIZE, SET_SIZE, &calib, &calib_labels))) {
        rc = fail("calibration images", st, NULL);
        goto out;
    }
    if ((st = repq_options_new(&o)) || (st = repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, g->wbits)) ||
        (st = repq_options_set_int(o, REPQ_OPT_ACT_BITS, g->abits)) ||
        (st = repq_options_set_int(o, REPQ_OPT_DUAL_CLIP, g->dual)) ||
        (st = repq_options_set_int(o, REPQ_OPT_SMOOTH, g->sqb)) ||
        (st = repq_options_set_int(o, REPQ_OPT_MIXED, g->mixed)) ||
        (st = repq_options_set_int(o, REPQ_OPT_GPTQ_TARGET,
                                   g->gptq_float ? REPQ_GPTQ_TARGET_FLOAT_MODEL : REPQ_GPTQ_TARGET_QUANTIZED_INPUT)) ||
        (st = repq_options_set_int(o, REPQ_OPT_POST_GELU,
                                   g->uniform_gelu ? REPQ_POST_GELU_UNIFORM : REPQ_POST_GELU_TWO_REGION))) {
        rc = fail("options", st, o);
        goto out;
    }
    if ((st = repq_calib_new(NULL, s->model, o, &c)) || (st = repq_calib_feed(c, calib)) ||
        (st = repq_calib_finish(c, &q))) {
        rc = fail("calibration", st, c);
        goto out;
    }
    if ((st = repq_qmodel_reparameterize(NULL, q, &r))) {
        rc = fail("reparameterization", st, NULL);
        goto out;
    }
    if (g->gptq && (st = repq_calib_reconstruct(c, r, &gq))) {
        rc = fail("GPTQ", st, c);
        goto out;
    }
    if ((st = repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &logits)) ||
        (st = repq_qmodel_forward(gq ? gq : r, REPQ_FORWARD_FAKE_QUANT, s->test, logits)) ||
        (st = repq_top1_compute(logits, s->labels, &out->top1))) {
        rc = fail("fake-quant forward", st, gq ? (const void *)gq : (const void *)r);
        goto out;
    }
    got = malloc((size_t)s->n * 10 * sizeof(float));
    if (!got || repq_tensor_read(logits, got, (size_t)s->n * 10 * sizeof(float)))
        goto out;
    double e = 0.0;
    size_t same = 0;
    for (int64_t i = 0; i < s->n; i++) {
        for (int j = 0; j < 10; j++) {
            double d = (double)got[i * 10 + j] - (double)s->fp32[i * 10 + j];
            e += d * d;
        }
        same += argmax(got + i * 10, 10) == argmax(s->fp32 + i * 10, 10);
    }
    out->mse = e / (double)s->n;
    out->same = (double)same / (double)s->n;
    out->done = 1;
    rc = 0;
out:
    free(got);
    repq_tensor_free(logits);
    repq_qmodel_free(gq);
    repq_qmodel_free(r);
    repq_qmodel_free(q);
    repq_calib_free(c);
    repq_options_free(o);
    repq_tensor_free(calib);
    repq_tensor_free(calib_labels);
    return rc;
}

static void *worker(void *arg)
{
    study *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        int set = s->next <= s->last ? s->next++ : -1;
        pthread_mutex_unlock(&s->lock);
        if (set < 0 || one_set(s, set, &s->rows[set]))
            return NULL;
    }
}

static int parse_flags(const char *flags, config *g)
{
    if (strcmp(flags, "-") == 0)
        return 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", flags);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        if (strcmp(t, "dual") == 0)
            g->dual = 1;
        else if (strcmp(t, "sqb") == 0)
            g->sqb = 1;
        else if (strcmp(t, "mixed") == 0)
            g->mixed = 1;
        else if (strcmp(t, "gptq") == 0)
            g->gptq = 1;
        else if (strcmp(t, "gptq-float") == 0)
            g->gptq = g->gptq_float = 1;
        else if (strcmp(t, "uniform-gelu") == 0)
            g->uniform_gelu = 1;
        else
            return fprintf(stderr, "ablation: unknown flag '%s'\n", t), -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: ablation WBITS ABITS FLAGS FIRST_SET LAST_SET THREADS\n");
        return 2;
    }
    static study s;
    s.cfg.wbits = atoi(argv[1]);
    s.cfg.abits = atoi(argv[2]);
    s.first = s.next = atoi(argv[4]);
    s.last = atoi(argv[5]);
    int threads = atoi(argv[6]);
    if (parse_flags(argv[3], &s.cfg) || s.first < 0 || s.last < s.first || s.last >= MAX_SETS || threads < 1 ||
        threads > 16)
        return 2;
    repq_status st;
    repq_tensor *fp32_logits = NULL;
    if ((st = repq_model_load(NULL, MODEL_PATH, NULL, &s.model)) ||
        (st = repq_cifar_load(NULL, TEST_IMAGES, 0, 0, &s.test, &s.labels)) ||
        (st = repq_tensor_describe(s.labels, NULL, NULL, &s.n, 1)))
        return fail("loading", st, NULL);
    const int64_t shape[2] = {s.n, 10};
    float *fp32 = malloc((size_t)s.n * 10 * sizeof(float));
    if (!fp32 || (st = repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &fp32_logits)) ||
        (st = repq_model_forward(s.model, s.test, fp32_logits)) ||
        (st = repq_tensor_read(fp32_logits, fp32, (size_t)s.n * 10 * sizeof(float))))
        return fail("fp32 forward", st, NULL);
    s.fp32 = fp32;
    pthread_mutex_init(&s.lock, NULL);
    pthread_t tid[16];
    for (int i = 0; i < threads; i++)
        pthread_create(&tid[i], NULL, worker, &s);
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    double sum[3] = {0}, sq[3] = {0};
    int sets = 0;
    printf("W%dA%d %s\n| calibration images | top-1 | logit MSE | same top-1 as fp32 |\n|---|---|---|---|\n",
           s.cfg.wbits, s.cfg.abits, argv[3]);
    for (int i = s.first; i <= s.last; i++) {
        const row *r = &s.rows[i];
        if (!r->done) {
            fprintf(stderr, "ablation: set %d failed\n", i);
            return 1;
        }
        printf("| %d-%d | %.2f | %.3f | %.2f%% |\n", i * SET_SIZE, i * SET_SIZE + SET_SIZE - 1, 100 * r->top1, r->mse,
               100 * r->same);
        const double v[3] = {100 * r->top1, r->mse, 100 * r->same};
        for (int j = 0; j < 3; j++) {
            sum[j] += v[j];
            sq[j] += v[j] * v[j];
        }
        sets++;
    }
    double mean[3], sd[3];
    for (int j = 0; j < 3; j++) {
        mean[j] = sum[j] / sets;
        double var = sets > 1 ? (sq[j] - sets * mean[j] * mean[j]) / (sets - 1) : 0.0;
        sd[j] = sqrt(var > 0 ? var : 0);
    }
    printf("| mean (standard deviation) | %.2f (%.2f) | %.3f (%.3f) | %.2f%% |\n", mean[0], sd[0], mean[1], sd[1],
           mean[2]);
    repq_tensor_free(fp32_logits);
    free(fp32);
    repq_tensor_free(s.test);
    repq_tensor_free(s.labels);
    repq_model_free(s.model);
    return 0;
}
