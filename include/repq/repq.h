/* librepq: the whole public API. Include this header and link with -lrepq
 * (pkg-config --cflags --libs repq). */
#ifndef REPQ_REPQ_H
#define REPQ_REPQ_H

#include "common.h"
#include "tensor.h"
#include "model.h"
#include "quant.h"
#include "image.h"

#endif
