/* repq commands on image files: eval over a folder, calibration images from a folder,
 * classify, preprocess (public API only). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#ifdef REPQ_HAVE_IMAGES
#include <png.h>
#endif

#include "cli.h"

repq_status cli_image_loader(repq_context *ctx, const args *a, const repq_model *m, const repq_qmodel *q,
                             repq_image_loader **out)
{
    repq_status st = m ? repq_image_loader_new(ctx, m, out) : repq_image_loader_new_quantized(ctx, q, out);
    if (st)
        return fail("creating the image loader", st, ctx), st;
    repq_image_loader *l = *out;
    const char *what = NULL;
    if (a->interpolation) {
        int v = strcmp(a->interpolation, "bicubic") == 0    ? REPQ_INTERPOLATION_BICUBIC
                : strcmp(a->interpolation, "bilinear") == 0 ? REPQ_INTERPOLATION_BILINEAR
                                                            : -1;
        what = "--interpolation (bicubic or bilinear)";
        st = repq_image_loader_set_int(l, REPQ_IMAGE_INTERPOLATION, v);
    }
    if (!st && a->crop_pct) {
        char *end;
        double v = strtod(a->crop_pct, &end);
        what = "--crop-pct";
        st = *end || end == a->crop_pct ? REPQ_ERR_INVALID_ARGUMENT
                                        : repq_image_loader_set_float(l, REPQ_IMAGE_CROP_PCT, v);
    }
    if (!st && a->resize) {
        what = "--resize";
        st = repq_image_loader_set_int(l, REPQ_IMAGE_RESIZE_SIZE, a->resize);
    }
    if (!st) {
        what = "--threads";
        st = repq_image_loader_set_int(l, REPQ_IMAGE_THREADS, a->threads);
    }
    if (st) {
        fail(what, st, l);
        repq_image_loader_free(l);
        *out = NULL;
    }
    return st;
}

/* The message of one failed file: loading it alone records it on the loader. */
static void report_bad_file(repq_image_loader *l, const char *path)
{
    repq_tensor *t = NULL;
    repq_status st = repq_image_load(l, path, &t);
    repq_tensor_free(t);
    if (st)
        fprintf(stderr, "repq: skipping %s\n", repq_last_error(l));
    else
        fprintf(stderr, "repq: skipping %s: failed in the batch\n", path);
}

/* Keeps the images whose status is OK (in order) in a new tensor; *out_kept says how many. */
static repq_status keep_good(repq_context *ctx, repq_tensor *images, const int32_t *statuses, int32_t n,
                             int32_t *out_kept, repq_tensor **out)
{
    *out = NULL;
    int64_t shape[4];
    repq_tensor_describe(images, NULL, NULL, shape, 4);
    size_t per = (size_t)(shape[1] * shape[2] * shape[3]);
    uint8_t *all = malloc((size_t)n * per);
    if (!all)
        return REPQ_ERR_NOMEM;
    repq_tensor_read(images, all, (size_t)n * per);
    int32_t kept = 0;
    for (int32_t i = 0; i < n; i++)
        if (statuses[i] == REPQ_OK)
            memmove(all + (size_t)kept++ * per, all + (size_t)i * per, per);
    *out_kept = kept;
    repq_status st = REPQ_OK;
    if (kept > 0) {
        shape[0] = kept;
        st = repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, shape, all, out);
    }
    free(all);
    return st;
}

static const char *model_is_quantized(const char *path)
{
    size_t len = strlen(path);
    return len >= 5 && strcmp(path + len - 5, ".repq") == 0 ? path : NULL;
}

/* Calibration images: --calib-images N picked evenly over the folder's sorted list
 * (image i * count / N for i < N), so every class of an ImageNet-style folder is
 * represented; unreadable files are reported and left out. */
