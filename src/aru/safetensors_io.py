"""Just enough of the safetensors file format to stream a checkpoint shard by shard.

A safetensors file is: an 8-byte little-endian header length N, N bytes of JSON header
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``, offsets relative to
the data region), then the data region. aru rewrites shards with the same header (plus, when untying
embeddings, one appended tensor), so untouched tensors are copied as raw bytes, never decoded.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from aru.errors import CheckpointError

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class Header:
    """A parsed shard header; ``data_start`` is the file offset of the data region."""

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] | None
    data_start: int
    data_size: int


def read_header(path: str | Path) -> Header:
    """Parse and check a shard's header; :class:`CheckpointError` naming the file if it is corrupt or truncated."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError("file shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", raw)
            if n > MAX_HEADER or 8 + n > size:
                raise ValueError(f"header length {n} does not fit in a {size}-byte file")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        meta = header.pop("__metadata__", None)
        tensors = {}
        data_size = size - 8 - n
        for name, info in header.items():
            begin, end = info["data_offsets"]
            shape = tuple(int(s) for s in info["shape"])
            dtype = info["dtype"]
            if not 0 <= begin <= end <= data_size:
                raise ValueError(f"tensor {name!r} lies outside the data region (truncated file?)")
            if dtype in DTYPES:
                itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
                if math.prod(shape) * itemsize != end - begin:
                    raise ValueError(f"tensor {name!r}: {end - begin} bytes for shape {shape} {dtype}")
            tensors[name] = TensorInfo(name, dtype, shape, begin, end)
        if tensors and max(t.end for t in tensors.values()) != data_size:
            last = max(t.end for t in tensors.values())
            raise ValueError(f"data region is {data_size} bytes but the tensors end at {last}")
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"shard {str(path)!r} is not a valid safetensors file ({exc}); re-download or re-save the checkpoint"
        ) from exc
    return Header(path, tensors, meta, 8 + n, data_size)


def encode_header(tensors: list[TensorInfo], metadata: dict[str, str] | None) -> bytes:
    """The 8-byte length + JSON header (space-padded to a multiple of 8, as safetensors writes it)."""
    obj: dict = {}
    if metadata is not None:
        obj["__metadata__"] = metadata
    for t in tensors:
        obj[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [t.begin, t.end]}
    body = json.dumps(obj, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body


def tensor_from_bytes(buf: bytearray, info: TensorInfo) -> torch.Tensor:
    """A tensor viewing ``buf`` (no copy), with ``info``'s dtype and shape."""
    if info.dtype not in DTYPES:
        raise CheckpointError(f"tensor {info.name!r} has dtype {info.dtype}, which aru cannot edit")
    if info.nbytes == 0:
        return torch.empty(info.shape, dtype=DTYPES[info.dtype])
    return torch.frombuffer(buf, dtype=DTYPES[info.dtype]).reshape(info.shape)


def tensor_to_bytes(t: torch.Tensor) -> memoryview:
    """Little-endian raw bytes of ``t`` (x86/ARM are little-endian, as safetensors requires)."""
    return memoryview(t.contiguous().view(torch.uint8).reshape(-1).numpy())
