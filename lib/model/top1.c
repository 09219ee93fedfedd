/* Top-1 accuracy of logits against labels, whole or counted per batch. */
#include "core/tensor.h"
#include "repq/model.h"

/* Rows of `logits` whose first largest entry is at the row's label. Messages are recorded on
 * `logits` (when it is a tensor), as the headers say: its message is the only thing written. */
static repq_status count_hits(const char *fn, const repq_tensor *logits, const repq_tensor *labels,
                              const void *out, int64_t *hits, int64_t *rows)
{
    repq_object *err = repq_object_is(logits, REPQ_KIND_TENSOR) ? (repq_object *)&logits->base : NULL;
    if (!repq_tensor_is(logits, REPQ_DTYPE_F32, 2))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "%s: logits must be an F32 tensor [N, K]", fn);
    if (!repq_tensor_is(labels, REPQ_DTYPE_I32, 1))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "%s: labels must be an I32 tensor [N]", fn);
    if (!out)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "%s: the output pointer is NULL", fn);
    if (logits->shape[0] != labels->shape[0])
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "%s: logits have %lld rows but labels %lld (slice both "
                         "with repq_tensor_rows_copy)", fn, (long long)logits->shape[0],
                         (long long)labels->shape[0]);
    size_t n = (size_t)logits->shape[0], k = (size_t)logits->shape[1];
    const float *l = logits->data;
    const int32_t *y = labels->data;
    int64_t h = 0;
    for (size_t i = 0; i < n; i++) {
        size_t best = 0;
        for (size_t j = 1; j < k; j++)
            if (l[i * k + j] > l[i * k + best])
                best = j;
        h += (int64_t)best == y[i];
    }
    *hits = h;
    *rows = (int64_t)n;
    return REPQ_OK;
}

REPQ_API repq_status repq_top1_compute(const repq_tensor *logits, const repq_tensor *labels,
                                       double *out_accuracy)
{
    int64_t hits, rows;
    repq_status st = count_hits("repq_top1_compute", logits, labels, out_accuracy, &hits, &rows);
    if (st == REPQ_OK)
        *out_accuracy = (double)hits / (double)rows;
    return st;
}

REPQ_API repq_status repq_top1_count(const repq_tensor *logits, const repq_tensor *labels,
                                     int64_t *out_correct)
{
    int64_t rows;
    return count_hits("repq_top1_count", logits, labels, out_correct, out_correct, &rows);
}
