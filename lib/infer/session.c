/* Integer inference: a session runs a reparameterized qmodel with u8 x s8 GEMMs,
 * an integer log2 softmax and shift-based attention; LayerNorm, GELU and the residual
 * stream stay in float per token. The graph is the float forward's (forward.c) with
 * every activation quantizer applied where the fake-quant forward applies it.
 * See docs/inference.md. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/object.h"
#include "core/options.h"
#include "core/tensor.h"
#include "core/vectorize.h"
#include "model/float_ops.h"
#include "infer/session.h"
#include "infer/shared_weights.h"
#include "kernels/attn_log2.h"
#include "kernels/gemm_s8.h"
#include "kernels/gemm_u4.h"
#include "kernels/quantize_f32.h"
#include "kernels/requant.h"
#include "kernels/softmax_log2.h"
#include "model/model.h"
#include "model/qmodel.h"

/* Rows of one pass of a worker through a linear layer: 197-token images in one pass
 * (13 AMX tiles), so that at batch 1 each layer's weights stream past once per
 * worker (and 4-bit weights are unpacked once) instead of three times for 96 + 96 + 5
 * rows; measured 3-7 % faster at batch 1 (W8A8 and W4A4, 1 and 2 threads) and
 * no slower elsewhere than 96. The scratch is sized for min(ROW_BLOCK, rows). */
#define ROW_BLOCK 208

/* Rows and columns of an AMX tile of q k^T scores, and the score matrix's stride. */
#define SCORE_TILE 16
static size_t score_stride(size_t tokens) { return (tokens + SCORE_TILE - 1) / SCORE_TILE * SCORE_TILE; }

typedef struct wscratch {
    uint8_t *a;      /* [ROW_BLOCK, max in] codes */
    int32_t *acc;    /* [ROW_BLOCK, max out] */
    float *f;        /* [ROW_BLOCK, max(in, out)] */
    int32_t *rowsum; /* [ROW_BLOCK] */
    void *kpack;
    int32_t *sc;     /* [T, T] */
    uint8_t *codes;  /* [T, T] */
    int32_t *e, *d;  /* [T, hd] */
    uint8_t *tail;   /* [T, T]: codes of the terms below s_attn 2^-F, shifted by 2F */
    int32_t *e2, *d2; /* [T, hd]: their accumulators */
    void *avs;       /* attention x V planes and products (repq_attn_v_gemm_scratch_size) */
    void *panel;     /* unpacked 4-bit weights (repq_gemm_u8u4_scratch_size) */
    int32_t *colconst; /* [T]: the q k^T column correction */
    uint8_t *qg, *kg, *vg, *og; /* [area, hd]: a window's codes, gathered (Swin) */
} wscratch;

typedef void (*task_fn)(repq_session *s, int worker, int workers, const void *arg);

typedef struct pool {
    pthread_t *threads;
    int helpers; /* threads - 1 */
    int started;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    /* Changed under mu, but also read while spinning, hence atomic; fn and arg are
     * published before generation (release) and read after it (acquire). */
    _Atomic uint64_t generation;
    _Atomic int pending, quit;
    task_fn fn;
    const void *arg;
} pool;

typedef struct helper_arg {
    repq_session *s;
    int worker;
} helper_arg;

struct repq_session {
    repq_object base;
    const repq_qmodel *q;
    repq_arch arch;
    repq_kernel_level level;
    uint32_t cpu_mask; /* repq_cpu_detect() at creation */
    int32_t max_batch, threads;
    size_t t, dim, np, pd, classes; /* the patch embedding's and head's; blocks keep their own */
    const repq_shared_weights *w; /* the qmodel's, shared with its other sessions */
    float *pooled;        /* [tokens, dim] of the last stage: the final norm before averaging */
    float *x;             /* [max_batch * T, D] residual stream */
    float *x2;            /* the same: patch merging writes the next stage here */
    uint8_t *qc, *kc, *vc, *oc;
    wscratch *ws;
    helper_arg *hargs;
    pool pool;
    repq_mem_chain mem; /* every allocation but the struct, for free */
    /* The current run. */
    size_t n;
    const void *images;
    bool u8;
    float *logits;
    bool profiling;
    double prof[REPQ_STAGE_COUNT];
    bool all_rows; /* no class-token shortcut in the last block (repq_session_run_all_rows) */
};

/* ---- memory ---------------------------------------------------------------------- */

static void *salloc(repq_session *s, size_t count, size_t size)
{
    return repq_mem_chain_alloc(&s->base.allocator, &s->mem, count, size);
}

static void sfree_all(repq_session *s)
{
    repq_mem_chain_free(&s->base.allocator, &s->mem);
}

/* ---- timers ---------------------------------------------------------------------- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Only worker 0 (the calling thread) records. */
static inline double tick(const repq_session *s, int worker)
{
    return s->profiling && worker == 0 ? now_seconds() : 0.0;
}
static inline void tock(repq_session *s, int worker, repq_session_stage st, double *t0)
{
    if (s->profiling && worker == 0) {
        double t = now_seconds();
        s->prof[st] += t - *t0;
        *t0 = t;
    }
}

/* ---- thread pool ----------------------------------------------------------------- */

/* A session runs two parallel sections per transformer block, a few hundred
 * microseconds each at batch 1, and waking a sleeping thread for each cost a sixth
 * of a two-thread run on a 2-core VM. So both sides spin for a while before they
 * sleep: helpers for the next section, the caller for the helpers to finish.
 * 2048 pauses are about 20 us where a pause takes 10 ns, 80 us where it takes 40;
 * 256 were too few to matter, 8192 no better than 2048 (deit_small, 2 threads). */
