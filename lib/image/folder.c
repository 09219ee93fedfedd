/* Folders of images: ImageNet's class-per-folder layout, or a flat folder listed by a
 * labels file. Only names are read here; decoding happens in the loader. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/tensor.h"
#include "image/loader.h"

#define MAX_DEPTH 32
#define MAX_CLASSES 1000000
#define MAX_LINE 4096

typedef struct entry {
    char *path;
    int32_t label;
} entry;

struct repq_image_folder {
    repq_object base;
    entry *entries;
    size_t count, capacity;
    char **classes; /* class folder names (ImageNet layout), else NULL */
    size_t num_classes, class_capacity;
    int32_t max_label;
};

/* A growable array from the object's allocator (which has no realloc). */
static bool grow(const repq_allocator *al, void **items, size_t *capacity, size_t used, size_t item)
{
    if (used < *capacity)
        return true;
    size_t cap = *capacity ? *capacity * 2 : 64, bytes;
    if (!repq_size_mul(cap, item, &bytes))
        return false;
    void *p = repq_mem_alloc(al, bytes);
    if (!p)
        return false;
    if (*items)
        memcpy(p, *items, used * item);
    repq_mem_free(al, *items);
    *items = p;
    *capacity = cap;
    return true;
}

static char *join(const repq_allocator *al, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = repq_mem_alloc(al, la + lb + 2);
    if (p) {
        memcpy(p, a, la);
        p[la] = '/';
        memcpy(p + la + 1, b, lb + 1);
    }
    return p;
}

static repq_status add_entry(repq_image_folder *f, char *path, int32_t label)
{
    if (!grow(&f->base.allocator, (void **)&f->entries, &f->capacity, f->count, sizeof *f->entries)) {
        repq_mem_free(&f->base.allocator, path);
        return REPQ_ERR_NOMEM;
    }
    f->entries[f->count].path = path;
    f->entries[f->count].label = label;
    f->count++;
    if (label > f->max_label)
        f->max_label = label;
    return REPQ_OK;
}

