/* librepq for C++17: owning handles and exceptions over the C API, header-only.
 *
 * Everything here is inline and calls the C functions of repq.h, so the library's ABI
 * stays the C one; link exactly as a C program does (pkg-config --cflags --libs repq).
 *
 *   repq::context ctx;
 *   repq::model model = repq::model::load(ctx, "vit.safetensors");
 *   repq::options opts;
 *   opts.set(REPQ_OPT_WEIGHT_BITS, 4).set(REPQ_OPT_ACT_BITS, 4);
 *   repq::calibrator calib(ctx, model, opts);
 *   calib.feed(images);
 *   repq::qmodel q = calib.reconstruct(calib.finish().reparameterize(ctx));
 *   repq::session s(ctx, q, 16);
 *   s.run(batch, logits);
 *
 * Errors: every failing call throws repq::error, whose what() is the library's message
 * (repq_last_error of the handle the call records on) and status() the repq_status.
 * Ownership: each class owns its handle and frees it in its destructor; classes are
 * movable, and copies share the handle. A calibrator keeps its model alive and a
 * session its qmodel (they hold shared references), so a session can never outlive the
 * qmodel it runs, whatever order the program drops them in. Thread safety is the C
 * API's: a qmodel may be shared by threads, everything else is used by one thread at a
 * time.
 */
#ifndef REPQ_REPQ_HPP
#define REPQ_REPQ_HPP

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "repq.h"

namespace repq {

/* A failed call: the library's status and message. */
class error : public std::runtime_error {
public:
    error(repq_status status, const std::string &message) : std::runtime_error(message), status_(status) {}
    repq_status status() const noexcept { return status_; }

private:
    repq_status status_;
};

namespace detail {

/* Throw for a failed status, with the message recorded on `handle`. */
inline void check(repq_status st, const void *handle, const char *call)
{
    if (st == REPQ_OK)
        return;
    std::string message = std::string(call) + ": " + repq_status_string(st);
    const char *detail = repq_last_error(handle);
    if (detail && *detail)
        message += std::string(": ") + detail;
    throw error(st, message);
}

template <class T, void (*Free)(T *)>
std::shared_ptr<T> own(T *raw)
{
    return std::shared_ptr<T>(raw, [](T *p) { Free(p); });
}

} // namespace detail

class context {
public:
    context()
    {
        repq_context *raw = nullptr;
        detail::check(repq_context_new(&raw), nullptr, "repq_context_new");
        handle_ = detail::own<repq_context, repq_context_free>(raw);
    }
    repq_context *get() const noexcept { return handle_.get(); }

private:
    std::shared_ptr<repq_context> handle_;
};

class options {
public:
    options()
    {
        repq_options *raw = nullptr;
        detail::check(repq_options_new(&raw), nullptr, "repq_options_new");
        handle_ = detail::own<repq_options, repq_options_free>(raw);
    }
    options &set(repq_option key, int64_t value)
    {
        detail::check(repq_options_set_int(get(), key, value), get(), "repq_options_set_int");
        return *this;
    }
    int64_t get(repq_option key) const
    {
        int64_t v = 0;
        detail::check(repq_options_get_int(get(), key, &v), get(), "repq_options_get_int");
        return v;
    }
    repq_options *get() const noexcept { return handle_.get(); }

private:
    std::shared_ptr<repq_options> handle_;
};

class tensor {
public:
    /* A tensor of `shape`, zero-filled, or copied from `data` (product(shape) elements). */
    tensor(const context &ctx, repq_dtype dtype, const std::vector<int64_t> &shape, const void *data = nullptr)
    {
        repq_tensor *raw = nullptr;
        detail::check(repq_tensor_new(ctx.get(), dtype, static_cast<int32_t>(shape.size()), shape.data(), data, &raw),
                      ctx.get(), "repq_tensor_new");
        handle_ = detail::own<repq_tensor, repq_tensor_free>(raw);
    }
    /* Takes ownership of a tensor the C API handed out. */
    explicit tensor(repq_tensor *raw) : handle_(detail::own<repq_tensor, repq_tensor_free>(raw)) {}

