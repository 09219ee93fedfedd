#!/usr/bin/env bash
# ONNX Runtime on the network librepq runs, built from the same safetensors weights: the
# int8 runtime users already have, as a peer for `repq bench` (docs/benchmarks.md,
# "Comparing with ONNX Runtime"). Optional: nothing of librepq's build or CI needs it.
#
#   bench/ort/ort.sh [--install] check|--check [MODEL CIFAR REF_LOGITS]
#       the fp32 graph reproduces PyTorch's logits (max |diff| <= 1e-4, else exit 1) and the
#       int8 graph's top-1 agreement; default: the bundled CIFAR-10 ViT and its reference logits
#   bench/ort/ort.sh [--install] time PRESET|MODEL.safetensors BATCH THREADS...
#       ONNX Runtime fp32 and int8 images/s: one JSON line per run, then a table
#   bench/ort/ort.sh [--install] preset NAME OUT.safetensors
#       writes a random-weight DeiT preset with librepq's metadata (for `repq bench --model`)
#   bench/ort/ort.sh [--install] graphs MODEL.safetensors BATCH DIR
#   bench/ort/ort.sh [--install] run DIR BATCH THREADS LABEL ROUNDS
#       the two steps of `time`, for interleaving ONNX Runtime's rounds with another runtime's
#       (side_by_side.sh): DIR/fp32.onnx, DIR/int8.onnx, then JSON lines of ROUNDS rounds each
#   bench/ort/ort.sh --install
#       installs nodejs, npm, python3-onnx, python3-numpy (apt-get, as root or with sudo) and
#       onnxruntime-node (npm, into $LIBREPQ_ORT_DIR), then exits
#
# Without --install, a missing Debian package makes it exit 77 (skipped) saying what is
# missing; onnxruntime-node is fetched from npm into $LIBREPQ_ORT_DIR (default
# ~/.cache/librepq-ort, never the source tree) on first use, and a failed fetch (no network)
# is a skip too. LIBREPQ_ORT_VERSION picks the onnxruntime-node version (default 1.31.1).
# LIBREPQ_ORT_NO_AMX=1 runs ONNX Runtime as on a CPU without AMX: a small preloaded library
# (no_amx.c, built with cc into $LIBREPQ_ORT_DIR on first use) refuses it the AMX tile state,
# so its MLAS kernels stay at AVX-512 VNNI; pair it with `repq bench --kernels avx512vnni`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ort_dir=${LIBREPQ_ORT_DIR:-$HOME/.cache/librepq-ort}
ort_version=${LIBREPQ_ORT_VERSION:-1.31.1}
python=/usr/bin/python3 # Debian's python3-onnx is installed for the system interpreter

