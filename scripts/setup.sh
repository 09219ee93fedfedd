#!/usr/bin/env bash
# Installs what librepq needs from Debian 12's packages (as root, or with sudo) and
# configures and builds it in ./build. Safe to run again: it skips what is done.
#
#   scripts/setup.sh           the library, the repq tool and the benchmarks: a C
#                              compiler, meson, ninja, pkg-config, OpenBLAS and jansson
#   scripts/setup.sh --tests   also what the test suites need: cmocka, valgrind, clang
#                              with libFuzzer, abigail-tools (ABI check), and g++,
#                              rustc, cargo and golang-go (the C++, Rust and Go bindings)
set -euo pipefail
cd "$(dirname "$0")/.."

library_packages=(gcc meson ninja-build pkg-config libopenblas-dev libjansson-dev
                  libjpeg62-turbo-dev libpng-dev)
test_packages=(libcmocka-dev valgrind clang libclang-rt-14-dev abigail-tools g++ rustc cargo golang-go python3-pil)

tests=false
case "${1:-}" in
--tests) tests=true ;;
"") ;;
*) echo "usage: scripts/setup.sh [--tests]" >&2; exit 2 ;;
esac

packages=("${library_packages[@]}")
$tests && packages+=("${test_packages[@]}")
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    echo "setup: installing ${missing[*]}"
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The test suites need cmocka: they are configured when asked for, or when it is there.
if $tests || pkg-config --exists cmocka; then with_tests=true; else with_tests=false; fi
if [ ! -f build/build.ninja ]; then
    meson setup build --buildtype=debugoptimized -Dtests=$with_tests >/dev/null
elif $tests; then
    meson configure build -Dtests=true >/dev/null
fi
ninja -C build >/dev/null
echo "setup: built in ./build$($with_tests && echo ', with the test suites' || true)"
