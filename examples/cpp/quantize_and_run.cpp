// The C example (examples/quantize_and_run.c) in C++17 with <repq/repq.hpp>: owning
// handles, exceptions carrying the library's message. Same arguments, same output.
//
//   c++ -std=c++17 quantize_and_run.cpp $(pkg-config --cflags --libs repq) -o quantize_and_run_cpp
//   ./quantize_and_run_cpp MODEL.safetensors CALIB.bin TEST.bin [IMAGES [OUT.repq]]
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include <repq/repq.hpp>

namespace {

constexpr int64_t batch_size = 16;

// Top-1 over `images` in batches of at most batch_size, the last one shorter.
int64_t count_correct(const repq::context &ctx, const repq::tensor &images, const repq::tensor &labels,
                      int64_t classes, const std::function<void(const repq::tensor &, const repq::tensor &)> &run)
{
    const int64_t n = labels.shape()[0];
    int64_t correct = 0;
    for (int64_t begin = 0; begin < n; begin += batch_size) {
        const int64_t end = begin + batch_size < n ? begin + batch_size : n;
        repq::tensor x = images.rows(ctx, begin, end), y = labels.rows(ctx, begin, end);
        repq::tensor logits(ctx, REPQ_DTYPE_F32, {end - begin, classes});
        run(x, logits);
        correct += repq::top1_count(logits, y);
    }
    return correct;
}

void print_top1(const char *what, int64_t correct, int64_t n)
{
    std::printf("%s top-1: %.2f%% (%lld/%lld)\n", what, 100.0 * static_cast<double>(correct) / static_cast<double>(n),
                static_cast<long long>(correct), static_cast<long long>(n));
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s MODEL.safetensors CALIB.bin TEST.bin [IMAGES [OUT.repq]]\n", argv[0]);
        return 2;
    }
    const int64_t limit = argc > 4 ? std::atoll(argv[4]) : 100;
    const std::string out_path = argc > 5 ? argv[5] : "w4a4.repq";
    try {
        repq::context ctx;
        repq::model model = repq::model::load(ctx, argv[1]);
        auto [calib_images, calib_labels] = repq::cifar_load(ctx, argv[2], 0, 32);
        auto [test, labels] = repq::cifar_load(ctx, argv[3], 0, limit);

        repq::options opts;
        opts.set(REPQ_OPT_WEIGHT_BITS, 4).set(REPQ_OPT_ACT_BITS, 4);
        repq::calibrator calibrator(ctx, model, opts);
        calibrator.feed(calib_images);
        calibrator.reconstruct(calibrator.finish().reparameterize(ctx)).save(out_path);
        repq::qmodel loaded = repq::qmodel::load(ctx, out_path);
        repq::session session(ctx, loaded, static_cast<int32_t>(batch_size));

        const int64_t n = labels.shape()[0], classes = loaded.get(REPQ_MODEL_NUM_CLASSES);
        const int64_t fp32 = count_correct(ctx, test, labels, classes,
                                           [&](const repq::tensor &x, const repq::tensor &l) { model.forward(x, l); });
        const int64_t fake = count_correct(ctx, test, labels, classes, [&](const repq::tensor &x, const repq::tensor &l) {
            loaded.forward(REPQ_FORWARD_FAKE_QUANT, x, l);
        });
        const int64_t integer = count_correct(ctx, test, labels, classes,
                                              [&](const repq::tensor &x, const repq::tensor &l) { session.run(x, l); });
        std::printf("librepq %s (C++): %lld images, W4A4 saved to %s\n", repq_version_string(),
                    static_cast<long long>(n), out_path.c_str());
        print_top1("fp32", fp32, n);
        print_top1("fake-quant", fake, n);
        print_top1("integer", integer, n);
    } catch (const repq::error &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
