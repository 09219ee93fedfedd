/* Internal: knobs of an integer-inference session for tests and benchmarks. */
#ifndef REPQ_INFER_SESSION_H
#define REPQ_INFER_SESSION_H

#include <stdbool.h>

#include "kernels/cpu.h"
#include "repq/quant.h"

/* Time spent per stage, summed over runs since profiling was enabled (seconds, as
 * seen by the calling thread, so meaningful with threads == 1). */
typedef enum repq_session_stage {
    REPQ_STAGE_GEMM = 0,      /* linear layers: row sums and u8 x s8 GEMMs */
    REPQ_STAGE_EPILOGUE = 1,  /* zero-point corrections, to float / to codes */
    REPQ_STAGE_ATTENTION = 2, /* q k^T, log2 softmax, attention x V, requantization */
    REPQ_STAGE_FLOAT = 3,     /* LayerNorm, GELU, quantization, patches, residuals */
    REPQ_STAGE_COUNT = 4
} repq_session_stage;

/* Enable (and reset) or disable the per-stage timers. */
void repq_session_profile(repq_session *s, bool enable);
void repq_session_profile_read(const repq_session *s, double out_seconds[REPQ_STAGE_COUNT]);

/* Bytes of the weights and tables shared with the qmodel's other sessions, and of
 * this session's own memory (activations, scratch, thread pool). */
void repq_session_memory(const repq_session *s, size_t *out_shared, size_t *out_own);

/* With `full`, every token's row goes through the last block even where the head reads
 * only the class token's (the run's shortcut, which gives the same bits: for tests). */
void repq_session_run_all_rows(repq_session *s, bool full);

#endif
