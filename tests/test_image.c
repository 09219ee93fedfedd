/* Tests of lib/image and the decoders of lib/io: what Pillow + timm make of real photos
 * (expected values written by Pillow 9.4 and torchvision 0.14, data/photos/README and
 * tests/data/make_image_fixtures.py), every PNG colour type and JPEG colour space,
 * hostile files, folders, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "image/resize.h"
#include "io/image_decode.h"
#include "repq/repq.h"

#define DATA REPQ_TEST_DATA
#define CIFAR_MODEL DATA "/vit_tiny_cifar10.safetensors"
#define S 224
#define PLANE (S * S)

static const char *const photo_names[] = {
    "n01440764_tench.JPEG", "n02093428_American_Staffordshire_terrier.JPEG", "n02444819_otter.JPEG",
    "n03240683_drilling_platform.JPEG", "n03937543_pill_bottle.JPEG", "n04562935_water_tower.JPEG",
    "as_png.png", "grey.png", "grey.jpg",
};
#define PHOTOS (sizeof photo_names / sizeof photo_names[0])

static uint8_t *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

static void write_all(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    fclose(f);
}

typedef struct fixture {
    repq_context *ctx;
    repq_model *deit, *cifar;
    repq_image_loader *loader, *small; /* DeiT (224), CIFAR ViT (32) */
    char dir[64];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_int_equal(repq_context_new(&f->ctx), REPQ_OK);
    assert_int_equal(repq_model_create_random(f->ctx, "deit_tiny_patch16_224", 0, 1, &f->deit), REPQ_OK);
    assert_int_equal(repq_model_load(f->ctx, CIFAR_MODEL, NULL, &f->cifar), REPQ_OK);
    assert_int_equal(repq_image_loader_new(f->ctx, f->deit, &f->loader), REPQ_OK);
    assert_int_equal(repq_image_loader_new(f->ctx, f->cifar, &f->small), REPQ_OK);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/repq_img_XXXXXX", tmp && *tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    repq_image_loader_free(f->loader);
    repq_image_loader_free(f->small);
    repq_model_free(f->deit);
    repq_model_free(f->cifar);
    repq_context_free(f->ctx);
    free(f);
    return 0;
}

static void load_pixels(repq_image_loader *l, const char *path, uint8_t *out, size_t n)
{
    repq_tensor *t = NULL;
    repq_status st = repq_image_load(l, path, &t);
    if (st)
        fail_msg("%s: %s", path, repq_last_error(l));
    assert_int_equal(repq_tensor_read(t, out, n), REPQ_OK);
    repq_tensor_free(t);
}

/* The bar: >= 99% of values equal and none off by more than 1; we reach exact. */
static void photos_match_pillow_and_timm(void **state)
{
    fixture *f = *state;
    size_t size;
    uint8_t *expected = read_all(DATA "/photos/expected_u8.bin", &size);
    assert_int_equal(size, PHOTOS * 3 * PLANE);
    uint8_t *got = malloc(3 * PLANE);
    int64_t resize = 0, interp = 0;
    assert_int_equal(repq_image_loader_get_int(f->loader, REPQ_IMAGE_RESIZE_SIZE, &resize), REPQ_OK);
    assert_int_equal(repq_image_loader_get_int(f->loader, REPQ_IMAGE_INTERPOLATION, &interp), REPQ_OK);
    assert_int_equal(resize, 256); /* int(224 / 0.875) */
    assert_int_equal(interp, REPQ_INTERPOLATION_BICUBIC);
    for (size_t i = 0; i < PHOTOS; i++) {
        char path[256];
        snprintf(path, sizeof path, DATA "/photos/%s", photo_names[i]);
        load_pixels(f->loader, path, got, 3 * PLANE);
        size_t differ = 0;
        int worst = 0;
        for (size_t j = 0; j < 3 * PLANE; j++) {
            int d = abs((int)got[j] - (int)expected[i * 3 * PLANE + j]);
            differ += d != 0;
            worst = d > worst ? d : worst;
        }
        print_message("%-48s %zu values differ, largest difference %d\n", photo_names[i], differ, worst);
        assert_true(differ * 100 <= 3 * PLANE);
        assert_true(worst <= 1);
        assert_int_equal(differ, 0);
    }
    free(got);
    free(expected);
}

