//! Safe Rust bindings of librepq, written against the installed C API (src/sys.rs).
//!
//! Every handle is owned by one value and freed by its `Drop`. Failures come back as
//! `Err(Error)` carrying the library's status and message (`repq_last_error` of the
//! handle the call records on). A `Calibrator` keeps its `Model` and a `Session` its
//! `QModel` alive through shared references, so neither can run over a freed model,
//! whatever order the program drops them in. None of the types is `Send`: the C API's
//! handles (except a qmodel) belong to one thread at a time.
pub mod sys;

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::c_void;
use std::ptr;
use std::rc::Rc;

/// A failed call: the library's status (`repq_status`) and message.
#[derive(Debug, Clone)]
pub struct Error {
    pub status: i32,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn c_string(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the library returns NUL-terminated strings that live at least until the
    // next failing call on the handle; they are copied at once.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Ok for REPQ_OK, else the error with the message recorded on `handle`.
fn check(status: sys::repq_status, handle: *const c_void, call: &str) -> Result<()> {
    if status == sys::REPQ_OK {
        return Ok(());
    }
    // SAFETY: repq_status_string accepts any value; repq_last_error accepts NULL or a
    // live handle of the library, which is all this module passes.
    let mut message = format!("{}: {}", call, c_string(unsafe { sys::repq_status_string(status) }));
    let detail = c_string(unsafe { sys::repq_last_error(handle) });
    if !detail.is_empty() {
        message.push_str(": ");
        message.push_str(&detail);
    }
    Err(Error { status, message })
}

fn path_arg(path: &str) -> Result<CString> {
    CString::new(path).map_err(|_| Error { status: 1, message: format!("path {:?} contains a NUL byte", path) })
}

/// The library's version, e.g. "0.1.0".
pub fn version() -> String {
    // SAFETY: a static string.
    c_string(unsafe { sys::repq_version_string() })
}

/// Receives the messages of calls that create handles; carries the allocator.
pub struct Context {
    raw: *mut sys::repq_context,
}

impl Context {
    pub fn new() -> Result<Context> {
        let mut raw = ptr::null_mut();
        // SAFETY: a valid out pointer.
        check(unsafe { sys::repq_context_new(&mut raw) }, ptr::null(), "repq_context_new")?;
        Ok(Context { raw })
    }
    fn err(&self) -> *const c_void {
        self.raw as *const c_void
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: owned, freed once. Handles made with it do not need it any more.
        unsafe { sys::repq_context_free(self.raw) }
    }
}

/// Key/value settings of the calibrator and the session.
pub struct Options {
    raw: *mut sys::repq_options,
}

impl Options {
    pub fn new() -> Result<Options> {
        let mut raw = ptr::null_mut();
        // SAFETY: a valid out pointer.
        check(unsafe { sys::repq_options_new(&mut raw) }, ptr::null(), "repq_options_new")?;
        Ok(Options { raw })
    }
    pub fn set(&mut self, key: sys::repq_option, value: i64) -> Result<&mut Options> {
        // SAFETY: a live options handle; the library checks key and value.
        let st = unsafe { sys::repq_options_set_int(self.raw, key, value) };
        check(st, self.raw as *const c_void, "repq_options_set_int")?;
        Ok(self)
    }
}

impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: owned, freed once.
        unsafe { sys::repq_options_free(self.raw) }
    }
}

/// A dense row-major tensor owned by the library.
pub struct Tensor {
    raw: *mut sys::repq_tensor,
}

impl Tensor {
    /// A zero-filled F32 tensor.
    pub fn zeros_f32(ctx: &Context, shape: &[i64]) -> Result<Tensor> {
        let mut raw = ptr::null_mut();
        // SAFETY: `shape` holds shape.len() extents; NULL data zero-fills.
        let st = unsafe {
            sys::repq_tensor_new(ctx.raw, sys::REPQ_DTYPE_F32, shape.len() as i32, shape.as_ptr(), ptr::null(), &mut raw)
        };
        check(st, ctx.err(), "repq_tensor_new")?;
        Ok(Tensor { raw })
    }
    pub fn shape(&self) -> Result<Vec<i64>> {
        let mut dims = [0i64; sys::REPQ_TENSOR_MAX_DIMS];
        let mut ndim = 0i32;
        // SAFETY: `dims` holds REPQ_TENSOR_MAX_DIMS extents.
        let st = unsafe {
            sys::repq_tensor_describe(self.raw, ptr::null_mut(), &mut ndim, dims.as_mut_ptr(), dims.len() as i32)
        };
        check(st, self.raw as *const c_void, "repq_tensor_describe")?;
        Ok(dims[..ndim as usize].to_vec())
    }
    /// Rows [begin, end) along the first dimension, copied.
    pub fn rows(&self, ctx: &Context, begin: i64, end: i64) -> Result<Tensor> {
        let mut raw = ptr::null_mut();
        // SAFETY: live handles; the library checks the range.
        let st = unsafe { sys::repq_tensor_rows_copy(ctx.raw, self.raw, begin, end, &mut raw) };
        check(st, ctx.err(), "repq_tensor_rows_copy")?;
        Ok(Tensor { raw })
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        // SAFETY: owned, freed once.
        unsafe { sys::repq_tensor_free(self.raw) }
    }
}

