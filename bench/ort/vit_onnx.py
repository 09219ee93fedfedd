"""A timm ViT/DeiT as an ONNX graph, in fp32 and in ONNX Runtime's dynamic int8 form, built
from the safetensors file librepq reads; the ONNX Runtime side of bench/ort/ort.sh.

Needs only Debian's python3-onnx and python3-numpy (no PyTorch, no onnxruntime.quantization).

  vit_onnx.py preset NAME OUT.safetensors [--seed S]
      a random-weight float model of a DeiT preset (deit_{tiny,small,base}_patch16_224), with
      librepq's "architecture" metadata, so that `repq bench --model OUT` and the ONNX graphs
      run the same weights
  vit_onnx.py graph MODEL.safetensors BATCH FP32.onnx INT8.onnx [--per-channel]
      the two graphs, static batch; input "x" is the normalized float image [B, 3, H, W],
      output "y" the logits [B, classes]
  vit_onnx.py inputs MODEL.safetensors CIFAR.bin COUNT OUT.f32
      the first COUNT CIFAR-10 records, normalized by the model's "preprocess" metadata
  vit_onnx.py compare FP32.f32 INT8.f32 REF.f32 CIFAR.bin COUNT CLASSES
      the check: fp32 logits against the reference logits, top-1 agreements, accuracy
  vit_onnx.py shape MODEL.safetensors
      prints "IMG CLASSES" (what the timing script needs to feed the graph)

The int8 graph is what onnxruntime.quantization.quantize_dynamic makes of this network with
its defaults (per-tensor symmetric s8 weights in [-127, 127], u8 activations quantized on each
call): every MatMul with a constant weight (patch embedding, qkv, proj, fc1, fc2, head) becomes
DynamicQuantizeLinear(x) -> MatMulInteger(x_u8, W_s8) -> Cast -> Mul(x_scale * w_scale), which
ONNX Runtime fuses into DynamicQuantizeMatMul when it loads the graph. Attention products,
softmax, GELU and LayerNorm stay float. --per-channel uses one weight scale per output column.
"""
import json
import math
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PRESET_WIDTHS = {  # embed_dim, depth, num_heads (timm's deit_*_patch16_224)
    "deit_tiny_patch16_224": (192, 12, 3),
    "deit_small_patch16_224": (384, 12, 6),
    "deit_base_patch16_224": (768, 12, 12),
}
IMAGENET_PREPROCESS = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": 1 / 255.0}
DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def die(msg):
    sys.exit(f"vit_onnx.py: {msg}")


# ---------------------------------------------------------------- safetensors in and out