static void png_and_jpeg_of_same_pixels_agree_and_grey_has_equal_planes(void **state)
{
    fixture *f = *state;
    uint8_t *a = malloc(3 * PLANE), *b = malloc(3 * PLANE);
    /* as_png.png holds the decoded pixels of the tench JPEG. */
    load_pixels(f->loader, DATA "/photos/n01440764_tench.JPEG", a, 3 * PLANE);
    load_pixels(f->loader, DATA "/photos/as_png.png", b, 3 * PLANE);
    assert_memory_equal(a, b, 3 * PLANE);
    const char *greys[] = {DATA "/photos/grey.png", DATA "/photos/grey.jpg"};
    for (int g = 0; g < 2; g++) {
        load_pixels(f->loader, greys[g], a, 3 * PLANE);
        assert_memory_equal(a, a + PLANE, PLANE);
        assert_memory_equal(a, a + 2 * PLANE, PLANE);
        int distinct = 0;
        for (size_t j = 1; j < PLANE; j++)
            distinct += a[j] != a[0];
        assert_true(distinct > PLANE / 2); /* a picture, not a constant */
    }
    free(a);
    free(b);
}

/* Every PNG colour type and depth, tRNS, interlacing, JPEG baseline/progressive/grey/CMYK/
 * YCCK against Pillow's convert("RGB"), bit for bit. */
static void decoders_match_pillow_convert_rgb(void **state)
{
    (void)state;
    size_t size;
    uint8_t *expected = read_all(DATA "/images/decode_expected.bin", &size);
    FILE *list = fopen(DATA "/images/decode_expected.txt", "r");
    assert_non_null(list);
    char name[128];
    int w, h;
    long offset;
    int count = 0;
    repq_allocator al = repq_allocator_of(NULL);
    while (fscanf(list, "%127s %d %d %ld", name, &w, &h, &offset) == 4) {
        char path[256];
        snprintf(path, sizeof path, DATA "/images/decode/%s", name);
        size_t n;
        uint8_t *bytes = read_all(path, &n);
        repq_object err;
        repq_object_init(&err, REPQ_KIND_CONTEXT, al);
        repq_rgb_image img;
        repq_status st = repq_image_decode(&err, &al, bytes, n, 1 << 20, &img);
        if (st)
            fail_msg("%s: %s", name, err.error);
        assert_int_equal(img.width, w);
        assert_int_equal(img.height, h);
        assert_true((size_t)offset + (size_t)w * (size_t)h * 3 <= size);
        if (memcmp(img.pixels, expected + offset, (size_t)w * (size_t)h * 3) != 0)
            fail_msg("%s differs from Pillow's convert(\"RGB\")", name);
        repq_rgb_image_release(&al, &img);
        free(bytes);
        count++;
    }
    fclose(list);
    free(expected);
    assert_int_equal(count, 28);
}

/* Resize + crop with other sizes and filters than DeiT's: crop 32 (the CIFAR ViT),
 * shrinking, enlarging, bilinear, odd crop offsets (Python's round half to even). */
static void transform_matches_torchvision_with_pillow(void **state)
{
    fixture *f = *state;
    size_t size;
    uint8_t *expected = read_all(DATA "/images/transform_expected.bin", &size);
    FILE *list = fopen(DATA "/images/transform_expected.txt", "r");
    assert_non_null(list);
    char rel[160], interp[16];
    int resize, count = 0;
    long offset;
    uint8_t got[3 * 32 * 32];
    while (fscanf(list, "%159s %d %15s %ld", rel, &resize, interp, &offset) == 4) {
        char path[256];
        snprintf(path, sizeof path, DATA "/%s", rel);
        assert_int_equal(repq_image_loader_set_int(f->small, REPQ_IMAGE_RESIZE_SIZE, resize), REPQ_OK);
        assert_int_equal(repq_image_loader_set_int(f->small, REPQ_IMAGE_INTERPOLATION,
                                                   strcmp(interp, "bilinear") == 0 ? REPQ_INTERPOLATION_BILINEAR
                                                                                   : REPQ_INTERPOLATION_BICUBIC),
                         REPQ_OK);
        load_pixels(f->small, path, got, sizeof got);
        assert_true((size_t)offset + sizeof got <= size);
        if (memcmp(got, expected + offset, sizeof got) != 0)
            fail_msg("%s resized to %d (%s) differs from torchvision + Pillow", rel, resize, interp);
        count++;
    }
    fclose(list);
    free(expected);
    assert_int_equal(count, 11);
}

/* Presets carry timm's crop_pct: DeiT 0.875 -> 256, augreg ViT 0.9 -> 248; the CIFAR
 * model's file has no crop_pct: timm's default 0.875 -> int(32 / 0.875) = 36. */
