#!/usr/bin/env bash
# The demo: the bundled CIFAR-10 ViT in fp32, then calibrated on 32 training images,
# reparameterized, saved, and run again quantized on the bundled test images.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
repq=./build/tools/repq
model=data/vit_tiny_cifar10.safetensors
test_images=data/cifar10_test_dev.bin
limit=${REPQ_DEMO_IMAGES:-500}

echo "== model"
$repq info "$model"
echo "== fp32 on the first $limit test images"
$repq eval "$model" --data "$test_images" --limit "$limit"
for bits in 8 4; do
    out=build/demo_w${bits}a${bits}.repq
    echo "== quantize W${bits}A${bits} (the defaults: SQ-b, RepQ-ViT with MPTQ-ViT's two-region post-GELU quantizer, GPTQ towards the float model; 32 calibration images) -> $out"
    $repq quantize "$model" --calib data/cifar10_calib.bin --calib-images 32 \
        --wbits "$bits" --abits "$bits" -o "$out"
    for mode in fake int; do
        $repq eval "$out" --data "$test_images" --limit "$limit" --mode "$mode"
    done
done