#define SPIN_ROUNDS 2048

static inline void spin_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *helper_main(void *p)
{
    helper_arg *ha = p;
    repq_session *s = ha->s;
    pool *pl = &s->pool;
    uint64_t seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&pl->generation, memory_order_acquire) == seen &&
                        !atomic_load_explicit(&pl->quit, memory_order_relaxed);
             i++)
            spin_pause();
        pthread_mutex_lock(&pl->mu);
        while (atomic_load_explicit(&pl->generation, memory_order_acquire) == seen && !atomic_load(&pl->quit))
            pthread_cond_wait(&pl->go, &pl->mu);
        pthread_mutex_unlock(&pl->mu);
        if (atomic_load(&pl->quit))
            break;
        seen = atomic_load_explicit(&pl->generation, memory_order_acquire);
        pl->fn(s, ha->worker, s->threads, pl->arg);
        if (atomic_fetch_sub_explicit(&pl->pending, 1, memory_order_acq_rel) == 1) {
            /* Under the mutex, so that a caller between its check and its wait hears it. */
            pthread_mutex_lock(&pl->mu);
            pthread_cond_signal(&pl->done);
            pthread_mutex_unlock(&pl->mu);
        }
    }
    return NULL;
}

static void parallel(repq_session *s, task_fn fn, const void *arg)
{
    pool *pl = &s->pool;
    if (pl->helpers == 0) {
        fn(s, 0, 1, arg);
        return;
    }
    pthread_mutex_lock(&pl->mu);
    pl->fn = fn;
    pl->arg = arg;
    atomic_store_explicit(&pl->pending, pl->helpers, memory_order_relaxed);
    atomic_fetch_add_explicit(&pl->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pl->go);
    pthread_mutex_unlock(&pl->mu);
    fn(s, 0, s->threads, arg);
    for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&pl->pending, memory_order_acquire) > 0; i++)
        spin_pause();
    if (atomic_load_explicit(&pl->pending, memory_order_acquire) == 0)
        return;
    pthread_mutex_lock(&pl->mu);
    while (atomic_load_explicit(&pl->pending, memory_order_acquire) > 0)
        pthread_cond_wait(&pl->done, &pl->mu);
    pthread_mutex_unlock(&pl->mu);
}

static void pool_stop(repq_session *s)
{
    pool *pl = &s->pool;
    if (pl->helpers == 0)
        return;
    pthread_mutex_lock(&pl->mu);
    atomic_store(&pl->quit, 1);
    pthread_cond_broadcast(&pl->go);
    pthread_mutex_unlock(&pl->mu);
    for (int i = 0; i < pl->started; i++)
        pthread_join(pl->threads[i], NULL);
    pthread_cond_destroy(&pl->go);
    pthread_cond_destroy(&pl->done);
    pthread_mutex_destroy(&pl->mu);
    pl->helpers = 0;
}

static repq_status pool_start(repq_session *s, repq_object *err)
{
    pool *pl = &s->pool;
    int helpers = s->threads - 1;
    if (helpers == 0)
        return REPQ_OK;
    pl->threads = salloc(s, (size_t)helpers, sizeof(pthread_t));
    s->hargs = salloc(s, (size_t)helpers, sizeof(helper_arg));
    if (!pl->threads || !s->hargs)
        return repq_fail(err, REPQ_ERR_NOMEM, "repq_session_new: cannot allocate the thread pool");
    if (pthread_mutex_init(&pl->mu, NULL))
        return repq_fail(err, REPQ_ERR_NOMEM, "repq_session_new: cannot create a mutex");
    if (pthread_cond_init(&pl->go, NULL)) {
        pthread_mutex_destroy(&pl->mu);
        return repq_fail(err, REPQ_ERR_NOMEM, "repq_session_new: cannot create a condition variable");
    }
    if (pthread_cond_init(&pl->done, NULL)) {
        pthread_cond_destroy(&pl->go);
        pthread_mutex_destroy(&pl->mu);
        return repq_fail(err, REPQ_ERR_NOMEM, "repq_session_new: cannot create a condition variable");
    }
    pl->helpers = helpers;
    for (int i = 0; i < helpers; i++) {
        s->hargs[i].s = s;
        s->hargs[i].worker = i + 1;
        if (pthread_create(&pl->threads[i], NULL, helper_main, &s->hargs[i])) {
            pool_stop(s);
            return repq_fail(err, REPQ_ERR_NOMEM, "repq_session_new: cannot start worker thread %d", i + 1);
        }
        pl->started++;
    }
    return REPQ_OK;
}