static bool image_name(const char *name)
{
    static const char *const ext[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t e = strlen(ext[i]);
        if (n > e && strcasecmp(name + n - e, ext[i]) == 0)
            return true;
    }
    return false;
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in a folder, sorted, without those starting with '.'. Frees nothing on failure
 * beyond what it made. */
static repq_status list_dir(repq_object *err, const repq_allocator *al, const char *dir, char ***out, size_t *out_n)
{
    *out = NULL;
    *out_n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return repq_fail(err, REPQ_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    repq_status st = REPQ_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        size_t len = strlen(e->d_name);
        char *copy = repq_mem_alloc(al, len + 1);
        if (!copy || !grow(al, (void **)&names, &cap, n, sizeof *names)) {
            repq_mem_free(al, copy);
            st = repq_fail(err, REPQ_ERR_NOMEM, "out of memory listing %s", dir);
            break;
        }
        memcpy(copy, e->d_name, len + 1);
        names[n++] = copy;
    }
    closedir(d);
    if (st) {
        for (size_t i = 0; i < n; i++)
            repq_mem_free(al, names[i]);
        repq_mem_free(al, names);
        return st;
    }
    if (n)
        qsort(names, n, sizeof *names, by_string);
    *out = names;
    *out_n = n;
    return REPQ_OK;
}

static void free_names(const repq_allocator *al, char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        repq_mem_free(al, names[i]);
    repq_mem_free(al, names);
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* torchvision's order: sorted(os.walk(class_dir)) (folders in byte order of their
 * path), each folder's files in byte order. Collects (folder, name) pairs first. */
typedef struct walk {
    char **dirs;
    size_t n, cap;
    struct stat *chain; /* the folders from the class folder down to the current one */
    size_t depth, chain_cap;
} walk;

#define MAX_FOLDERS 100000

/* True if `sb` is one of the folders being walked: a link back up the tree, which
 * os.walk(followlinks=True) would follow until the path is too long. Two links to one
 * folder elsewhere are both walked, as torchvision walks them. */
static bool on_chain(const walk *w, const struct stat *sb)
{
    for (size_t i = 0; i < w->depth; i++)
        if (w->chain[i].st_dev == sb->st_dev && w->chain[i].st_ino == sb->st_ino)
            return true;
    return false;
}

static repq_status collect_dirs(repq_object *err, const repq_allocator *al, const char *dir, walk *w)
{
    struct stat sb;
    if (stat(dir, &sb) != 0 || on_chain(w, &sb))
        return REPQ_OK;
    if (w->depth >= MAX_DEPTH || w->n >= MAX_FOLDERS)
        return repq_fail(err, REPQ_ERR_FORMAT, "%s: folders nested deeper than %d or more than %d folders", dir,
                         MAX_DEPTH, MAX_FOLDERS);
    size_t len = strlen(dir);
    char *copy = repq_mem_alloc(al, len + 1);
    if (!copy || !grow(al, (void **)&w->dirs, &w->cap, w->n, sizeof *w->dirs) ||
        !grow(al, (void **)&w->chain, &w->chain_cap, w->depth, sizeof *w->chain)) {
        repq_mem_free(al, copy);
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
    }
    memcpy(copy, dir, len + 1);
    w->dirs[w->n++] = copy;
    w->chain[w->depth++] = sb;
    char **names;
    size_t n;
    repq_status st = list_dir(err, al, dir, &names, &n);
    for (size_t i = 0; st == REPQ_OK && i < n; i++) {
        char *sub = join(al, dir, names[i]);
        if (!sub)
            st = repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
        else if (is_dir(sub))
            st = collect_dirs(err, al, sub, w);
        repq_mem_free(al, sub);
    }
    free_names(al, names, n);
    w->depth--;
    return st;
}

static repq_status add_class(repq_image_folder *f, const char *dir, const char *name, int32_t label)
{
    repq_object *err = &f->base;
    const repq_allocator *al = &f->base.allocator;
    size_t len = strlen(name);
    char *copy = repq_mem_alloc(al, len + 1);
    if (!copy || !grow(al, (void **)&f->classes, &f->class_capacity, f->num_classes, sizeof *f->classes)) {
        repq_mem_free(al, copy);
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
    }
    memcpy(copy, name, len + 1);
    f->classes[f->num_classes++] = copy;
    char *class_dir = join(al, dir, name);
    if (!class_dir)
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
    walk w = {0};
    repq_status st = collect_dirs(err, al, class_dir, &w);
    repq_mem_free(al, class_dir);
    if (st == REPQ_OK && w.n)
        qsort(w.dirs, w.n, sizeof *w.dirs, by_string);
    for (size_t i = 0; st == REPQ_OK && i < w.n; i++) {
        char **names;
        size_t n;
        if ((st = list_dir(err, al, w.dirs[i], &names, &n)))
            break;
        for (size_t j = 0; st == REPQ_OK && j < n; j++) {
            if (!image_name(names[j]))
                continue;
            char *path = join(al, w.dirs[i], names[j]);
            if (!path)
                st = repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
            else if (is_dir(path))
                repq_mem_free(al, path);
            else if (add_entry(f, path, label))
                st = repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
        }
        free_names(al, names, n);
    }
    free_names(al, w.dirs, w.n);
    repq_mem_free(al, w.chain);
    return st;
}

static repq_status open_layout(repq_image_folder *f, const char *dir)
{
    repq_object *err = &f->base;
    const repq_allocator *al = &f->base.allocator;
    char **names;
    size_t n;
    repq_status st = list_dir(err, al, dir, &names, &n);
    if (st)
        return st;
    for (size_t i = 0; st == REPQ_OK && i < n; i++) {
        char *sub = join(al, dir, names[i]);
        if (!sub) {
            st = repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
            break;
        }
        bool d = is_dir(sub);
        repq_mem_free(al, sub);
        if (!d)
            continue;
        if (f->num_classes >= MAX_CLASSES)
            st = repq_fail(err, REPQ_ERR_FORMAT, "%s: more than %d class folders", dir, MAX_CLASSES);
        else
            st = add_class(f, dir, names[i], (int32_t)f->num_classes);
    }
    if (st == REPQ_OK && f->num_classes == 0) {
        /* No class folders: the folder's own image files, class unknown (-1). */
        for (size_t i = 0; st == REPQ_OK && i < n; i++) {
            char *path = image_name(names[i]) ? join(al, dir, names[i]) : NULL;
            if (!path)
                st = image_name(names[i]) ? repq_fail(err, REPQ_ERR_NOMEM, "out of memory") : REPQ_OK;
            else if (is_dir(path))
                repq_mem_free(al, path);
            else if (add_entry(f, path, -1))
                st = repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
        }
    }
    free_names(al, names, n);
    return st;
}

static repq_status open_labels(repq_image_folder *f, const char *dir, const char *labels_path)
{
    repq_object *err = &f->base;
    const repq_allocator *al = &f->base.allocator;
    FILE *in = fopen(labels_path, "r");
    if (!in)
        return repq_fail(err, REPQ_ERR_IO, "%s: cannot open: %s", labels_path, strerror(errno));
    char line[MAX_LINE];
    repq_status st = REPQ_OK;
    long number = 0;
    while (st == REPQ_OK && fgets(line, sizeof line, in)) {
        number++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(in)) {
            st = repq_fail(err, REPQ_ERR_FORMAT, "%s:%ld: line longer than %d bytes", labels_path, number, MAX_LINE);
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = '\0';
        char *start = line;
        while (*start == ' ' || *start == '\t')
            start++;
        if (*start == '\0' || *start == '#')
            continue;
        char *sep = strrchr(start, ' '), *tab = strrchr(start, '\t');
        if (!sep || (tab && tab > sep))
            sep = tab;
        char *end = NULL;
        long idx = sep ? strtol(sep + 1, &end, 10) : -1;
        if (!sep || !end || *end != '\0' || end == sep + 1) {
            st = repq_fail(err, REPQ_ERR_FORMAT, "%s:%ld: expected `filename index`", labels_path, number);
            break;
        }
        if (idx < 0 || idx >= MAX_CLASSES) {
            st = repq_fail(err, REPQ_ERR_FORMAT, "%s:%ld: class index %ld is outside [0, %d)", labels_path, number,
                           idx, MAX_CLASSES);
            break;
        }
        while (sep > start && (sep[-1] == ' ' || sep[-1] == '\t'))
            sep--;
        *sep = '\0';
        if (start[0] == '/' || strstr(start, "..")) {
            st = repq_fail(err, REPQ_ERR_FORMAT, "%s:%ld: file name '%s' leaves the folder", labels_path, number, start);
            break;
        }
        char *path = join(al, dir, start);
        if (!path || add_entry(f, path, (int32_t)idx))
            st = repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
    }
    if (st == REPQ_OK && ferror(in))
        st = repq_fail(err, REPQ_ERR_IO, "%s: read error", labels_path);
    fclose(in);
    return st;
}

REPQ_API void repq_image_folder_free(repq_image_folder *folder)
{
    if (!repq_object_is(folder, REPQ_KIND_IMAGE_FOLDER))
        return;
    repq_allocator al = folder->base.allocator;
    folder->base.kind = 0;
    for (size_t i = 0; i < folder->count; i++)
        repq_mem_free(&al, folder->entries[i].path);
    repq_mem_free(&al, folder->entries);
    free_names(&al, folder->classes, folder->num_classes);
    repq_mem_free(&al, folder);
}

REPQ_API repq_status repq_image_folder_open(repq_context *ctx, const char *dir, const char *labels_path,
                                            repq_image_folder **out_folder)
{
    repq_object *err = repq_context_object(ctx);
    if (!out_folder)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_image_folder_open: out_folder is NULL");
    *out_folder = NULL;
    if (!repq_images_enabled())
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "this build of librepq has no image support (-Dimages=disabled)");
    if (!dir)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_image_folder_open: dir is NULL");
    repq_allocator al = repq_allocator_of(ctx);
    repq_image_folder *f = repq_mem_alloc(&al, sizeof *f);
    if (!f)
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
    repq_object_init(&f->base, REPQ_KIND_IMAGE_FOLDER, al);
    f->max_label = -1;
    repq_status st = labels_path ? open_labels(f, dir, labels_path) : open_layout(f, dir);
    if (st == REPQ_OK && f->count == 0)
        st = repq_fail(&f->base, REPQ_ERR_FORMAT, "%s: no image files", dir);
    if (st) {
        repq_fail(err, st, "%s", f->base.error);
        repq_image_folder_free(f);
        return st;
    }
    *out_folder = f;
    return REPQ_OK;
}