repq_status cli_calibration_images(repq_context *ctx, const args *a, const repq_model *m, repq_tensor **out)
{
    *out = NULL;
    repq_image_folder *folder = NULL;
    repq_image_loader *l = NULL;
    repq_tensor *images = NULL;
    repq_status st = repq_image_folder_open(ctx, a->calib, NULL, &folder);
    if (st)
        return fail("reading the calibration folder", st, ctx), st;
    if ((st = cli_image_loader(ctx, a, m, NULL, &l)))
        goto out;
    int64_t count = 0, crop = 0;
    repq_image_folder_size(folder, &count, NULL);
    repq_image_loader_get_int(l, REPQ_IMAGE_CROP_SIZE, &crop);
    int64_t want = a->calib_images > 0 && a->calib_images < count ? a->calib_images : count;
    if (want > 4096)
        want = 4096;
    const char **paths = calloc((size_t)want, sizeof *paths);
    int32_t *statuses = calloc((size_t)want, sizeof *statuses);
    int64_t shape[4] = {want, 3, crop, crop};
    if (!paths || !statuses) {
        st = REPQ_ERR_NOMEM;
    } else {
        for (int64_t i = 0; i < want; i++)
            repq_image_folder_entry(folder, i * count / want, &paths[i], NULL);
        if ((st = repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, shape, NULL, &images)))
            fail("allocating images", st, ctx);
    }
    if (!st) {
        st = repq_image_load_batch(l, paths, (int32_t)want, images, statuses);
        for (int64_t i = 0; st && i < want; i++)
            if (statuses[i])
                report_bad_file(l, paths[i]);
        int32_t kept = 0;
        if ((st = keep_good(ctx, images, statuses, (int32_t)want, &kept, out)) == REPQ_OK && kept == 0) {
            fprintf(stderr, "repq: no calibration image could be read\n");
            st = REPQ_ERR_FORMAT;
        }
    }
    free(paths);
    free(statuses);
out:
    repq_tensor_free(images);
    repq_image_loader_free(l);
    repq_image_folder_free(folder);
    return st;
}

static bool is_tty(void) { return isatty(STDERR_FILENO) != 0; }

