#include "session_checks.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/tensor.h"

typedef struct thread_job {
    const repq_qmodel *q;
    const repq_tensor *images;
    size_t floats;
    float *out;
    repq_status st;
} thread_job;

static void *thread_main(void *p)
{
    thread_job *j = p;
    repq_session *s;
    repq_tensor *y;
    const int64_t n = j->images->shape[0], shape[2] = {n, (int64_t)j->floats / n};
    j->st = repq_session_new(NULL, j->q, NULL, n, &s);
    if (j->st)
        return NULL;
    if (!(j->st = repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &y))) {
        for (int r = 0; r < 2 && !j->st; r++)
            j->st = repq_session_run(s, (repq_tensor *)j->images, y);
        if (!j->st)
            j->st = repq_tensor_read(y, j->out, j->floats * sizeof(float));
        repq_tensor_free(y);
    }
    repq_session_free(s);
    return NULL;
}

void sessions_on_threads(const repq_qmodel *q, const repq_tensor *images, int threads, const float *ref,
                         size_t floats)
{
    thread_job *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    assert_true(jobs && th);
    for (int i = 0; i < threads; i++) {
        jobs[i] = (thread_job){q, images, floats, calloc(floats, sizeof(float)), REPQ_OK};
        assert_non_null(jobs[i].out);
    }
    for (int i = 0; i < threads; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &jobs[i]), 0);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < threads; i++) {
        assert_int_equal(jobs[i].st, REPQ_OK);
        assert_memory_equal(jobs[i].out, ref, floats * sizeof(float));
        free(jobs[i].out);
    }
    free(jobs);
    free(th);
}

static size_t alloc_calls;

static void *counting_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    alloc_calls++;
    return aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
}

static void counting_release(void *user, void *p)
{
    (void)user;
    free(p);
}

static repq_tensor *logits_of(const repq_tensor *images, int64_t classes)
{
    const int64_t shape[2] = {images->shape[0], classes};
    repq_tensor *t;
    assert_int_equal(repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, shape, NULL, &t), REPQ_OK);
    return t;
}

void session_runs_allocate_nothing(const repq_qmodel *q, const repq_tensor *batch, const repq_tensor *part,
                                   int64_t classes)
{
    repq_context *ctx;
    repq_options *o;
    assert_int_equal(repq_context_new(&ctx), REPQ_OK);
    assert_int_equal(repq_context_set_allocator(ctx, counting_alloc, counting_release, NULL), REPQ_OK);
    assert_int_equal(repq_options_new(&o), REPQ_OK);
    for (int threads = 1; threads <= 2; threads++) {
        repq_session *s;
        assert_int_equal(repq_options_set_int(o, REPQ_OPT_THREADS, threads), REPQ_OK);
        assert_int_equal(repq_session_new(ctx, q, o, batch->shape[0], &s), REPQ_OK);
        repq_tensor *y = logits_of(batch, classes), *yp = logits_of(part, classes);
        const size_t before = alloc_calls;
        for (int r = 0; r < 3; r++) {
            assert_int_equal(repq_session_run(s, (repq_tensor *)batch, y), REPQ_OK);
            assert_int_equal(repq_session_run(s, (repq_tensor *)part, yp), REPQ_OK);
        }
        assert_int_equal(alloc_calls, before);
        assert_true(before > 0);
        repq_tensor_free(y);
        repq_tensor_free(yp);
        repq_session_free(s);
    }
    repq_options_free(o);
    repq_context_free(ctx);
}
