/* Float forward of a quantized model: fake quantization at every quantization point. */
#include "core/tensor.h"
#include "model/model.h"
#include "model/qmodel.h"

typedef struct fake_quant {
    const repq_qmodel *q;
} fake_quant;

static repq_status apply(void *user, int32_t block, repq_qpoint point, float *x, size_t rows, size_t cols)
{
    const repq_qmodel *q = ((fake_quant *)user)->q;
    return repq_act_quant_apply(&q->acts[repq_qmodel_act_index(&q->arch, block, point)], x, rows, cols);
}

/* Chunked like the float model's forward; quantizers are fixed, so chunking does not
 * change results. */
#define QFORWARD_CHUNK 16

REPQ_API repq_status repq_qmodel_forward(const repq_qmodel *q, repq_forward_mode mode,
                                         repq_tensor *images, repq_tensor *logits)
{
    if (!repq_object_is(q, REPQ_KIND_QMODEL))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (mode != REPQ_FORWARD_FAKE_QUANT && mode != REPQ_FORWARD_FLOAT)
        return REPQ_ERR_INVALID_ARGUMENT;
    if (mode == REPQ_FORWARD_FLOAT && !q->has_float_weights)
        return REPQ_ERR_STATE;
    size_t n;
    bool u8;
    /* Messages are not recorded: a qmodel is shared read-only between threads. */
    repq_status st = repq_images_check(NULL, &q->arch, images, &n, &u8);
    if (st || (st = repq_logits_check(NULL, &q->arch, logits, n)))
        return st;
    fake_quant fq = {q};
    repq_vit_hook hook = {apply, &fq};
    const repq_vit_params *p = mode == REPQ_FORWARD_FLOAT ? &q->float_params : &q->fq_params;
    size_t per_image = images->nbytes / n, k = (size_t)q->arch.num_classes;
    for (size_t i = 0; i < n; i += QFORWARD_CHUNK) {
        size_t c = n - i < QFORWARD_CHUNK ? n - i : QFORWARD_CHUNK;
        st = repq_vit_forward(NULL, &q->base.allocator, &q->arch, p,
                              (const uint8_t *)images->data + i * per_image, u8, c,
                              mode == REPQ_FORWARD_FLOAT ? NULL : &hook, (float *)logits->data + i * k);
        if (st)
            return st;
    }
    return REPQ_OK;
}