def read_safetensors(path):
    """Tensors as float32 arrays and the metadata; every length and offset is checked."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        die(f"{path}: too short for a safetensors file")
    hlen = struct.unpack("<Q", blob[:8])[0]
    if hlen > len(blob) - 8:
        die(f"{path}: header length {hlen} runs past the end of the file")
    try:
        header = json.loads(blob[8:8 + hlen])
    except ValueError as e:
        die(f"{path}: header is not JSON ({e})")
    if not isinstance(header, dict):
        die(f"{path}: header is not a JSON object")
    meta = header.pop("__metadata__", {}) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        die(f"{path}: __metadata__ is not a map of strings")
    data = memoryview(blob)[8 + hlen:]
    tensors = {}
    for name, info in header.items():
        try:
            dtype, shape, (start, end) = info["dtype"], [int(d) for d in info["shape"]], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            die(f"{path}: tensor {name!r} has a malformed entry")
        if dtype not in DTYPES:
            die(f"{path}: tensor {name!r} has dtype {dtype}; F32, F16 and BF16 are supported")
        if any(d < 0 for d in shape):
            die(f"{path}: tensor {name!r} has a negative dimension")
        count = math.prod(shape)
        if not (0 <= start <= end <= len(data)) or end - start != count * np.dtype(DTYPES[dtype]).itemsize:
            die(f"{path}: tensor {name!r}: offsets {start}..{end} do not fit its shape or the file")
        raw = np.frombuffer(data[start:end], DTYPES[dtype])
        if dtype == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = raw.astype(np.float32).reshape(shape)
    return tensors, meta


def write_safetensors(path, tensors, meta):
    header, offset = {"__metadata__": meta}, 0
    for name, arr in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for arr in tensors.values():
            f.write(np.ascontiguousarray(arr, np.float32).tobytes())


def random_preset(name, path, seed):
    if name not in PRESET_WIDTHS:
        die(f"unknown preset {name!r}; one of {', '.join(PRESET_WIDTHS)}")
    dim, depth, heads = PRESET_WIDTHS[name]
    img, patch, classes, hidden = 224, 16, 1000, 4 * dim
    rng = np.random.default_rng(seed)

    def normal(*shape, std=0.02):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std))

    t = {"cls_token": normal(1, 1, dim), "pos_embed": normal(1, (img // patch) ** 2 + 1, dim),
         "patch_embed.proj.weight": normal(dim, 3, patch, patch), "patch_embed.proj.bias": normal(dim)}
    for i in range(depth):
        b = f"blocks.{i}."
        for layer, (rows, cols) in (("attn.qkv", (3 * dim, dim)), ("attn.proj", (dim, dim)),
                                    ("mlp.fc1", (hidden, dim)), ("mlp.fc2", (dim, hidden))):
            t[b + layer + ".weight"], t[b + layer + ".bias"] = normal(rows, cols), normal(rows)
        for norm in ("norm1", "norm2"):
            t[b + norm + ".weight"], t[b + norm + ".bias"] = 1 + normal(dim, std=0.1), normal(dim)
    t["norm.weight"], t["norm.bias"] = 1 + normal(dim, std=0.1), normal(dim)
    t["head.weight"], t["head.bias"] = normal(classes, dim), normal(classes)
    arch = {"img_size": img, "patch_size": patch, "in_chans": 3, "num_classes": classes, "embed_dim": dim,
            "depth": depth, "num_heads": heads, "mlp_ratio": 4.0, "qkv_bias": True, "class_token": True,
            "global_pool": "token", "norm_eps": 1e-6, "act": "gelu_erf"}
    write_safetensors(path, t, {"format": "timm.vision_transformer", "architecture": json.dumps(arch),
                                "preprocess": json.dumps(IMAGENET_PREPROCESS),
                                "note": f"random weights (seed {seed}) for benchmarks, not a trained model"})


# ---------------------------------------------------------------- the architecture

def json_object(text, key, path):
    try:
        obj = json.loads(text)
    except ValueError as e:
        die(f"{path}: {key} metadata is not JSON ({e})")
    if not isinstance(obj, dict):
        die(f"{path}: {key} metadata is not a JSON object")
    return obj


class Arch:
    """The fields of librepq's "architecture" metadata that this graph implements; anything
    librepq's ViT forward would refuse is refused here too."""

    def __init__(self, meta, tensors, path):
        if "architecture" not in meta:
            die(f"{path}: no 'architecture' metadata (librepq's, see docs/format.md)")
        a = json_object(meta["architecture"], "architecture", path)
        if a.get("family", "vit") != "vit" or meta.get("format") == "timm.swin_transformer":
            die(f"{path}: only ViT/DeiT models are supported (not a Swin)")
        for key, want in (("global_pool", "token"), ("act", "gelu_erf"), ("class_token", True),
                          ("qkv_bias", True), ("in_chans", 3)):
            if a.get(key, want) != want:
                die(f"{path}: architecture {key} = {a[key]!r}; only {want!r} is supported")
        try:
            self.img, self.patch = int(a["img_size"]), int(a["patch_size"])
            self.classes, self.dim = int(a["num_classes"]), int(a["embed_dim"])
            self.depth, self.heads = int(a["depth"]), int(a["num_heads"])
            self.eps = float(a.get("norm_eps", 1e-6))
            self.hidden = int(round(float(a.get("mlp_ratio", 4.0)) * self.dim))
        except (KeyError, ValueError, TypeError) as e:
            die(f"{path}: architecture metadata lacks or misstates {e}")
        if min(self.img, self.patch, self.classes, self.dim, self.depth, self.heads, self.hidden) < 1:
            die(f"{path}: architecture sizes must be positive")
        if self.img % self.patch or self.dim % self.heads or not 0 < self.eps < 1:
            die(f"{path}: patch_size must divide img_size, num_heads embed_dim, and norm_eps be in (0, 1)")
        self.grid = self.img // self.patch
        self.tokens = self.grid * self.grid + 1
        pre = {**IMAGENET_PREPROCESS, **json_object(meta.get("preprocess", "{}"), "preprocess", path)}
        try:
            mean, std, scale = (np.array(pre[k], np.float32).reshape(v) for k, v in
                                (("mean", 3), ("std", 3), ("scale", ())))
        except (ValueError, TypeError):
            die(f"{path}: preprocess mean and std must be 3 numbers, scale one")
        if not (np.all(std > 0) and np.all(np.isfinite(mean)) and np.isfinite(scale)):
            die(f"{path}: preprocess std must be positive and every value finite")
        self.mean, self.std, self.scale = mean.reshape(1, 3, 1, 1), std.reshape(1, 3, 1, 1), scale
        self.check_shapes(tensors, path)

    def check_shapes(self, t, path):
        D, P, Hd, C = self.dim, self.patch, self.hidden, self.classes
        want = {"cls_token": (1, 1, D), "pos_embed": (1, self.tokens, D), "patch_embed.proj.weight": (D, 3, P, P),
                "patch_embed.proj.bias": (D,), "norm.weight": (D,), "norm.bias": (D,),
                "head.weight": (C, D), "head.bias": (C,)}
        for i in range(self.depth):
            b = f"blocks.{i}."
            want.update({b + "attn.qkv.weight": (3 * D, D), b + "attn.qkv.bias": (3 * D,),
                         b + "attn.proj.weight": (D, D), b + "attn.proj.bias": (D,),
                         b + "mlp.fc1.weight": (Hd, D), b + "mlp.fc1.bias": (Hd,),
                         b + "mlp.fc2.weight": (D, Hd), b + "mlp.fc2.bias": (D,)})
            for n in ("norm1", "norm2"):
                want.update({b + n + ".weight": (D,), b + n + ".bias": (D,)})
        for name, shape in want.items():
            if name not in t:
                die(f"{path}: tensor {name} is missing")
            if tuple(t[name].shape) != shape:
                die(f"{path}: tensor {name} has shape {list(t[name].shape)}, expected {list(shape)}")


