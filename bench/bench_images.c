/* Image input: decode, and decode + resize + centre crop (timm's DeiT transform,
 * 224 from a 256 shorter side, bicubic), images/s on one core, librepq against Pillow
 * (Debian's python3-pil, timed by a Python loop in this same run, best of three
 * alternating rounds; the column is skipped if Pillow is missing). Then librepq's batch
 * loader on 1 and 2 threads.
 *   bench_images DATA_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/object.h"
#include "image/resize.h"
#include "io/image_decode.h"
#include "repq/repq.h"

static const char *const photos[] = {
    "n01440764_tench.JPEG", "n02093428_American_Staffordshire_terrier.JPEG", "n02444819_otter.JPEG",
    "n03240683_drilling_platform.JPEG", "n03937543_pill_bottle.JPEG", "n04562935_water_tower.JPEG",
    "as_png.png", "grey.png", "grey.jpg",
};
#define N_PHOTOS (int)(sizeof photos / sizeof photos[0])

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void cpu_model(char *out, size_t cap)
{
    snprintf(out, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v[strcspn(v, "\n")] = '\0';
                snprintf(out, cap, "%s", v + 2);
            }
            break;
        }
    if (f)
        fclose(f);
}

static unsigned char *files[N_PHOTOS];
static size_t sizes[N_PHOTOS];

/* Images/s of decode (and resize + crop if `transform`) over the photos, >= 2 s. */
static double run_librepq(int transform)
{
    repq_allocator al = repq_allocator_of(NULL);
    static uint8_t out[3 * 224 * 224];
    long images = 0;
    double t0 = now(), elapsed;
    do {
        for (int i = 0; i < N_PHOTOS; i++) {
            repq_rgb_image img;
            if (repq_image_decode(NULL, &al, files[i], sizes[i], 1 << 26, &img) != REPQ_OK)
                return 0.0;
            if (transform && repq_resize_crop(NULL, &al, &img, 256, 224, 3, out) != REPQ_OK)
                return 0.0;
            repq_rgb_image_release(&al, &img);
            images++;
        }
        elapsed = now() - t0;
    } while (elapsed < 2.0);
    return (double)images / elapsed;
}

/* The same two loops in Pillow, in memory (io.BytesIO) as the C side reads from memory;
 * the resize and crop are torchvision's Resize(256) + CenterCrop(224) arithmetic. */
static const char *pillow_script =
    "import io, sys, time\n"
    "from PIL import Image\n"
    "data = [open(p, 'rb').read() for p in sys.argv[1:]]\n"
    "def run(transform):\n"
    "    n, t0 = 0, time.perf_counter()\n"
    "    while True:\n"
    "        for b in data:\n"
    "            im = Image.open(io.BytesIO(b)).convert('RGB')\n"
    "            if transform:\n"
    "                w, h = im.size\n"
    "                s, l = (w, h) if w <= h else (h, w)\n"
    "                nw, nh = (256, int(256 * l / s)) if w <= h else (int(256 * l / s), 256)\n"
    "                if (nw, nh) != (w, h):\n"
    "                    im = im.resize((nw, nh), Image.BICUBIC)\n"
    "                top, left = int(round((nh - 224) / 2.0)), int(round((nw - 224) / 2.0))\n"
    "                im = im.crop((left, top, left + 224, top + 224))\n"
    "                im.tobytes()\n"
    "            n += 1\n"
    "        e = time.perf_counter() - t0\n"
    "        if e >= 2.0:\n"
    "            return n / e\n"
    "print(run(False), run(True))\n";

static int run_pillow(const char *dir, double *decode, double *transform)
{
    const char *pythons[] = {"/usr/bin/python3", "python3"};
    char script[] = "/tmp/repq_bench_pillow_XXXXXX";
    int fd = mkstemp(script);
    if (fd < 0)
        return 0;
    FILE *sf = fdopen(fd, "w");
    fputs(pillow_script, sf);
    fclose(sf);
    int ok = 0;
    for (int p = 0; p < 2 && !ok; p++) {
        char cmd[8192];
        int len = snprintf(cmd, sizeof cmd, "%s %s", pythons[p], script);
        for (int i = 0; i < N_PHOTOS; i++)
            len += snprintf(cmd + len, sizeof cmd - (size_t)len, " '%s/photos/%s'", dir, photos[i]);
        snprintf(cmd + len, sizeof cmd - (size_t)len, " 2>/dev/null");
        FILE *pipe = popen(cmd, "r");
        if (pipe) {
            ok = fscanf(pipe, "%lf %lf", decode, transform) == 2;
            pclose(pipe);
        }
    }
    remove(script);
    return ok;
}