int cmd_eval_images(repq_context *ctx, const args *a, const char *mode)
{
    if (a->batch < 1 || a->batch > 4096)
        return fprintf(stderr, "repq: --batch must be in 1..4096\n"), 2;
    repq_image_folder *folder = NULL;
    repq_image_loader *l = NULL;
    repq_tensor *images = NULL, *labels = NULL, *logits = NULL;
    int32_t *statuses = NULL;
    float *scores = NULL;
    runner r = {0};
    int rc = 1;
    repq_status st = repq_image_folder_open(ctx, a->images, a->labels, &folder);
    if (st)
        return fail("reading the image folder", st, ctx);
    int64_t count = 0;
    int32_t classes = 0;
    repq_image_folder_size(folder, &count, &classes);
    if (classes == 0) {
        fprintf(stderr, "repq: %s has no class folders: give --labels FILE or use ImageNet's layout\n", a->images);
        goto out;
    }
    int64_t first = a->offset > 0 ? a->offset : 0;
    if (first >= count) {
        fprintf(stderr, "repq: --offset %lld is past the %lld images\n", (long long)first, (long long)count);
        goto out;
    }
    int64_t total = count - first;
    if (a->limit > 0 && a->limit < total)
        total = a->limit;
    int32_t batch = (int32_t)(a->batch < total ? a->batch : total);
    if (runner_open(ctx, a, mode, batch, &r) || cli_image_loader(ctx, a, r.model, r.qmodel, &l))
        goto out;
    if (classes > r.classes)
        fprintf(stderr, "repq: warning: %d classes in the folder, %lld in the model\n", (int)classes,
                (long long)r.classes);
    int64_t crop = 0;
    repq_image_loader_get_int(l, REPQ_IMAGE_CROP_SIZE, &crop);
    int64_t shape[4] = {batch, 3, crop, crop}, lshape[1] = {batch};
    statuses = calloc((size_t)batch, sizeof *statuses);
    scores = malloc((size_t)batch * (size_t)r.classes * sizeof *scores);
    if (!statuses || !scores || (st = repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, shape, NULL, &images)) ||
        (st = repq_tensor_new(ctx, REPQ_DTYPE_I32, 1, lshape, NULL, &labels))) {
        fail("allocating", st ? st : REPQ_ERR_NOMEM, ctx);
        goto out;
    }
    int64_t done = 0, hits = 0, evaluated = 0, skipped = 0;
    double decode_s = 0.0, model_s = 0.0;
    int32_t y[4096];
    while (done < total) {
        int32_t n = (int32_t)(total - done < batch ? total - done : batch);
        repq_tensor *chunk = images, *chunk_labels = labels;
        if (n < batch) {
            int64_t s2[4] = {n, 3, crop, crop}, l2[1] = {n};
            chunk = chunk_labels = NULL;
            if ((st = repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, s2, NULL, &chunk)) ||
                (st = repq_tensor_new(ctx, REPQ_DTYPE_I32, 1, l2, NULL, &chunk_labels))) {
                repq_tensor_free(chunk);
                fail("allocating", st, ctx);
                goto out;
            }
        }
        double t0 = now_seconds();
        st = repq_image_folder_load(l, folder, first + done, n, chunk, chunk_labels, statuses);
        repq_tensor_read(chunk_labels, y, (size_t)n * sizeof *y);
        repq_tensor *good = NULL;
        int32_t kept = n;
        if (st) {
            for (int32_t i = 0; i < n; i++)
                if (statuses[i]) {
                    const char *path = NULL;
                    repq_image_folder_entry(folder, first + done + i, &path, NULL);
                    report_bad_file(l, path);
                    skipped++;
                }
            st = keep_good(ctx, chunk, statuses, n, &kept, &good);
            for (int32_t i = 0, k = 0; i < n; i++)
                if (statuses[i] == REPQ_OK)
                    y[k++] = y[i];
        }
        double t1 = now_seconds();
        decode_s += t1 - t0;
        if (!st && kept > 0) {
            int64_t lg[2] = {kept, r.classes};
            if ((st = repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, lg, NULL, &logits)) == REPQ_OK &&
                (st = runner_run(&r, good ? good : chunk, logits)) == REPQ_OK) {
                repq_tensor_read(logits, scores, (size_t)kept * (size_t)r.classes * sizeof *scores);
                for (int32_t i = 0; i < kept; i++) {
                    int64_t best = 0;
                    for (int64_t c = 1; c < r.classes; c++)
                        if (scores[i * r.classes + c] > scores[i * r.classes + best])
                            best = c;
                    hits += best == y[i];
                }
                evaluated += kept;
            }
            repq_tensor_free(logits);
            logits = NULL;
        }
        model_s += now_seconds() - t1;
        repq_tensor_free(good);
        if (chunk != images) {
            repq_tensor_free(chunk);
            repq_tensor_free(chunk_labels);
        }
        if (st)
            goto out;
        done += n;
        if (is_tty())
            progress_bar((void *)"evaluating", (int32_t)done, (int32_t)total);
    }
    if (evaluated == 0) {
        fprintf(stderr, "repq: no image could be read\n");
        goto out;
    }
    double top1 = (double)hits / (double)evaluated;
    printf("mode %s: top-1 %.2f%% on %lld images (%lld skipped), %.1f images/s (decode %.1f images/s, model %.1f "
           "images/s)\n",
           mode, 100.0 * top1, (long long)evaluated, (long long)skipped, (double)evaluated / (decode_s + model_s),
           (double)(evaluated + skipped) / decode_s, (double)evaluated / model_s);
    if (a->json)
        printf("{\"mode\": \"%s\", \"top1\": %.6f, \"images\": %lld, \"skipped\": %lld, \"seconds\": %.6f, "
               "\"decode_seconds\": %.6f, \"images_per_s\": %.3f}\n",
               mode, top1, (long long)evaluated, (long long)skipped, decode_s + model_s, decode_s,
               (double)evaluated / (decode_s + model_s));
    rc = 0;
out:
    free(statuses);
    free(scores);
    repq_tensor_free(images);
    repq_tensor_free(labels);
    repq_image_loader_free(l);
    runner_close(&r);
    repq_image_folder_free(folder);
    return rc;
}