static void presets_and_overrides_set_the_resize(void **state)
{
    fixture *f = *state;
    repq_model *vit;
    repq_image_loader *l;
    int64_t v;
    assert_int_equal(repq_model_create_random(f->ctx, "vit_small_patch16_224", 10, 1, &vit), REPQ_OK);
    assert_int_equal(repq_image_loader_new(f->ctx, vit, &l), REPQ_OK);
    assert_int_equal(repq_image_loader_get_int(l, REPQ_IMAGE_RESIZE_SIZE, &v), REPQ_OK);
    assert_int_equal(v, 248);
    assert_int_equal(repq_image_loader_set_float(l, REPQ_IMAGE_CROP_PCT, 0.95), REPQ_OK);
    assert_int_equal(repq_image_loader_get_int(l, REPQ_IMAGE_RESIZE_SIZE, &v), REPQ_OK);
    assert_int_equal(v, 235); /* floor(224 / 0.95) = floor(235.79) */
    assert_int_equal(repq_image_loader_set_float(l, REPQ_IMAGE_CROP_PCT, 1.0), REPQ_OK);
    assert_int_equal(repq_image_loader_get_int(l, REPQ_IMAGE_RESIZE_SIZE, &v), REPQ_OK);
    assert_int_equal(v, 224);
    assert_int_equal(repq_image_loader_set_float(l, REPQ_IMAGE_CROP_PCT, 1.5), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_image_loader_set_float(l, REPQ_IMAGE_CROP_PCT, 0.0), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_image_loader_set_int(l, REPQ_IMAGE_RESIZE_SIZE, 223), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_image_loader_set_int(l, REPQ_IMAGE_CROP_SIZE, 100), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_image_loader_set_int(l, REPQ_IMAGE_INTERPOLATION, 1), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_image_loader_set_int(l, REPQ_IMAGE_THREADS, 0), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_image_loader_set_int(l, REPQ_IMAGE_MAX_PIXELS, 0), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_image_loader_get_int(l, REPQ_IMAGE_CROP_SIZE, &v), REPQ_OK);
    assert_int_equal(v, 224);
    repq_image_loader_free(l);
    repq_model_free(vit);
    assert_int_equal(repq_image_loader_get_int(f->small, REPQ_IMAGE_CROP_SIZE, &v), REPQ_OK);
    assert_int_equal(v, 32);
    repq_image_loader *fresh;
    assert_int_equal(repq_image_loader_new(f->ctx, f->cifar, &fresh), REPQ_OK);
    assert_int_equal(repq_image_loader_get_int(fresh, REPQ_IMAGE_RESIZE_SIZE, &v), REPQ_OK);
    assert_int_equal(v, 36);
    repq_image_loader_free(fresh);
}

/* Tracks the largest block asked for, to prove a refusal came before the pixels. */
typedef struct tracking {
    size_t largest;
} tracking;

static void *tracking_alloc(void *user, size_t size, size_t alignment)
{
    tracking *t = user;
    if (size > t->largest)
        t->largest = size;
    return aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
}

static void tracking_release(void *user, void *ptr) { free(ptr); }

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A PNG whose IHDR announces width x height (CRC fixed up), followed by an IDAT of a
 * few zero bytes and IEND. */
static size_t craft_png(uint8_t *buf, uint32_t width, uint32_t height)
{
    static const uint8_t magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t n = 0;
    memcpy(buf, magic, 8);
    n = 8;
    put_be32(buf + n, 13);
    memcpy(buf + n + 4, "IHDR", 4);
    put_be32(buf + n + 8, width);
    put_be32(buf + n + 12, height);
    buf[n + 16] = 8; /* depth */
    buf[n + 17] = 2; /* RGB */
    buf[n + 18] = buf[n + 19] = buf[n + 20] = 0;
    put_be32(buf + n + 21, (uint32_t)crc32(0, buf + n + 4, 17));
    n += 25;
    uint8_t raw[64] = {0}, z[128];
    uLongf zn = sizeof z;
    assert_int_equal(compress(z, &zn, raw, sizeof raw), Z_OK);
    put_be32(buf + n, (uint32_t)zn);
    memcpy(buf + n + 4, "IDAT", 4);
    memcpy(buf + n + 8, z, zn);
    put_be32(buf + n + 8 + zn, (uint32_t)crc32(0, buf + n + 4, (uInt)zn + 4));
    n += 12 + zn;
    put_be32(buf + n, 0);
    memcpy(buf + n + 4, "IEND", 4);
    put_be32(buf + n + 8, (uint32_t)crc32(0, buf + n + 4, 4));
    return n + 12;
}

