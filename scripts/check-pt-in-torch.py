"""Opt-in check that a PyTorch checkpoint written by `mclip convert --to pt` is what torch.save writes.

Usage (Debian's interpreter, python3-torch from apt; nothing from PyPI):
    /usr/bin/python3 scripts/check-pt-in-torch.py FILE.pt SOURCE.safetensors [--official-config CFG.json] [--cast]

1. torch.load(FILE.pt, weights_only=True) (the restricted unpickler: only tensors and OrderedDicts) and a plain
   torch.load must both succeed and agree.
2. Keys, dtypes, shapes and values (bit for bit) must equal SOURCE.safetensors, read here with plain Python
   (8-byte little-endian header length, JSON header, raw little-endian data: no safetensors package).
   With --cast, FILE.pt was written with --dtype: floating tensors are compared after a cast in torch instead.
3. If $REFSRC is set (see ../shared/anchors/README.md for its layout), the official model
   (mobileclip.clip.CLIP) is built from --official-config (official JSON: embed_dim, image_cfg, text_cfg), or
   else from the mclip config stored in SOURCE.safetensors, and `load_state_dict(strict=True)` must accept the
   state dict; then one training step (forward, CLIP loss, backward) on random inputs must give finite values;
   with --save-back, an SGD step is taken and torch.save writes the model's state dict (for the way back:
   `mclip convert OUT.pt --to safetensors`, then this script on the pair).
Exits 1 with a message on the first failure; prints one line per check.
"""
import argparse
import json
import os
import struct
import sys
from functools import partial

import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument("pt")
p.add_argument("safetensors")
p.add_argument("--official-config", help="official MobileCLIP config JSON (default: from the safetensors' mclip.config)")
p.add_argument("--save-back", metavar="OUT.pt", help="after the training step, take an SGD step and torch.save the state dict here (to read back with mclip)")
p.add_argument("--cast", action="store_true", help="the .pt was written with --dtype: compare floats after casting")
a = p.parse_args()

