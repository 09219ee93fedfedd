// Package repq is a Go binding of librepq through cgo, built against the installed
// library (pkg-config repq).
//
// Every handle is freed by Close, or by a finalizer when it becomes unreachable;
// Close may be called more than once. Failures are returned as *Error carrying the
// library's status and message (repq_last_error of the handle the call records on).
// A Calibrator keeps its Model and a Session its QModel: closing the model first only
// marks it, and the C handle is freed when the last user is closed, so a session never
// runs over a freed model. A method on a closed handle returns an error. Handles are
// used by one goroutine at a time, except a QModel, which sessions may share.
package repq

/*
#cgo pkg-config: repq
#include <stdlib.h>
#include <repq/repq.h>
*/
import "C"

import (
	"runtime"
	"sync"
	"unsafe"
)

// Option keys and modes used by the example (values of repq.h).
const (
	OptWeightBits = C.REPQ_OPT_WEIGHT_BITS
	OptActBits    = C.REPQ_OPT_ACT_BITS
)

// Error is a failed call: the library's status and message.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

func check(st C.repq_status, handle unsafe.Pointer, call string) error {
	if st == C.REPQ_OK {
		return nil
	}
	msg := call + ": " + C.GoString(C.repq_status_string(st))
	if detail := C.GoString(C.repq_last_error(handle)); detail != "" {
		msg += ": " + detail
	}
	return &Error{Status: int(st), Message: msg}
}

func closed(what string) error {
	return &Error{Status: int(C.REPQ_ERR_INVALID_ARGUMENT), Message: what + " is closed"}
}

// Version is the library's version, e.g. "0.1.0".
func Version() string { return C.GoString(C.repq_version_string()) }

// Context receives the messages of calls that create handles.
type Context struct{ raw *C.repq_context }

func NewContext() (*Context, error) {
	var raw *C.repq_context
	if err := check(C.repq_context_new(&raw), nil, "repq_context_new"); err != nil {
		return nil, err
	}
	c := &Context{raw}
	runtime.SetFinalizer(c, (*Context).Close)
	return c, nil
}

func (c *Context) Close() {
	if c.raw != nil {
		C.repq_context_free(c.raw)
		c.raw = nil
	}
}

func (c *Context) err() unsafe.Pointer { return unsafe.Pointer(c.raw) }

// Options is the key/value settings of the calibrator and the session.
type Options struct{ raw *C.repq_options }

func NewOptions() (*Options, error) {
	var raw *C.repq_options
	if err := check(C.repq_options_new(&raw), nil, "repq_options_new"); err != nil {
		return nil, err
	}
	o := &Options{raw}
	runtime.SetFinalizer(o, (*Options).Close)
	return o, nil
}

func (o *Options) Set(key C.repq_option, value int64) error {
	if o.raw == nil {
		return closed("options")
	}
	err := check(C.repq_options_set_int(o.raw, key, C.int64_t(value)), unsafe.Pointer(o.raw), "repq_options_set_int")
	runtime.KeepAlive(o)
	return err
}

func (o *Options) Close() {
	if o.raw != nil {
		C.repq_options_free(o.raw)
		o.raw = nil
	}
}

// Tensor is a dense row-major tensor owned by the library.
type Tensor struct{ raw *C.repq_tensor }

func ownTensor(raw *C.repq_tensor) *Tensor {
	t := &Tensor{raw}
	runtime.SetFinalizer(t, (*Tensor).Close)
	return t
}

// ZerosF32 is a zero-filled F32 tensor of the given shape.
func ZerosF32(ctx *Context, shape ...int64) (*Tensor, error) {
	dims := make([]C.int64_t, len(shape))
	for i, d := range shape {
		dims[i] = C.int64_t(d)
	}
	var raw *C.repq_tensor
	var first *C.int64_t
	if len(dims) > 0 {
		first = &dims[0]
	}
	st := C.repq_tensor_new(ctx.raw, C.REPQ_DTYPE_F32, C.int32_t(len(dims)), first, nil, &raw)
	if err := check(st, ctx.err(), "repq_tensor_new"); err != nil {
		return nil, err
	}
	runtime.KeepAlive(ctx)
	return ownTensor(raw), nil
}

func (t *Tensor) Shape() ([]int64, error) {
	if t.raw == nil {
		return nil, closed("tensor")
	}
	var dims [C.REPQ_TENSOR_MAX_DIMS]C.int64_t
	var ndim C.int32_t
	st := C.repq_tensor_describe(t.raw, nil, &ndim, &dims[0], C.REPQ_TENSOR_MAX_DIMS)
	if err := check(st, unsafe.Pointer(t.raw), "repq_tensor_describe"); err != nil {
		return nil, err
	}
	runtime.KeepAlive(t)
	out := make([]int64, int(ndim))
	for i := range out {
		out[i] = int64(dims[i])
	}
	return out, nil
}