static repq_status scratch_init(repq_session *s, repq_object *err)
{
    const repq_net *net = s->q->net;
    /* The largest of every extent over the network's nodes and layers. */
    size_t td = 0, max_in = 0, max_out = 0, att = 0, hd = 0, pool_floats = 0, max_tokens = 1;
    for (int32_t i = 0; i < net->num_nodes; i++) {
        const repq_net_node *node = &net->nodes[i];
        const size_t t = (size_t)node->tokens, in_rows = node->op == REPQ_OP_MERGE ? (size_t)node->grid * (size_t)node->grid : t;
        max_tokens = t > max_tokens ? t : max_tokens;
        const size_t width = node->op == REPQ_OP_MERGE ? (size_t)node->in_dim : (size_t)node->dim;
        td = in_rows * width > td ? in_rows * width : td;
        td = t * (size_t)node->dim > td ? t * (size_t)node->dim : td;
        if (node->op == REPQ_OP_BLOCK) {
            const size_t a = node->windowed ? (size_t)repq_swin_window_area(&node->window) : t;
            att = a > att ? a : att;
            hd = (size_t)(node->dim / node->heads) > hd ? (size_t)(node->dim / node->heads) : hd;
        }
        if (node->op == REPQ_OP_HEAD && node->avg_pool)
            pool_floats = t * (size_t)node->dim;
    }
    for (int32_t i = 0; i < net->num_linear; i++) {
        max_in = (size_t)net->linear[i].in > max_in ? (size_t)net->linear[i].in : max_in;
        max_out = (size_t)net->linear[i].out > max_out ? (size_t)net->linear[i].out : max_out;
    }
    size_t max_f = max_in > max_out ? max_in : max_out;
    size_t all, q_all;
    if (!repq_size_mul((size_t)s->max_batch, td, &all) || !repq_size_add(all, SCORE_TILE * max_in, &q_all))
        return repq_fail(err, REPQ_ERR_OVERFLOW, "repq_session_new: max_batch %d is too large", (int)s->max_batch);
    s->x = salloc(s, all, sizeof(float));
    s->x2 = net->arch.family == REPQ_FAMILY_SWIN ? salloc(s, all, sizeof(float)) : NULL;
    s->pooled = pool_floats ? salloc(s, pool_floats, sizeof(float)) : NULL;
    /* q's codes have SCORE_TILE rows of slack: the AMX q k^T reads whole tiles of rows. */
    s->qc = salloc(s, q_all, 1);
    s->kc = salloc(s, all, 1);
    s->vc = salloc(s, all, 1);
    s->oc = salloc(s, all, 1);
    s->ws = salloc(s, (size_t)s->threads, sizeof(wscratch));
    if (!s->x || !s->qc || !s->kc || !s->vc || !s->oc || !s->ws || (net->arch.family == REPQ_FAMILY_SWIN && !s->x2) ||
        (pool_floats && !s->pooled))
        return repq_fail(err, REPQ_ERR_NOMEM, "repq_session_new: cannot allocate activations for %d images",
                         (int)s->max_batch);
    const size_t t = att;
    /* Rows of one worker's pass: no pass has more than max_batch * max_tokens. */
    const size_t rows = (size_t)s->max_batch * max_tokens < ROW_BLOCK ? (size_t)s->max_batch * max_tokens : ROW_BLOCK;
    for (int w = 0; w < s->threads; w++) {
        wscratch *x = &s->ws[w];
        x->a = salloc(s, rows * max_in, 1);
        x->acc = salloc(s, rows * max_out, sizeof(int32_t));
        x->f = salloc(s, rows * max_f, sizeof(float));
        x->rowsum = salloc(s, rows, sizeof(int32_t));
        x->kpack = salloc(s, repq_gemm_u8s8_packed_size(t, hd), 1);
        x->sc = salloc(s, score_stride(t) * score_stride(t), sizeof(int32_t));
        x->codes = salloc(s, t * t, 1);
        x->e = salloc(s, t * hd, sizeof(int32_t));
        x->avs = salloc(s, repq_attn_v_gemm_scratch_size(t, hd, repq_attn_v_frac_bits_max(t)), 1);
        x->d = salloc(s, t * hd, sizeof(int32_t));
        x->tail = salloc(s, t * t, 1);
        x->e2 = salloc(s, t * hd, sizeof(int32_t));
        x->d2 = salloc(s, t * hd, sizeof(int32_t));
        x->panel = s->w->nibble_k
                       ? salloc(s, repq_gemm_u8u4_scratch_size(s->level, s->w->nibble_k, s->w->nibble_unpacked), 1)
                       : NULL;
        x->colconst = salloc(s, t, sizeof(int32_t));
        /* SCORE_TILE rows of slack after the four: a window's q k^T reads up to a whole
         * tile of rows past its own (into kg, vg, og, then this). */
        x->qg = salloc(s, (4 * t + SCORE_TILE) * hd, 1);
        if (!x->a || !x->acc || !x->f || !x->rowsum || !x->kpack || !x->sc || !x->codes || !x->e || !x->avs ||
            !x->d || !x->colconst || (s->w->nibble_k && !x->panel) || !x->tail || !x->e2 || !x->d2 || !x->qg)
            return repq_fail(err, REPQ_ERR_NOMEM, "repq_session_new: cannot allocate worker scratch");
        x->kg = x->qg + t * hd;
        x->vg = x->kg + t * hd;
        x->og = x->vg + t * hd;
    }
    return REPQ_OK;
}

