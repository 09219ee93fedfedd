/* Checks of integer sessions common to every architecture: many threads with their own
 * session over one shared qmodel (run under ThreadSanitizer to check that sessions
 * share it read-only), and runs that allocate nothing. */
#ifndef REPQ_TESTS_SESSION_CHECKS_H
#define REPQ_TESTS_SESSION_CHECKS_H

#include <stddef.h>
#include <stdint.h>

#include "repq/repq.h"

/* Start `threads` threads at once; each makes a session over `q` (default options,
 * max batch the number of `images`), runs it twice on `images` and reads the logits,
 * which must equal `ref` (`floats` floats) bit for bit. Fails the running cmocka test
 * otherwise. */
void sessions_on_threads(const repq_qmodel *q, const repq_tensor *images, int threads, const float *ref,
                         size_t floats);

/* A session over `q` made with a counting allocator (max batch: the images of `batch`),
 * at 1 and 2 threads, then run three times on `batch` and on `part` (fewer images):
 * no allocation while running. `classes`: columns of the logits. */
void session_runs_allocate_nothing(const repq_qmodel *q, const repq_tensor *batch, const repq_tensor *part,
                                   int64_t classes);

#endif