/* ---- classify ---------------------------------------------------------------- */

/* Class names: one a line, either plain names (line i is class i) or `index name...`
 * (imagenet_synsets.txt: `0 n01440764 tench, Tinca tinca`, the synset id dropped). */
static char **read_class_names(const char *path, int64_t classes)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char **names = calloc((size_t)classes, sizeof *names);
    char line[1024];
    int64_t next = 0;
    while (names && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *text = line, *end;
        long idx = strtol(line, &end, 10);
        int64_t at = next;
        if (end != line && *end == ' ') {
            at = idx;
            text = end + 1;
            if (text[0] == 'n' && strspn(text + 1, "0123456789") == 8 && text[9] == ' ')
                text += 10;
        }
        if (at >= 0 && at < classes && !names[at])
            names[at] = strdup(text);
        next = at + 1;
    }
    fclose(f);
    return names;
}

/* Class names from a safetensors file's metadata: "class_names", a JSON array of
 * strings stored as a string (safetensors metadata values are strings). NULL if the
 * file has none (or is not safetensors); names beyond `classes` are ignored. */
static char **metadata_class_names(const char *path, int64_t classes)
{
    FILE *f = fopen(path, "rb");
    unsigned char len_bytes[8];
    char **names = NULL;
    if (!f)
        return NULL;
    if (fread(len_bytes, 1, 8, f) == 8) {
        uint64_t len = 0;
        for (int i = 7; i >= 0; i--)
            len = len << 8 | len_bytes[i];
        char *header = len > 0 && len < (100u << 20) ? malloc((size_t)len + 1) : NULL;
        if (header && fread(header, 1, (size_t)len, f) == len) {
            header[len] = '\0';
            json_t *root = json_loads(header, 0, NULL);
            json_t *text = json_object_get(json_object_get(root, "__metadata__"), "class_names");
            json_t *list = json_is_string(text) ? json_loads(json_string_value(text), 0, NULL) : NULL;
            if (json_is_array(list) && json_array_size(list) > 0 && (names = calloc((size_t)classes, sizeof *names)))
                for (size_t i = 0; i < json_array_size(list) && (int64_t)i < classes; i++)
                    if (json_is_string(json_array_get(list, i)))
                        names[i] = strdup(json_string_value(json_array_get(list, i)));
            json_decref(list);
            json_decref(root);
        }
        free(header);
    }
    fclose(f);
    return names;
}

