/* Benchmark of the float forward (repq_model_forward): images/s and GFLOP/s for
 * deit_tiny_patch16_224 and deit_small_patch16_224 at 224 (random weights) and the
 * CIFAR-10 ViT-Tiny from the data directory, at batch 1 and 8 on 1 and 2 OpenBLAS
 * threads. The baseline, measured in the same run, is the same model's sequence of
 * GEMM shapes issued as bare cblas_sgemm calls: the same FLOP count with none of the
 * forward's other work (LayerNorm, GELU, softmax, bias, im2col), so the ratio is the
 * share of the GEMM-only speed that the whole forward reaches.
 *
 * Usage: bench_fp32 [data_dir [model_filter]]
 *   data_dir holds vit_tiny_cifar10.safetensors; with model_filter, only the models
 *   whose name contains it run. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "repq/repq.h"

#define MIN_SECONDS 0.5
#define BEST_OF 3

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the model's GEMMs as bare sgemm calls ---------------------------------------- */

/* One cblas_sgemm shape (row-major C[m, n] = A[m, k] op(B) + beta C), issued `count`
 * times. B is either an activation (weights == 0) or cycles through `weights` distinct
 * weight matrices: every layer's weights get memory of their own so that, as in the
 * forward, they stream from memory rather than staying in cache. */
typedef struct gemm_call {
    int m, n, k, lda, ldb, ldc;
    bool trans_b;
    int weights;
    float beta;
    int count;
} gemm_call;

#define MAX_CALLS 16

typedef struct gemm_plan {
    gemm_call calls[MAX_CALLS];
    int ncalls, depth;    /* calls[first_block .. first_block + per_block) repeat depth times */
    int first_block, per_block;
    size_t a_floats, c_floats, w_floats;
    float *a, *c, *w;
    double flops;
} gemm_plan;

static void plan_add(gemm_plan *p, int m, int n, int k, int lda, int ldb, int ldc, bool trans_b,
                     int weights, float beta, int count)
{
    gemm_call g = {m, n, k, lda, ldb, ldc, trans_b, weights, beta, count};
    p->calls[p->ncalls++] = g;
}

static int64_t attr(const repq_model *m, repq_model_attr a)
{
    int64_t v = 0;
    repq_model_get_int(m, a, &v);
    return v;
}

/* The shapes repq_model_forward issues for a batch of n images (n <= 16, one chunk). */
static bool plan_build(const repq_model *model, int n, gemm_plan *p)
{
    memset(p, 0, sizeof *p);
    const int d = (int)attr(model, REPQ_MODEL_EMBED_DIM), heads = (int)attr(model, REPQ_MODEL_NUM_HEADS);
    const int hid = (int)attr(model, REPQ_MODEL_MLP_HIDDEN), t = (int)attr(model, REPQ_MODEL_NUM_TOKENS);
    const int ps = (int)attr(model, REPQ_MODEL_PATCH_SIZE), ch = (int)attr(model, REPQ_MODEL_IN_CHANS);
    const int k = (int)attr(model, REPQ_MODEL_NUM_CLASSES), hd = d / heads, np = t - 1, pd = ch * ps * ps;
    const int rows = n * t;
    p->depth = (int)attr(model, REPQ_MODEL_DEPTH);
    plan_add(p, np, d, pd, pd, pd, d, true, 1, 1.0f, n); /* patch embedding, per image */
    p->first_block = p->ncalls;
    plan_add(p, rows, d, d, d, d, d, true, 3, 1.0f, 3);         /* q, k, v */
    plan_add(p, t, t, hd, d, d, t, true, 0, 0.0f, n * heads);  /* q k^T per head */
    plan_add(p, t, hd, t, t, d, d, false, 0, 0.0f, n * heads); /* attn v per head */
    plan_add(p, rows, d, d, d, d, d, true, 1, 1.0f, 1);         /* proj */
    plan_add(p, rows, hid, d, d, d, hid, true, 1, 1.0f, 1);     /* fc1 */
    plan_add(p, rows, d, hid, hid, hid, d, true, 1, 1.0f, 1);   /* fc2 */
    p->per_block = p->ncalls - p->first_block;
    plan_add(p, n, k, d, d, d, k, true, 1, 1.0f, 1); /* head */
    for (int i = 0; i < p->ncalls; i++) {
        const gemm_call *g = &p->calls[i];
        const bool in_block = i >= p->first_block && i < p->first_block + p->per_block;
        const int reps = in_block ? p->depth : 1;
        size_t a = (size_t)g->m * (size_t)g->lda, c = (size_t)g->m * (size_t)g->ldc;
        size_t b = g->trans_b ? (size_t)g->n * (size_t)g->ldb : (size_t)g->k * (size_t)g->ldb;
        p->a_floats = a > p->a_floats ? a : p->a_floats;
        p->c_floats = c > p->c_floats ? c : p->c_floats;
        /* Activation operands in the attention products live in the A buffer. */
        if (g->weights == 0)
            p->a_floats = b > p->a_floats ? b : p->a_floats;
        p->w_floats += b * (size_t)g->weights * (size_t)reps;
        p->flops += 2.0 * g->m * (double)g->n * g->k * g->count * reps;
    }
    p->a = malloc(p->a_floats * sizeof(float));
    p->c = malloc(p->c_floats * sizeof(float));
    p->w = malloc(p->w_floats * sizeof(float));
    if (!p->a || !p->c || !p->w)
        return false;
    for (size_t i = 0; i < p->a_floats; i++)
        p->a[i] = (float)((i * 7u) % 13u) * 0.01f - 0.06f;
    for (size_t i = 0; i < p->w_floats; i++)
        p->w[i] = (float)((i * 5u) % 11u) * 0.01f - 0.05f;
    memset(p->c, 0, p->c_floats * sizeof(float));
    return true;
}

