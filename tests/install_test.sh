#!/usr/bin/env bash
# Installs the library into a temporary prefix, then uses it only through pkg-config, as
# a user would: the C example (shared and fully static), the C++ example and the C++
# wrapper's test; the .pc file from its folder as installed and with --define-prefix; the
# man page and the CLI; the soname; the exported symbols against abi/symbols.txt and the
# ABI against abi/librepq.so.0.abi (abidiff).
set -euo pipefail
build=$1
source_root=$2
# shellcheck source=tests/stage_install.sh
. "$source_root/tests/stage_install.sh"
stage_install "$build"
abi_note=

# pkg-config: every path lies in the stage, with and without --define-prefix.
for define in "" --define-prefix; do
    flags=$(pkg-config $define --cflags --libs repq)
    case "$flags" in *"$source_root"*) echo "pkg-config points into the source tree: $flags"; exit 1;; esac
    inc=$(printf '%s\n' $flags | sed -n 's/^-I//p' | head -n 1)
    lib=$(printf '%s\n' $flags | sed -n 's/^-L//p' | head -n 1)
    [ -f "$inc/repq/repq.h" ] && [ -f "$lib/librepq.so.0" ] ||
        { echo "pkg-config $define gives $flags, which does not reach the staged headers and library"; exit 1; }
done

# C, shared: the reference output.
c_reference "$source_root" "$stage/c.out"
cat "$stage/c.out"
mapfile -t args < <(example_args "$source_root")

# C, a fully static executable from pkg-config --static.
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror -static $(pkg-config --static --cflags repq) \
    "$source_root/examples/quantize_and_run.c" $(pkg-config --static --libs repq) -o "$stage/static"
if readelf -d "$stage/static" 2>/dev/null | grep -q NEEDED; then
    echo "the static example needs shared libraries:"; readelf -d "$stage/static" | grep NEEDED; exit 1
fi
(cd "$stage" && env -u LD_LIBRARY_PATH ./static "${args[@]}" "$stage/static.repq") > "$stage/static.out"
same_accuracy "$stage/c.out" "$stage/static.out" "static C"

# C++: the example and the wrapper's own test, against the installed repq.hpp.
# shellcheck disable=SC2046
c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror $(pkg-config --cflags repq) \
    "$source_root/examples/cpp/quantize_and_run.cpp" $(pkg-config --libs repq) -o "$stage/cpp"
(cd "$stage" && ./cpp "${args[@]}" "$stage/cpp.repq") > "$stage/cpp.out"
same_accuracy "$stage/c.out" "$stage/cpp.out" "C++"
# shellcheck disable=SC2046
c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror $(pkg-config --cflags repq) \
    "$source_root/tests/cpp_wrapper_test.cpp" $(pkg-config --libs repq) -o "$stage/cpp_wrapper_test"
"$stage/cpp_wrapper_test" "$source_root/tests/fuzz/corpus/qmodel/tiny_w4a4.safetensors"
if "$stage/cpp" /nonexistent.safetensors x y 2> "$stage/cpp.err"; then
    echo "the C++ example accepted a missing model"; exit 1
fi
grep -q "cannot open '/nonexistent.safetensors'" "$stage/cpp.err" ||
    { echo "the C++ example's error is not the library's message:"; cat "$stage/cpp.err"; exit 1; }

# The command-line tool and its man page.
[ -x "$(find "$stage" -path '*/bin/repq' | head -n 1)" ] || { echo "the repq tool was not installed"; exit 1; }
man_page=$(find "$stage" -path '*/man1/repq.1' | head -n 1)
[ -n "$man_page" ] || { echo "the man page repq(1) was not installed"; exit 1; }
for section in "EXIT STATUS" "EXAMPLES" "OPTIONS"; do
    grep -q "^\.SH $section" "$man_page" || { echo "repq(1) has no $section section"; exit 1; }
done
man_note=
if command -v man >/dev/null 2>&1; then
    warnings=$(MANWIDTH=80 man --warnings -l "$man_page" 2>&1 >/dev/null || true)
    [ -z "$warnings" ] || { echo "repq(1) renders with warnings:"; echo "$warnings"; exit 1; }
    man_note=" (renders without warnings)"
fi

# The image example, if the library was built with image support: calibrate on the test
# photos, evaluate on the fixtures folder (one class folder).
if ldd "$libdir/librepq.so" | grep -q libjpeg; then
    data=$source_root/data
    # shellcheck disable=SC2046 # pkg-config's flags are words
    cc -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags repq) "$source_root/examples/photos.c" \
        $(pkg-config --libs repq) -o "$stage/photos"
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
        --suppressions "$source_root/abi/private-types.suppr" \
        "$source_root/abi/librepq.so.0.abi" "$libdir/librepq.so" ||
        { echo "abidiff: the ABI changed against abi/librepq.so.0.abi (see docs/abi.md)"; exit 1; }
    abi_note="$abi_note, abidiff clean"
fi
echo "install test: C (shared and static), C++ example and wrapper agree; pkg-config relocates;" \
     "man page installed$man_note; soname $soname, $(wc -l < "$stage/exported.txt") symbols match abi/symbols.txt${abi_note:-}"