    std::vector<int64_t> shape() const
    {
        int64_t dims[REPQ_TENSOR_MAX_DIMS];
        int32_t ndim = 0;
        detail::check(repq_tensor_describe(get(), nullptr, &ndim, dims, REPQ_TENSOR_MAX_DIMS), get(),
                      "repq_tensor_describe");
        return std::vector<int64_t>(dims, dims + ndim);
    }
    /* Rows [begin, end) along the first dimension, copied. */
    tensor rows(const context &ctx, int64_t begin, int64_t end) const
    {
        repq_tensor *raw = nullptr;
        detail::check(repq_tensor_rows_copy(ctx.get(), get(), begin, end, &raw), ctx.get(), "repq_tensor_rows_copy");
        return tensor(raw);
    }
    /* The contents as elements of T (which must match the dtype's size). */
    template <class T>
    std::vector<T> read() const
    {
        size_t bytes = 0;
        detail::check(repq_tensor_nbytes(get(), &bytes), get(), "repq_tensor_nbytes");
        std::vector<T> out(bytes / sizeof(T));
        detail::check(repq_tensor_read(get(), out.data(), out.size() * sizeof(T)), get(), "repq_tensor_read");
        return out;
    }
    repq_tensor *get() const noexcept { return handle_.get(); }

private:
    std::shared_ptr<repq_tensor> handle_;
};

/* CIFAR-10 records [offset, offset + limit) (limit <= 0: to the end): images and labels. */
inline std::pair<tensor, tensor> cifar_load(const context &ctx, const std::string &path, int64_t offset,
                                            int64_t limit)
{
    repq_tensor *images = nullptr, *labels = nullptr;
    detail::check(repq_cifar_load(ctx.get(), path.c_str(), offset, limit, &images, &labels), ctx.get(),
                  "repq_cifar_load");
    return {tensor(images), tensor(labels)};
}

/* Correct rows of `logits` against `labels` (repq_top1_count). */
inline int64_t top1_count(const tensor &logits, const tensor &labels)
{
    int64_t correct = 0;
    detail::check(repq_top1_count(logits.get(), labels.get(), &correct), logits.get(), "repq_top1_count");
    return correct;
}

class model {
public:
    static model load(const context &ctx, const std::string &path, const char *preset = nullptr)
    {
        repq_model *raw = nullptr;
        detail::check(repq_model_load(ctx.get(), path.c_str(), preset, &raw), ctx.get(), "repq_model_load");
        return model(raw);
    }
    int64_t get(repq_model_attr attr) const
    {
        int64_t v = 0;
        detail::check(repq_model_get_int(get(), attr, &v), get(), "repq_model_get_int");
        return v;
    }
    void forward(const tensor &images, const tensor &logits) const
    {
        detail::check(repq_model_forward(get(), images.get(), logits.get()), get(), "repq_model_forward");
    }
    repq_model *get() const noexcept { return handle_.get(); }

private:
    friend class calibrator;
    explicit model(repq_model *raw) : handle_(detail::own<repq_model, repq_model_free>(raw)) {}
    std::shared_ptr<repq_model> handle_;
};

class qmodel {
public:
    static qmodel load(const context &ctx, const std::string &path)
    {
        repq_qmodel *raw = nullptr;
        detail::check(repq_qmodel_load(ctx.get(), path.c_str(), &raw), ctx.get(), "repq_qmodel_load");
        return qmodel(raw);
    }
    explicit qmodel(repq_qmodel *raw) : handle_(detail::own<repq_qmodel, repq_qmodel_free>(raw)) {}

