/* Integer inference against the OpenBLAS fp32 forward, measured in the same run:
 * images/s of a session (int8 GEMMs, log2 softmax, shift attention) and of
 * repq_model_forward, for deit_tiny, deit_small, swin_tiny (random weights, calibrated
 * on a few random images) and the bundled CIFAR model, batch 1 and 8, threads 1 and 2;
 * per-stage time breakdowns of deit_small and swin_tiny at batch 8, one thread. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/session.h"
#include "kernels/cpu.h"
#include "repq/repq.h"

extern void openblas_set_num_threads(int);

#define MIN_SECONDS 0.6

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static repq_tensor *random_images(int n, int side, uint64_t seed)
{
    int64_t shape[4] = {n, 3, side, side};
    size_t count = (size_t)n * 3 * (size_t)side * (size_t)side;
    uint8_t *px = malloc(count);
    for (size_t i = 0; i < count; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        px[i] = (uint8_t)(seed >> 56);
    }
    repq_tensor *t = NULL;
    repq_tensor_new(NULL, REPQ_DTYPE_U8, 4, shape, px, &t);
    free(px);
    return t;
}

static repq_tensor *logits_for(int n, int classes)
{
    int64_t shape[2] = {n, classes};
    repq_tensor *t = NULL;
    repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &t);
    return t;
}

/* Images per second of fn over repeated calls for at least MIN_SECONDS. */
typedef int (*run_fn)(void *ctx, repq_tensor *x, repq_tensor *y);
static double rate(run_fn fn, void *ctx, repq_tensor *x, repq_tensor *y, int n)
{
    if (fn(ctx, x, y))
        return 0.0;
    int reps = 0;
    double t0 = now(), t;
    do {
        fn(ctx, x, y);
        reps++;
        t = now() - t0;
    } while (t < MIN_SECONDS);
    return (double)reps * n / t;
}

static int run_fp32(void *ctx, repq_tensor *x, repq_tensor *y) { return repq_model_forward(ctx, x, y); }
static int run_int(void *ctx, repq_tensor *x, repq_tensor *y) { return repq_session_run(ctx, x, y); }

static repq_qmodel *quantize(repq_model *m, repq_tensor *calib, int bits)
{
    repq_options *o;
    repq_calib *c = NULL;
    repq_qmodel *q = NULL, *r = NULL;
    if (repq_options_new(&o))
        return NULL;
    if (!repq_options_set_int(o, REPQ_OPT_WEIGHT_BITS, bits) && !repq_options_set_int(o, REPQ_OPT_ACT_BITS, bits) &&
        !repq_calib_new(NULL, m, o, &c) && !repq_calib_feed(c, calib) && !repq_calib_finish(c, &q))
        repq_qmodel_reparameterize(NULL, q, &r);
    repq_qmodel_free(q);
    repq_calib_free(c);
    repq_options_free(o);
    return r;
}

static repq_session *session_for(const repq_qmodel *q, int threads)
{
    repq_options *o;
    repq_session *s = NULL;
    if (repq_options_new(&o))
        return NULL;
    if (repq_options_set_int(o, REPQ_OPT_THREADS, threads) || repq_session_new(NULL, q, o, 8, &s))
        s = NULL;
    repq_options_free(o);
    return s;
}

