#!/usr/bin/env bash
# The repq tool end to end on a few images: quantize with the defaults (the best
# combination measured: SQ-b and GPTQ towards the float model), with --reference and with
# each option changed, run the file in integers, and refuse bad option values with exit
# 2; info on float, quantized and broken files.
# Usage: cli_test.sh REPQ_BINARY DATA_DIR
set -u
repq=$1
data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "cli test: $*"; exit 1; }
# W4A4 on 4 calibration images, with FLAGS.
quantize_small() { # OUT FLAGS...
    local out=$1
    shift
    "$repq" quantize "$data/vit_tiny_cifar10.safetensors" --calib "$data/cifar10_calib.bin" \
        --calib-images 4 --wbits 4 --abits 4 "$@" -o "$out"
}

for weights in rtn gptq gptq-float; do
    out=$(quantize_small "$work/$weights.repq" --weights "$weights") ||
        fail "quantize --weights $weights failed: $out"
    echo "$out"
    if [ "$weights" = gptq ]; then
        grep -q "GPTQ weight reconstruction [0-9]" <<<"$out" || fail "quantize --weights gptq did not reconstruct"
    elif [ "$weights" = gptq-float ]; then
        grep -q "GPTQ weight reconstruction towards the float model" <<<"$out" ||
            fail "quantize --weights gptq-float did not reconstruct towards the float model"
    fi
    eval_out=$("$repq" eval "$work/$weights.repq" --data "$data/cifar10_test_dev.bin" --limit 20 --mode int) ||
        fail "eval of the $weights file failed: $eval_out"
    grep -q "top-1" <<<"$eval_out" || fail "eval printed no accuracy: $eval_out"
done
cmp -s "$work/rtn.repq" "$work/gptq.repq" && fail "GPTQ changed nothing in the file"
cmp -s "$work/gptq.repq" "$work/gptq-float.repq" && fail "the float-model target changed nothing in the file"

# The defaults are --smooth sqb --weights gptq-float; --reference is the RepQ-ViT
# reference's pipeline, flag by flag.
out=$(quantize_small "$work/default.repq") || fail "quantize with the defaults failed: $out"
grep -q "SQ-b.*towards the float model" <<<"$out" || fail "the defaults are not SQ-b + GPTQ towards the float model: $out"
cmp -s "$work/default.repq" "$work/gptq-float.repq" || fail "the default file is not --smooth sqb --weights gptq-float's"
out=$(quantize_small "$work/reference.repq" --reference) || fail "quantize --reference failed: $out"
grep -q "SQ-b\|GPTQ" <<<"$out" && fail "--reference smoothed or reconstructed: $out"
out=$(quantize_small "$work/reference_flags.repq" --post-gelu uniform --clip reference --smooth off --weights rtn) ||
    fail "quantize with the reference's flags failed: $out"
cmp -s "$work/reference.repq" "$work/reference_flags.repq" || fail "--reference is not the reference's flags"
out=$(quantize_small "$work/reference_gptq.repq" --reference --weights gptq) || fail "--reference --weights gptq: $out"
grep -q "GPTQ weight reconstruction [0-9]" <<<"$out" || fail "a flag given with --reference did not override it: $out"
# The baseline stays plain: --method minmax neither smooths nor reconstructs unless asked.
out=$(quantize_small "$work/minmax.repq" --method minmax) || fail "quantize --method minmax failed: $out"
grep -q "SQ-b\|GPTQ" <<<"$out" && fail "--method minmax smoothed or reconstructed: $out"

# The post-GELU quantizer: two regions by default, the reference's uniform one on request.
out=$(quantize_small "$work/uniform.repq" --post-gelu uniform) ||
    fail "quantize --post-gelu uniform failed: $out"
grep -aqF 'kind\":5' "$work/rtn.repq" || fail "the default file has no two-region quantizer"
grep -aqF 'kind\":5' "$work/uniform.repq" && fail "--post-gelu uniform wrote a two-region quantizer"

# Post-LayerNorm dual clipping on request: a different file that evaluates.
out=$(quantize_small "$work/dual.repq" --clip dual --weights rtn) ||
    fail "quantize --clip dual failed: $out"
grep -q "dual clipping" <<<"$out" || fail "quantize --clip dual did not say so: $out"
cmp -s "$work/rtn.repq" "$work/dual.repq" && fail "--clip dual changed nothing in the file"
"$repq" eval "$work/dual.repq" --data "$data/cifar10_test_dev.bin" --limit 20 --mode int | grep -q "top-1" ||
    fail "eval of the dual-clipped file failed"
# SQ-b (on by default) rewrites the float parameters before calibration: without it,
# another model, which runs in integers.
out=$(quantize_small "$work/nosqb.repq" --smooth off --weights rtn) || fail "quantize --smooth off failed: $out"
grep -q "SQ-b" <<<"$out" && fail "quantize --smooth off said SQ-b: $out"
cmp -s "$work/rtn.repq" "$work/nosqb.repq" && fail "--smooth off changed nothing in the file"
eval_out=$("$repq" eval "$work/nosqb.repq" --data "$data/cifar10_test_dev.bin" --limit 20 --mode int) ||
    fail "eval of the file without SQ-b failed: $eval_out"