    qmodel reparameterize(const context &ctx) const
    {
        repq_qmodel *raw = nullptr;
        detail::check(repq_qmodel_reparameterize(ctx.get(), get(), &raw), ctx.get(), "repq_qmodel_reparameterize");
        return qmodel(raw);
    }
    void save(const std::string &path) const
    {
        detail::check(repq_qmodel_save(get(), path.c_str()), get(), "repq_qmodel_save");
    }
    int64_t get(int32_t attr) const
    {
        int64_t v = 0;
        detail::check(repq_qmodel_get_int(get(), attr, &v), nullptr, "repq_qmodel_get_int");
        return v;
    }
    /* Attribute of linear layer `layer` (0 <= layer < get(REPQ_QMODEL_NUM_LAYERS)). */
    int64_t layer_get(int32_t layer, repq_layer_attr attr) const
    {
        int64_t v = 0;
        detail::check(repq_qmodel_get_layer_int(get(), layer, attr, &v), nullptr, "repq_qmodel_get_layer_int");
        return v;
    }
    std::string layer_name(int32_t layer) const
    {
        const char *name = nullptr;
        detail::check(repq_qmodel_get_layer_name(get(), layer, &name), nullptr, "repq_qmodel_get_layer_name");
        return name;
    }
    /* Attribute of quantized activation `activation` (0 <= activation <
     * get(REPQ_QMODEL_NUM_ACTIVATIONS)). */
    int64_t activation_get(int32_t activation, repq_activation_attr attr) const
    {
        int64_t v = 0;
        detail::check(repq_qmodel_get_activation_int(get(), activation, attr, &v), nullptr,
                      "repq_qmodel_get_activation_int");
        return v;
    }
    std::string activation_name(int32_t activation) const
    {
        const char *name = nullptr;
        detail::check(repq_qmodel_get_activation_name(get(), activation, &name), nullptr,
                      "repq_qmodel_get_activation_name");
        return name;
    }
    /* Messages of a failure are recorded on `logits` (the qmodel may be shared). */
    void forward(repq_forward_mode mode, const tensor &images, const tensor &logits) const
    {
        detail::check(repq_qmodel_forward(get(), mode, images.get(), logits.get()), logits.get(),
                      "repq_qmodel_forward");
    }
    repq_qmodel *get() const noexcept { return handle_.get(); }

private:
    friend class session;
    std::shared_ptr<repq_qmodel> handle_;
};

class calibrator {
public:
    calibrator(const context &ctx, const model &m, const options &opts) : model_(m.handle_)
    {
        repq_calib *raw = nullptr;
        detail::check(repq_calib_new(ctx.get(), m.get(), opts.get(), &raw), ctx.get(), "repq_calib_new");
        handle_ = detail::own<repq_calib, repq_calib_free>(raw);
    }
    void feed(const tensor &images)
    {
        detail::check(repq_calib_feed(get(), images.get()), get(), "repq_calib_feed");
    }
    qmodel finish()
    {
        repq_qmodel *raw = nullptr;
        detail::check(repq_calib_finish(get(), &raw), get(), "repq_calib_finish");
        return qmodel(raw);
    }
    /* Weight reconstruction (repq_calib_reconstruct) of a reparameterized qmodel, GPTQ
     * towards the float model by default (REPQ_OPT_GPTQ_TARGET). */
    qmodel reconstruct(const qmodel &reparameterized)
    {
        repq_qmodel *raw = nullptr;
        detail::check(repq_calib_reconstruct(get(), reparameterized.get(), &raw), get(), "repq_calib_reconstruct");
        return qmodel(raw);
    }
    repq_calib *get() const noexcept { return handle_.get(); }

private:
    std::shared_ptr<repq_model> model_; /* the C calibrator keeps a reference to it */
    std::shared_ptr<repq_calib> handle_;
};

class session {
public:
    session(const context &ctx, const qmodel &q, int32_t max_batch, const options *opts = nullptr) : qmodel_(q.handle_)
    {
        repq_session *raw = nullptr;
        detail::check(repq_session_new(ctx.get(), q.get(), opts ? opts->get() : nullptr, max_batch, &raw), ctx.get(),
                      "repq_session_new");
        handle_ = detail::own<repq_session, repq_session_free>(raw);
    }
    void run(const tensor &images, const tensor &logits)
    {
        detail::check(repq_session_run(get(), images.get(), logits.get()), get(), "repq_session_run");
    }
    int64_t get(repq_session_attr attr) const
    {
        int64_t v = 0;
        detail::check(repq_session_get_int(get(), attr, &v), get(), "repq_session_get_int");
        return v;
    }
    repq_session *get() const noexcept { return handle_.get(); }

private:
    std::shared_ptr<repq_qmodel> qmodel_; /* declared first: freed after the session */
    std::shared_ptr<repq_session> handle_;
};

} // namespace repq

#endif