static void free_class_names(char **names, int64_t classes)
{
    for (int64_t i = 0; names && i < classes; i++)
        free(names[i]);
    free(names);
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

int cmd_classify(repq_context *ctx, const args *a)
{
    if (!a->positional || a->num_inputs == 0)
        return usage();
    const char *mode = a->mode ? a->mode : (model_is_quantized(a->positional) ? "int" : "fp32");
    if (strcmp(mode, "fp32") != 0 && strcmp(mode, "fake") != 0 && strcmp(mode, "int") != 0)
        return fprintf(stderr, "repq: --mode is fp32, fake or int\n"), 2;
    if (a->top < 1)
        return fprintf(stderr, "repq: --top must be at least 1\n"), 2;
    int32_t n = a->num_inputs;
    runner r = {0};
    repq_image_loader *l = NULL;
    repq_tensor *images = NULL, *good = NULL, *logits = NULL;
    int32_t *statuses = calloc((size_t)n, sizeof *statuses);
    float *scores = NULL;
    char **names = NULL;
    int rc = 1;
    repq_status st;
    if (!statuses || runner_open(ctx, a, mode, n, &r) || cli_image_loader(ctx, a, r.model, r.qmodel, &l))
        goto out;
    const char *names_path = a->class_names;
    if (!names_path)
        names = metadata_class_names(a->positional, r.classes);
    if (!names_path && !names && r.classes == 1000)
        names_path = access(REPQ_SYNSETS_INSTALLED, R_OK) == 0 ? REPQ_SYNSETS_INSTALLED : REPQ_SYNSETS_SOURCE;
    if (names_path && !(names = read_class_names(names_path, r.classes))) {
        fprintf(stderr, "repq: cannot read class names from %s: %s\n", names_path, strerror(errno));
        goto out;
    }
    int64_t crop = 0;
    repq_image_loader_get_int(l, REPQ_IMAGE_CROP_SIZE, &crop);
    int64_t shape[4] = {n, 3, crop, crop};
    if ((st = repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, shape, NULL, &images))) {
        fail("allocating images", st, ctx);
        goto out;
    }
    bool any_bad = repq_image_load_batch(l, a->inputs, n, images, statuses) != REPQ_OK;
    for (int32_t i = 0; any_bad && i < n; i++)
        if (statuses[i])
            report_bad_file(l, a->inputs[i]);
    int32_t kept = 0;
    if ((st = keep_good(ctx, images, statuses, n, &kept, &good)) || kept == 0)
        goto out;
    int64_t lshape[2] = {kept, r.classes};
    scores = malloc((size_t)kept * (size_t)r.classes * sizeof *scores);
    if (!scores || (st = repq_tensor_new(ctx, REPQ_DTYPE_F32, 2, lshape, NULL, &logits)) ||
        runner_run(&r, good, logits))
        goto out;
    repq_tensor_read(logits, scores, (size_t)kept * (size_t)r.classes * sizeof *scores);
    int64_t top = a->top < r.classes ? a->top : r.classes;
    for (int32_t i = 0, k = 0; i < n; i++) {
        if (statuses[i])
            continue;
        float *s = scores + (size_t)k++ * (size_t)r.classes;
        double mx = s[0], sum = 0.0;
        for (int64_t c = 1; c < r.classes; c++)
            mx = s[c] > mx ? s[c] : mx;
        for (int64_t c = 0; c < r.classes; c++)
            sum += exp((double)s[c] - mx);
        if (a->json) {
            printf("{\"image\": ");
            print_json_string(a->inputs[i]);
            printf(", \"mode\": \"%s\", \"top\": [", mode);
        } else {
            printf("%s\n", a->inputs[i]);
        }
        for (int64_t t = 0; t < top; t++) {
            int64_t best = -1;
            for (int64_t c = 0; c < r.classes; c++)
                if (s[c] == s[c] && (best < 0 || s[c] > s[best]))
                    best = c;
            if (best < 0)
                break;
            double p = exp((double)s[best] - mx) / sum;
            const char *name = names && names[best] ? names[best] : NULL;
            if (a->json) {
                printf("%s{\"class\": %lld, \"probability\": %.6f, \"name\": ", t ? ", " : "", (long long)best, p);
                print_json_string(name ? name : "");
                putchar('}');
            } else {
                printf("  %6.2f%%  %4lld  %s\n", 100.0 * p, (long long)best, name ? name : "");
            }
            s[best] = NAN; /* taken */
        }
        if (a->json)
            printf("]}\n");
    }
    rc = any_bad ? 1 : 0;
out:
    free_class_names(names, r.classes);
    free(scores);
    free(statuses);
    repq_tensor_free(logits);
    repq_tensor_free(good);
    repq_tensor_free(images);
    repq_image_loader_free(l);
    runner_close(&r);
    return rc;
}

/* ---- preprocess ---------------------------------------------------------------- */

#ifdef REPQ_HAVE_IMAGES
/* OUT/<name of the input without folder and extension>.png, interleaved RGB. */
static int write_png(const char *dir, const char *input, const uint8_t *planar, int64_t side)
{
    const char *base = strrchr(input, '/');
    base = base ? base + 1 : input;
    char path[4096];
    int len = (int)strcspn(base, ".");
    snprintf(path, sizeof path, "%s/%.*s.png", dir, len ? len : (int)strlen(base), base);
    size_t plane = (size_t)(side * side);
    uint8_t *rgb = malloc(plane * 3);
    if (!rgb)
        return 1;
    for (size_t i = 0; i < plane; i++)
        for (size_t c = 0; c < 3; c++)
            rgb[3 * i + c] = planar[c * plane + i];
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)side;
    img.height = (png_uint_32)side;
    img.format = PNG_FORMAT_RGB;
    int ok = png_image_write_to_file(&img, path, 0, rgb, 0, NULL);
    free(rgb);
    if (!ok)
        return fprintf(stderr, "repq: writing %s: %s\n", path, img.message), 1;
    printf("%s -> %s\n", input, path);
    return 0;
}
#endif

