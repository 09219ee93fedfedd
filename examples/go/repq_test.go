package repq

import (
	"os"
	"strings"
	"testing"
)

// A tiny quantized model (6x6 images, 3 classes), named by REPQ_TINY_QMODEL.
func tinyQModel(t *testing.T, ctx *Context) *QModel {
	path := os.Getenv("REPQ_TINY_QMODEL")
	if path == "" {
		t.Skip("REPQ_TINY_QMODEL is not set")
	}
	q, err := LoadQModel(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestMissingFileGivesTheLibrarysMessage(t *testing.T) {
	ctx, err := NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	_, err = LoadModel(ctx, "/nonexistent/model.safetensors")
	e, ok := err.(*Error)
	if !ok || e.Status != 3 || !strings.Contains(e.Message, "cannot open '/nonexistent/model.safetensors'") {
		t.Fatalf("got %v", err)
	}
}

// Closing the qmodel before its session leaves the session working; a closed session
// refuses to run instead of crashing.
func TestSessionKeepsItsQModel(t *testing.T) {
	ctx, err := NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	q := tinyQModel(t, ctx)
	s, err := NewSession(ctx, q, 1)
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	if q.raw == nil {
		t.Fatal("the qmodel was freed while a session uses it")
	}
	images, _ := ZerosF32(ctx, 1, 3, 6, 6)
	logits, _ := ZerosF32(ctx, 1, 3)
	if err := s.Run(images, logits); err != nil {
		t.Fatal(err)
	}
	wrong, _ := ZerosF32(ctx, 1, 3, 5, 5)
	if err := s.Run(wrong, logits); err == nil || !strings.Contains(err.Error(), "images must be [N, 3, 6, 6]") {
		t.Fatalf("got %v", err)
	}
	s.Close()
	if q.raw != nil {
		t.Fatal("the qmodel outlived its last session after Close")
	}
	if err := s.Run(images, logits); err == nil || !strings.Contains(err.Error(), "session is closed") {
		t.Fatalf("got %v", err)
	}
	if _, err := NewSession(ctx, q, 1); err == nil || !strings.Contains(err.Error(), "qmodel is closed") {
		t.Fatalf("got %v", err)
	}
}
