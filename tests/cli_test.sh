#!/usr/bin/env bash
# The repq tool end to end on a few images: quantize with and without GPTQ weight
# reconstruction and with either post-GELU quantizer, run the file in integers, and
# refuse bad option values with exit 2.
# Usage: cli_test.sh REPQ_BINARY DATA_DIR
set -u
repq=$1
data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "cli test: $*"; exit 1; }

for weights in rtn gptq; do
    out=$("$repq" quantize "$data/vit_tiny_cifar10.safetensors" --calib "$data/cifar10_calib.bin" \
        --calib-images 4 --wbits 4 --abits 4 --weights "$weights" -o "$work/$weights.repq") ||
        fail "quantize --weights $weights failed: $out"
    echo "$out"
    if [ "$weights" = gptq ]; then
        grep -q "GPTQ weight reconstruction" <<<"$out" || fail "quantize --weights gptq did not reconstruct"
    fi
    eval_out=$("$repq" eval "$work/$weights.repq" --data "$data/cifar10_test_dev.bin" --limit 20 --mode int) ||
        fail "eval of the $weights file failed: $eval_out"
    grep -q "top-1" <<<"$eval_out" || fail "eval printed no accuracy: $eval_out"
done
cmp -s "$work/rtn.repq" "$work/gptq.repq" && fail "GPTQ changed nothing in the file"

# The post-GELU quantizer: two regions by default, the reference's uniform one on request.
out=$("$repq" quantize "$data/vit_tiny_cifar10.safetensors" --calib "$data/cifar10_calib.bin" \
    --calib-images 4 --wbits 4 --abits 4 --post-gelu uniform -o "$work/uniform.repq") ||
    fail "quantize --post-gelu uniform failed: $out"
grep -aqF 'kind\":5' "$work/rtn.repq" || fail "the default file has no two-region quantizer"
grep -aqF 'kind\":5' "$work/uniform.repq" && fail "--post-gelu uniform wrote a two-region quantizer"

for bad in "--weights gptx" "--method repqq" "--post-gelu twoRegion"; do
    # shellcheck disable=SC2086
    "$repq" quantize "$data/vit_tiny_cifar10.safetensors" --calib "$data/cifar10_calib.bin" $bad \
        -o "$work/bad.repq" >"$work/bad.log" 2>&1
    rc=$?
    [ $rc -eq 2 ] || fail "'$bad' exited with $rc, not 2"
    [ -e "$work/bad.repq" ] && fail "'$bad' wrote a file"
done
echo "cli test: quantize (rtn, gptq, post-GELU uniform), eval in integers and bad options all behave"
