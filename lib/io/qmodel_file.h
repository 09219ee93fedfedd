/* Internal: the quantized-model file (docs/format.md). */
#ifndef REPQ_IO_QMODEL_FILE_H
#define REPQ_IO_QMODEL_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/object.h"
#include "repq/quant.h"

/* Parse a whole file image held in memory (borrowed, not kept): what repq_qmodel_load
 * does after reading the file, and what the tests and the fuzz target call directly. */
repq_status repq_qmodel_parse_memory(repq_object *err, const repq_allocator *al, const uint8_t *bytes,
                                     size_t size, repq_qmodel **out);

#endif
