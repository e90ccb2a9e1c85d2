"""The header of vimscope's weights format (safetensors), read and checked without torch.

A safetensors file is an 8-byte little-endian header length, a JSON header (``{tensor name: {dtype, shape,
data_offsets}, "__metadata__": {str: str}}``) and the tensor bytes. vimscope's metadata holds the model's
spec as JSON (``vimscope.spec``) and, for training checkpoints, the training config and state. The header is
checked here before anything is allocated from it: its length against the file size and a cap, its JSON
nesting, and its shape (flat entries), so a damaged or hostile file is one ``ModelError`` (exit code 10),
never an internal error of the safetensors library.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from vimscope.config import ModelSpec, from_dict
from vimscope.errors import ConfigError, ModelError
from vimscope.models.specs import finalize_spec

__all__ = [
    "FORMAT_TAG",
    "SPEC_KEY",
    "TRAIN_KEY",
    "STATE_KEY",
    "MAX_HEADER_BYTES",
    "looks_like_safetensors",
    "read_header",
    "read_metadata",
    "spec_from_metadata",
]

FORMAT_TAG = "vimscope-model/1"
SPEC_KEY = "vimscope.spec"  # metadata entry holding the ModelSpec as JSON
TRAIN_KEY = "vimscope.train_config"
STATE_KEY = "vimscope.state"
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
MAX_DEPTH = 3  # {name: {"shape": [..]}}: three levels of brackets at most
TENSOR_KEYS = {"dtype", "shape", "data_offsets"}
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def looks_like_safetensors(path: Path) -> bool:
    """By content: an 8-byte header length followed by ``{`` (whatever the length says; ``read_header`` checks)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{"


def _too_deep(raw: bytes, limit: int) -> bool:
    """Whether brackets nest deeper than ``limit`` in a JSON text, strings skipped (a loop, not recursion)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = 0
    for ch in brackets:
        depth += 1 if ch in b"[{" else -1
        if depth > limit:
            return True
    return False


def _check_entries(header: dict, path: Path) -> None:
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise ModelError(f"{path}: damaged safetensors header (metadata values must be strings)")
        elif not isinstance(entry, dict) or set(entry) != TENSOR_KEYS:
            raise ModelError(f"{path}: damaged safetensors header (entry {name[:60]!r} is not a tensor record)")


def read_header(path: str | Path) -> dict:
    """The checked JSON header of a safetensors file; ``ModelError`` (one line) for anything malformed."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise ModelError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
            (n,) = struct.unpack("<Q", prefix)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise ModelError(
                    f"{path}: damaged safetensors file (header of {n} bytes in a file of {size} bytes; "
                    f"at most {MAX_HEADER_BYTES} accepted)"
                )
            raw = f.read(n)
    except OSError as e:
        raise ModelError(f"{path}: cannot read weights file ({e.strerror})") from None
    if _too_deep(raw, MAX_DEPTH):
        raise ModelError(f"{path}: damaged safetensors header (nested deeper than a tensor table)")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelError(f"{path}: damaged safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: damaged safetensors header (not a JSON object)")
    _check_entries(header, path)
    return header


def spec_from_metadata(metadata: dict[str, str], source: str) -> ModelSpec:
    if SPEC_KEY not in metadata:
        raise ModelError(f"{source}: a safetensors file without a vimscope model config; give the model name too")
    try:
        spec = from_dict(ModelSpec, json.loads(metadata[SPEC_KEY]))
    except (ValueError, TypeError, RecursionError, ConfigError) as e:
        raise ModelError(f"{source}: the embedded model config is invalid ({str(e)[:200]})") from None
    return finalize_spec(spec)


def read_metadata(path: str | Path) -> dict:
    """``spec`` (ModelSpec), ``train_config`` (dict or None), ``state`` (dict) and ``raw`` (the string metadata)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    raw = dict(read_header(path).get("__metadata__") or {})
    spec = spec_from_metadata(raw, str(path))
    try:
        train_config = json.loads(raw[TRAIN_KEY]) if TRAIN_KEY in raw else None
        state = json.loads(raw[STATE_KEY]) if STATE_KEY in raw else {}
    except (json.JSONDecodeError, RecursionError) as e:
        raise ModelError(f"{path}: damaged checkpoint metadata ({str(e)[:200]})") from None
    return {"spec": spec, "train_config": train_config, "state": state, "raw": raw}