/* The JPEG's SOF0/SOF2 height and width patched. */
static void patch_jpeg_size(uint8_t *b, size_t n, uint16_t width, uint16_t height)
{
    for (size_t i = 2; i + 9 < n;) {
        assert_int_equal(b[i], 0xff);
        uint8_t marker = b[i + 1];
        size_t len = (size_t)b[i + 2] << 8 | b[i + 3];
        if (marker == 0xc0 || marker == 0xc2) {
            b[i + 5] = (uint8_t)(height >> 8);
            b[i + 6] = (uint8_t)height;
            b[i + 7] = (uint8_t)(width >> 8);
            b[i + 8] = (uint8_t)width;
            return;
        }
        i += 2 + len;
    }
    fail_msg("no SOF marker");
}

static repq_status decode_bytes(const uint8_t *b, size_t n, int64_t max_pixels, size_t *largest, char *msg)
{
    tracking t = {0};
    repq_allocator al = {tracking_alloc, tracking_release, &t};
    repq_object err;
    repq_object_init(&err, REPQ_KIND_CONTEXT, al);
    repq_rgb_image img;
    repq_status st = repq_image_decode(&err, &al, b, n, max_pixels, &img);
    repq_rgb_image_release(&al, &img);
    if (largest)
        *largest = t.largest;
    if (msg)
        snprintf(msg, 256, "%s", err.error);
    return st;
}

static void huge_headers_are_refused_before_allocating(void **state)
{
    (void)state;
    uint8_t png[256];
    size_t n = craft_png(png, 100000, 100000), largest;
    char msg[256];
    assert_int_equal(decode_bytes(png, n, 89478485, &largest, msg), REPQ_ERR_UNSUPPORTED);
    assert_true(largest < (1u << 20));
    assert_non_null(strstr(msg, "100000 x 100000"));
    /* Within the limit the same header gets past the check and fails on missing data. */
    n = craft_png(png, 300, 200);
    assert_int_equal(decode_bytes(png, n, 89478485, NULL, msg), REPQ_ERR_FORMAT);
    assert_int_equal(decode_bytes(png, n, 59999, NULL, msg), REPQ_ERR_UNSUPPORTED);

    size_t jn;
    uint8_t *jpg = read_all(DATA "/images/decode/jpeg_baseline.jpg", &jn);
    patch_jpeg_size(jpg, jn, 65000, 65000);
    assert_int_equal(decode_bytes(jpg, jn, 89478485, &largest, msg), REPQ_ERR_UNSUPPORTED);
    assert_true(largest < (1u << 20));
    free(jpg);
    jpg = read_all(DATA "/images/decode/jpeg_progressive.jpg", &jn);
    patch_jpeg_size(jpg, jn, 65000, 65000);
    assert_int_equal(decode_bytes(jpg, jn, 89478485, &largest, msg), REPQ_ERR_UNSUPPORTED);
    assert_true(largest < (1u << 20));
    free(jpg);
}

/* A 5,000,000 x 1 image (within the pixel limit) would resize to 1.28e9 x 256: refused,
 * not an int32 overflow; a 300000 x 1 one resizes (only the crop is computed). */
static void elongated_images_are_refused_or_cropped(void **state)
{
    (void)state;
    repq_allocator al = repq_allocator_of(NULL);
    repq_rgb_image img = {5000000, 1, calloc(5000000, 3)};
    assert_non_null(img.pixels);
    uint8_t *out = malloc(3 * PLANE);
    assert_int_equal(repq_resize_crop(NULL, &al, &img, 256, S, REPQ_INTERPOLATION_BICUBIC, out), REPQ_ERR_UNSUPPORTED);
    img.width = 300000;
    for (int x = 0; x < 300000 * 3; x++)
        img.pixels[x] = (uint8_t)(x / 3 % 251);
    assert_int_equal(repq_resize_crop(NULL, &al, &img, 256, S, REPQ_INTERPOLATION_BICUBIC, out), REPQ_OK);
    for (size_t c = 0; c < 3; c++) /* a single row enlarged: every crop row is the same */
        for (size_t y = 1; y < S; y++)
            assert_memory_equal(out + c * PLANE, out + c * PLANE + y * S, S);
    free(out);
    free(img.pixels);
}

