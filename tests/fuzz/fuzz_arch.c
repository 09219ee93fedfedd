/* libFuzzer entry point for the architecture metadata parsers (ViT and Swin).
 *
 * The input is split at its first NUL byte: the text before it is the "architecture"
 * JSON, the text after it (if there is a NUL) the "preprocess" JSON, as
 * repq_arch_from_json and repq_swin_arch_from_json receive them from a file (both
 * parse every input). An accepted architecture must
 * satisfy every invariant the rest of the library relies on.
 * Build: meson setup build-fuzz -Dfuzzing=true (see scripts/fuzz.sh).
 * Seeds: tests/fuzz/corpus/arch/. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/arch.h"
#include "model/net.h"
#include "model/swin_arch.h"

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

/* An accepted architecture describes a network: its builder accepts it and lays out a
 * non-empty parameter arena. */
static void check_network(const repq_arch *a)
{
    repq_allocator al = repq_allocator_of(NULL);
    repq_net *net = NULL;
    check(repq_net_build(NULL, &al, a, &net) == REPQ_OK && net->param_floats > 0 && net->num_nodes >= 2);
    repq_net_free(&al, net);
}

static void check_swin(const char *arch, const char *pre)
{
    repq_object err = {0};
    repq_swin_arch a;
    repq_status st = repq_swin_arch_from_json(&err, arch, pre, &a);
    if (st != REPQ_OK) {
        check(err.error[0] != '\0');
        check(st == REPQ_ERR_FORMAT || st == REPQ_ERR_UNSUPPORTED);
        return;
    }
    check(a.img_size >= 1 && a.patch_size >= 1 && a.img_size % a.patch_size == 0);
    check(a.in_chans == 3 && a.num_classes >= 1 && a.stages >= 1 && a.stages <= REPQ_SWIN_MAX_STAGES);
    check(a.norm_eps > 0.0f && a.norm_eps < 1.0f);
    for (int32_t s = 0; s < a.stages; s++) {
        const int32_t dim = repq_swin_stage_dim(&a, s), grid = repq_swin_stage_grid(&a, s);
        check(grid >= 1 && (s == 0 || grid * 2 == repq_swin_stage_grid(&a, s - 1)));
        check(a.depths[s] >= 1 && a.num_heads[s] >= 1 && dim % a.num_heads[s] == 0);
        check(a.mlp_hidden[s] >= 1 && a.mlp_hidden[s] <= 65536);
        for (int32_t b = 0; b < 2; b++) {
            const repq_swin_window w = repq_swin_block_window(&a, s, b);
            check(repq_swin_window_valid(&w));
        }
    }
    check(repq_swin_param_count(&a) > 0);
    for (int c = 0; c < 3; c++)
        check(isfinite(a.mean[c]) && a.std[c] > 0.0f && isfinite(a.std[c]));
    repq_arch full;
    repq_arch_from_swin(&a, &full);
    check_network(&full);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *arch = malloc(size + 1);
    check(arch != NULL);
    memcpy(arch, data, size);
    arch[size] = '\0';
    size_t split = strlen(arch);
    const char *pre = split < size ? arch + split + 1 : NULL;
    repq_object err = {0};
    repq_arch a;
    repq_status st = repq_arch_from_json(&err, arch, pre, &a);
    if (st != REPQ_OK) {
        check(err.error[0] != '\0');
        check(st == REPQ_ERR_FORMAT || st == REPQ_ERR_UNSUPPORTED);
    } else {
        check(a.img_size >= 1 && a.patch_size >= 1 && a.img_size % a.patch_size == 0);
        check(a.in_chans == 3 && a.num_classes >= 1 && a.depth >= 1);
        check(a.embed_dim >= 1 && a.num_heads >= 1 && a.embed_dim % a.num_heads == 0);
        check(repq_vit_tokens(&a) <= 16385);
        check(a.mlp_hidden >= 1 && a.mlp_hidden <= 65536);
        check(a.norm_eps > 0.0f && a.norm_eps < 1.0f);
        check(a.pixel_scale > 0.0f && isfinite(a.pixel_scale));
        for (int c = 0; c < 3; c++)
            check(isfinite(a.mean[c]) && a.std[c] > 0.0f && isfinite(a.std[c]));
        check_network(&a);
    }
    check_swin(arch, pre);
    free(arch);
    return 0;
}