static void plan_free(gemm_plan *p)
{
    free(p->a);
    free(p->c);
    free(p->w);
}

static void sgemm_call(const gemm_call *g, const float *a, const float *b, float *c)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, g->trans_b ? CblasTrans : CblasNoTrans, g->m, g->n, g->k,
                1.0f, a, g->lda, b, g->ldb, g->beta, c, g->ldc);
}

/* A group of calls; w_at walks through the weight memory. */
static void group_run(const gemm_plan *p, const gemm_call *g, size_t *w_at)
{
    const size_t b_floats = (size_t)(g->trans_b ? g->n : g->k) * (size_t)g->ldb;
    for (int r = 0; r < g->count; r++) {
        const float *b = g->weights ? p->w + *w_at + (size_t)(r % g->weights) * b_floats : p->a;
        sgemm_call(g, p->a, b, p->c);
    }
    *w_at += (size_t)g->weights * b_floats;
}

static void plan_run(gemm_plan *p)
{
    size_t w_at = 0;
    for (int i = 0; i < p->first_block; i++)
        group_run(p, &p->calls[i], &w_at);
    for (int blk = 0; blk < p->depth; blk++)
        for (int i = p->first_block; i < p->first_block + p->per_block; i++)
            group_run(p, &p->calls[i], &w_at);
    for (int i = p->first_block + p->per_block; i < p->ncalls; i++)
        group_run(p, &p->calls[i], &w_at);
}

/* ---- timing ------------------------------------------------------------------------ */

typedef void (*work_fn)(void *arg);

/* Calls per second: repeat until MIN_SECONDS have passed, best of BEST_OF rounds. */
static double best_rate(work_fn fn, void *arg)
{
    fn(arg); /* warm up: page faults, OpenBLAS buffers, thread start */
    double best = 0.0;
    for (int round = 0; round < BEST_OF; round++) {
        long calls = 0;
        const double t0 = now();
        double dt;
        do {
            fn(arg);
            calls++;
            dt = now() - t0;
        } while (dt < MIN_SECONDS);
        const double rate = (double)calls / dt;
        best = rate > best ? rate : best;
    }
    return best;
}

typedef struct forward_job {
    repq_model *model;
    repq_tensor *images, *logits;
    repq_status status;
} forward_job;

static void run_forward(void *arg)
{
    forward_job *j = arg;
    repq_status st = repq_model_forward(j->model, j->images, j->logits);
    if (st)
        j->status = st;
}

static void run_plan(void *arg) { plan_run(arg); }