static void zero_sized_images_are_format_errors(void **state)
{
    (void)state;
    uint8_t png[256];
    char msg[256];
    size_t n = craft_png(png, 0, 10);
    assert_int_equal(decode_bytes(png, n, 1000, NULL, msg), REPQ_ERR_FORMAT);
    n = craft_png(png, 10, 0);
    assert_int_equal(decode_bytes(png, n, 1000, NULL, msg), REPQ_ERR_FORMAT);
    size_t jn;
    uint8_t *jpg = read_all(DATA "/images/decode/jpeg_baseline.jpg", &jn);
    patch_jpeg_size(jpg, jn, 61, 0);
    assert_int_equal(decode_bytes(jpg, jn, 1000000, NULL, msg), REPQ_ERR_FORMAT);
    patch_jpeg_size(jpg, jn, 0, 39);
    assert_int_equal(decode_bytes(jpg, jn, 1000000, NULL, msg), REPQ_ERR_FORMAT);
    free(jpg);
    assert_int_equal(decode_bytes((const uint8_t *)"", 0, 1000, NULL, msg), REPQ_ERR_FORMAT);
}

/* Every prefix of a JPEG and a PNG, and every single-byte corruption of their first
 * 300 bytes, is decoded or refused, never crashes (ASan/UBSan run this too); libjpeg's
 * fatal errors come back as REPQ_ERR_FORMAT instead of exit(). */
static void truncated_and_corrupt_files_fail_cleanly(void **state)
{
    (void)state;
    const char *files[] = {DATA "/images/decode/jpeg_progressive.jpg", DATA "/images/decode/png_ct2_8_interlaced.png",
                           DATA "/images/decode/jpeg_ycck.jpg", DATA "/images/decode/png_ct3_4.png"};
    for (int fi = 0; fi < 4; fi++) {
        size_t n;
        uint8_t *b = read_all(files[fi], &n);
        assert_int_equal(decode_bytes(b, n, 1 << 20, NULL, NULL), REPQ_OK);
        int truncated_failures = 0;
        for (size_t len = 0; len < n; len += (len < 400 ? 1 : 7)) {
            repq_status st = decode_bytes(b, len, 1 << 20, NULL, NULL);
            assert_true(st == REPQ_OK || st == REPQ_ERR_FORMAT || st == REPQ_ERR_UNSUPPORTED);
            truncated_failures += st != REPQ_OK;
        }
        assert_true(truncated_failures > 0);
        /* The file cut in half: refused with a message saying so. */
        char msg[256];
        assert_int_equal(decode_bytes(b, n / 2, 1 << 20, NULL, msg), REPQ_ERR_FORMAT);
        assert_non_null(strstr(msg, "truncated"));
        for (size_t i = 0; i < 300 && i < n; i++) {
            uint8_t keep = b[i];
            b[i] ^= 0x5a;
            repq_status st = decode_bytes(b, n, 1 << 20, NULL, NULL);
            assert_true(st == REPQ_OK || st == REPQ_ERR_FORMAT || st == REPQ_ERR_UNSUPPORTED);
            b[i] = keep;
        }
        free(b);
    }
}

static void file_errors_name_the_file(void **state)
{
    fixture *f = *state;
    char path[160];
    repq_tensor *t = (repq_tensor *)1;
    /* A PNG named .jpg is read by its signature. */
    size_t n;
    uint8_t *png = read_all(DATA "/photos/grey.png", &n);
    snprintf(path, sizeof path, "%s/really_a_png.jpg", f->dir);
    write_all(path, png, n);
    free(png);
    assert_int_equal(repq_image_load(f->loader, path, &t), REPQ_OK);
    repq_tensor_free(t);
    snprintf(path, sizeof path, "%s/notes.png", f->dir);
    write_all(path, "hello, not a picture\n", 21);
    assert_int_equal(repq_image_load(f->loader, path, &t), REPQ_ERR_FORMAT);
    assert_null(t);
    assert_non_null(strstr(repq_last_error(f->loader), "notes.png"));
    snprintf(path, sizeof path, "%s/empty.jpg", f->dir);
    write_all(path, "", 0);
    assert_int_equal(repq_image_load(f->loader, path, &t), REPQ_ERR_FORMAT);
    assert_non_null(strstr(repq_last_error(f->loader), "empty"));
    snprintf(path, sizeof path, "%s/missing.jpg", f->dir);
    assert_int_equal(repq_image_load(f->loader, path, &t), REPQ_ERR_IO);
    assert_non_null(strstr(repq_last_error(f->loader), "missing.jpg"));
    assert_int_equal(repq_image_load(f->loader, f->dir, &t), REPQ_ERR_IO); /* a folder */
    snprintf(path, sizeof path, "%s/fifo.jpg", f->dir); /* would block a plain fopen */
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(repq_image_load(f->loader, path, &t), REPQ_ERR_IO);
    assert_non_null(strstr(repq_last_error(f->loader), "not a regular file"));
    unlink(path);
    /* The pixel limit, settable. */
    assert_int_equal(repq_image_loader_set_int(f->loader, REPQ_IMAGE_MAX_PIXELS, 500 * 374), REPQ_OK);
    assert_int_equal(repq_image_load(f->loader, DATA "/photos/n01440764_tench.JPEG", &t), REPQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(repq_last_error(f->loader), "limit"));
    assert_int_equal(repq_image_loader_set_int(f->loader, REPQ_IMAGE_MAX_PIXELS, 500 * 375), REPQ_OK);
    assert_int_equal(repq_image_load(f->loader, DATA "/photos/n01440764_tench.JPEG", &t), REPQ_OK);
    repq_tensor_free(t);
    assert_int_equal(repq_image_loader_set_int(f->loader, REPQ_IMAGE_MAX_PIXELS, 89478485), REPQ_OK);
    assert_int_equal(repq_image_load(NULL, path, &t), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_image_load(f->loader, NULL, &t), REPQ_ERR_INVALID_ARGUMENT);
}