// Rows is a copy of rows [begin, end) along the first dimension.
func (t *Tensor) Rows(ctx *Context, begin, end int64) (*Tensor, error) {
	if t.raw == nil {
		return nil, closed("tensor")
	}
	var raw *C.repq_tensor
	st := C.repq_tensor_rows_copy(ctx.raw, t.raw, C.int64_t(begin), C.int64_t(end), &raw)
	if err := check(st, ctx.err(), "repq_tensor_rows_copy"); err != nil {
		return nil, err
	}
	runtime.KeepAlive(t)
	runtime.KeepAlive(ctx)
	return ownTensor(raw), nil
}

func (t *Tensor) Close() {
	if t.raw != nil {
		C.repq_tensor_free(t.raw)
		t.raw = nil
	}
}

// CifarLoad reads CIFAR-10 records [offset, offset+limit) (limit <= 0: to the end).
func CifarLoad(ctx *Context, path string, offset, limit int64) (images, labels *Tensor, err error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var img, lab *C.repq_tensor
	st := C.repq_cifar_load(ctx.raw, cpath, C.int64_t(offset), C.int64_t(limit), &img, &lab)
	if err := check(st, ctx.err(), "repq_cifar_load"); err != nil {
		return nil, nil, err
	}
	runtime.KeepAlive(ctx)
	return ownTensor(img), ownTensor(lab), nil
}

// Top1Count is the number of rows of logits whose argmax is the row's label.
func Top1Count(logits, labels *Tensor) (int64, error) {
	if logits.raw == nil || labels.raw == nil {
		return 0, closed("tensor")
	}
	var n C.int64_t
	st := C.repq_top1_count(logits.raw, labels.raw, &n)
	err := check(st, unsafe.Pointer(logits.raw), "repq_top1_count")
	runtime.KeepAlive(logits)
	runtime.KeepAlive(labels)
	return int64(n), err
}

// shared counts the users of a handle that others refer to (a model by calibrators, a
// qmodel by sessions, possibly on several goroutines): the C handle is freed when it is
// closed and unused.
type shared struct {
	mu     sync.Mutex
	users  int
	closed bool
}

// use adds a user unless the handle is closed.
func (s *shared) use() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.users++
	return true
}

func (s *shared) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// drop removes a user (user == true) or closes the handle, and calls free once when it
// is closed and unused.
func (s *shared) drop(user bool, free func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if user {
		s.users--
	} else {
		s.closed = true
	}
	if s.closed && s.users == 0 {
		free()
	}
}

// Model is a float vision transformer.
type Model struct {
	raw *C.repq_model
	shared
}

func LoadModel(ctx *Context, path string) (*Model, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var raw *C.repq_model
	if err := check(C.repq_model_load(ctx.raw, cpath, nil, &raw), ctx.err(), "repq_model_load"); err != nil {
		return nil, err
	}
	runtime.KeepAlive(ctx)
	m := &Model{raw: raw}
	runtime.SetFinalizer(m, (*Model).Close)
	return m, nil
}

func (m *Model) Forward(images, logits *Tensor) error {
	if m.isClosed() {
		return closed("model")
	}
	err := check(C.repq_model_forward(m.raw, images.raw, logits.raw), unsafe.Pointer(m.raw), "repq_model_forward")
	runtime.KeepAlive(m)
	runtime.KeepAlive(images)
	runtime.KeepAlive(logits)
	return err
}

func (m *Model) Close() { m.drop(false, m.free) }

func (m *Model) free() {
	if m.raw != nil {
		C.repq_model_free(m.raw)
		m.raw = nil
	}
}

// QModel is a quantized model.
type QModel struct {
	raw *C.repq_qmodel
	shared
}

func ownQModel(raw *C.repq_qmodel) *QModel {
	q := &QModel{raw: raw}
	runtime.SetFinalizer(q, (*QModel).Close)
	return q
}

func LoadQModel(ctx *Context, path string) (*QModel, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var raw *C.repq_qmodel
	if err := check(C.repq_qmodel_load(ctx.raw, cpath, &raw), ctx.err(), "repq_qmodel_load"); err != nil {
		return nil, err
	}
	runtime.KeepAlive(ctx)
	return ownQModel(raw), nil
}

func (q *QModel) usable() error {
	if q.isClosed() {
		return closed("qmodel")
	}
	return nil
}

func (q *QModel) Reparameterize(ctx *Context) (*QModel, error) {
	if err := q.usable(); err != nil {
		return nil, err
	}
	var raw *C.repq_qmodel
	st := C.repq_qmodel_reparameterize(ctx.raw, q.raw, &raw)
	if err := check(st, ctx.err(), "repq_qmodel_reparameterize"); err != nil {
		return nil, err
	}
	runtime.KeepAlive(q)
	runtime.KeepAlive(ctx)
	return ownQModel(raw), nil
}

