"""The safetensors format by hand for the fixture scripts (struct + json; the safetensors package may be
missing): u64 little-endian header length, JSON header padded with spaces to a multiple of 8, then the
tensors back to back in the given order. Written to a temporary file, then renamed."""
import json
import os
import struct
import sys

import torch

ST_OF_TORCH = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
TORCH_OF_ST = {v: k for k, v in ST_OF_TORCH.items()}


def tensor_bytes(t):
    """Little-endian raw bytes of a CPU tensor (bf16 has no numpy dtype, so it goes through int16)."""
    if sys.byteorder != "little":
        raise RuntimeError("this writer assumes a little-endian host")
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    elif t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.numpy().tobytes()


def save_safetensors(path, tensors, metadata):
    """Writes {name: tensor} with a {str: str} __metadata__; returns the file's size."""
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, t in tensors.items():
        data = tensor_bytes(t)
        header[name] = {"dtype": ST_OF_TORCH[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)
    return os.path.getsize(path)


def load_safetensors(path):
    """({name: tensor}, metadata) of a safetensors file (the float and integer dtypes above)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None) or {}
    out = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        dtype = TORCH_OF_ST[e["dtype"]]
        buf = bytearray(raw[8 + n + begin:8 + n + end])
        flat = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        out[name] = flat.reshape(e["shape"]).clone()
    return out, metadata