int cmd_preprocess(repq_context *ctx, const args *a)
{
    if (!a->positional || a->num_inputs == 0 || !a->out)
        return usage();
    repq_model *m = NULL;
    repq_qmodel *q = NULL;
    repq_image_loader *l = NULL;
    repq_tensor *images = NULL;
    int32_t n = a->num_inputs, *statuses = calloc((size_t)n, sizeof *statuses);
    uint8_t *pixels = NULL;
    int rc = 1;
    repq_status st = model_is_quantized(a->positional) ? repq_qmodel_load(ctx, a->positional, &q)
                                                       : repq_model_load(ctx, a->positional, NULL, &m);
    if (st) {
        fail("loading the model", st, ctx);
        goto out;
    }
    if (!statuses || cli_image_loader(ctx, a, m, q, &l))
        goto out;
    int64_t side = 0;
    repq_image_loader_get_int(l, REPQ_IMAGE_CROP_SIZE, &side);
    int64_t shape[4] = {n, 3, side, side};
    size_t bytes = (size_t)n * 3 * (size_t)(side * side);
    if ((st = repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, shape, NULL, &images)) || !(pixels = malloc(bytes))) {
        fail("allocating images", st ? st : REPQ_ERR_NOMEM, ctx);
        goto out;
    }
    st = repq_image_load_batch(l, a->inputs, n, images, statuses);
    for (int32_t i = 0; st && i < n; i++)
        if (statuses[i])
            report_bad_file(l, a->inputs[i]);
    if (st) /* a raw file of N images must hold every one of them */
        goto out;
    repq_tensor_read(images, pixels, bytes);
    if (a->png) {
#ifdef REPQ_HAVE_IMAGES
        if (mkdir(a->out, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "repq: cannot create folder %s: %s\n", a->out, strerror(errno));
            goto out;
        }
        for (int32_t i = 0; i < n; i++)
            if (write_png(a->out, a->inputs[i], pixels + (size_t)i * 3 * (size_t)(side * side), side))
                goto out;
#else
        fprintf(stderr, "repq: --png needs image support (built with -Dimages=disabled)\n");
        goto out;
#endif
    } else {
        FILE *f = fopen(a->out, "wb");
        bool ok = f && fwrite(pixels, 1, bytes, f) == bytes;
        if (f && fclose(f) != 0)
            ok = false;
        if (!ok) {
            fprintf(stderr, "repq: cannot write %s: %s\n", a->out, strerror(errno));
            goto out;
        }
        printf("wrote %d image(s) as uint8 [%d, 3, %lld, %lld] (planar RGB, before mean/std) to %s\n", (int)n, (int)n,
               (long long)side, (long long)side, a->out);
    }
    if (a->json) {
        int64_t resize = 0, interp = 0;
        repq_image_loader_get_int(l, REPQ_IMAGE_RESIZE_SIZE, &resize);
        repq_image_loader_get_int(l, REPQ_IMAGE_INTERPOLATION, &interp);
        printf("{\"images\": %d, \"shape\": [%d, 3, %lld, %lld], \"resize\": %lld, \"interpolation\": \"%s\", "
               "\"format\": \"%s\", \"out\": ",
               (int)n, (int)n, (long long)side, (long long)side, (long long)resize,
               interp == REPQ_INTERPOLATION_BILINEAR ? "bilinear" : "bicubic", a->png ? "png" : "u8");
        print_json_string(a->out);
        printf("}\n");
    }
    rc = 0;
out:
    free(pixels);
    free(statuses);
    repq_tensor_free(images);
    repq_image_loader_free(l);
    repq_qmodel_free(q);
    repq_model_free(m);
    return rc;
}