REPQ_API repq_status repq_image_folder_size(const repq_image_folder *folder, int64_t *out_images,
                                            int32_t *out_classes)
{
    if (!repq_images_enabled())
        return REPQ_ERR_UNSUPPORTED;
    if (!repq_object_is(folder, REPQ_KIND_IMAGE_FOLDER))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (out_images)
        *out_images = (int64_t)folder->count;
    if (out_classes)
        *out_classes = folder->classes ? (int32_t)folder->num_classes : folder->max_label + 1;
    return REPQ_OK;
}

REPQ_API repq_status repq_image_folder_entry(const repq_image_folder *folder, int64_t index,
                                             const char **out_path, int32_t *out_label)
{
    if (!repq_images_enabled())
        return REPQ_ERR_UNSUPPORTED;
    if (!repq_object_is(folder, REPQ_KIND_IMAGE_FOLDER) || index < 0 || (uint64_t)index >= folder->count)
        return REPQ_ERR_INVALID_ARGUMENT;
    if (out_path)
        *out_path = folder->entries[index].path;
    if (out_label)
        *out_label = folder->entries[index].label;
    return REPQ_OK;
}

REPQ_API repq_status repq_image_folder_class_name(const repq_image_folder *folder, int32_t label,
                                                  const char **out_name)
{
    if (!repq_images_enabled())
        return REPQ_ERR_UNSUPPORTED;
    if (!repq_object_is(folder, REPQ_KIND_IMAGE_FOLDER) || !out_name)
        return REPQ_ERR_INVALID_ARGUMENT;
    if (!folder->classes)
        return REPQ_ERR_UNSUPPORTED;
    if (label < 0 || (size_t)label >= folder->num_classes)
        return REPQ_ERR_INVALID_ARGUMENT;
    *out_name = folder->classes[label];
    return REPQ_OK;
}