REPQ_API repq_status repq_session_new(repq_context *ctx, const repq_qmodel *q, const repq_options *options,
                                      int32_t max_batch, repq_session **out_session)
{
    repq_object *err = repq_context_object(ctx);
    if (out_session)
        *out_session = NULL;
    if (!out_session || !repq_object_is(q, REPQ_KIND_QMODEL))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_session_new: NULL or invalid qmodel or out pointer");
    if (options && !repq_object_is(options, REPQ_KIND_OPTIONS))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_session_new: invalid options handle");
    if (max_batch < 1)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_session_new: max_batch %d must be >= 1", (int)max_batch);
    if (!q->reparameterized)
        return repq_fail(err, REPQ_ERR_STATE,
                         "repq_session_new: the qmodel is not reparameterized (call repq_qmodel_reparameterize)");
    const int32_t threads = options ? options->threads : 1;
    if (threads < 1)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_session_new: threads %d must be >= 1", (int)threads);
    const repq_arch *a = &q->arch;
    if (a->embed_dim % a->num_heads)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "repq_session_new: embed_dim is not a multiple of num_heads");

    repq_allocator al = repq_allocator_of(ctx);
    repq_session *s = repq_mem_alloc(&al, sizeof *s);
    if (!s)
        return repq_fail(err, REPQ_ERR_NOMEM, "repq_session_new: cannot allocate the session");
    repq_object_init(&s->base, REPQ_KIND_SESSION, al);
    s->q = q;
    s->arch = *a;
    s->cpu_mask = repq_cpu_detect();
    s->level = repq_kernel_level_best(s->cpu_mask);
    if (options && options->kernels != REPQ_KERNELS_AUTO)
        s->level = repq_kernel_level_clamp(s->cpu_mask, (repq_kernel_level)(options->kernels - 1));
    s->max_batch = max_batch;
    s->threads = threads;
    s->t = (size_t)q->net->nodes[0].tokens; /* the patch embedding's token rows */
    s->dim = (size_t)a->embed_dim;
    s->np = (size_t)repq_vit_patches(a);
    s->pd = (size_t)repq_vit_patch_dim(a);
    s->classes = (size_t)a->num_classes;

    /* AMX multiplies bytes only: a 4-bit layer unpacked on every call (gemm_u4.h) cost a
     * quarter of its GEMM at 96 rows and left W4A4 behind W8A8 at batch 1. Unpacked once
     * here, it runs the 8-bit kernels, and holds as many bytes as at W8A8. */
    repq_status st = repq_shared_weights_acquire(err, q, s->level == REPQ_LEVEL_AMX, &s->w);
    if (!st)
        st = scratch_init(s, err);
    if (!st)
        st = pool_start(s, err);
    if (st) {
        repq_session_free(s);
        return st;
    }
    *out_session = s;
    return REPQ_OK;
}

_Static_assert(REPQ_KERNELS_SCALAR == REPQ_LEVEL_SCALAR + 1 && REPQ_KERNELS_AVX2 == REPQ_LEVEL_AVX2 + 1 &&
                   REPQ_KERNELS_AVXVNNI == REPQ_LEVEL_AVXVNNI + 1 &&
                   REPQ_KERNELS_AVX512VNNI == REPQ_LEVEL_AVX512VNNI + 1 && REPQ_KERNELS_AMX == REPQ_LEVEL_AMX + 1,
               "repq_kernels is the internal kernel level plus one");

REPQ_API repq_status repq_session_get_int(const repq_session *s, int32_t attr, int64_t *out_value)
{
    if (!repq_object_is(s, REPQ_KIND_SESSION))
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_object *err = (repq_object *)&s->base;
    if (!out_value)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_session_get_int: out_value is NULL");
    switch (attr) {
    case REPQ_SESSION_KERNELS: *out_value = (int64_t)s->level + 1; return REPQ_OK;
    case REPQ_SESSION_THREADS: *out_value = s->threads; return REPQ_OK;
    case REPQ_SESSION_MAX_BATCH: *out_value = s->max_batch; return REPQ_OK;
    default: return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_session_get_int: unknown attribute %d", (int)attr);
    }
}

REPQ_API void repq_session_free(repq_session *s)
{
    if (!repq_object_is(s, REPQ_KIND_SESSION))
        return;
    pool_stop(s);
    sfree_all(s);
    repq_shared_weights_release(s->w);
    repq_allocator al = s->base.allocator;
    s->base.kind = 0;
    repq_mem_free(&al, s);
}

void repq_session_profile(repq_session *s, bool enable)
{
    s->profiling = enable;
    for (int i = 0; i < REPQ_STAGE_COUNT; i++)
        s->prof[i] = 0;
}

void repq_session_run_all_rows(repq_session *s, bool full) { s->all_rows = full; }

void repq_session_memory(const repq_session *s, size_t *out_shared, size_t *out_own)
{
    *out_shared = repq_shared_weights_bytes(s->w);
    *out_own = s->mem.bytes + sizeof *s;
}

void repq_session_profile_read(const repq_session *s, double out[REPQ_STAGE_COUNT])
{
    for (int i = 0; i < REPQ_STAGE_COUNT; i++)
        out[i] = s->prof[i];
}

/* ---- run: stages ------------------------------------------------------------------ */

static inline void split(size_t total, int worker, int workers, size_t *lo, size_t *hi)
{
    *lo = total * (size_t)worker / (size_t)workers;
    *hi = total * (size_t)(worker + 1) / (size_t)workers;
}

/* acc = a * W^T for m rows of codes a (stride lda). */
static void qlin_gemm(repq_session *s, const qlin *l, size_t m, const uint8_t *a, size_t lda, wscratch *w)
{
    if (l->nibbles)
        repq_gemm_u8u4(s->level, m, l->n, l->k, a, lda, l->packed, w->acc, l->n, w->panel);
    else
        repq_gemm_u8s8(s->level, m, l->n, l->k, a, lda, l->packed, w->acc, l->n);
}

/* qlin_gemm with the row sums of a. */
static void gemm_rows(repq_session *s, int worker, const qlin *l, size_t m, const uint8_t *a, size_t lda,
                      wscratch *w, double *t0)
{
    repq_row_sums_u8(s->level, m, l->k, a, lda, w->rowsum);
    qlin_gemm(s, l, m, a, lda, w);
    tock(s, worker, REPQ_STAGE_GEMM, t0);
}

static void out_f32(repq_session *s, int worker, const qlin *l, size_t m, wscratch *w, bool accumulate,
                    float *out, size_t ldout, double *t0)
{
    repq_gemm_out_f32(s->level, m, l->n, w->acc, l->n, w->rowsum, l->colmul, l->colconst, l->scale, l->bias,
                      accumulate, out, ldout);
    tock(s, worker, REPQ_STAGE_EPILOGUE, t0);
}

