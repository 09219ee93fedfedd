#!/usr/bin/env bash
# The CLI on image files: CIFAR-10 test images written as PNG class folders evaluate
# to exactly the CIFAR path's top-1 in fp32, fake and int modes when the transform is
# the identity (--crop-pct 1 on 32x32 pictures), with a labels file too; a broken file is
# named and skipped; quantize --calib DIR, classify, preprocess (raw and --png).
# Usage: cli_images_test.sh REPQ_BINARY CIFAR_TO_PNGS DATA_DIR
set -u
repq=$1
to_pngs=$2
data=$3
model=$data/vit_tiny_cifar10.safetensors
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "cli images test: $*"; exit 1; }
top1() { sed -n 's/.*top-1 \([0-9.]*\)%.*/\1/p' <<<"$1"; }

"$to_pngs" "$data/cifar10_test_dev.bin" 100 "$work" "$model" || fail "could not write the PNG folders"
[ "$(find "$work/imagenet" -name '*.png' | wc -l)" -eq 50 ] || fail "expected 50 PNGs"

out=$("$repq" quantize "$model" --calib "$work/imagenet" --calib-images 8 --crop-pct 1 --wbits 8 --abits 8 \
    -o "$work/w8a8.repq") || fail "quantize --calib DIR failed: $out"
grep -q "on 8 calibration images" <<<"$out" || fail "quantize did not use 8 folder images: $out"

for mode in fp32 fake int; do
    m=$model
    [ "$mode" = fp32 ] || m=$work/w8a8.repq
    ref=$("$repq" eval "$m" --data "$work/subset.bin" --mode "$mode") || fail "$mode eval --data failed: $ref"
    got=$("$repq" eval "$m" --images "$work/imagenet" --crop-pct 1 --mode "$mode" --batch 16 --threads 2 --json) ||
        fail "$mode eval --images failed: $got"
    echo "$mode: CIFAR file $(top1 "$ref")%, PNG folder $(top1 "$got")%"
    [ -n "$(top1 "$ref")" ] && [ "$(top1 "$ref")" = "$(top1 "$got")" ] ||
        fail "$mode: folder top-1 differs from the CIFAR file's: $ref / $got"
    grep -q '"images": 50, "skipped": 0' <<<"$got" || fail "$mode: JSON line wrong: $got"
    flat=$("$repq" eval "$m" --images "$work/flat" --labels "$work/labels.txt" --crop-pct 1 --mode "$mode") ||
        fail "$mode eval with --labels failed: $flat"
    [ "$(top1 "$ref")" = "$(top1 "$flat")" ] || fail "$mode: labels-file top-1 differs: $flat"
done

# The model's own transform (resize 32 -> 36, crop 32) runs too.
"$repq" eval "$model" --images "$work/imagenet" --limit 10 | grep -q "top-1" || fail "eval with the default transform"

# A broken file is named and skipped; the run goes on and succeeds.
printf 'not a png' >"$work/imagenet/3_cat/zz_broken.png"
out=$("$repq" eval "$model" --images "$work/imagenet" --crop-pct 1 2>"$work/err.log") ||
    fail "eval with a broken file failed: $out $(cat "$work/err.log")"
grep -q "zz_broken.png" "$work/err.log" || fail "the broken file was not named: $(cat "$work/err.log")"
grep -q "on 50 images (1 skipped)" <<<"$out" || fail "the broken file was not counted: $out"

# classify: names from --class-names, top K, probabilities; a bad file gives exit 1.
printf '%s\n' airplane automobile bird cat deer dog frog horse ship truck >"$work/names.txt"
first=$(find "$work/imagenet/0_airplane" -name '*.png' | sort | head -n 1)
out=$("$repq" classify "$model" "$first" --top 3 --class-names "$work/names.txt" --crop-pct 1) ||
    fail "classify failed: $out"
[ "$(grep -c '%' <<<"$out")" -eq 3 ] || fail "classify did not print 3 classes: $out"
grep -qE "airplane|automobile|bird|cat|deer|dog|frog|horse|ship|truck" <<<"$out" || fail "no class names: $out"
# Names from the model's metadata ("class_names"), without --class-names.
out=$("$repq" classify "$work/named.safetensors" "$first" --top 10 --crop-pct 1) || fail "classify (named) failed: $out"
for name in airplane automobile bird cat deer dog frog horse ship truck; do
    grep -qw "$name" <<<"$out" || fail "classify did not name $name from the metadata: $out"
done
"$repq" classify "$work/w8a8.repq" "$first" --json --mode int --crop-pct 1 | grep -q '"probability"' ||
    fail "classify --json in int mode"
"$repq" classify "$model" "$first" "$work/imagenet/3_cat/zz_broken.png" >/dev/null 2>&1
[ $? -eq 1 ] || fail "classify with a broken file did not exit 1"

# preprocess writes exactly the pixels the model sees: here the CIFAR pixels themselves.
mapfile -t flat_pngs < <(find "$work/flat" -name '*.png' | sort)
"$repq" preprocess "$model" "${flat_pngs[@]}" --crop-pct 1 -o "$work/pre.u8" >/dev/null || fail "preprocess failed"
cmp -s "$work/pre.u8" "$work/subset.u8" || fail "preprocess output differs from the source pixels"
out=$("$repq" preprocess "$model" "${flat_pngs[0]}" --png -o "$work/pngs" --json) || fail "preprocess --png failed: $out"
grep -q "\"format\": \"png\"" <<<"$out" || fail "preprocess --json: $out"
[ -s "$work/pngs/$(basename "${flat_pngs[0]}")" ] || fail "preprocess --png wrote no picture"
"$repq" eval "$model" --images "$work/imagenet" --interpolation lanczos >/dev/null 2>&1
[ $? -ne 0 ] || fail "an unknown --interpolation was accepted"
# A Swin end to end from photos: quantize on a folder (timm's transform for it: resize
# 248, crop 224), evaluate the file in fake quantization and in integers (the same
# top-1: the session reproduces fake quant), classify with the integer engine.
swin=$data/swin_micro_rand.safetensors
mkdir -p "$work/photos/a" "$work/photos/b"
cp "$data"/photos/n0*.JPEG "$work/photos/a/" && cp "$data/photos/as_png.png" "$data/photos/grey.png" "$work/photos/b/" ||
    fail "could not copy the photos"
out=$("$repq" quantize "$swin" --calib "$work/photos" --calib-images 4 --wbits 4 --abits 4 -o "$work/swin.repq") ||
    fail "quantize of the Swin on photos failed: $out"
fake=$("$repq" eval "$work/swin.repq" --images "$work/photos" --mode fake) || fail "Swin fake eval failed: $fake"
int=$("$repq" eval "$work/swin.repq" --images "$work/photos" --mode int) || fail "Swin int eval failed: $int"
[ -n "$(top1 "$fake")" ] && [ "$(top1 "$fake")" = "$(top1 "$int")" ] ||
    fail "Swin: fake quant ($fake) and integer ($int) top-1 differ"
"$repq" classify "$work/swin.repq" "$data/photos/grey.jpg" --top 2 --mode int | grep -q "%" ||
    fail "classify of the quantized Swin"
"$repq" info "$work/swin.repq" | grep -q "family *swin" || fail "info on the quantized Swin"
echo "swin: fake $(top1 "$fake")%, int $(top1 "$int")% on the photos"
echo "cli images test: eval (fp32, fake, int; folders and labels file), quantize --calib DIR, classify, preprocess all behave; a Swin from photos"
