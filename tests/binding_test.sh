#!/usr/bin/env bash
# The Rust crate (examples/rust) or the Go package (examples/go), built offline against
# a temporary install of the library with the distribution's toolchain: its own tests
# (errors carry the library's message, a session keeps its model alive), then its
# example, whose accuracies must equal the C example's. Without the toolchain the test
# is reported as skipped (exit 77), never as passed; scripts/setup.sh --tests installs
# it (Debian's rustc, cargo, golang-go).
set -euo pipefail
language=$1
build=$2
source_root=$3
tiny=$source_root/tests/fuzz/corpus/qmodel/tiny_w4a4.safetensors

case $language in
rust)
    # Debian's toolchain when it is there (rustc 1.63, which the crate targets), even if
    # another one comes first on PATH.
    cargo=$(command -v cargo || true)
    rustc=$(command -v rustc || true)
    if [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ]; then cargo=/usr/bin/cargo; rustc=/usr/bin/rustc; fi
    [ -n "$cargo" ] && [ -n "$rustc" ] || { echo "SKIPPED: no cargo/rustc (apt-get install rustc cargo)"; exit 77; }
    echo "toolchain: $("$rustc" --version), $("$cargo" --version)"
    ;;
go)
    command -v go >/dev/null 2>&1 || { echo "SKIPPED: no go (apt-get install golang-go)"; exit 77; }
    echo "toolchain: $(go version)"
    ;;
*)
    echo "unknown language $language"; exit 2 ;;
esac

# shellcheck source=tests/stage_install.sh
. "$source_root/tests/stage_install.sh"
stage_install "$build"
c_reference "$source_root" "$stage/c.out"
mapfile -t args < <(example_args "$source_root")

case $language in
rust)
    # A copy, so that nothing is written into the source tree; no registry is reached.
    cp -r "$source_root/examples/rust" "$stage/crate"
    export CARGO_HOME=$stage/cargo-home CARGO_TARGET_DIR=$stage/target RUSTC=$rustc
    (cd "$stage/crate" && REPQ_TINY_QMODEL=$tiny "$cargo" test --offline --release --quiet)
    (cd "$stage/crate" && "$cargo" build --offline --release --quiet)
    example=$stage/target/release/quantize_and_run
    ;;
go)
    cp -r "$source_root/examples/go" "$stage/module"
    export GOPATH=$stage/gopath GOCACHE=$stage/gocache GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local GOENV=off
    (cd "$stage/module" && go vet ./... && REPQ_TINY_QMODEL=$tiny go test -count=1 ./...)
    (cd "$stage/module" && go build -o "$stage/go-example" ./cmd/quantize_and_run)
    example=$stage/go-example
    ;;
esac

(cd "$stage" && "$example" "${args[@]}" "$stage/$language.repq") > "$stage/$language.out"
cat "$stage/$language.out"
same_accuracy "$stage/c.out" "$stage/$language.out" "$language"
if "$example" /nonexistent.safetensors x y 2> "$stage/$language.err"; then
    echo "the $language example accepted a missing model"; exit 1
fi
grep -q "cannot open '/nonexistent.safetensors'" "$stage/$language.err" ||
    { echo "the $language example's error is not the library's message:"; cat "$stage/$language.err"; exit 1; }
echo "$language binding: tests pass, the example prints the C example's accuracies"