/* Threads change nothing: a batch on 3 threads equals images loaded one by one, and a
 * bad file in the middle is reported by status and name while the rest are filled. */
static void batches_on_threads_equal_single_loads(void **state)
{
    fixture *f = *state;
    char bad[160];
    snprintf(bad, sizeof bad, "%s/broken.jpg", f->dir);
    write_all(bad, "\xff\xd8\xff\xe0 broken", 11);
    const char *paths[PHOTOS + 1];
    char full[PHOTOS][256];
    for (size_t i = 0; i < PHOTOS; i++) {
        snprintf(full[i], sizeof full[i], DATA "/photos/%s", photo_names[i]);
        paths[i < 4 ? i : i + 1] = full[i];
    }
    paths[4] = bad;
    int32_t n = (int32_t)PHOTOS + 1;
    int64_t shape[4] = {n, 3, S, S};
    repq_tensor *images;
    assert_int_equal(repq_tensor_new(f->ctx, REPQ_DTYPE_U8, 4, shape, NULL, &images), REPQ_OK);
    assert_int_equal(repq_image_loader_set_int(f->loader, REPQ_IMAGE_THREADS, 3), REPQ_OK);
    int32_t statuses[PHOTOS + 1];
    assert_int_equal(repq_image_load_batch(f->loader, paths, n, images, statuses), REPQ_ERR_FORMAT);
    assert_non_null(strstr(repq_last_error(f->loader), "broken.jpg"));
    uint8_t *all = malloc((size_t)n * 3 * PLANE), *one = malloc(3 * PLANE);
    assert_int_equal(repq_tensor_read(images, all, (size_t)n * 3 * PLANE), REPQ_OK);
    for (int32_t i = 0; i < n; i++) {
        if (i == 4) {
            assert_int_equal(statuses[i], REPQ_ERR_FORMAT);
            for (size_t j = 0; j < 3 * PLANE; j++)
                assert_int_equal(all[(size_t)i * 3 * PLANE + j], 0);
            continue;
        }
        assert_int_equal(statuses[i], REPQ_OK);
        load_pixels(f->loader, paths[i], one, 3 * PLANE);
        assert_memory_equal(one, all + (size_t)i * 3 * PLANE, 3 * PLANE);
    }
    /* Shape checks. */
    assert_int_equal(repq_image_load_batch(f->loader, paths, n - 1, images, NULL), REPQ_ERR_SHAPE);
    assert_int_equal(repq_image_loader_set_int(f->loader, REPQ_IMAGE_THREADS, 1), REPQ_OK);
    free(all);
    free(one);
    repq_tensor_free(images);
}

static void make_dir(const char *parent, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", parent, name);
    assert_int_equal(mkdir(out, 0700), 0);
}

static void copy_file(const char *from, const char *dir, const char *name)
{
    size_t n;
    uint8_t *b = read_all(from, &n);
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_all(path, b, n);
    free(b);
}

/* ImageNet's layout: classes in byte order of folder names, files below them (nested
 * too) in torchvision's walk order, non-image names skipped; a bad file is reported by
 * status and name and the others still load. A labels file lists a flat folder. */