# ---------------------------------------------------------------- the graph

class GraphBuilder:
    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, arr, hint="c"):
        self.count += 1
        name = f"{hint}_{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type, inputs, n_out=1, **attrs):
        self.count += 1
        outs = [f"{op_type}_{self.count}_{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def shape(self, *dims):
        return self.const(np.array(dims, np.int64), "shape")

    def linear(self, x, weight, bias):
        """x @ weight^T + bias, weight (out, in) as PyTorch stores it."""
        w = self.const(np.ascontiguousarray(weight.T, np.float32), "w")
        return self.op("Add", [self.op("MatMul", [x, w]), self.const(bias.astype(np.float32), "b")])

    def layer_norm(self, x, gamma, beta, eps):
        return self.op("LayerNormalization", [x, self.const(gamma, "g"), self.const(beta, "beta")],
                       axis=-1, epsilon=eps)

    def gelu_erf(self, x):
        # 0.5 x (1 + erf(x / sqrt 2)), written in the form ONNX Runtime fuses into one Gelu.
        e = self.op("Erf", [self.op("Div", [x, self.const(np.float32(np.sqrt(2.0)), "sqrt2")])])
        return self.op("Mul", [self.op("Mul", [x, self.op("Add", [e, self.const(np.float32(1.0), "one")])]),
                               self.const(np.float32(0.5), "half")])


def vit_graph(a, t, batch):
    B, D, P, G, T, H = batch, a.dim, a.patch, a.grid, a.tokens, a.heads
    dh = D // H
    g = GraphBuilder()
    # Patch embedding as a MatMul over flattened (channel, row, col) patches, the way librepq
    # computes it, so that the int8 graph quantizes it as a linear layer too.
    x = g.op("Reshape", ["x", g.shape(B, 3, G, P, G, P)])
    x = g.op("Transpose", [x], perm=[0, 2, 4, 1, 3, 5])
    x = g.op("Reshape", [x, g.shape(B, G * G, 3 * P * P)])
    x = g.linear(x, t["patch_embed.proj.weight"].reshape(D, -1), t["patch_embed.proj.bias"])
    cls = g.const(np.broadcast_to(t["cls_token"], (B, 1, D)).copy(), "cls")
    x = g.op("Add", [g.op("Concat", [cls, x], axis=1), g.const(t["pos_embed"], "pos")])
    for i in range(a.depth):
        p = f"blocks.{i}."
        y = g.layer_norm(x, t[p + "norm1.weight"], t[p + "norm1.bias"], a.eps)
        qkv = g.linear(y, t[p + "attn.qkv.weight"], t[p + "attn.qkv.bias"])
        qkv = g.op("Transpose", [g.op("Reshape", [qkv, g.shape(B, T, 3, H, dh)])], perm=[2, 0, 3, 1, 4])
        q, k, v = g.op("Split", [qkv, g.const(np.array([1, 1, 1], np.int64), "split")], n_out=3, axis=0)
        q, k, v = (g.op("Squeeze", [u, g.const(np.array([0], np.int64), "axis0")]) for u in (q, k, v))
        scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = g.op("Mul", [scores, g.const(np.float32(dh ** -0.5), "scale")])
        o = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        o = g.op("Reshape", [g.op("Transpose", [o], perm=[0, 2, 1, 3]), g.shape(B, T, D)])
        x = g.op("Add", [x, g.linear(o, t[p + "attn.proj.weight"], t[p + "attn.proj.bias"])])
        y = g.layer_norm(x, t[p + "norm2.weight"], t[p + "norm2.bias"], a.eps)
        y = g.gelu_erf(g.linear(y, t[p + "mlp.fc1.weight"], t[p + "mlp.fc1.bias"]))
        x = g.op("Add", [x, g.linear(y, t[p + "mlp.fc2.weight"], t[p + "mlp.fc2.bias"])])
    x = g.layer_norm(x, t["norm.weight"], t["norm.bias"], a.eps)
    x = g.op("Gather", [x, g.const(np.array(0, np.int64), "cls_index")], axis=1)
    y = g.linear(x, t["head.weight"], t["head.bias"])
    g.nodes.append(helper.make_node("Identity", [y], ["y"]))
    graph = helper.make_graph(g.nodes, "vit", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, 3, a.img, a.img])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [B, a.classes])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="librepq bench/ort")
    model.ir_version = 8  # what onnx 1.12 (Debian 12) checks; ONNX Runtime reads newer too
    onnx.checker.check_model(model)
    return model


