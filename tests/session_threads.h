/* Many threads, each with its own session, over one shared qmodel (run under
 * ThreadSanitizer to check that sessions share the qmodel read-only). */
#ifndef REPQ_TESTS_SESSION_THREADS_H
#define REPQ_TESTS_SESSION_THREADS_H

#include <stddef.h>

#include "repq/repq.h"

/* Start `threads` threads at once; each makes a session over `q` (default options,
 * max batch the number of `images`), runs it twice on `images` and reads the logits,
 * which must equal `ref` (`floats` floats) bit for bit. Fails the running cmocka test
 * otherwise. */
void sessions_on_threads(const repq_qmodel *q, const repq_tensor *images, int threads, const float *ref,
                         size_t floats);

#endif
