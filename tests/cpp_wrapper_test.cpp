// <repq/repq.hpp> as installed: a failure throws repq::error with the library's status
// and message; a session keeps its qmodel alive after the program drops the qmodel.
//
//   cpp_wrapper_test TINY.repq       (a quantized model of 6x6 images and 3 classes)
#include <cstdio>
#include <string>

#include <repq/repq.hpp>

static int failures = 0;

static void expect(bool ok, const char *what)
{
    if (!ok) {
        std::fprintf(stderr, "FAIL: %s\n", what);
        failures++;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s TINY.repq\n", argv[0]);
        return 2;
    }
    repq::context ctx;
    try {
        repq::model::load(ctx, "/nonexistent/model.safetensors");
        expect(false, "a missing file loads");
    } catch (const repq::error &e) {
        expect(e.status() == REPQ_ERR_IO, "a missing file gives REPQ_ERR_IO");
        expect(std::string(e.what()).find("cannot open '/nonexistent/model.safetensors'") != std::string::npos,
               "the message is the library's");
    }
    try {
        repq::options opts;
        opts.set(REPQ_OPT_THREADS, 100000);
        expect(false, "threads = 100000 accepted");
    } catch (const repq::error &e) {
        expect(std::string(e.what()).find("option threads = 100000 is outside [1, 256]") != std::string::npos,
               "an option out of range gives its own message");
    }
    {
        // Per-layer widths: a uniform file's layers all have its widths.
        repq::qmodel q = repq::qmodel::load(ctx, argv[1]);
        const int64_t layers = q.get(REPQ_QMODEL_NUM_LAYERS);
        expect(layers > 0, "the qmodel has layers");
        for (int32_t i = 0; i < layers; i++) {
            expect(q.layer_get(i, REPQ_LAYER_WEIGHT_BITS) == q.get(REPQ_QMODEL_WEIGHT_BITS),
                   "a uniform file's layer has its weight width");
            expect(!q.layer_name(i).empty(), "every layer has a name");
        }
        expect(q.layer_name(0) == "patch_embed.proj", "layer 0 is the patch embedding");
        const int64_t acts = q.get(REPQ_QMODEL_NUM_ACTIVATIONS);
        expect(acts > layers, "every layer's input and the attention's activations are listed");
        for (int32_t i = 0; i < acts; i++)
            expect(q.activation_get(i, REPQ_ACTIVATION_BITS) ==
                       (i == 0 ? q.layer_get(0, REPQ_LAYER_INPUT_BITS) : q.get(REPQ_QMODEL_ACT_BITS)),
                   "a uniform file's activation has its width (the patch input: its own)");
        expect(q.activation_name(0) == "patch_embed.proj.input", "activation 0 is the patch embedding's input");
        try {
            q.activation_name(static_cast<int32_t>(acts));
            expect(false, "an activation past the last accepted");
        } catch (const repq::error &e) {
            expect(e.status() == REPQ_ERR_INVALID_ARGUMENT,
                   "an activation past the last gives REPQ_ERR_INVALID_ARGUMENT");
        }
        try {
            q.layer_get(static_cast<int32_t>(layers), REPQ_LAYER_WEIGHT_BITS);
            expect(false, "a layer past the last accepted");
        } catch (const repq::error &e) {
            expect(e.status() == REPQ_ERR_INVALID_ARGUMENT, "a layer past the last gives REPQ_ERR_INVALID_ARGUMENT");
        }
    }
    {
        auto make_session = [&]() {
            repq::qmodel q = repq::qmodel::load(ctx, argv[1]);
            return repq::session(ctx, q, 1); // q is dropped here
        };
        repq::session s = make_session();
        repq::tensor images(ctx, REPQ_DTYPE_F32, {1, 3, 6, 6}), logits(ctx, REPQ_DTYPE_F32, {1, 3});
        s.run(images, logits); // would touch freed memory if the qmodel had gone
        expect(logits.read<float>().size() == 3, "the session ran after its qmodel was dropped");
        try {
            repq::tensor wrong(ctx, REPQ_DTYPE_F32, {1, 3, 5, 5});
            s.run(wrong, logits);
            expect(false, "misshapen images accepted");
        } catch (const repq::error &e) {
            expect(std::string(e.what()).find("images must be [N, 3, 6, 6]") != std::string::npos,
                   "a misshapen batch gives the session's message");
        }
    }
    std::printf("C++ wrapper test: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
