/* libFuzzer entry point for the quantized-model loader.
 *
 * Parses the input as a whole qmodel file from memory (the path repq_qmodel_load
 * takes after reading the file). A file the loader accepts must be internally
 * consistent: it is reparameterized, its weights dequantize to finite values, and the
 * fake-quant forward runs on one image without touching memory it does not own.
 * Build: meson setup build-fuzz -Dfuzzing=true (see scripts/fuzz.sh).
 * Seeds: tests/fuzz/corpus/qmodel/. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/qmodel.h"
#include "io/qmodel_file.h"
#include "repq/repq.h"

/* Internal, defined in lib/io/qmodel_file.c. */

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

static void run_one_image(const repq_qmodel *q)
{
    int64_t ishape[4] = {1, q->arch.in_chans, q->arch.img_size, q->arch.img_size};
    int64_t lshape[2] = {1, q->arch.num_classes};
    repq_tensor *images = NULL, *logits = NULL;
    /* Keep each run short: only small models go through the forward. */
    if ((size_t)q->arch.img_size * (size_t)q->arch.img_size > 64 * 64 || q->arch.embed_dim > 256 ||
        q->arch.depth > 4 || q->arch.mlp_hidden > 1024)
        return;
    if (repq_tensor_new(NULL, REPQ_DTYPE_U8, 4, ishape, NULL, &images) == REPQ_OK &&
        repq_tensor_new(NULL, REPQ_DTYPE_F32, 2, lshape, NULL, &logits) == REPQ_OK) {
        repq_status st = repq_qmodel_forward(q, REPQ_FORWARD_FAKE_QUANT, images, logits);
        check(st == REPQ_OK || st == REPQ_ERR_NUMERIC || st == REPQ_ERR_NOMEM);
        check(repq_qmodel_forward(q, REPQ_FORWARD_FLOAT, images, logits) == REPQ_ERR_STATE);
    }
    repq_tensor_free(images);
    repq_tensor_free(logits);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    repq_allocator al = repq_allocator_of(NULL);
    repq_object err = {0};
    repq_qmodel *q = (repq_qmodel *)&q;
    repq_status st = repq_qmodel_parse_memory(&err, &al, data, size, &q);
    if (st != REPQ_OK) {
        check(q == NULL && err.error[0] != '\0');
        check(st == REPQ_ERR_FORMAT || st == REPQ_ERR_UNSUPPORTED || st == REPQ_ERR_OVERFLOW ||
              st == REPQ_ERR_NOMEM);
        return 0;
    }
    check(q->reparameterized == 1 && q->has_float_weights == 0);
    for (size_t i = 0; i < q->fq_params.arena_floats; i++)
        check(isfinite(q->fq_params.arena[i]));
    int64_t v;
    check(repq_qmodel_get_int(q, REPQ_QMODEL_WEIGHT_BITS, &v) == REPQ_OK && v >= 2 && v <= 8);
    run_one_image(q);
    repq_qmodel_free(q);
    return 0;
}
