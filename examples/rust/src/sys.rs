//! The C API of <repq/repq.h>, declared by hand (only fixed-width types and opaque
//! handles cross it). Names and values follow the headers exactly.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_void};

pub type repq_status = c_int;
pub const REPQ_OK: repq_status = 0;

pub type repq_dtype = c_int;
pub const REPQ_DTYPE_F32: repq_dtype = 1;

pub type repq_option = c_int;
pub const REPQ_OPT_WEIGHT_BITS: repq_option = 1;
pub const REPQ_OPT_ACT_BITS: repq_option = 2;

pub type repq_forward_mode = c_int;
pub const REPQ_FORWARD_FAKE_QUANT: repq_forward_mode = 1;

pub const REPQ_MODEL_NUM_CLASSES: i32 = 4;
pub const REPQ_TENSOR_MAX_DIMS: usize = 8;

#[repr(C)]
pub struct repq_context {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct repq_options {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct repq_tensor {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct repq_model {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct repq_calib {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct repq_qmodel {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct repq_session {
    _opaque: [u8; 0],
}

extern "C" {
    pub fn repq_status_string(status: repq_status) -> *const c_char;
    pub fn repq_version_string() -> *const c_char;
    pub fn repq_last_error(handle: *const c_void) -> *const c_char;

    pub fn repq_context_new(out_ctx: *mut *mut repq_context) -> repq_status;
    pub fn repq_context_free(ctx: *mut repq_context);

    pub fn repq_options_new(out_options: *mut *mut repq_options) -> repq_status;
    pub fn repq_options_free(options: *mut repq_options);
    pub fn repq_options_set_int(options: *mut repq_options, key: repq_option, value: i64) -> repq_status;

    pub fn repq_tensor_new(
        ctx: *mut repq_context,
        dtype: repq_dtype,
        ndim: i32,
        shape: *const i64,
        data: *const c_void,
        out_tensor: *mut *mut repq_tensor,
    ) -> repq_status;
    pub fn repq_tensor_free(tensor: *mut repq_tensor);
    pub fn repq_tensor_describe(
        tensor: *const repq_tensor,
        out_dtype: *mut repq_dtype,
        out_ndim: *mut i32,
        shape_out: *mut i64,
        shape_capacity: i32,
    ) -> repq_status;
    pub fn repq_tensor_rows_copy(
        ctx: *mut repq_context,
        tensor: *const repq_tensor,
        begin: i64,
        end: i64,
        out_tensor: *mut *mut repq_tensor,
    ) -> repq_status;

    pub fn repq_model_load(
        ctx: *mut repq_context,
        path: *const c_char,
        preset: *const c_char,
        out_model: *mut *mut repq_model,
    ) -> repq_status;
    pub fn repq_model_free(model: *mut repq_model);
    pub fn repq_model_forward(model: *mut repq_model, images: *mut repq_tensor, logits: *mut repq_tensor)
        -> repq_status;
    pub fn repq_cifar_load(
        ctx: *mut repq_context,
        path: *const c_char,
        offset: i64,
        limit: i64,
        out_images: *mut *mut repq_tensor,
        out_labels: *mut *mut repq_tensor,
    ) -> repq_status;
    pub fn repq_top1_count(logits: *const repq_tensor, labels: *const repq_tensor, out_correct: *mut i64)
        -> repq_status;

    pub fn repq_calib_new(
        ctx: *mut repq_context,
        model: *mut repq_model,
        options: *const repq_options,
        out_calib: *mut *mut repq_calib,
    ) -> repq_status;
    pub fn repq_calib_free(calib: *mut repq_calib);
    pub fn repq_calib_feed(calib: *mut repq_calib, images: *mut repq_tensor) -> repq_status;
    pub fn repq_calib_finish(calib: *mut repq_calib, out_qmodel: *mut *mut repq_qmodel) -> repq_status;
    pub fn repq_calib_reconstruct(
        calib: *mut repq_calib,
        qmodel: *const repq_qmodel,
        out_qmodel: *mut *mut repq_qmodel,
    ) -> repq_status;

    pub fn repq_qmodel_free(qmodel: *mut repq_qmodel);
    pub fn repq_qmodel_reparameterize(
        ctx: *mut repq_context,
        qmodel: *const repq_qmodel,
        out_reparameterized: *mut *mut repq_qmodel,
    ) -> repq_status;
    pub fn repq_qmodel_forward(
        qmodel: *const repq_qmodel,
        mode: repq_forward_mode,
        images: *mut repq_tensor,
        logits: *mut repq_tensor,
    ) -> repq_status;
    pub fn repq_qmodel_get_int(qmodel: *const repq_qmodel, attr: i32, out_value: *mut i64) -> repq_status;
    pub fn repq_qmodel_save(qmodel: *mut repq_qmodel, path: *const c_char) -> repq_status;
    pub fn repq_qmodel_load(ctx: *mut repq_context, path: *const c_char, out_qmodel: *mut *mut repq_qmodel)
        -> repq_status;

    pub fn repq_session_new(
        ctx: *mut repq_context,
        qmodel: *const repq_qmodel,
        options: *const repq_options,
        max_batch: i32,
        out_session: *mut *mut repq_session,
    ) -> repq_status;
    pub fn repq_session_free(session: *mut repq_session);
    pub fn repq_session_run(session: *mut repq_session, images: *mut repq_tensor, logits: *mut repq_tensor)
        -> repq_status;
}