skip() { echo "ort.sh: skipped: $*" >&2; exit 77; }
usage() { sed -n '6,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

missing_packages() {
    local need=()
    command -v node >/dev/null || need+=(nodejs)
    command -v npm >/dev/null || need+=(npm)
    [ -x "$python" ] && "$python" -c 'import numpy' 2>/dev/null || need+=(python3-numpy)
    [ -x "$python" ] && "$python" -c 'import onnx' 2>/dev/null || need+=(python3-onnx)
    echo "${need[@]}"
}

install_packages() {
    local need
    need=$(missing_packages)
    [ -z "$need" ] && return 0
    local sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    echo "ort.sh: installing $need (apt-get)" >&2
    # shellcheck disable=SC2086 # a list of package names
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
}

have_ort() { [ -f "$ort_dir/node_modules/onnxruntime-node/package.json" ]; }

# The package carries its CPU binaries; its install script only fetches optional GPU ones,
# so it is not run.
install_ort() {
    have_ort && return 0
    echo "ort.sh: installing onnxruntime-node@$ort_version (npm) into $ort_dir" >&2
    mkdir -p "$ort_dir"
    [ -f "$ort_dir/package.json" ] || echo '{"name": "librepq-ort", "private": true}' >"$ort_dir/package.json"
    (cd "$ort_dir" && npm install --ignore-scripts --no-audit --no-fund --fetch-retries=1 --fetch-timeout=30000 \
        --loglevel=error "onnxruntime-node@$ort_version" >&2)
}

ensure_tools() {
    if $install; then
        install_packages || { echo "ort.sh: apt-get install failed" >&2; exit 1; }
        install_ort || { echo "ort.sh: npm install failed" >&2; exit 1; }
        return
    fi
    local need
    need=$(missing_packages)
    [ -z "$need" ] || skip "missing $need (Debian packages; bench/ort/ort.sh --install installs them)"
    install_ort || skip "could not install onnxruntime-node from the npm registry (offline?)"
}

vit_onnx() { "$python" "$here/vit_onnx.py" "$@"; }

# The preload of LIBREPQ_ORT_NO_AMX=1, rebuilt when its source is newer than the build.
no_amx_preload() {
    local so=$ort_dir/no_amx.so
    if [ ! -f "$so" ] || [ "$here/no_amx.c" -nt "$so" ]; then
        mkdir -p "$ort_dir"
        "${CC:-cc}" -O2 -shared -fPIC -o "$so" "$here/no_amx.c" -ldl ||
            { echo "ort.sh: could not build $here/no_amx.c (LIBREPQ_ORT_NO_AMX=1 needs a C compiler)" >&2; exit 1; }
    fi
    echo "$so"
}

ort_run() {
    local preload=() so
    if [ "${LIBREPQ_ORT_NO_AMX:-0}" = 1 ]; then
        so=$(no_amx_preload) || exit 1
        preload=(env "LD_PRELOAD=$so")
    fi
    "${preload[@]}" env NODE_PATH="$ort_dir/node_modules" node "$here/ort_run.js" "$@"
}

check() {
    local model=${1:-$root/data/vit_tiny_cifar10.safetensors} cifar=${2:-$root/data/cifar10_test_dev.bin}
    local ref=${3:-$root/data/vit_tiny_cifar10_ref.bin}
    local shape img classes count
    shape=$(vit_onnx shape "$model")
    read -r img classes <<<"$shape"
    count=$(($(stat -c %s "$ref") / (4 * classes))) # every image the reference has logits for
    vit_onnx graph "$model" "$count" "$work/fp32.onnx" "$work/int8.onnx"
    vit_onnx inputs "$model" "$cifar" "$count" "$work/inputs.f32"
    ort_run logits "$work/fp32.onnx" "$count" "$img" "$work/inputs.f32" "$work/fp32.f32"
    ort_run logits "$work/int8.onnx" "$count" "$img" "$work/inputs.f32" "$work/int8.f32"
    echo "onnxruntime-node $(ort_version_installed), model $model"
    vit_onnx compare "$work/fp32.f32" "$work/int8.f32" "$ref" "$cifar" "$count" "$classes"
}

graphs() {
    [ $# -eq 3 ] || usage
    local shape
    shape=$(vit_onnx shape "$1")
    echo "${shape%% *}" >"$3/img"
    vit_onnx graph "$1" "$2" "$3/fp32.onnx" "$3/int8.onnx"
}

run() {
    [ $# -eq 5 ] || usage
    local img
    img=$(cat "$1/img")
    for precision in fp32 int8; do
        ort_run time "$1/$precision.onnx" "$2" "$img" "$3" "$4" "$5"
    done
}

ort_version_installed() { node -p "require('$ort_dir/node_modules/onnxruntime-node/package.json').version"; }

time_ort() {
    [ $# -ge 3 ] || usage
    local what=$1 batch=$2 model label
    shift 2
    if [ -f "$what" ]; then
        model=$what
        label=$(basename "$what" .safetensors)
    else
        model=$work/$what.safetensors
        label=$what
        vit_onnx preset "$what" "$model"
    fi
    graphs "$model" "$batch" "$work"
    for threads in "$@"; do
        run "$work" "$batch" "$threads" "$label" 3 | tee -a "$work/runs.jsonl"
    done
    "$python" - "$work/runs.jsonl" <<'EOF'
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
print(f"{'model':<28} {'batch':>5} {'threads':>7} {'precision':>9} {'images/s':>9}   onnxruntime {runs[0]['ort_version']}")
for r in runs:
    print(f"{r['model']:<28} {r['batch']:>5} {r['threads']:>7} {r['precision']:>9} {r['images_per_s']:>9.1f}")
EOF
}

install=false
if [ "${1:-}" = "--install" ]; then
    install=true
    shift
    if [ $# -eq 0 ]; then
        ensure_tools
        echo "ort.sh: node $(node --version), onnxruntime-node $(ort_version_installed), python3-onnx ready"
        exit 0
    fi
fi
command=${1:-}
[ -n "$command" ] || usage
shift
[ "$command" != --check ] || command=check
case $command in
check | time | preset | graphs | run) ;;
*) usage ;;
esac
if [ "$command" = preset ]; then
    [ $# -eq 2 ] || usage
    if $install; then
        install_packages
    elif [[ "$(missing_packages)" == *python3-* ]]; then
        skip "missing python3-onnx or python3-numpy (bench/ort/ort.sh --install installs them)"
    fi
    vit_onnx preset "$1" "$2"
    exit 0
fi
ensure_tools
work=$(mktemp -d "${TMPDIR:-/tmp}/librepq-ort.XXXXXX")
trap 'rm -rf "$work"' EXIT
case $command in
check) check "$@" ;;
time) time_ort "$@" ;;
graphs) graphs "$@" ;;
run) run "$@" ;;
esac