/// CIFAR-10 records [offset, offset + limit) (limit <= 0: to the end): images, labels.
pub fn cifar_load(ctx: &Context, path: &str, offset: i64, limit: i64) -> Result<(Tensor, Tensor)> {
    let path = path_arg(path)?;
    let (mut images, mut labels) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: a NUL-terminated path and valid out pointers.
    let st = unsafe { sys::repq_cifar_load(ctx.raw, path.as_ptr(), offset, limit, &mut images, &mut labels) };
    check(st, ctx.err(), "repq_cifar_load")?;
    Ok((Tensor { raw: images }, Tensor { raw: labels }))
}

/// Rows of `logits` whose argmax is the row's label.
pub fn top1_count(logits: &Tensor, labels: &Tensor) -> Result<i64> {
    let mut correct = 0i64;
    // SAFETY: live tensors; the message goes to `logits`.
    let st = unsafe { sys::repq_top1_count(logits.raw, labels.raw, &mut correct) };
    check(st, logits.raw as *const c_void, "repq_top1_count")?;
    Ok(correct)
}

struct ModelHandle(*mut sys::repq_model);

impl Drop for ModelHandle {
    fn drop(&mut self) {
        // SAFETY: owned, freed once, after every calibrator holding it.
        unsafe { sys::repq_model_free(self.0) }
    }
}

/// A float vision transformer.
pub struct Model {
    handle: Rc<ModelHandle>,
}

impl Model {
    pub fn load(ctx: &Context, path: &str) -> Result<Model> {
        let path = path_arg(path)?;
        let mut raw = ptr::null_mut();
        // SAFETY: a NUL-terminated path, NULL preset (read from the file), valid out.
        let st = unsafe { sys::repq_model_load(ctx.raw, path.as_ptr(), ptr::null(), &mut raw) };
        check(st, ctx.err(), "repq_model_load")?;
        Ok(Model { handle: Rc::new(ModelHandle(raw)) })
    }
    pub fn forward(&self, images: &Tensor, logits: &mut Tensor) -> Result<()> {
        let m = self.handle.0;
        // SAFETY: live handles; the images are only read.
        check(unsafe { sys::repq_model_forward(m, images.raw, logits.raw) }, m as *const c_void, "repq_model_forward")
    }
}

struct QModelHandle(*mut sys::repq_qmodel);

impl Drop for QModelHandle {
    fn drop(&mut self) {
        // SAFETY: owned, freed once, after every session holding it.
        unsafe { sys::repq_qmodel_free(self.0) }
    }
}

/// A quantized model.
pub struct QModel {
    handle: Rc<QModelHandle>,
}

impl QModel {
    fn own(raw: *mut sys::repq_qmodel) -> QModel {
        QModel { handle: Rc::new(QModelHandle(raw)) }
    }
    pub fn load(ctx: &Context, path: &str) -> Result<QModel> {
        let path = path_arg(path)?;
        let mut raw = ptr::null_mut();
        // SAFETY: a NUL-terminated path and a valid out pointer.
        check(unsafe { sys::repq_qmodel_load(ctx.raw, path.as_ptr(), &mut raw) }, ctx.err(), "repq_qmodel_load")?;
        Ok(QModel::own(raw))
    }
    pub fn reparameterize(&self, ctx: &Context) -> Result<QModel> {
        let mut raw = ptr::null_mut();
        // SAFETY: a live qmodel, read only.
        let st = unsafe { sys::repq_qmodel_reparameterize(ctx.raw, self.handle.0, &mut raw) };
        check(st, ctx.err(), "repq_qmodel_reparameterize")?;
        Ok(QModel::own(raw))
    }
    pub fn save(&self, path: &str) -> Result<()> {
        let path = path_arg(path)?;
        let q = self.handle.0;
        // SAFETY: a live qmodel (the call writes only its message) and a NUL-terminated path.
        check(unsafe { sys::repq_qmodel_save(q, path.as_ptr()) }, q as *const c_void, "repq_qmodel_save")
    }
    pub fn num_classes(&self) -> Result<i64> {
        let mut v = 0i64;
        // SAFETY: a live qmodel and a valid out pointer.
        let st = unsafe { sys::repq_qmodel_get_int(self.handle.0, sys::REPQ_MODEL_NUM_CLASSES, &mut v) };
        check(st, ptr::null(), "repq_qmodel_get_int")?;
        Ok(v)
    }
    /// Fake-quantized float forward; a failure's message is recorded on `logits`.
    pub fn forward_fake_quant(&self, images: &Tensor, logits: &mut Tensor) -> Result<()> {
        // SAFETY: live handles; the images are only read.
        let st = unsafe { sys::repq_qmodel_forward(self.handle.0, sys::REPQ_FORWARD_FAKE_QUANT, images.raw, logits.raw) };
        check(st, logits.raw as *const c_void, "repq_qmodel_forward")
    }
}

