#!/usr/bin/python3
"""Writes the image test fixtures of data/images/ and what Pillow makes of them.

Run once by hand with Debian's python3-pil (Pillow 9.4), from the repository root:
    /usr/bin/python3 tests/data/make_image_fixtures.py
The expected values come from Pillow itself (Image.open(...).convert("RGB"), resize,
crop), never from librepq, so tests/test_image.c compares against an independent
reference. Outputs (all under data/images/):
  decode/*.png, *.jpg   small pictures of every PNG colour type and bit depth
                        (plain and interlaced, with tRNS), baseline, progressive,
                        greyscale, CMYK and YCCK JPEG
  decode_expected.txt   one line per fixture: name width height offset, into
  decode_expected.bin   Pillow's convert("RGB") pixels, interleaved
  transform_expected.txt / .bin   for crop 32: name resize interpolation offset, with
                        torchvision's Resize(resize) + CenterCrop(32) of Pillow's
                        decode, planar (R, G, B planes)
"""
import io, os, struct, subprocess, sys, tempfile, zlib
from PIL import Image

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
out_dir = os.path.join(root, "data", "images")
dec_dir = os.path.join(out_dir, "decode")
os.makedirs(dec_dir, exist_ok=True)

W, H = 23, 17  # odd sizes exercise partial interlace blocks and padding

def sample(x, y, c, bits):
    """A smooth pattern with some texture, in [0, 2^bits)."""
    v = (x * 37 + y * 53 + c * 91 + (x * y) % 29 * 7) % 256
    if bits == 16:
        return v * 257 ^ ((x * 131 + y * 17 + c) & 0xff)
    return v >> (8 - bits)

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

def pack_row(values, bits):
    if bits == 16:
        return b"".join(struct.pack(">H", v) for v in values)
    if bits == 8:
        return bytes(values)
    out, acc, n = bytearray(), 0, 0
    for v in values:
        acc = (acc << bits) | v
        n += bits
        if n == 8:
            out.append(acc); acc = n = 0
    if n:
        out.append(acc << (8 - n))
    return bytes(out)

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]

def write_png(name, color_type, bits, interlace=False, trns=None):
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    def px(x, y):
        if color_type == 3:
            return [sample(x, y, 0, bits)]
        return [sample(x, y, c, bits) for c in range(channels)]
    def rows_of(xs, ys):
        raw = b""
        for y in ys:
            raw += b"\0" + pack_row([v for x in xs for v in px(x, y)], bits)
        return raw
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            xs, ys = list(range(x0, W, dx)), list(range(y0, H, dy))
            if xs and ys:
                raw += rows_of(xs, ys)
    else:
        raw = rows_of(range(W), range(H))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, bits, color_type, 0, 0, int(interlace)))
    if color_type == 3:
        n = 1 << bits
        pal = b"".join(bytes(((i * 67) % 256, (i * 151 + 30) % 256, (255 - i * 13) % 256)) for i in range(n))
        data += chunk(b"PLTE", pal)
    if trns is not None:
        data += chunk(b"tRNS", trns)
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(os.path.join(dec_dir, name), "wb") as f:
        f.write(data)

pngs = []
for ct, depths in [(0, [1, 2, 4, 8, 16]), (2, [8, 16]), (3, [1, 2, 4, 8]), (4, [8, 16]), (6, [8, 16])]:
    for bits in depths:
        name = "png_ct%d_%d.png" % (ct, bits)
        write_png(name, ct, bits)
        pngs.append(name)
write_png("png_ct2_8_interlaced.png", 2, 8, interlace=True)
write_png("png_ct3_4_interlaced.png", 3, 4, interlace=True)
write_png("png_ct0_16_interlaced.png", 0, 16, interlace=True)
write_png("png_ct6_16_interlaced.png", 6, 16, interlace=True)
write_png("png_ct3_8_trns.png", 3, 8, trns=bytes(range(0, 256, 3)))
write_png("png_ct2_8_trns.png", 2, 8, trns=struct.pack(">HHH", 10, 20, 30))
write_png("png_ct0_8_trns.png", 0, 8, trns=struct.pack(">H", 5))
pngs += ["png_ct2_8_interlaced.png", "png_ct3_4_interlaced.png", "png_ct0_16_interlaced.png",
         "png_ct6_16_interlaced.png", "png_ct3_8_trns.png", "png_ct2_8_trns.png", "png_ct0_8_trns.png"]

