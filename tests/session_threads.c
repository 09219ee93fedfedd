#include "session_threads.h"

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
