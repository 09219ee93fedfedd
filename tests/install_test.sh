#!/usr/bin/env bash
# Installs the library into a temporary prefix, compiles the example against the
# installed headers with pkg-config exactly as a user would, runs it, and checks that
# the shared library exports exactly the symbols listed in abi/symbols.txt.
set -euo pipefail
build=$1
source_root=$2
data=$source_root/data
stage=$(mktemp -d)
abi_note=
trap 'rm -rf "$stage"' EXIT

meson install -C "$build" --destdir "$stage" --quiet >/dev/null
pc=$(find "$stage" -name repq.pc | head -n 1)
[ -n "$pc" ] || { echo "repq.pc was not installed"; exit 1; }
export PKG_CONFIG_SYSROOT_DIR=$stage
export PKG_CONFIG_PATH=$(dirname "$pc")
cflags=$(pkg-config --cflags repq)
libs=$(pkg-config --libs repq)
case "$cflags" in *"$source_root"*) echo "pkg-config points into the source tree: $cflags"; exit 1;; esac

cc -std=c11 -Wall -Wextra -Werror $cflags "$source_root/examples/quantize_and_run.c" $libs \
    -o "$stage/quantize_and_run"
libdir=$(dirname "$(find "$stage" -name 'librepq.so' | head -n 1)")
LD_LIBRARY_PATH=$libdir "$stage/quantize_and_run" "$data/vit_tiny_cifar10.safetensors" \
    "$data/cifar10_calib.bin" "$data/cifar10_test_dev.bin" 50

# The image example, if the library was built with image support: calibrate on the test
# photos, evaluate on the fixtures folder (one class folder).
if ldd "$libdir/librepq.so" | grep -q libjpeg; then
    cc -std=c11 -Wall -Wextra -Werror $cflags "$source_root/examples/photos.c" $libs -o "$stage/photos"
    photos_out=$(LD_LIBRARY_PATH=$libdir "$stage/photos" "$data/vit_tiny_cifar10.safetensors" "$data/photos" \
        "$data/images") && grep -q "top-1 .* on 24 images" <<<"$photos_out" ||
        { echo "the photos example failed: $photos_out"; exit 1; }
    abi_note=", photos example ran"
fi

# The soname follows the major version.
soname=$(objdump -p "$libdir/librepq.so" | awk '/SONAME/ {print $2}')
[ "$soname" = "librepq.so.0" ] || { echo "unexpected soname $soname"; exit 1; }

# Every exported symbol is repq_-prefixed and listed; every listed symbol is exported.
# Indirect (i) and weak (V, W) symbols count: gcc's target_clones export a cloned
# function with external linkage as an ifunc and a weak resolver, whatever the visibility.
nm -D --defined-only "$libdir/librepq.so" | awk '$2 ~ /^[TDBRiVW]$/ {print $3}' | sort > "$stage/exported.txt"
if grep -v '^repq_' "$stage/exported.txt"; then
    echo "symbols without the repq_ prefix are exported (above)"
    exit 1
fi
if ! diff -u "$source_root/abi/symbols.txt" "$stage/exported.txt"; then
    echo "the exported symbols differ from abi/symbols.txt: update it deliberately (see docs/abi.md)"
    exit 1
fi
# The types and functions of the ABI (from debug info, public headers only) must be
# what abi/librepq.so.0.abi records: abidiff fails on any incompatible change.
if command -v abidiff >/dev/null 2>&1; then
    abidiff --headers-dir1 "$source_root/include/repq" --headers-dir2 "$(find "$stage" -path "*/include/repq" -type d | head -n 1)" \
        "$source_root/abi/librepq.so.0.abi" "$libdir/librepq.so" ||
        { echo "abidiff: the ABI changed against abi/librepq.so.0.abi (see docs/abi.md)"; exit 1; }
    abi_note="$abi_note, abidiff clean"
fi
echo "install test: example ran, soname $soname, $(wc -l < "$stage/exported.txt") symbols match abi/symbols.txt${abi_note:-}"