photo = Image.open(os.path.join(root, "data", "photos", "n02444819_otter.JPEG")).convert("RGB")
small = photo.resize((61, 39), Image.BICUBIC)
jpgs = []
def save(name, im, **kw):
    im.save(os.path.join(dec_dir, name), **kw)
    jpgs.append(name)
save("jpeg_baseline.jpg", small, quality=85)
save("jpeg_progressive.jpg", small, quality=85, progressive=True)
save("jpeg_444.jpg", small, quality=90, subsampling=0)
save("jpeg_grey.jpg", small.convert("L"), quality=85)
save("jpeg_cmyk.jpg", small.convert("CMYK"), quality=90)
cmyk = small.convert("CMYK")
with tempfile.TemporaryDirectory() as tmp:
    exe = os.path.join(tmp, "write_ycck")
    subprocess.check_call(["cc", os.path.join(os.path.dirname(__file__), "write_ycck.c"), "-ljpeg", "-o", exe])
    # Adobe files store inverted CMYK; Pillow's "CMYK" mode is not inverted.
    inverted = bytes(255 - b for b in cmyk.tobytes())
    ycck = subprocess.run([exe, str(cmyk.width), str(cmyk.height)], input=inverted, stdout=subprocess.PIPE,
                          check=True).stdout
    with open(os.path.join(dec_dir, "jpeg_ycck.jpg"), "wb") as f:
        f.write(ycck)
jpgs.append("jpeg_ycck.jpg")

with open(os.path.join(out_dir, "decode_expected.txt"), "w") as lst, \
        open(os.path.join(out_dir, "decode_expected.bin"), "wb") as binf:
    offset = 0
    for name in pngs + jpgs:
        im = Image.open(os.path.join(dec_dir, name)).convert("RGB")
        data = im.tobytes()
        lst.write("%s %d %d %d\n" % (name, im.width, im.height, offset))
        binf.write(data)
        offset += len(data)

def timm_eval(path, resize, crop, resample):
    """torchvision 0.14's Resize(int) + CenterCrop on a Pillow image (same arithmetic)."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = resize, int(resize * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), resample)
    top, left = int(round((nh - crop) / 2.0)), int(round((nw - crop) / 2.0))
    im = im.crop((left, top, left + crop, top + crop))
    return b"".join(band.tobytes() for band in im.split())

cases = [
    ("photos/n01440764_tench.JPEG", 36, "bicubic"),
    ("photos/n01440764_tench.JPEG", 36, "bilinear"),
    ("photos/n02093428_American_Staffordshire_terrier.JPEG", 35, "bicubic"),  # tall, crop_pct 0.9
    ("photos/n03240683_drilling_platform.JPEG", 33, "bilinear"),
    ("photos/grey.png", 32, "bicubic"),
    ("images/decode/jpeg_baseline.jpg", 36, "bicubic"),   # 61 x 39: shrink a little
    ("images/decode/png_ct2_8.png", 36, "bicubic"),        # 23 x 17: upscale both ways
    ("images/decode/png_ct2_8.png", 45, "bilinear"),
    ("images/decode/png_ct6_16_interlaced.png", 40, "bicubic"),
    ("images/decode/jpeg_cmyk.jpg", 32, "bicubic"),
    ("images/decode/png_ct0_1.png", 33, "bicubic"),
]
filters = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}
with open(os.path.join(out_dir, "transform_expected.txt"), "w") as lst, \
        open(os.path.join(out_dir, "transform_expected.bin"), "wb") as binf:
    offset = 0
    for rel, resize, interp in cases:
        data = timm_eval(os.path.join(root, "data", rel), resize, 32, filters[interp])
        lst.write("%s %d %s %d\n" % (rel, resize, interp, offset))
        binf.write(data)
        offset += len(data)
print("wrote", len(pngs) + len(jpgs), "decode fixtures and", len(cases), "transform cases")
