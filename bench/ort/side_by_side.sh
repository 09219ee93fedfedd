#!/usr/bin/env bash
# librepq's integer engine beside ONNX Runtime, same machine, same run, same weights: for each
# DeiT preset a random-weight safetensors file is written once and both `repq bench --model`
# and ONNX Runtime's graphs (bench/ort/ort.sh) run it. Prints every measurement as a JSON line,
# then a Markdown table with the CPU and the date.
#
#   bench/ort/side_by_side.sh [--repq PATH] [--models tiny,small,base] [--batches 1,8]
#                             [--threads 1,2] [--no-amx] [--install]
#
# --repq defaults to build/tools/repq; --install lets ort.sh install its tools (see ort.sh).
# --no-amx compares the two as on a CPU without AMX: librepq at `--kernels avx512vnni`, and
# ONNX Runtime refused AMX's tile state (LIBREPQ_ORT_NO_AMX=1, see ort.sh); that variable set
# to 1 in the environment means --no-amx too (for `meson test --benchmark --suite ort`).
# The environment variables LIBREPQ_ORT_MODELS, LIBREPQ_ORT_BATCHES and LIBREPQ_ORT_THREADS
# set the defaults of the three lists (e.g. for `meson test --benchmark --suite ort`).
# Each figure is the best of 3 rounds of at least a second, round k of every runtime run
# back to back. Starts with `ort.sh check` (the ONNX graph is the network librepq runs) and
# exits 77 (skipped) when ONNX Runtime's tools are absent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
repq=$root/build/tools/repq
models=${LIBREPQ_ORT_MODELS:-tiny,small,base}
batches=${LIBREPQ_ORT_BATCHES:-1,8}
threads=${LIBREPQ_ORT_THREADS:-1,2}
install=()
while [ $# -gt 0 ]; do
    case $1 in
    --repq) repq=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --install) install=(--install); shift ;;
    --no-amx) export LIBREPQ_ORT_NO_AMX=1; shift ;;
    *) sed -n '7,8p' "$0" | sed 's/^# //' >&2; exit 2 ;;
    esac
done
kernels=()
[ "${LIBREPQ_ORT_NO_AMX:-0}" = 1 ] && kernels=(--kernels avx512vnni)
[ -x "$repq" ] || { echo "side_by_side.sh: no repq tool at $repq (build first, or pass --repq)" >&2; exit 1; }
IFS=, read -r -a model_list <<<"$models"
IFS=, read -r -a batch_list <<<"$batches"
IFS=, read -r -a thread_list <<<"$threads"

echo "== ONNX Runtime's graph against the PyTorch reference logits"
rc=0
"$here/ort.sh" "${install[@]}" check || rc=$?
[ $rc -eq 0 ] || exit $rc

work=$(mktemp -d "${TMPDIR:-/tmp}/librepq-side.XXXXXX")
trap 'rm -rf "$work"' EXIT
runs=$work/runs.jsonl
: >"$runs"

for m in "${model_list[@]}"; do
    case $m in
    tiny | small | base) preset=deit_${m}_patch16_224 ;;
    *) preset=$m ;;
    esac
    model=$work/$preset.safetensors
    "$here/ort.sh" preset "$preset" "$model"
    for b in "${batch_list[@]}"; do
        graphs=$work/graphs-$preset-$b
        mkdir -p "$graphs"
        "$here/ort.sh" graphs "$model" "$b" "$graphs"
        for t in "${thread_list[@]}"; do
            # Round k of every runtime runs within the same few seconds, so that a change of
            # the machine's load between rounds cannot favour one of them.
            for round in 1 2 3; do
                echo "== $preset batch $b threads $t, round $round: librepq W8A8, W4A4; ONNX Runtime fp32, int8"
                for bits in 8 4; do
                    "$repq" bench --model "$model" --batch "$b" --threads "$t" --wbits $bits --abits $bits "${kernels[@]}" --json |
                        grep '^{' | sed "s|\"model\": \"[^\"]*\"|\"runtime\": \"librepq\", \"model\": \"$preset\"|" |
                        tee -a "$runs"
                done
                "$here/ort.sh" run "$graphs" "$b" "$t" "$preset" 1 | tee -a "$runs"
            done
        done
        rm -rf "$graphs"
    done
    rm -f "$model"
done

cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
family=$(grep -m1 '^cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
cpu_model=$(grep -m1 '^model[[:space:]]*:' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]] && echo yes || echo no; }
echo
echo "CPU: $cpu (family $family, model $cpu_model), $(nproc) logical CPUs; AVX-512 VNNI: $(has avx512_vnni)," \
    "AVX-VNNI: $(has avx_vnni), AMX: $(has amx_int8); $(date -u '+%Y-%m-%d %H:%M UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$runs" <<'EOF'
import json, sys
rows, kernels, ort_version, ort_amx = {}, set(), "?", set()


def best(row, key, value):
    row[key] = max(row.get(key, 0.0), value)


for line in open(sys.argv[1]):
    r = json.loads(line)
    key = (r["model"], r["batch"], r["threads"])
    row = rows.setdefault(key, {})
    if r["runtime"] == "librepq":
        kernels.add(r["kernels"])
        best(row, f"W{r['wbits']}A{r['abits']}", r["int_images_per_s"])
        best(row, "fp32", r["fp32_images_per_s"])
    else:
        ort_version = r["ort_version"]
        ort_amx.add(r.get("amx", "allowed"))
        best(row, "ort_" + r["precision"], r["images_per_s"])
print(f"librepq kernels: {', '.join(sorted(kernels))}; ONNX Runtime {ort_version} (onnxruntime-node, "
      f"dynamic int8: u8 activations, s8 per-tensor weights; AMX {', '.join(sorted(ort_amx))}); "
      "images/s, each the best of 3 rounds of >= 1 s\n")
print("| model | batch | threads | librepq W8A8 | librepq W4A4 | librepq fp32 | ORT int8 | ORT fp32 | W8A8 / ORT int8 |")
print("|---|---|---|---|---|---|---|---|---|")
fmt = lambda v: f"{v:.1f}" if v is not None else "-"
for (model, batch, threads), row in rows.items():
    w8, oi = row.get("W8A8"), row.get("ort_int8")
    ratio = f"{w8 / oi:.2f}x" if w8 and oi else "-"
    print(f"| {model} | {batch} | {threads} | {fmt(w8)} | {fmt(row.get('W4A4'))} | {fmt(row.get('fp32'))} "
          f"| {fmt(oi)} | {fmt(row.get('ort_fp32'))} | {ratio} |")
EOF