func (q *QModel) Save(path string) error {
	if err := q.usable(); err != nil {
		return err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	err := check(C.repq_qmodel_save(q.raw, cpath), unsafe.Pointer(q.raw), "repq_qmodel_save")
	runtime.KeepAlive(q)
	return err
}

func (q *QModel) NumClasses() (int64, error) {
	if err := q.usable(); err != nil {
		return 0, err
	}
	var v C.int64_t
	err := check(C.repq_qmodel_get_int(q.raw, C.REPQ_MODEL_NUM_CLASSES, &v), nil, "repq_qmodel_get_int")
	runtime.KeepAlive(q)
	return int64(v), err
}

// ForwardFakeQuant runs the fake-quantized float forward; a failure's message is
// recorded on logits.
func (q *QModel) ForwardFakeQuant(images, logits *Tensor) error {
	if err := q.usable(); err != nil {
		return err
	}
	st := C.repq_qmodel_forward(q.raw, C.REPQ_FORWARD_FAKE_QUANT, images.raw, logits.raw)
	err := check(st, unsafe.Pointer(logits.raw), "repq_qmodel_forward")
	runtime.KeepAlive(q)
	runtime.KeepAlive(images)
	runtime.KeepAlive(logits)
	return err
}

func (q *QModel) Close() { q.drop(false, q.free) }

func (q *QModel) free() {
	if q.raw != nil {
		C.repq_qmodel_free(q.raw)
		q.raw = nil
	}
}

// Calibrator observes a float model on calibration images and searches its quantizers.
type Calibrator struct {
	raw   *C.repq_calib
	model *Model
}

func NewCalibrator(ctx *Context, m *Model, o *Options) (*Calibrator, error) {
	if !m.use() {
		return nil, closed("model")
	}
	var raw *C.repq_calib
	if err := check(C.repq_calib_new(ctx.raw, m.raw, o.raw, &raw), ctx.err(), "repq_calib_new"); err != nil {
		m.drop(true, m.free)
		return nil, err
	}
	runtime.KeepAlive(ctx)
	runtime.KeepAlive(o)
	c := &Calibrator{raw, m}
	runtime.SetFinalizer(c, (*Calibrator).Close)
	return c, nil
}

func (c *Calibrator) Feed(images *Tensor) error {
	if c.raw == nil {
		return closed("calibrator")
	}
	err := check(C.repq_calib_feed(c.raw, images.raw), unsafe.Pointer(c.raw), "repq_calib_feed")
	runtime.KeepAlive(c)
	runtime.KeepAlive(images)
	return err
}

func (c *Calibrator) Finish() (*QModel, error) {
	if c.raw == nil {
		return nil, closed("calibrator")
	}
	var raw *C.repq_qmodel
	if err := check(C.repq_calib_finish(c.raw, &raw), unsafe.Pointer(c.raw), "repq_calib_finish"); err != nil {
		return nil, err
	}
	runtime.KeepAlive(c)
	return ownQModel(raw), nil
}

// Reconstruct returns the weight reconstruction of a reparameterized qmodel (GPTQ towards
// the float model by default, REPQ_OPT_GPTQ_TARGET).
func (c *Calibrator) Reconstruct(reparameterized *QModel) (*QModel, error) {
	if c.raw == nil {
		return nil, closed("calibrator")
	}
	if err := reparameterized.usable(); err != nil {
		return nil, err
	}
	var raw *C.repq_qmodel
	st := C.repq_calib_reconstruct(c.raw, reparameterized.raw, &raw)
	if err := check(st, unsafe.Pointer(c.raw), "repq_calib_reconstruct"); err != nil {
		return nil, err
	}
	runtime.KeepAlive(c)
	runtime.KeepAlive(reparameterized)
	return ownQModel(raw), nil
}

func (c *Calibrator) Close() {
	if c.raw != nil {
		C.repq_calib_free(c.raw)
		c.raw = nil
		c.model.drop(true, c.model.free)
	}
}

// Session runs a reparameterized quantized model with integer arithmetic.
type Session struct {
	raw    *C.repq_session
	qmodel *QModel
}

func NewSession(ctx *Context, q *QModel, maxBatch int32) (*Session, error) {
	if !q.use() {
		return nil, closed("qmodel")
	}
	var raw *C.repq_session
	st := C.repq_session_new(ctx.raw, q.raw, nil, C.int32_t(maxBatch), &raw)
	if err := check(st, ctx.err(), "repq_session_new"); err != nil {
		q.drop(true, q.free)
		return nil, err
	}
	runtime.KeepAlive(ctx)
	s := &Session{raw, q}
	runtime.SetFinalizer(s, (*Session).Close)
	return s, nil
}

func (s *Session) Run(images, logits *Tensor) error {
	if s.raw == nil {
		return closed("session")
	}
	err := check(C.repq_session_run(s.raw, images.raw, logits.raw), unsafe.Pointer(s.raw), "repq_session_run")
	runtime.KeepAlive(s)
	runtime.KeepAlive(images)
	runtime.KeepAlive(logits)
	return err
}

func (s *Session) Close() {
	if s.raw != nil {
		C.repq_session_free(s.raw)
		s.raw = nil
		s.qmodel.drop(true, s.qmodel.free)
	}
}