static double run_batch(const char *dir, int threads)
{
    repq_context *ctx = NULL;
    repq_model *m = NULL;
    repq_image_loader *l = NULL;
    repq_tensor *images = NULL;
    char full[N_PHOTOS * 4][512];
    const char *paths[N_PHOTOS * 4];
    for (int i = 0; i < N_PHOTOS * 4; i++) {
        snprintf(full[i], sizeof full[i], "%s/photos/%s", dir, photos[i % N_PHOTOS]);
        paths[i] = full[i];
    }
    int64_t shape[4] = {N_PHOTOS * 4, 3, 224, 224};
    double rate = 0.0;
    if (!repq_context_new(&ctx) && !repq_model_create_random(ctx, "deit_tiny_patch16_224", 0, 1, &m) &&
        !repq_image_loader_new(ctx, m, &l) && !repq_image_loader_set_int(l, REPQ_IMAGE_THREADS, threads) &&
        !repq_tensor_new(ctx, REPQ_DTYPE_U8, 4, shape, NULL, &images)) {
        long n = 0;
        double t0 = now(), e;
        do {
            if (repq_image_load_batch(l, paths, N_PHOTOS * 4, images, NULL))
                break;
            n += N_PHOTOS * 4;
            e = now() - t0;
        } while (e < 2.0);
        rate = (double)n / (now() - t0);
    }
    repq_tensor_free(images);
    repq_image_loader_free(l);
    repq_model_free(m);
    repq_context_free(ctx);
    return rate;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "data";
    for (int i = 0; i < N_PHOTOS; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/photos/%s", dir, photos[i]);
        FILE *f = fopen(path, "rb");
        if (!f)
            return fprintf(stderr, "bench_images: cannot open %s\n", path), 1;
        fseek(f, 0, SEEK_END);
        sizes[i] = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        files[i] = malloc(sizes[i]);
        if (!files[i] || fread(files[i], 1, sizes[i], f) != sizes[i])
            return 1;
        fclose(f);
    }
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    printf("# image input on %s: %d photos (6 JPEG 230x160..600x450, 1 PNG, 2 greyscale), from memory,\n"
           "# one core; transform = DeiT's Resize(256, bicubic) + CenterCrop(224)\n",
           cpu, N_PHOTOS);
    /* Best of three rounds, the two libraries alternating, so that a busy moment of a
     * shared machine does not land on one column only. */
    double pd = 0, pt = 0, d = 0, t = 0;
    int have_pillow = 0;
    for (int round = 0; round < 3; round++) {
        double a = 0, b = 0;
        if (run_pillow(dir, &a, &b)) {
            have_pillow = 1;
            pd = a > pd ? a : pd;
            pt = b > pt ? b : pt;
        }
        a = run_librepq(0);
        b = run_librepq(1);
        d = a > d ? a : d;
        t = b > t ? b : t;
    }
    printf("| stage | librepq images/s | Pillow 9.4 images/s | librepq / Pillow |\n|---|---|---|---|\n");
    if (have_pillow) {
        printf("| decode | %.1f | %.1f | %.2fx |\n", d, pd, d / pd);
        printf("| decode + resize + crop | %.1f | %.1f | %.2fx |\n", t, pt, t / pt);
    } else {
        printf("| decode | %.1f | skipped (no python3-pil) | |\n", d);
        printf("| decode + resize + crop | %.1f | skipped (no python3-pil) | |\n", t);
    }
    double b1 = 0, b2 = 0;
    for (int round = 0; round < 2; round++) {
        double a = run_batch(dir, 1), b = run_batch(dir, 2);
        b1 = a > b1 ? a : b1;
        b2 = b > b2 ? b : b2;
    }
    printf("\n# repq_image_load_batch from files (read + decode + resize + crop), %d images a call\n"
           "| threads | images/s | speed-up |\n|---|---|---|\n| 1 | %.1f | 1.00x |\n| 2 | %.1f | %.2fx |\n",
           N_PHOTOS * 4, b1, b2, b2 / b1);
    for (int i = 0; i < N_PHOTOS; i++)
        free(files[i]);
    return 0;
}
