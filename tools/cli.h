/* repq command line: what the subcommand files share. */
#ifndef REPQ_TOOLS_CLI_H
#define REPQ_TOOLS_CLI_H

#include <stdbool.h>

#include "repq/repq.h"

/* Arguments of the form --name VALUE, flags (--json, --png) and positionals: the first
 * (MODEL) in `positional`, the others in `inputs`. */
typedef struct args {
    const char *positional;
    const char **inputs;
    int num_inputs;
    const char *data, *mode, *calib, *method, *weights, *post_gelu, *clip, *smooth, *out, *model, *arch, *kernels;
    const char *images, *labels, *class_names, *interpolation, *crop_pct;
    long long offset, limit, calib_offset, calib_images, wbits, abits, batch, threads, top, resize;
    int json, png, mixed, reference;
} args;

int usage(void);
/* Prints "repq: WHAT: STATUS: message of HANDLE" and returns 1. */
int fail(const char *what, repq_status st, const void *handle);
double now_seconds(void);
/* A repq_progress_fn drawing a bar on stderr; user is the stage's name. */
void progress_bar(void *user, int32_t done, int32_t total);
repq_status session_options(const args *a, repq_options *o);

/* A model run in one of the modes fp32 (float safetensors), fake or int (.repq). */
typedef struct runner {
    repq_model *model;
    repq_qmodel *qmodel;
    repq_session *session;
    int64_t classes;
} runner;

/* Loads MODEL for `mode`; int mode makes a session for batches up to max_batch. Reports
 * failures itself. */
repq_status runner_open(repq_context *ctx, const args *a, const char *mode, int32_t max_batch, runner *r);
/* logits F32 [N, classes] of U8 images [N, 3, S, S]; reports failures itself. */
repq_status runner_run(runner *r, repq_tensor *images, repq_tensor *logits);
void runner_close(runner *r);

/* The image loader of a float or quantized model with the command line's overrides
 * (--resize, --crop-pct, --interpolation, --threads); reports failures itself. */
repq_status cli_image_loader(repq_context *ctx, const args *a, const repq_model *m, const repq_qmodel *q,
                             repq_image_loader **out);
/* Calibration images from a folder (repq quantize --calib DIR); reports failures itself. */
repq_status cli_calibration_images(repq_context *ctx, const args *a, const repq_model *m, repq_tensor **out);
/* repq eval MODEL --images DIR [--labels FILE]. */
int cmd_eval_images(repq_context *ctx, const args *a, const char *mode);
int cmd_classify(repq_context *ctx, const args *a);
int cmd_preprocess(repq_context *ctx, const args *a);

#endif