static void out_u8(repq_session *s, int worker, const qlin *l, const aq *o, size_t m, wscratch *w, uint8_t *out,
                   size_t ldout, double *t0)
{
    repq_gemm_out_u8(s->level, m, l->n, w->acc, l->n, w->rowsum, l->colmul, l->colconst, l->scale, l->bias, o->s,
                     o->z, o->bits, out, ldout);
    tock(s, worker, REPQ_STAGE_EPILOGUE, t0);
}

/* Patch embedding of patch rows: codes (lookup for U8 pixels, quantizer for floats),
 * GEMM, bias, then the position embedding into the token rows of x. */
static void patch_task(repq_session *s, int worker, int workers, const void *arg)
{
    (void)arg;
    const repq_arch *a = &s->arch;
    const size_t ps = (size_t)a->patch_size, side = (size_t)a->img_size / ps, img = (size_t)a->img_size;
    const size_t ch = (size_t)a->in_chans, d = s->dim, pd = s->pd, np = s->np, t = s->t;
    const float *pos = s->q->fq_params.pos_embed;
    wscratch *w = &s->ws[worker];
    size_t lo, hi;
    split(s->n * np, worker, workers, &lo, &hi);
    double t0 = tick(s, worker);
    for (size_t r0 = lo; r0 < hi; r0 += ROW_BLOCK) {
        const size_t m = hi - r0 < ROW_BLOCK ? hi - r0 : ROW_BLOCK;
        for (size_t i = 0; i < m; i++) {
            const size_t r = r0 + i, b = r / np, py = (r % np) / side, px = r % side;
            uint8_t *dst = w->a + i * pd;
            float *fd = w->f + i * pd;
            for (size_t c = 0; c < ch; c++)
                for (size_t y = 0; y < ps; y++) {
                    const size_t src = ((b * ch + c) * img + py * ps + y) * img + px * ps;
                    if (s->u8) {
                        const uint8_t *pix = (const uint8_t *)s->images + src;
                        const uint8_t *lut = s->w->pixel_codes + c * 256;
                        for (size_t xx = 0; xx < ps; xx++)
                            *dst++ = lut[pix[xx]];
                    } else {
                        memcpy(fd, (const float *)s->images + src, ps * sizeof(float));
                        fd += ps;
                    }
                }
            if (!s->u8)
                repq_quantize_f32_u8(s->level, pd, w->f + i * pd, s->w->patch_in.s, s->w->patch_in.z, s->w->patch_in.bits,
                                     w->a + i * pd);
        }
        tock(s, worker, REPQ_STAGE_FLOAT, &t0);
        gemm_rows(s, worker, &s->w->patch, m, w->a, pd, w, &t0);
        out_f32(s, worker, &s->w->patch, m, w, false, w->f, d, &t0);
        if (!pos) {
            /* Swin: the patches are the tokens, through the patch embedding's LayerNorm. */
            const repq_net_node *node = &s->q->net->nodes[0];
            const float *arena = s->q->fq_params.arena;
            repq_float_layer_norm(w->f, m, d, repq_net_param_data(s->q->net, (float *)arena, node->norm_weight),
                                  repq_net_param_data(s->q->net, (float *)arena, node->norm_bias), a->norm_eps,
                                  s->x + r0 * d);
            tock(s, worker, REPQ_STAGE_FLOAT, &t0);
            continue;
        }
        for (size_t i = 0; i < m; i++) {
            const size_t r = r0 + i, b = r / np, p = r % np;
            float *xr = s->x + (b * t + 1 + p) * d;
            const float *fr = w->f + i * d, *pr = pos + (1 + p) * d;
            for (size_t c = 0; c < d; c++)
                xr[c] = fr[c] + pr[c];
        }
        tock(s, worker, REPQ_STAGE_FLOAT, &t0);
    }
}

/* w->a = codes of LayerNorm(x) for m rows of d, without a float row in between. */
static void norm_codes(repq_session *s, const float *x, size_t m, size_t d, const float *g, const float *bias,
                       const aq *codes_q, wscratch *w)
{
    repq_layer_norm_codes_u8(s->level, x, m, d, g, bias, s->arch.norm_eps, codes_q->s, codes_q->z, codes_q->bits, w->a);
}

/* LayerNorm 1 of block bi and q, k, v codes for token rows [r0, r0 + m). */
static void pre_attention(repq_session *s, int worker, const qblock *b, size_t r0, size_t m, wscratch *w,
                          double *t0)
{
    const size_t d = b->d;
    norm_codes(s, s->x + r0 * d, m, d, b->p->norm1_w, b->p->norm1_b, &b->qkv_in, w);
    tock(s, worker, REPQ_STAGE_FLOAT, t0);
    gemm_rows(s, worker, &b->lq, m, w->a, d, w, t0);
    if (b->q_scaled) {
        /* Swin: q times 1 / sqrt(head_dim) in float, then its quantizer (as the reference). */
        const qlin *l = &b->lq;
        repq_gemm_out_scaled_u8(s->level, m, l->n, w->acc, l->n, w->rowsum, l->colmul, l->colconst, l->scale,
                                l->bias, 1.0f / sqrtf((float)b->hd), b->q.s, b->q.z, b->q.bits, s->qc + r0 * d, d);
        tock(s, worker, REPQ_STAGE_EPILOGUE, t0);
    } else {
        out_u8(s, worker, &b->lq, &b->q, m, w, s->qc + r0 * d, d, t0);
    }
    qlin_gemm(s, &b->lk, m, w->a, d, w);
    tock(s, worker, REPQ_STAGE_GEMM, t0);
    out_u8(s, worker, &b->lk, &b->k, m, w, s->kc + r0 * d, d, t0);
    qlin_gemm(s, &b->lv, m, w->a, d, w);
    tock(s, worker, REPQ_STAGE_GEMM, t0);
    out_u8(s, worker, &b->lv, &b->v, m, w, s->vc + r0 * d, d, t0);
}

