# Sourced by the install and binding tests: install the build into a temporary prefix
# and point pkg-config at it, exactly as a user's staged install would be used.
#   stage_install BUILD     sets $stage (removed on exit), $libdir, PKG_CONFIG_PATH and
#                           LD_LIBRARY_PATH; nothing of the source tree is on any path
#   c_reference SOURCE OUT  builds examples/quantize_and_run.c against the stage and runs
#                           it on the bundled model and 50 test images, output in OUT
stage_install() {
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    # meson test has built what is installed (the tests' depends); --no-rebuild keeps
    # this from starting ninja in a build folder whose other tests are running, so the
    # install tests run side by side.
    meson install -C "$1" --no-rebuild --destdir "$stage" --quiet >/dev/null
    local pc
    pc=$(find "$stage" -name repq.pc | head -n 1)
    [ -n "$pc" ] || { echo "repq.pc was not installed"; exit 1; }
    export PKG_CONFIG_PATH
    PKG_CONFIG_PATH=$(dirname "$pc")
    unset PKG_CONFIG_SYSROOT_DIR
    libdir=$(dirname "$(find "$stage" -name 'librepq.so' | head -n 1)")
    export LD_LIBRARY_PATH=$libdir
}

example_args() { # source_root -> the example's arguments (50 images, the output file in the stage)
    printf '%s\n' "$1/data/vit_tiny_cifar10.safetensors" "$1/data/cifar10_calib.bin" \
        "$1/data/cifar10_test_dev.bin" 50
}

c_reference() {
    # shellcheck disable=SC2046 # pkg-config's flags are words
    cc -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags repq) "$1/examples/quantize_and_run.c" \
        $(pkg-config --libs repq) -o "$stage/quantize_and_run"
    mapfile -t args < <(example_args "$1")
    (cd "$stage" && ./quantize_and_run "${args[@]}" "$stage/c.repq") > "$2"
}

# The accuracy lines of two example outputs must be equal.
same_accuracy() { # reference_output other_output language
    local want got
    want=$(grep -E '^(fp32|fake-quant|integer) top-1:' "$1")
    got=$(grep -E '^(fp32|fake-quant|integer) top-1:' "$2")
    if [ -z "$want" ] || [ "$want" != "$got" ]; then
        echo "$3 example prints other accuracies than the C example:"
        echo "--- C"; cat "$1"; echo "--- $3"; cat "$2"
        exit 1
    fi
}