ST_DTYPES = {
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
NP_DTYPES = {
    torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.int16, torch.float64: np.float64,
    torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16, torch.int8: np.int8, torch.uint8: np.uint8,
    torch.bool: np.bool_,
}


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = info["data_offsets"]
        dt = ST_DTYPES[info["dtype"]]
        arr = np.frombuffer(raw, dtype=NP_DTYPES[dt], count=(e - b) // np.dtype(NP_DTYPES[dt]).itemsize, offset=base + b)
        t = torch.from_numpy(arr.copy())
        if dt == torch.bfloat16:
            t = t.view(torch.bfloat16)
        out[name] = t.reshape(info["shape"])
    return out, meta


def raw_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


print(f"torch {torch.__version__}, numpy {np.__version__}")
sd = torch.load(a.pt, map_location="cpu", weights_only=True)
sd_plain = torch.load(a.pt, map_location="cpu")
if type(sd).__name__ != "OrderedDict":
    fail(f"{a.pt}: torch.load gave a {type(sd).__name__}, expected an OrderedDict")
if list(sd.keys()) != list(sd_plain.keys()) or any(not torch.equal(sd[k], sd_plain[k]) for k in sd):
    fail("weights_only=True and plain torch.load disagree")
dtypes = {}
for k, t in sd.items():
    dtypes[str(t.dtype)] = dtypes.get(str(t.dtype), 0) + 1
    if t.requires_grad or not t.is_contiguous() or t.storage_offset() != 0:
        fail(f"{k}: requires_grad {t.requires_grad}, contiguous {t.is_contiguous()}, offset {t.storage_offset()}")
print(f"torch.load ok (weights_only=True and plain agree): {a.pt}: {len(sd)} tensors, "
      + ", ".join(f"{d} {n}" for d, n in sorted(dtypes.items())))

ref, meta = read_safetensors(a.safetensors)
if set(sd) != set(ref):
    missing, extra = sorted(set(ref) - set(sd)), sorted(set(sd) - set(ref))
    fail(f"keys differ: {len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})")
n_exact = 0
n_elems = 0
for k, r in ref.items():
    t = sd[k]
    if a.cast and r.is_floating_point():
        if not t.is_floating_point():
            fail(f"{k}: {t.dtype}, expected a floating dtype")
        r = r.to(t.dtype)
    if t.dtype != r.dtype or tuple(t.shape) != tuple(r.shape):
        fail(f"{k}: {t.dtype} {tuple(t.shape)} in the .pt, {r.dtype} {tuple(r.shape)} in the safetensors")
    if raw_bytes(t) != raw_bytes(r):
        fail(f"{k}: values differ (max abs diff {(t.double() - r.double()).abs().max().item()})")
    n_exact += 1
    n_elems += t.numel()
print(f"values ok: {n_exact} tensors ({n_elems} elements) bit-identical to {a.safetensors}"
      + (" after the cast" if a.cast else ""))

refsrc = os.environ.get("REFSRC")
if not refsrc:
    print("REFSRC not set: official model not built (load_state_dict not checked)")
    sys.exit(0)
sys.path[:0] = [os.path.join(refsrc, "mobileclip")] + [os.path.join(refsrc, "ext", x) for x in ("timm", "open_clip/src", "ftfy")]
from timm.models import register_model, is_model  # noqa: E402
from mobileclip.models import mci as M  # noqa: E402
from mobileclip.clip import CLIP  # noqa: E402


def official_config():
    """The official config: --official-config, or translated from mclip.config (shorthand MCi + text forms)."""
    if a.official_config:
        with open(a.official_config) as f:
            return json.load(f), a.official_config
    if "mclip.config" not in meta:
        fail(f"{a.safetensors} holds no mclip.config: pass --official-config")
    c = json.loads(meta["mclip.config"])
    img, txt = c["image"], c["text"]
    if img["kind"] != "mci" or "stages" in img or "layers" in txt and isinstance(txt["layers"], list):
        fail("only the shorthand MCi/text configs translate to an official config here: pass --official-config")
    name = "mclip_" + img["name"].replace("-", "_")
    if not is_model(name):
        def factory(pretrained=False, **kwargs):
            return M.FastViT(
                img["layers"],
                token_mixers=("repmixer", "repmixer", "repmixer", "attention"),
                embed_dims=img["embedDims"],
                pos_embs=[partial(M.RepCPE, spatial_shape=(7, 7)) if on else None for on in img["posEmbs"]],
                mlp_ratios=[img["mlpRatio"]] * 4,
                downsamples=[True] * 4,
                se_downsamples=img["seDownsamples"],
                **kwargs,
            )
        factory.__name__ = name
        register_model(factory)
    cfg = {
        "embed_dim": c["embedDim"],
        "image_cfg": {"image_size": img["imageSize"], "model_name": name},
        "text_cfg": {
            "context_length": txt["contextLength"], "vocab_size": txt["vocabSize"], "dim": txt["dim"],
            "ffn_multiplier_per_layer": txt["ffnMultiplier"], "n_heads_per_layer": txt["nHeads"],
            "n_transformer_layers": txt["nTransformerLayers"], "norm_layer": "layer_norm_fp32",
            "causal_masking": txt["causalMasking"], "model_name": txt["modelName"],
        },
    }
    return cfg, "mclip.config"


torch.manual_seed(0)
cfg, cfg_from = official_config()
model = CLIP(cfg)
res = model.load_state_dict(sd, strict=True)
if res.missing_keys or res.unexpected_keys:
    fail(f"load_state_dict: {res}")
own = model.state_dict()
for k, t in sd.items():
    if not torch.equal(own[k].to(t.dtype), t):
        fail(f"{k}: the model's tensor differs from the checkpoint's after load_state_dict")
print(f"official mobileclip.clip.CLIP ({cfg['image_cfg']['model_name']}, text {cfg['text_cfg']['model_name']}, "
      f"config from {cfg_from}): load_state_dict(strict=True) ok, {len(own)} tensors equal")

model.float().train()
size = cfg["image_cfg"]["image_size"]
ctx, vocab = cfg["text_cfg"]["context_length"], cfg["text_cfg"]["vocab_size"]
b = 2
img = torch.rand(b, 3, size, size)
tok = torch.randint(1, vocab - 2, (b, ctx))
tok[:, 8:] = 0
tok[:, 7] = vocab - 1
out = model(img, tok)
ie, te, scale = (out["image_features"], out["text_features"], out["logit_scale"]) if isinstance(out, dict) else out
logits = scale * ie @ te.t()  # logit_scale comes exponentiated (and clipped)
labels = torch.arange(b)
loss = (torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.t(), labels)) / 2
loss.backward()
grads = [q.grad for q in model.parameters() if q.grad is not None]
if not torch.isfinite(loss) or not all(torch.isfinite(g).all() for g in grads):
    fail(f"training step: loss {loss.item()}, non-finite gradients")
print(f"one training step (train mode, batch {b}): loss {loss.item():.4f}, {len(grads)} parameters with finite gradients")
if a.save_back:
    with torch.no_grad():
        for q in model.parameters():
            if q.grad is not None:
                q -= 1e-3 * q.grad
    torch.save(model.state_dict(), a.save_back)
    print(f"torch.save of the stepped model: {a.save_back} ({os.path.getsize(a.save_back)} bytes)")
print("OK")