static void folders_list_classes_and_report_bad_files(void **state)
{
    fixture *f = *state;
    char root[128], a[160], b[160], nested[200];
    make_dir(f->dir, "set", root, sizeof root);
    make_dir(root, "b_zebra", b, sizeof b);
    make_dir(root, "a_cat", a, sizeof a);
    make_dir(a, "sub", nested, sizeof nested);
    copy_file(DATA "/photos/grey.jpg", a, "z.jpg");
    copy_file(DATA "/photos/as_png.png", nested, "x.PNG");
    copy_file(DATA "/photos/grey.png", b, "1.png");
    char garbage[200];
    snprintf(garbage, sizeof garbage, "%s/2.jpg", b);
    write_all(garbage, "garbage", 7);
    copy_file(DATA "/photos/grey.png", b, "readme.txt"); /* not an image name: skipped */
    /* A link back up the tree is not followed (a cycle); a second link to a folder is,
     * as torchvision's os.walk(followlinks=True) lists it twice. */
    char link[256];
    snprintf(link, sizeof link, "%s/up", nested);
    assert_int_equal(symlink("..", link), 0);
    snprintf(link, sizeof link, "%s/again", a);
    assert_int_equal(symlink("sub", link), 0);
    repq_image_folder *folder;
    assert_int_equal(repq_image_folder_open(f->ctx, root, NULL, &folder), REPQ_OK);
    int64_t count;
    int32_t classes;
    assert_int_equal(repq_image_folder_size(folder, &count, &classes), REPQ_OK);
    assert_int_equal(count, 5);
    assert_int_equal(classes, 2);
    const char *name, *path;
    int32_t label;
    assert_int_equal(repq_image_folder_class_name(folder, 0, &name), REPQ_OK);
    assert_string_equal(name, "a_cat");
    assert_int_equal(repq_image_folder_class_name(folder, 1, &name), REPQ_OK);
    assert_string_equal(name, "b_zebra");
    const char *want[] = {"a_cat/z.jpg", "a_cat/again/x.PNG", "a_cat/sub/x.PNG", "b_zebra/1.png", "b_zebra/2.jpg"};
    const int32_t want_label[] = {0, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(repq_image_folder_entry(folder, i, &path, &label), REPQ_OK);
        assert_non_null(strstr(path, want[i]));
        assert_int_equal(label, want_label[i]);
    }
    int64_t shape[4] = {5, 3, S, S}, lshape[1] = {5};
    repq_tensor *images, *labels;
    assert_int_equal(repq_tensor_new(f->ctx, REPQ_DTYPE_U8, 4, shape, NULL, &images), REPQ_OK);
    assert_int_equal(repq_tensor_new(f->ctx, REPQ_DTYPE_I32, 1, lshape, NULL, &labels), REPQ_OK);
    int32_t statuses[5];
    assert_int_equal(repq_image_folder_load(f->loader, folder, 0, 5, images, labels, statuses), REPQ_ERR_FORMAT);
    assert_non_null(strstr(repq_last_error(f->loader), "2.jpg"));
    for (int i = 0; i < 4; i++)
        assert_int_equal(statuses[i], REPQ_OK);
    assert_int_equal(statuses[4], REPQ_ERR_FORMAT);
    int32_t y[5];
    assert_int_equal(repq_tensor_read(labels, y, sizeof y), REPQ_OK);
    assert_memory_equal(y, want_label, sizeof y);
    assert_int_equal(repq_image_folder_load(f->loader, folder, 4, 5, images, labels, NULL), REPQ_ERR_INVALID_ARGUMENT);
    repq_image_folder_free(folder);

    /* A labels file over a flat folder; names with spaces; comments; errors by line. */
    char flat[128], labels_path[160];
    make_dir(f->dir, "flat", flat, sizeof flat);
    copy_file(DATA "/photos/grey.jpg", flat, "my photo.jpg");
    copy_file(DATA "/photos/grey.png", flat, "b.png");
    snprintf(labels_path, sizeof labels_path, "%s/labels.txt", f->dir);
    const char *good = "# name index\nmy photo.jpg 7\n\nb.png\t3\n";
    write_all(labels_path, good, strlen(good));
    assert_int_equal(repq_image_folder_open(f->ctx, flat, labels_path, &folder), REPQ_OK);
    assert_int_equal(repq_image_folder_size(folder, &count, &classes), REPQ_OK);
    assert_int_equal(count, 2);
    assert_int_equal(classes, 8);
    assert_int_equal(repq_image_folder_entry(folder, 0, &path, &label), REPQ_OK);
    assert_non_null(strstr(path, "/my photo.jpg"));
    assert_int_equal(label, 7);
    assert_int_equal(repq_image_folder_class_name(folder, 0, &name), REPQ_ERR_UNSUPPORTED);
    repq_image_folder_free(folder);
    const char *bad[] = {"a.jpg 1\nb.jpg x\n", "a.jpg -1\n", "../etc/passwd 1\n", "justaname\n", "# nothing\n"};
    const char *where[] = {":2:", ":1:", "leaves", ":1:", "no image"};
    for (int i = 0; i < 5; i++) {
        write_all(labels_path, bad[i], strlen(bad[i]));
        folder = (repq_image_folder *)1;
        assert_int_equal(repq_image_folder_open(f->ctx, flat, labels_path, &folder), REPQ_ERR_FORMAT);
        assert_null(folder);
        if (!strstr(repq_last_error(f->ctx), where[i]))
            fail_msg("labels file %d: '%s' lacks '%s'", i, repq_last_error(f->ctx), where[i]);
    }
    assert_int_equal(repq_image_folder_open(f->ctx, "/nonexistent/dir", NULL, &folder), REPQ_ERR_IO);
    /* No class folders, no labels: the folder's images, class unknown. */
    assert_int_equal(repq_image_folder_open(f->ctx, flat, NULL, &folder), REPQ_OK);
    assert_int_equal(repq_image_folder_size(folder, &count, &classes), REPQ_OK);
    assert_int_equal(count, 2);
    assert_int_equal(classes, 0);
    assert_int_equal(repq_image_folder_entry(folder, 0, &path, &label), REPQ_OK);
    assert_non_null(strstr(path, "/b.png"));
    assert_int_equal(label, -1);
    repq_image_folder_free(folder);
    char empty[160];
    make_dir(f->dir, "empty", empty, sizeof empty);
    assert_int_equal(repq_image_folder_open(f->ctx, empty, NULL, &folder), REPQ_ERR_FORMAT);
    repq_tensor_free(images);
    repq_tensor_free(labels);
}