/// Observes a float model on calibration images and searches its quantizers.
pub struct Calibrator {
    raw: *mut sys::repq_calib,
    _model: Rc<ModelHandle>, // the C calibrator refers to it: dropped after `raw` is freed
}

impl Calibrator {
    pub fn new(ctx: &Context, model: &Model, options: &Options) -> Result<Calibrator> {
        let mut raw = ptr::null_mut();
        // SAFETY: live handles; the options are copied.
        let st = unsafe { sys::repq_calib_new(ctx.raw, model.handle.0, options.raw, &mut raw) };
        check(st, ctx.err(), "repq_calib_new")?;
        Ok(Calibrator { raw, _model: Rc::clone(&model.handle) })
    }
    pub fn feed(&mut self, images: &Tensor) -> Result<()> {
        // SAFETY: live handles; the images are copied.
        check(unsafe { sys::repq_calib_feed(self.raw, images.raw) }, self.raw as *const c_void, "repq_calib_feed")
    }
    pub fn finish(&mut self) -> Result<QModel> {
        let mut raw = ptr::null_mut();
        // SAFETY: a live calibrator and a valid out pointer.
        let st = unsafe { sys::repq_calib_finish(self.raw, &mut raw) };
        check(st, self.raw as *const c_void, "repq_calib_finish")?;
        Ok(QModel::own(raw))
    }
    /// Weight reconstruction of a reparameterized qmodel (GPTQ towards the float model
    /// by default).
    pub fn reconstruct(&mut self, reparameterized: &QModel) -> Result<QModel> {
        let mut raw = ptr::null_mut();
        // SAFETY: a live calibrator, a live qmodel (only read) and a valid out pointer.
        let st = unsafe { sys::repq_calib_reconstruct(self.raw, reparameterized.handle.0, &mut raw) };
        check(st, self.raw as *const c_void, "repq_calib_reconstruct")?;
        Ok(QModel::own(raw))
    }
}

impl Drop for Calibrator {
    fn drop(&mut self) {
        // SAFETY: owned, freed once, while its model is still alive.
        unsafe { sys::repq_calib_free(self.raw) }
    }
}

/// Integer inference over a reparameterized quantized model.
pub struct Session {
    raw: *mut sys::repq_session,
    _qmodel: Rc<QModelHandle>, // the C session refers to it: dropped after `raw` is freed
}

impl Session {
    pub fn new(ctx: &Context, qmodel: &QModel, max_batch: i32) -> Result<Session> {
        let mut raw = ptr::null_mut();
        // SAFETY: live handles, default options.
        let st = unsafe { sys::repq_session_new(ctx.raw, qmodel.handle.0, ptr::null(), max_batch, &mut raw) };
        check(st, ctx.err(), "repq_session_new")?;
        Ok(Session { raw, _qmodel: Rc::clone(&qmodel.handle) })
    }
    pub fn run(&mut self, images: &Tensor, logits: &mut Tensor) -> Result<()> {
        // SAFETY: live handles; the images are only read.
        check(unsafe { sys::repq_session_run(self.raw, images.raw, logits.raw) }, self.raw as *const c_void, "repq_session_run")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: owned, freed once, while its qmodel is still alive.
        unsafe { sys::repq_session_free(self.raw) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_gives_the_librarys_message() {
        let ctx = Context::new().unwrap();
        let err = Model::load(&ctx, "/nonexistent/model.safetensors").err().expect("loaded a missing file");
        assert_eq!(err.status, 3);
        assert!(err.message.contains("cannot open '/nonexistent/model.safetensors'"), "{}", err);
    }

    /// Dropping the qmodel before its session leaves the session working: the session
    /// holds the handle. A tiny quantized model (6x6 images, 3 classes) is named by
    /// REPQ_TINY_QMODEL.
    #[test]
    fn a_session_keeps_its_qmodel() {
        let path = std::env::var("REPQ_TINY_QMODEL")
            .expect("set REPQ_TINY_QMODEL to a tiny .repq file (tests/fuzz/corpus/qmodel/tiny_w4a4.safetensors)");
        let ctx = Context::new().unwrap();
        let q = QModel::load(&ctx, &path).unwrap();
        let weak = Rc::downgrade(&q.handle);
        let mut s = Session::new(&ctx, &q, 1).unwrap();
        drop(q);
        assert!(weak.upgrade().is_some(), "the qmodel was freed while a session uses it");
        let images = Tensor::zeros_f32(&ctx, &[1, 3, 6, 6]).unwrap();
        let mut logits = Tensor::zeros_f32(&ctx, &[1, 3]).unwrap();
        s.run(&images, &mut logits).unwrap();
        let wrong = Tensor::zeros_f32(&ctx, &[1, 3, 5, 5]).unwrap();
        let err = s.run(&wrong, &mut logits).err().expect("ran on misshapen images");
        assert!(err.message.contains("images must be [N, 3, 6, 6]"), "{}", err);
        drop(s);
        assert!(weak.upgrade().is_none(), "the qmodel outlived its last session");
    }
}
