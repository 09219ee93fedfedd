/* librepq image files: JPEG and PNG photos turned into what a timm model is fed.
 *
 *   repq_image_loader_new(ctx, model, &loader)   the model's transform (img_size,
 *                                                crop_pct, interpolation)
 *   repq_image_load(loader, "cat.jpg", &image)   U8 [1, 3, S, S]
 *   repq_image_load_batch(loader, paths, n, images, statuses)   [n, 3, S, S]
 *   repq_image_folder_open(ctx, dir, labels, &folder)   an ImageNet-style folder
 *   repq_image_folder_load(loader, folder, first, n, images, labels, statuses)
 *
 * An image is decoded (libjpeg-turbo, libpng) to 8-bit RGB as Pillow's
 * Image.open(path).convert("RGB") decodes it, its shorter side is resized to
 * int(S / crop_pct) with Pillow's filter (bicubic, antialiased when shrinking, or
 * bilinear), and the centre S x S is kept, as timm's evaluation transform does
 * (docs/images.md). The result is U8 pixels, to which repq_model_forward,
 * repq_calib_feed and repq_session_run apply the model's scale, mean and std.
 *
 * The format comes from a file's first bytes, not its name. A build configured with
 * -Dimages=disabled has these functions, and every one returns REPQ_ERR_UNSUPPORTED.
 *
 * Thread safety: a loader or a folder is used by one thread at a time (the batch
 * calls run their own worker threads inside). Different loaders may run at once.
 */
#ifndef REPQ_IMAGE_H
#define REPQ_IMAGE_H

#include "common.h"
#include "model.h"
#include "quant.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The resize and crop of one model, plus decoding limits. It copies what it needs from
 * the model: the model may be freed first. */
typedef struct repq_image_loader repq_image_loader;

/* Resampling filters, numbered as Pillow numbers them. Values are part of the ABI. */
typedef enum repq_interpolation {
    REPQ_INTERPOLATION_BILINEAR = 2,
    REPQ_INTERPOLATION_BICUBIC = 3
} repq_interpolation;

/* Settings of a loader. Values are part of the ABI. */
typedef enum repq_image_param {
    /* int, read-only: side S of the square crop, the model's image size. */
    REPQ_IMAGE_CROP_SIZE = 1,
    /* int: the shorter side after resizing, S..65536; default int(S / crop_pct) with the
     * model's crop_pct (timm: math.floor(img_size / crop_pct)). */
    REPQ_IMAGE_RESIZE_SIZE = 2,
    /* int: a repq_interpolation; default the model's (bicubic unless its metadata says). */
    REPQ_IMAGE_INTERPOLATION = 3,
    /* int: images of more than this many pixels (width x height, read from the header)
     * are refused with REPQ_ERR_UNSUPPORTED before their pixels are allocated.
     * Default 89478485 (Pillow's decompression-bomb threshold); 1..2^40. */
    REPQ_IMAGE_MAX_PIXELS = 4,
    /* int: threads that decode the images of one batch call, 1..256, default 1. With more
     * than one, the context's allocator is called from those threads concurrently. */
    REPQ_IMAGE_THREADS = 5,
    /* float (set_float): sets REPQ_IMAGE_RESIZE_SIZE to floor(S / crop_pct); (0, 1]. */
    REPQ_IMAGE_CROP_PCT = 6
} repq_image_param;

/* A loader with the transform of a float model or of a quantized model (whose file
 * keeps the float model's preprocessing). Errors: REPQ_ERR_INVALID_ARGUMENT,
 * REPQ_ERR_NOMEM, REPQ_ERR_UNSUPPORTED (images left out of the build). */
REPQ_API repq_status repq_image_loader_new(repq_context *ctx, const repq_model *model,
                                           repq_image_loader **out_loader);
REPQ_API repq_status repq_image_loader_new_quantized(repq_context *ctx, const repq_qmodel *qmodel,
                                                     repq_image_loader **out_loader);
REPQ_API void repq_image_loader_free(repq_image_loader *loader);

/* Change a setting. Errors: REPQ_ERR_INVALID_ARGUMENT (unknown or read-only key, value
 * out of range; the message says which). */
REPQ_API repq_status repq_image_loader_set_int(repq_image_loader *loader, repq_image_param param,
                                               int64_t value);
REPQ_API repq_status repq_image_loader_set_float(repq_image_loader *loader, repq_image_param param,
                                                 double value);