REPQ_API repq_status repq_image_folder_load(repq_image_loader *loader, const repq_image_folder *folder,
                                            int64_t first, int32_t count, repq_tensor *images,
                                            repq_tensor *labels, int32_t *out_statuses)
{
    if (!repq_images_enabled())
        return REPQ_ERR_UNSUPPORTED;
    if (!repq_object_is(loader, REPQ_KIND_IMAGE_LOADER))
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_object *err = &loader->base;
    if (!repq_object_is(folder, REPQ_KIND_IMAGE_FOLDER) || count < 1 || first < 0 ||
        (uint64_t)first > folder->count || (uint64_t)count > folder->count - (uint64_t)first)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_image_folder_load: bad folder or range");
    if (!repq_tensor_is(images, REPQ_DTYPE_U8, 4) || images->shape[0] != count || images->shape[1] != 3 ||
        images->shape[2] != loader->crop || images->shape[3] != loader->crop)
        return repq_fail(err, REPQ_ERR_SHAPE, "images must be U8 [%d, 3, %d, %d]", (int)count, (int)loader->crop,
                         (int)loader->crop);
    if (!repq_tensor_is(labels, REPQ_DTYPE_I32, 1) || labels->shape[0] != count)
        return repq_fail(err, REPQ_ERR_SHAPE, "labels must be I32 [%d]", (int)count);
    const char **paths = repq_mem_alloc(&loader->base.allocator, (size_t)count * sizeof *paths);
    if (!paths)
        return repq_fail(err, REPQ_ERR_NOMEM, "out of memory");
    int32_t *y = labels->data;
    for (int32_t i = 0; i < count; i++) {
        paths[i] = folder->entries[first + i].path;
        y[i] = folder->entries[first + i].label;
    }
    repq_status st = repq_image_batch_run(loader, paths, count, images->data, out_statuses);
    repq_mem_free(&loader->base.allocator, paths);
    return st;
}