/* proj + residual, LayerNorm 2, fc1, GELU, fc2 + residual for token rows. */
static void post_attention(repq_session *s, int worker, const qblock *b, size_t r0, size_t m, wscratch *w,
                           double *t0)
{
    const size_t d = b->d, hid = b->hidden;
    gemm_rows(s, worker, &b->proj, m, s->oc + r0 * d, d, w, t0);
    out_f32(s, worker, &b->proj, m, w, true, s->x + r0 * d, d, t0);
    norm_codes(s, s->x + r0 * d, m, d, b->p->norm2_w, b->p->norm2_b, &b->fc1_in, w);
    tock(s, worker, REPQ_STAGE_FLOAT, t0);
    gemm_rows(s, worker, &b->fc1, m, w->a, d, w, t0);
    /* fc2's codes straight from fc1's accumulators (GELU in registers). */
    repq_gemm_out_gelu_u8(s->level, m, hid, w->acc, hid, w->rowsum, b->fc1.colmul, b->fc1.colconst, b->fc1.scale,
                          b->fc1.bias, &b->fc2_codes, w->a, hid);
    tock(s, worker, REPQ_STAGE_FLOAT, t0);
    gemm_rows(s, worker, &b->fc2, m, w->a, hid, w, t0);
    out_f32(s, worker, &b->fc2, m, w, true, s->x + r0 * d, d, t0);
}

typedef struct rows_arg {
    int32_t post_block; /* -1: none */
    int32_t pre_block;  /* -1: none */
    size_t rows;        /* token rows: the batch's, or its class tokens' alone (see repq_session_run) */
} rows_arg;

static void rows_task(repq_session *s, int worker, int workers, const void *arg)
{
    const rows_arg *ra = arg;
    wscratch *w = &s->ws[worker];
    size_t lo, hi;
    split(ra->rows, worker, workers, &lo, &hi);
    double t0 = tick(s, worker);
    for (size_t r0 = lo; r0 < hi; r0 += ROW_BLOCK) {
        const size_t m = hi - r0 < ROW_BLOCK ? hi - r0 : ROW_BLOCK;
        if (ra->post_block >= 0)
            post_attention(s, worker, &s->w->blocks[ra->post_block], r0, m, w, &t0);
        if (ra->pre_block >= 0)
            pre_attention(s, worker, &s->w->blocks[ra->pre_block], r0, m, w, &t0);
    }
}

/* One row of a head's codes; the usual head widths get copies of a constant size,
 * which the compiler inlines instead of calling memcpy. */
static inline void copy_head_row(uint8_t *dst, const uint8_t *src, size_t hd)
{
    if (hd == 32)
        memcpy(dst, src, 32);
    else if (hd == 64)
        memcpy(dst, src, 64);
    else
        memcpy(dst, src, hd);
}

/* area rows of one head's codes through a window's row map, into dst [area, hd]. */
static void gather_head(const uint8_t *codes, size_t d, const int32_t *rows, size_t area, size_t hd, uint8_t *dst)
{
    for (size_t i = 0; i < area; i++)
        copy_head_row(dst + i * hd, codes + (size_t)rows[i] * d, hd);
}

/* The inverse: dst rows (stride d) through the row map from src [area, hd]. */
static void scatter_head(const uint8_t *src, const int32_t *rows, size_t area, size_t hd, size_t d, uint8_t *dst)
{
    for (size_t i = 0; i < area; i++)
        copy_head_row(dst + (size_t)rows[i] * d, src + i * hd, hd);
}

/* Window attention scores: on the grid 2^score_shift finer, plus the head's relative
 * position bias and, between different regions of a shifted window, the mask. */
VECTORIZED static void window_scores(const qblock *b, size_t h, size_t window, int32_t *sc, size_t ldsc,
                                     int32_t *colconst)
{
    const size_t area = b->area;
    const int32_t *bias = b->bias + h * area * area, *reg = b->region ? b->region + window * area : NULL;
    const int shift = b->score_shift;
    for (size_t i = 0; i < area; i++) {
        int32_t *x = sc + i * ldsc;
        const int32_t *bi = bias + i * area;
        if (reg) /* branch-free, so that the compiler vectorizes the row */
            for (size_t j = 0; j < area; j++)
                x[j] = (int32_t)((uint32_t)x[j] << shift) + bi[j] + (-(int32_t)(reg[i] != reg[j]) & b->mask);
        else
            for (size_t j = 0; j < area; j++)
                x[j] = (int32_t)((uint32_t)x[j] << shift) + bi[j];
    }
    for (size_t j = 0; j < area; j++)
        colconst[j] = (int32_t)((uint32_t)colconst[j] << shift);
}

typedef struct attn_arg {
    const qblock *b;
    bool cls_only; /* only the class token's query row, its output at the image's row of oc */
} attn_arg;

/* Attention of (image, head, window) triples: exact integer scores, log2 softmax codes,
 * shifts times v, quantized to the proj input's codes. */
