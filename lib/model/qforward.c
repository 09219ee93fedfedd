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

REPQ_API repq_status repq_qmodel_forward(const repq_qmodel *q, repq_forward_mode mode,
                                         repq_tensor *images, repq_tensor *logits)
{
    if (!repq_object_is(q, REPQ_KIND_QMODEL))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (mode != REPQ_FORWARD_FAKE_QUANT && mode != REPQ_FORWARD_FLOAT)
        return REPQ_ERR_INVALID_ARGUMENT;
    if (mode == REPQ_FORWARD_FLOAT && !q->has_float_weights)
        return REPQ_ERR_STATE;
    fake_quant fq = {q};
    repq_vit_hook hook = {apply, &fq, true};
    bool fake = mode == REPQ_FORWARD_FAKE_QUANT;
    /* Messages are not recorded: a qmodel is shared read-only between threads. */
    return repq_vit_forward_tensors(NULL, &q->base.allocator, &q->arch, fake ? &q->fq_params : &q->float_params,
                                    fake ? &hook : NULL, images, logits);
}