int main(void)
{
    enum { MODELS = 4 };
    const char *names[MODELS] = {"deit_tiny_patch16_224", "deit_small_patch16_224", "swin_tiny_patch4_window7_224",
                                 "vit_tiny_cifar10"};
    repq_kernel_level level = repq_kernel_level_best(repq_cpu_detect());
    char cpu[256] = "unknown CPU";
    FILE *info = fopen("/proc/cpuinfo", "r");
    for (char line[512]; info && fgets(line, sizeof line, info);)
        if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
            snprintf(cpu, sizeof cpu, "%s", strchr(line, ':') + 2);
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    if (info)
        fclose(info);
    printf("# integer sessions (W8A8 and W4A4 RepQ-ViT) vs OpenBLAS fp32 forward, kernel level %s, %s\n",
           repq_kernel_level_name(level), cpu);
    printf("| model | batch | threads | fp32 img/s | W8A8 img/s | W8A8 / fp32 | W4A4 img/s | W4A4 / fp32 |\n"
           "|---|---|---|---|---|---|---|---|\n");
    double shared_mb[MODELS] = {0}, own_mb[MODELS] = {0}, shared4_mb[MODELS] = {0}, own4_mb[MODELS] = {0};
    for (int mi = 0; mi < MODELS; mi++) {
        repq_model *m = NULL;
        repq_status st = mi < MODELS - 1 ? repq_model_create_random(NULL, names[mi], 0, 42, &m)
                                : repq_model_load(NULL, REPQ_DATA_DIR "/vit_tiny_cifar10.safetensors", NULL, &m);
        if (st) {
            printf("| %s | skipped: %s |\n", names[mi], repq_status_string(st));
            continue;
        }
        int64_t side, classes;
        repq_model_get_int(m, REPQ_MODEL_IMG_SIZE, &side);
        repq_model_get_int(m, REPQ_MODEL_NUM_CLASSES, &classes);
        repq_tensor *calib = random_images(4, (int)side, 7);
        repq_qmodel *q = quantize(m, calib, 8), *q4 = quantize(m, calib, 4);
        repq_tensor_free(calib);
        if (!q || !q4) {
            printf("| %s | calibration failed |\n", names[mi]);
            repq_qmodel_free(q);
            repq_qmodel_free(q4);
            repq_model_free(m);
            continue;
        }
        for (int threads = 1; threads <= 2; threads++) {
            repq_session *s = session_for(q, threads), *s4 = session_for(q4, threads);
            if (!s || !s4) {
                printf("| %s | session failed |\n", names[mi]);
                repq_session_free(s);
                repq_session_free(s4);
                continue;
            }
            if (threads == 1) {
                size_t shared, own;
                repq_session_memory(s, &shared, &own);
                shared_mb[mi] = (double)shared / 1e6;
                own_mb[mi] = (double)own / 1e6;
                repq_session_memory(s4, &shared, &own);
                shared4_mb[mi] = (double)shared / 1e6;
                own4_mb[mi] = (double)own / 1e6;
            }
            openblas_set_num_threads(threads);
            for (int batch = 1; batch <= 8; batch += 7) {
                repq_tensor *x = random_images(batch, (int)side, 11), *y = logits_for(batch, (int)classes);
                double f = rate(run_fp32, m, x, y, batch);
                double i = rate(run_int, s, x, y, batch);
                double i4 = rate(run_int, s4, x, y, batch);
                printf("| %s | %d | %d | %.1f | %.1f | %.2fx | %.1f | %.2fx |\n", names[mi], batch, threads, f, i,
                       i / f, i4, i4 / f);
                fflush(stdout);
                repq_tensor_free(x);
                repq_tensor_free(y);
            }
            if ((mi == 1 || mi == 2) && threads == 1) {
                repq_tensor *x = random_images(8, (int)side, 11), *y = logits_for(8, (int)classes);
                repq_session_profile(s, true);
                int reps = 0;
                double t0 = now();
                while (now() - t0 < MIN_SECONDS) {
                    repq_session_run(s, x, y);
                    reps++;
                }
                double total = now() - t0, parts[REPQ_STAGE_COUNT];
                repq_session_profile_read(s, parts);
                repq_session_profile(s, false);
                const char *stage[REPQ_STAGE_COUNT] = {"linear GEMMs + row sums", "GEMM epilogues (to float / codes)",
                                                       "attention (q k^T, log2 softmax, x V)",
                                                       "float: LayerNorm, GELU, quantize, patches"};
                printf("\n# %s batch 8, 1 thread: %.2f ms per batch\n| stage | ms | share |\n|---|---|---|\n",
                       names[mi], 1e3 * total / reps);
                for (int k = 0; k < REPQ_STAGE_COUNT; k++)
                    printf("| %s | %.2f | %.1f%% |\n", stage[k], 1e3 * parts[k] / reps, 100 * parts[k] / total);
                printf("\n");
                repq_tensor_free(x);
                repq_tensor_free(y);
            }
            repq_session_free(s);
            repq_session_free(s4);
        }
        repq_qmodel_free(q);
        repq_qmodel_free(q4);
        repq_model_free(m);
    }
    printf("\n# memory: what the sessions of one qmodel share, and what each session adds (max_batch 8, 1 thread)\n"
           "| model | W8A8 shared MB | W8A8 per session MB | W4A4 shared MB | W4A4 per session MB |\n"
           "|---|---|---|---|---|\n");
    for (int mi = 0; mi < MODELS; mi++)
        if (shared_mb[mi] > 0)
            printf("| %s | %.1f | %.1f | %.1f | %.1f |\n", names[mi], shared_mb[mi], own_mb[mi], shared4_mb[mi],
                   own4_mb[mi]);
    return 0;
}