/* A loader made from a quantized model has the float model's transform, which the
 * .repq file keeps in its preprocess metadata (crop_pct, interpolation). */
static void quantized_models_keep_the_transform(void **state)
{
    fixture *f = *state;
    repq_image_loader *l;
    assert_int_equal(repq_image_loader_set_int(f->small, REPQ_IMAGE_RESIZE_SIZE, 36), REPQ_OK);
    repq_tensor *img;
    load_pixels(f->small, DATA "/photos/grey.jpg", (uint8_t[3 * 32 * 32]){0}, 3 * 32 * 32);
    assert_int_equal(repq_image_load(f->small, DATA "/photos/grey.jpg", &img), REPQ_OK);
    repq_calib *c;
    repq_qmodel *q, *r, *loaded;
    assert_int_equal(repq_calib_new(f->ctx, f->cifar, NULL, &c), REPQ_OK);
    assert_int_equal(repq_calib_feed(c, img), REPQ_OK);
    assert_int_equal(repq_calib_finish(c, &q), REPQ_OK);
    assert_int_equal(repq_qmodel_reparameterize(f->ctx, q, &r), REPQ_OK);
    char path[128];
    snprintf(path, sizeof path, "%s/m.repq", f->dir);
    assert_int_equal(repq_qmodel_save(r, path), REPQ_OK);
    assert_int_equal(repq_qmodel_load(f->ctx, path, &loaded), REPQ_OK);
    assert_int_equal(repq_image_loader_new_quantized(f->ctx, loaded, &l), REPQ_OK);
    int64_t v;
    assert_int_equal(repq_image_loader_get_int(l, REPQ_IMAGE_RESIZE_SIZE, &v), REPQ_OK);
    assert_int_equal(v, 36);
    assert_int_equal(repq_image_loader_get_int(l, REPQ_IMAGE_CROP_SIZE, &v), REPQ_OK);
    assert_int_equal(v, 32);
    repq_image_loader_free(l);
    assert_int_equal(repq_image_loader_new_quantized(f->ctx, NULL, &l), REPQ_ERR_INVALID_ARGUMENT);
    assert_null(l);
    repq_qmodel_free(loaded);
    repq_qmodel_free(r);
    repq_qmodel_free(q);
    repq_calib_free(c);
    repq_tensor_free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(photos_match_pillow_and_timm),
        cmocka_unit_test(png_and_jpeg_of_same_pixels_agree_and_grey_has_equal_planes),
        cmocka_unit_test(decoders_match_pillow_convert_rgb),
        cmocka_unit_test(transform_matches_torchvision_with_pillow),
        cmocka_unit_test(presets_and_overrides_set_the_resize),
        cmocka_unit_test(huge_headers_are_refused_before_allocating),
        cmocka_unit_test(zero_sized_images_are_format_errors),
        cmocka_unit_test(elongated_images_are_refused_or_cropped),
        cmocka_unit_test(truncated_and_corrupt_files_fail_cleanly),
        cmocka_unit_test(file_errors_name_the_file),
        cmocka_unit_test(batches_on_threads_equal_single_loads),
        cmocka_unit_test(folders_list_classes_and_report_bad_files),
        cmocka_unit_test(quantized_models_keep_the_transform),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