static void attn_task(repq_session *s, int worker, int workers, const void *arg)
{
    const attn_arg *aa = arg;
    const qblock *b = aa->b;
    const size_t t = b->area, tokens = b->t, d = b->d, hd = b->hd, heads = b->heads, windows = b->windows;
    const size_t query_rows = aa->cls_only ? 1 : t;
    const repq_kernel_level lv = s->level;
    wscratch *w = &s->ws[worker];
    size_t lo, hi;
    split(s->n * heads * windows, worker, workers, &lo, &hi);
    double t0 = tick(s, worker);
    const int32_t sentinel = b->sm.sentinel;
    /* At AMX q k^T runs over whole 16 x 16 tiles: rows past t read q's slack (or the
     * next window's gathered rows), columns past t meet k's zero packing; the scores
     * of real rows and columns are the same sums, and the rest is not read. */
    const size_t ldsc = score_stride(t), tt = lv >= REPQ_LEVEL_AMX ? ldsc : t, qk_rows = aa->cls_only ? 1 : tt;
    for (size_t item = lo; item < hi; item++) {
        const size_t img = item / (heads * windows), h = item / windows % heads, win = item % windows;
        const size_t base = img * tokens * d + h * hd;
        const uint8_t *qh = s->qc + base, *kh = s->kc + base, *vh = s->vc + base;
        size_t ld = d;
        if (b->windowed) {
            const int32_t *rows = b->rows + win * t;
            gather_head(qh, d, rows, t, hd, w->qg);
            gather_head(kh, d, rows, t, hd, w->kg);
            gather_head(vh, d, rows, t, hd, w->vg);
            qh = w->qg;
            kh = w->kg;
            vh = w->vg;
            ld = hd;
        }
        repq_attn_pack_k(lv, t, hd, kh, ld, b->koff, w->kpack);
        /* The exact score is gemm + qk_colmul * rowsum(q)[i] - z_q * colsum(k - koff)[j]
         * + qk_const; the codes depend only on differences within a row, so the row
         * terms are left out and the column term rides into the softmax (same codes). */
        repq_row_sums_u8(lv, t, hd, kh, ld, w->colconst);
        for (size_t j = 0; j < t; j++)
            w->colconst[j] = -b->q.z * (w->colconst[j] - b->koff * (int32_t)hd);
        repq_gemm_u8s8(lv, qk_rows, tt, hd, qh, ld, w->kpack, w->sc, ldsc);
        if (b->windowed)
            window_scores(b, h, win, w->sc, ldsc, w->colconst);
        repq_log2softmax_rows_bias(lv, &b->sm, query_rows, t, w->sc, ldsc, w->colconst, w->codes, t);
        repq_attn_v_accumulate_gemm(lv, query_rows, t, hd, w->codes, t, b->sm.sentinel, vh, ld, b->v.z,
                                    b->frac_bits, w->e, w->d, hd, w->avs);
        /* Probabilities below s_attn 2^-F (ceil(c/2) > F, only codes past 2F) do not
         * fit the accumulators' fraction bits; their terms, down to s_attn 2^-2F, go
         * through the same accumulators on the codes c - 2F (same parity, weights
         * 2^(2F - ceil(c/2))). Few or none at 65 tokens; skipped when none. */
        const bool tail = repq_attn_v_tail_codes(query_rows * t, w->codes, sentinel, b->frac_bits, w->tail);
        if (tail)
            repq_attn_v_accumulate(lv, query_rows, t, hd, w->tail, t, sentinel, vh, ld, b->v.z, b->frac_bits, w->e2,
                                   w->d2, hd);
        uint8_t *out = b->windowed ? w->og : aa->cls_only ? s->oc + img * d + h * hd : s->oc + base;
        repq_attn_v_finish(lv, query_rows, hd, w->e, w->d, tail ? w->e2 : NULL, tail ? w->d2 : NULL, hd,
                           b->frac_bits, b->av_even, b->av_odd, b->proj_in.s, b->proj_in.z, b->proj_in.bits, out,
                           b->windowed ? hd : d);
        if (b->windowed)
            scatter_head(w->og, b->rows + win * t, t, hd, d, s->oc + base);
    }
    tock(s, worker, REPQ_STAGE_ATTENTION, &t0);
}

/* Patch merging of output rows: the 2x2 input tokens gathered, LayerNorm, codes, the
 * reduction, into the next stage's residual stream x2. */
static void merge_task(repq_session *s, int worker, int workers, const void *arg)
{
    const size_t k = *(const size_t *)arg;
    const repq_net_node *node = s->w->merge_nodes[k];
    const qlin *l = &s->w->merge[k];
    const aq *in = &s->w->merge_in[k];
    const size_t grid = (size_t)node->grid, tin = grid * grid, tout = (size_t)node->tokens;
    const size_t din = (size_t)node->in_dim, wide = 4 * din, d = (size_t)node->dim;
    const int32_t *map = s->w->merge_rows[k];
    const repq_net *net = s->q->net;
    const float *g = repq_net_param_data(net, s->q->fq_params.arena, node->norm_weight);
    const float *beta = repq_net_param_data(net, s->q->fq_params.arena, node->norm_bias);
    wscratch *w = &s->ws[worker];
    size_t lo, hi;
    split(s->n * tout, worker, workers, &lo, &hi);
    double t0 = tick(s, worker);
    for (size_t r0 = lo; r0 < hi; r0 += ROW_BLOCK) {
        const size_t m = hi - r0 < ROW_BLOCK ? hi - r0 : ROW_BLOCK;
        for (size_t i = 0; i < m; i++) {
            const size_t r = r0 + i, img = r / tout, token = r % tout;
            for (size_t part = 0; part < 4; part++)
                memcpy(w->f + (i * 4 + part) * din, s->x + (img * tin + (size_t)map[4 * token + part]) * din,
                       din * sizeof(float));
        }
        repq_layer_norm_codes_u8(s->level, w->f, m, wide, g, beta, s->arch.norm_eps, in->s, in->z, in->bits, w->a);
        tock(s, worker, REPQ_STAGE_FLOAT, &t0);
        gemm_rows(s, worker, l, m, w->a, wide, w, &t0);
        out_f32(s, worker, l, m, w, false, s->x2 + r0 * d, d, &t0);
    }
}

