"""Scalar metadata from a GGUF file's header, without reading its tensors.

`gguf.GGUFReader` parses every array in the header (the base model's 49k-token vocabulary and merges) and takes
about 10 s on SmolLM2's file; checking a target name or an adapter needs only a few scalars that come first.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class NotGGUF(ValueError):
    """The file is not a GGUF file this reader understands (wrong magic, old version, or cut short)."""


def _read(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise NotGGUF("the file ends inside its header")
    return data


def _unpack(stream: BinaryIO, fmt: str):
    return struct.unpack(fmt, _read(stream, struct.calcsize(fmt)))[0]


def _string(stream: BinaryIO) -> str:
    return _read(stream, _unpack(stream, "<Q")).decode("utf-8", errors="replace")


def _skip(stream: BinaryIO, value_type: int) -> None:
    """Move past one value of `value_type` without decoding it."""
    if value_type in _SCALARS:
        stream.seek(struct.calcsize(_SCALARS[value_type]), 1)
    elif value_type == _STRING:
        stream.seek(_unpack(stream, "<Q"), 1)
    elif value_type == _ARRAY:
        item_type, count = _unpack(stream, "<I"), _unpack(stream, "<Q")
        if item_type in _SCALARS:
            stream.seek(count * struct.calcsize(_SCALARS[item_type]), 1)
        else:
            for _ in range(count):
                _skip(stream, item_type)
    else:
        raise NotGGUF(f"unknown metadata value type {value_type}")


def read_metadata(stream: BinaryIO, keys: Collection[str]) -> dict[str, object]:
    """The scalar and string values of `keys` found in a GGUF header read from `stream` (arrays are skipped);
    stops once all are found."""
    if _read(stream, 4) != MAGIC:
        raise NotGGUF("no GGUF magic: not a GGUF file")
    version = _unpack(stream, "<I")
    if version < 2:
        raise NotGGUF(f"GGUF version {version} is too old")
    _unpack(stream, "<Q")  # tensor count
    found: dict[str, object] = {}
    for _ in range(_unpack(stream, "<Q")):
        key, value_type = _string(stream), _unpack(stream, "<I")
        if key in keys and value_type in _SCALARS:
            found[key] = _unpack(stream, _SCALARS[value_type])
        elif key in keys and value_type == _STRING:
            found[key] = _string(stream)
        else:
            _skip(stream, value_type)
        if len(found) == len(keys):
            break
    return found


def gguf_metadata(path: Path, keys: Collection[str]) -> dict[str, object]:
    """`read_metadata` of the file at `path`.

    Raises:
        NotGGUF: the file is not a GGUF file.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as stream:
        return read_metadata(stream, frozenset(keys))