/* One table row per (batch, threads). Returns false on an error, printed. */
static bool bench_model(repq_context *ctx, repq_model *model, const char *name)
{
    static const int batches[] = {1, 8}, threads[] = {1, 2};
    const int64_t side = attr(model, REPQ_MODEL_IMG_SIZE), ch = attr(model, REPQ_MODEL_IN_CHANS);
    const double flops_per_image = (double)attr(model, REPQ_MODEL_FLOPS_PER_IMAGE);
    for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
        const int n = batches[bi];
        int64_t ishape[4] = {n, ch, side, side}, lshape[2] = {n, attr(model, REPQ_MODEL_NUM_CLASSES)};
        const size_t npix = (size_t)n * (size_t)ch * (size_t)side * (size_t)side;
        uint8_t *pixels = malloc(npix);
        if (!pixels) {
            fprintf(stderr, "out of memory\n");
            return false;
        }
        uint32_t state = 12345u;
        for (size_t i = 0; i < npix; i++) {
            state = state * 1664525u + 1013904223u;
            pixels[i] = (uint8_t)(state >> 24);
        }
        forward_job job = {model, NULL, NULL, REPQ_OK};
        repq_status st = repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, ishape, pixels, &job.images);
        if (st == REPQ_OK)
            st = repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, lshape, NULL, &job.logits);
        free(pixels);
        gemm_plan plan;
        const bool planned = st == REPQ_OK && plan_build(model, n, &plan);
        if (st || !planned) {
            fprintf(stderr, "%s: setup failed: %s\n", name, st ? repq_last_error(ctx) : "out of memory");
            return false;
        }
        if (plan.flops != flops_per_image * n)
            fprintf(stderr, "note: %s GEMM plan has %.0f FLOPs, the model reports %.0f\n", name, plan.flops,
                    flops_per_image * n);
        for (size_t ti = 0; ti < sizeof threads / sizeof *threads; ti++) {
            openblas_set_num_threads(threads[ti]);
            const double calls_per_s = best_rate(run_forward, &job);
            if (job.status) {
                fprintf(stderr, "%s: forward failed: %s\n", name, repq_last_error(model));
                return false;
            }
            const double gemm_per_s = best_rate(run_plan, &plan);
            const double ips = calls_per_s * n, gflops = ips * flops_per_image * 1e-9;
            const double sgemm_gflops = gemm_per_s * plan.flops * 1e-9;
            printf("| %s | %d | %d | %.1f | %.1f | %.1f | %.2f |\n", name, n, threads[ti], ips, gflops,
                   sgemm_gflops, gflops / sgemm_gflops);
            fflush(stdout);
        }
        plan_free(&plan);
        repq_tensor_free(job.images);
        repq_tensor_free(job.logits);
    }
    return true;
}

int main(int argc, char **argv)
{
    const char *data_dir = argc > 1 ? argv[1] : "data";
    const char *filter = argc > 2 ? argv[2] : "";
    repq_context *ctx;
    if (repq_context_new(&ctx)) {
        fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    printf("librepq fp32 forward benchmark (%s), OpenBLAS %s\n", repq_version_string(),
           openblas_get_config());
    printf("each figure: best of %d rounds of >= %.1f s; sgemm = the model's GEMM shapes alone\n\n",
           BEST_OF, MIN_SECONDS);
    printf("| model | batch | threads | images/s | GFLOP/s | sgemm GFLOP/s | ratio |\n");
    printf("|---|---|---|---|---|---|---|\n");
    static const char *presets[] = {"deit_tiny_patch16_224", "deit_small_patch16_224"};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof presets / sizeof *presets; i++) {
        if (!strstr(presets[i], filter))
            continue;
        repq_model *m;
        if (repq_model_create_random(ctx, presets[i], 0, 1, &m)) {
            fprintf(stderr, "%s: %s\n", presets[i], repq_last_error(ctx));
            rc = 1;
            break;
        }
        if (!bench_model(ctx, m, presets[i]))
            rc = 1;
        repq_model_free(m);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/vit_tiny_cifar10.safetensors", data_dir);
    repq_model *cifar;
    if (rc == 0 && strstr("vit_tiny_cifar10", filter)) {
        if (repq_model_load(ctx, path, NULL, &cifar) == REPQ_OK) {
            if (!bench_model(ctx, cifar, "vit_tiny_cifar10 (32x32)"))
                rc = 1;
            repq_model_free(cifar);
        } else {
            printf("\n(skipped the CIFAR-10 model: %s)\n", repq_last_error(ctx));
        }
    }
    repq_context_free(ctx);
    return rc;
}