# Greedy mixed precision: the averages asked for, a per-layer allocation that info prints.
out=$("$repq" quantize "$data/vit_tiny_cifar10.safetensors" --calib "$data/cifar10_calib.bin" \
    --calib-images 8 --wbits 5 --abits 5 --mixed -o "$work/mixed.repq") || fail "quantize --mixed failed: $out"
grep -q "mixed" <<<"$out" || fail "quantize --mixed did not say so: $out"
mixed_info=$("$repq" info "$work/mixed.repq") || fail "info on the mixed file failed: $mixed_info"
grep -q "blocks.0.mlp.fc1 *[4568] *[4568] " <<<"$mixed_info" || fail "info did not list fc1's widths: $mixed_info"
grep -q "mixed widths *[45]\.[0-9]* weight bits" <<<"$mixed_info" || fail "info did not give the averages: $mixed_info"
grep -q "blocks.0.attn.softmax *[4568] *12675 *log" <<<"$mixed_info" ||
    fail "info did not list the attention probabilities' width: $mixed_info"
# The activation budget holds on the measure info prints (5 bits, values per image).
grep -Eq "mixed widths *(4\.[0-9]*|5\.000) activation bits" <<<"$mixed_info" ||
    fail "info's activation average is not within the budget: $mixed_info"
"$repq" eval "$work/mixed.repq" --data "$data/cifar10_test_dev.bin" --limit 20 --mode int | grep -q "top-1" ||
    fail "eval of the mixed file failed"
"$repq" quantize "$data/vit_tiny_cifar10.safetensors" --calib "$data/cifar10_calib.bin" --calib-images 4 \
    --wbits 3 --abits 5 --mixed -o "$work/bad.repq" >"$work/bad.log" 2>&1 && fail "--mixed with --wbits 3 succeeded"
grep -q "below the narrowest width" "$work/bad.log" || fail "--mixed --wbits 3 without its reason: $(cat "$work/bad.log")"
[ -e "$work/bad.repq" ] && fail "--mixed --wbits 3 wrote a file"

# info reads float and quantized models, whatever the name, and refuses what is neither.
info=$("$repq" info "$work/rtn.repq") || fail "info on a .repq file failed: $info"
grep -q "weight bits *4" <<<"$info" || fail "info did not give the weight bits: $info"
grep -q "embed dim *192" <<<"$info" || fail "info did not give the architecture: $info"
grep -q "two-region GELU blocks *[1-9]" <<<"$info" || fail "info did not count the two-region blocks: $info"
"$repq" info "$work/uniform.repq" | grep -q "two-region GELU blocks *0" || fail "info on the uniform file: two-region blocks"
cp "$work/rtn.repq" "$work/renamed.bin"
"$repq" info "$work/renamed.bin" | grep -q "activation bits *4" || fail "info on a renamed quantized model"
"$repq" info "$data/vit_tiny_cifar10.safetensors" | grep -q "parameters" || fail "info on the float model"
# A Swin's stages: swin_micro_rand is 56x56 tokens of 32 channels halving to 7x7 of 256
# (timm's parameter count of the checkpoint: 2,285,048).
swin=$("$repq" info "$data/swin_micro_rand.safetensors") || fail "info on the Swin model failed: $swin"
grep -q "family *swin" <<<"$swin" || fail "info did not name the Swin family: $swin"
grep -q "stages *4" <<<"$swin" || fail "info did not count the Swin stages: $swin"
grep -Eq "^ +3 +2 +256 +8 +1024 +49 +7$" <<<"$swin" || fail "info did not give the last Swin stage: $swin"
grep -q "parameters *2285048" <<<"$swin" || fail "info did not count the Swin parameters: $swin"
head -c 100 "$work/rtn.repq" >"$work/truncated.repq"
"$repq" info "$work/truncated.repq" >"$work/info.log" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "info on a truncated file exited with $rc, not 1"
grep -q "truncated" "$work/info.log" || fail "info on a truncated file did not say why: $(cat "$work/info.log")"

for bad in "--weights gptx" "--method repqq" "--post-gelu twoRegion" "--clip dula" "--smooth sqbb"; do
    # shellcheck disable=SC2086
    "$repq" quantize "$data/vit_tiny_cifar10.safetensors" --calib "$data/cifar10_calib.bin" $bad \
        -o "$work/bad.repq" >"$work/bad.log" 2>&1
    rc=$?
    [ $rc -eq 2 ] || fail "'$bad' exited with $rc, not 2"
    [ -e "$work/bad.repq" ] && fail "'$bad' wrote a file"
done
echo "cli test: quantize (defaults, --reference, rtn, gptq, post-GELU uniform, dual clipping, without SQ-b, mixed), eval in integers, info and bad options all behave"
