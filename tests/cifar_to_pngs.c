/* Test helper for cli_test.sh: writes every STRIDE-th record of a CIFAR-10 binary file as
 * PNG pictures, in ImageNet's layout (OUT/imagenet/<label>_<name>/<index>.png), in a flat
 * folder with a labels file (OUT/flat/, OUT/labels.txt), and the same records again as a
 * CIFAR file (OUT/subset.bin) and as raw planar pixels (OUT/subset.u8), so that the CLI's
 * image path can be compared with its CIFAR path on identical pixels. With MODEL, also
 * writes OUT/named.safetensors: MODEL with the CIFAR class names in its metadata
 * ("class_names").
 *   cifar_to_pngs CIFAR.bin STRIDE OUT [MODEL] */
#include <jansson.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                      "dog", "frog", "horse", "ship", "truck"};

static int write_png(const char *path, const unsigned char *planar)
{
    unsigned char rgb[32 * 32 * 3];
    for (int i = 0; i < 1024; i++)
        for (int c = 0; c < 3; c++)
            rgb[3 * i + c] = planar[c * 1024 + i];
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = img.height = 32;
    img.format = PNG_FORMAT_RGB;
    return png_image_write_to_file(&img, path, 0, rgb, 0, NULL) ? 0 : 1;
}

/* MODEL's header with __metadata__.class_names set, then MODEL's tensor data. */
static int write_named_model(const char *model, const char *out)
{
    FILE *in = fopen(model, "rb");
    unsigned char lb[8];
    if (!in || fread(lb, 1, 8, in) != 8)
        return 1;
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--)
        len = len << 8 | lb[i];
    char *header = malloc((size_t)len + 1);
    if (!header || fread(header, 1, (size_t)len, in) != len)
        return 1;
    header[len] = '\0';
    json_t *root = json_loads(header, 0, NULL), *meta = json_object_get(root, "__metadata__"), *list = json_array();
    for (int c = 0; c < 10; c++)
        json_array_append_new(list, json_string(names[c]));
    char *list_text = json_dumps(list, JSON_COMPACT);
    json_object_set_new(meta, "class_names", json_string(list_text));
    char *text = json_dumps(root, JSON_COMPACT);
    size_t n = strlen(text);
    FILE *o = fopen(out, "wb");
    if (!o)
        return 1;
    for (int i = 0; i < 8; i++)
        fputc((int)((uint64_t)n >> (8 * i) & 0xff), o);
    fwrite(text, 1, n, o);
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, got, o);
    fclose(in);
    free(header);
    free(list_text);
    free(text);
    json_decref(list);
    json_decref(root);
    return fclose(o) != 0;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5)
        return 2;
    FILE *in = fopen(argv[1], "rb");
    long stride = atol(argv[2]);
    const char *out = argv[3];
    char path[4096];
    if (!in || stride < 1)
        return 1;
    snprintf(path, sizeof path, "%s/imagenet", out);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/flat", out);
    mkdir(path, 0700);
    for (int c = 0; c < 10; c++) {
        snprintf(path, sizeof path, "%s/imagenet/%d_%s", out, c, names[c]);
        mkdir(path, 0700);
    }
    snprintf(path, sizeof path, "%s/subset.bin", out);
    FILE *subset = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/subset.u8", out);
    FILE *raw = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/labels.txt", out);
    FILE *labels = fopen(path, "w");
    if (!subset || !raw || !labels)
        return 1;
    unsigned char rec[3073];
    for (long i = 0; fread(rec, 1, sizeof rec, in) == sizeof rec; i++) {
        if (i % stride != 0)
            continue;
        snprintf(path, sizeof path, "%s/imagenet/%d_%s/%05ld.png", out, rec[0], names[rec[0] % 10], i);
        if (write_png(path, rec + 1))
            return 1;
        snprintf(path, sizeof path, "%s/flat/%05ld.png", out, i);
        if (write_png(path, rec + 1))
            return 1;
        fprintf(labels, "%05ld.png %d\n", i, rec[0]);
        fwrite(rec, 1, sizeof rec, subset);
        fwrite(rec + 1, 1, 3072, raw);
    }
    fclose(in);
    if (argc == 5) {
        snprintf(path, sizeof path, "%s/named.safetensors", out);
        if (write_named_model(argv[4], path))
            return 1;
    }
    return fclose(subset) | fclose(raw) | fclose(labels);
}