def quantize_dynamic_int8(model, per_channel):
    """Rewrites every MatMul whose second input is a constant 2-D weight into ONNX Runtime's
    dynamic-quantization pattern (see the module comment)."""
    g = model.graph
    weights = {i.name: i for i in g.initializer}
    nodes, replaced, extra = [], set(), []
    for k, n in enumerate(g.node):
        w_init = weights.get(n.input[1]) if n.op_type == "MatMul" else None
        if w_init is None or len(w_init.dims) != 2:
            nodes.append(n)
            continue
        w = numpy_helper.to_array(w_init).astype(np.float32)  # (in, out)
        amax = np.abs(w).max(axis=0) if per_channel else np.abs(w).max()
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        codes = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        zero = np.zeros(w.shape[1], np.int8) if per_channel else np.array(0, np.int8)
        q = f"q{k}_"
        extra += [numpy_helper.from_array(codes, q + "w"), numpy_helper.from_array(zero, q + "wzp"),
                  numpy_helper.from_array(scale, q + "wscale")]
        nodes += [helper.make_node("DynamicQuantizeLinear", [n.input[0]], [q + "x", q + "xscale", q + "xzp"]),
                  helper.make_node("MatMulInteger", [q + "x", q + "w", q + "xzp", q + "wzp"], [q + "acc"]),
                  helper.make_node("Cast", [q + "acc"], [q + "accf"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", [q + "xscale", q + "wscale"], [q + "scale"]),
                  helper.make_node("Mul", [q + "accf", q + "scale"], [n.output[0]])]
        replaced.add(n.input[1])
    del g.node[:]
    g.node.extend(nodes)
    kept = [i for i in g.initializer if i.name not in replaced] + extra
    del g.initializer[:]
    g.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------- commands

def load(path):
    tensors, meta = read_safetensors(path)
    return Arch(meta, tensors, path), tensors


def cmd_graph(path, batch, fp32_out, int8_out, *flags):
    if flags not in ((), ("--per-channel",)):
        die(f"unknown option {' '.join(flags)}")
    a, t = load(path)
    model = vit_graph(a, t, int(batch))
    onnx.save(model, fp32_out)
    onnx.save(quantize_dynamic_int8(model, bool(flags)), int8_out)


def cmd_inputs(path, cifar, count, out):
    a, _ = load(path)
    n, rec = int(count), 1 + 3 * 32 * 32
    if a.img != 32:
        die(f"{path}: CIFAR-10 images are 32x32, the model takes {a.img}x{a.img}")
    raw = np.fromfile(cifar, np.uint8)
    if raw.size < n * rec:
        die(f"{cifar}: fewer than {n} CIFAR-10 records")
    px = raw[:n * rec].reshape(n, rec)[:, 1:].reshape(n, 3, 32, 32).astype(np.float32)
    ((px * a.scale - a.mean) / a.std).astype(np.float32).tofile(out)


def cmd_compare(fp32_file, int8_file, ref_file, cifar, count, classes):
    n, c = int(count), int(classes)
    fp32, int8 = (np.fromfile(f, np.float32).reshape(n, c) for f in (fp32_file, int8_file))
    ref = np.fromfile(ref_file, np.float32)
    if ref.size < n * c:
        die(f"{ref_file}: fewer than {n} x {c} reference logits")
    ref = ref[:n * c].reshape(n, c)
    labels = np.fromfile(cifar, np.uint8)[:n * (1 + 3072)].reshape(n, -1)[:, 0]
    diff = float(np.abs(fp32.astype(np.float64) - ref).max())
    top = {k: v.argmax(axis=1) for k, v in (("ref", ref), ("fp32", fp32), ("int8", int8))}
    result = {"images": n, "fp32_max_abs_diff": diff,
              "fp32_top1_same_as_ref": int((top["fp32"] == top["ref"]).sum()),
              "int8_top1_same_as_ref": int((top["int8"] == top["ref"]).sum()),
              "accuracy_ref": float((top["ref"] == labels).mean()),
              "accuracy_int8": float((top["int8"] == labels).mean())}
    print(json.dumps(result))
    ok = diff <= 1e-4
    print(f"fp32 graph: max |logit - PyTorch reference| = {diff:.2e} over {n} images "
          f"(limit 1e-4): {'ok' if ok else 'FAILED'}")
    print(f"int8 graph: same top-1 as the reference on {result['int8_top1_same_as_ref']}/{n} images; "
          f"accuracy {100 * result['accuracy_int8']:.1f}% (fp32 reference {100 * result['accuracy_ref']:.1f}%)")
    sys.exit(0 if ok else 1)


def cmd_shape(path):
    a, _ = load(path)
    print(a.img, a.classes)


def main(argv):
    commands = {"preset": (random_preset, 2), "graph": (cmd_graph, 4), "inputs": (cmd_inputs, 4),
                "compare": (cmd_compare, 6), "shape": (cmd_shape, 1)}
    if not argv or argv[0] not in commands:
        die("usage: see the comment at the top of this file")
    fn, nargs = commands[argv[0]]
    args = argv[1:]
    if argv[0] == "preset":
        seed = 0
        if len(args) == 4 and args[2] == "--seed":
            seed, args = int(args[3]), args[:2]
        if len(args) != 2:
            die("usage: vit_onnx.py preset NAME OUT.safetensors [--seed S]")
        return random_preset(args[0], args[1], seed)
    if len(args) < nargs:
        die(f"{argv[0]}: expected {nargs} arguments")
    fn(*args)


if __name__ == "__main__":
    main(sys.argv[1:])