/* Read an int setting (REPQ_IMAGE_CROP_PCT is not readable: it only sets the size). */
REPQ_API repq_status repq_image_loader_get_int(const repq_image_loader *loader, repq_image_param param,
                                               int64_t *out_value);

/* Decode and transform one file into a new U8 [1, 3, S, S] tensor (planar RGB), which the
 * caller frees. The loader's allocator serves all memory. Failures are recorded on the
 * loader, with the path in the message.
 * Errors: REPQ_ERR_IO (cannot open or read; not a regular file), REPQ_ERR_FORMAT (empty,
 * not JPEG/PNG, truncated, corrupt), REPQ_ERR_UNSUPPORTED (more than MAX_PIXELS pixels,
 * a JPEG of neither 1, 3 nor 4 components), REPQ_ERR_OVERFLOW, REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_image_load(repq_image_loader *loader, const char *path,
                                     repq_tensor **out_image);

/* Decode and transform `count` files into the caller's U8 [count, 3, S, S] tensor, on
 * REPQ_IMAGE_THREADS threads. Every file is attempted: a file that fails leaves its
 * image zeroed and the others are filled. `out_statuses`, if not NULL, receives each
 * file's repq_status (count entries). Returns REPQ_OK if every file loaded, else the
 * status of the first failing file (in path order), whose message (with its path) is
 * recorded on the loader; repq_image_load of another failed file gives its message.
 * Errors besides the per-file ones: REPQ_ERR_INVALID_ARGUMENT, REPQ_ERR_SHAPE (images is
 * not U8 [count, 3, S, S]), REPQ_ERR_NOMEM (the threads could not start). */
REPQ_API repq_status repq_image_load_batch(repq_image_loader *loader, const char *const *paths,
                                           int32_t count, repq_tensor *images, int32_t *out_statuses);

/* ---- Folders of images ----------------------------------------------------------
 * Either ImageNet's layout (labels_path NULL): one sub-folder per class, the class index
 * is the position of its folder's name in byte order (torchvision's ImageFolder), images
 * are the files below it (sub-folders searched too) whose names end in .jpg, .jpeg,
 * .png, .ppm, .bmp, .pgm, .tif, .tiff or .webp (any case), in byte order of their path;
 * or a flat folder with a labels file: one `filename index` a line (the index is the last
 * field, so names may hold spaces; blank lines and lines starting with '#' are skipped),
 * images in the file's order. A folder without sub-folders and without a labels file
 * lists its own image files with class -1 (unknown; for calibration). Names starting with
 * '.' are skipped. Only the listing is read here: files are decoded by
 * repq_image_folder_load. */
typedef struct repq_image_folder repq_image_folder;

/* Errors: REPQ_ERR_IO (folder or labels file unreadable), REPQ_ERR_FORMAT (no image; a
 * malformed labels line, with its number; a negative index; a name with '/' or ".."),
 * REPQ_ERR_NOMEM. */
REPQ_API repq_status repq_image_folder_open(repq_context *ctx, const char *dir, const char *labels_path,
                                            repq_image_folder **out_folder);
REPQ_API void repq_image_folder_free(repq_image_folder *folder);
/* Number of images, and of classes (class folders; for a labels file, the largest index + 1;
 * 0 when the classes are unknown). */
REPQ_API repq_status repq_image_folder_size(const repq_image_folder *folder, int64_t *out_images,
                                            int32_t *out_classes);
/* Path (valid while the folder lives) and class index of image `index`. */
REPQ_API repq_status repq_image_folder_entry(const repq_image_folder *folder, int64_t index,
                                             const char **out_path, int32_t *out_label);
/* Name of class `label`: its folder's name; REPQ_ERR_UNSUPPORTED for a labels file. */
REPQ_API repq_status repq_image_folder_class_name(const repq_image_folder *folder, int32_t label,
                                                  const char **out_name);
/* repq_image_load_batch of images [first, first + count) of the folder into `images`
 * (U8 [count, 3, S, S]) and their classes into `labels` (I32 [count]); statuses and
 * the returned status as for repq_image_load_batch. Errors as it, plus
 * REPQ_ERR_INVALID_ARGUMENT for a range outside the folder. */
REPQ_API repq_status repq_image_folder_load(repq_image_loader *loader, const repq_image_folder *folder,
                                            int64_t first, int32_t count, repq_tensor *images,
                                            repq_tensor *labels, int32_t *out_statuses);

#ifdef __cplusplus
}
#endif
#endif