/* Final LayerNorm, pooling (the class token's row, or the mean of every token's),
 * head codes, logits (on the calling thread). With cls_compact, image i's class-token
 * row is row i of x (the last block's shortcut in repq_session_run). */
static void head_stage(repq_session *s, bool cls_compact)
{
    const repq_net *net = s->q->net;
    const repq_net_node *node = &net->nodes[net->num_nodes - 1];
    const size_t d = (size_t)node->dim, k = s->classes, t = (size_t)node->tokens;
    const repq_params *p = &s->q->fq_params;
    wscratch *w = &s->ws[0];
    double t0 = tick(s, 0);
    for (size_t i0 = 0; i0 < s->n; i0 += ROW_BLOCK) {
        const size_t m = s->n - i0 < ROW_BLOCK ? s->n - i0 : ROW_BLOCK;
        for (size_t i = 0; i < m; i++) {
            const float *x = s->x + (i0 + i) * (cls_compact ? d : t * d);
            if (node->avg_pool) {
                repq_float_layer_norm(x, t, d, p->norm_w, p->norm_b, s->arch.norm_eps, s->pooled);
                repq_float_mean_rows(s->pooled, t, d, w->f + i * d);
            } else {
                repq_float_layer_norm(x, 1, d, p->norm_w, p->norm_b, s->arch.norm_eps, w->f + i * d);
            }
        }
        repq_quantize_f32_u8(s->level, m * d, w->f, s->w->head_in.s, s->w->head_in.z, s->w->head_in.bits, w->a);
        tock(s, 0, REPQ_STAGE_FLOAT, &t0);
        gemm_rows(s, 0, &s->w->head, m, w->a, d, w, &t0);
        out_f32(s, 0, &s->w->head, m, w, false, s->logits + i0 * k, k, &t0);
    }
}

REPQ_API repq_status repq_session_run(repq_session *s, repq_tensor *images, repq_tensor *logits)
{
    if (!repq_object_is(s, REPQ_KIND_SESSION))
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_clear_error(&s->base);
    size_t n;
    bool u8;
    repq_status st = repq_images_check(&s->base, &s->arch, images, &n, &u8);
    if (st || (st = repq_logits_check(&s->base, &s->arch, logits, n)))
        return st;
    if (n > (size_t)s->max_batch)
        return repq_fail(&s->base, REPQ_ERR_SHAPE, "repq_session_run: batch of %zu images exceeds max_batch %d", n,
                         (int)s->max_batch);
    s->n = n;
    s->images = images->data;
    s->u8 = u8;
    s->logits = logits->data;
    const size_t d = s->dim, t = s->t;
    const repq_params *p = &s->q->fq_params;
    if (p->cls_token)
        for (size_t b = 0; b < n; b++)
            for (size_t c = 0; c < d; c++)
                s->x[b * t * d + c] = p->cls_token[c] + p->pos_embed[c];
    parallel(s, patch_task, NULL);
    /* The network's nodes in order: a block's attention, then its row-wise rest fused
     * with the next block's LayerNorm and q, k, v when one follows. */
    const repq_net *net = s->q->net;
    float *const x0 = s->x, *const x1 = s->x2;
    bool pending_pre = true; /* the next block's q, k, v are not computed yet */
    /* With the class token pooled, the last block's output matters at that token only:
     * its attention runs one query row per image and head, and its row-wise rest runs
     * on the class tokens' rows alone, moved to the front of x. Rows do not mix outside
     * attention, so the logits are the same bits for 1/T of that work (T tokens). */
    const bool cls_pooled = p->cls_token && !net->nodes[net->num_nodes - 1].avg_pool && !s->all_rows;
    bool cls_compact = false;
    for (int32_t i = 1; i < net->num_nodes - 1; i++) {
        const repq_net_node *node = &net->nodes[i];
        if (node->op == REPQ_OP_MERGE) {
            const size_t k = (size_t)node->unit;
            parallel(s, merge_task, &k);
            float *swap = s->x;
            s->x = s->x2;
            s->x2 = swap;
            pending_pre = true;
            continue;
        }
        const int32_t bi = node->unit;
        const qblock *blk = &s->w->blocks[bi];
        const size_t rows = n * blk->t;
        if (pending_pre) {
            rows_arg ra = {-1, bi, rows};
            parallel(s, rows_task, &ra);
        }
        const repq_net_node *next = &net->nodes[i + 1];
        const attn_arg aa = {blk, cls_pooled && next->op == REPQ_OP_HEAD};
        parallel(s, attn_task, &aa);
        rows_arg rb = {bi, next->op == REPQ_OP_BLOCK ? next->unit : -1, rows};
        if (aa.cls_only) {
            for (size_t img = 1; img < n; img++) /* ascending: a row is read before it is written */
                memcpy(s->x + img * blk->d, s->x + img * blk->t * blk->d, blk->d * sizeof(float));
            rb.rows = n;
            cls_compact = true;
        }
        parallel(s, rows_task, &rb);
        pending_pre = rb.pre_block < 0;
    }
    head_stage(s, cls_compact);
    s->x = x0;
    s->x2 = x1;
    return REPQ_OK;
}
