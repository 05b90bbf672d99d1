"""Decoded copies of training images and labels on disk, so that a crop reads its rows, not a whole file.

Decoding a 2048x1024 PNG takes tens of milliseconds, and a training step cuts 16 small crops from 16
such files. The first read of a file decodes it once, at the training resolution, and writes the
pixels raw (an .npy file: a short header with the shape, then uint8 rows) to a cache folder; every later
crop reads only the rows it needs with positioned reads (`os.pread`, not a memory map, whose touched
pages would count in the loader processes' resident memory).

An entry is named by its source file (stem, a hash of its path) and that file's modification time and
size, so a rewritten file is never served stale; an entry of another shape (the base size changed) is
replaced. Writes go to a temporary name and are renamed into place: several loader processes may
decode the same file at once, and each reads either nothing or a whole entry. A missing, truncated or
unwritable entry only costs a decode. Size: 3 bytes per pixel at the training resolution for an image,
1 for a label; `prune` removes the entries of files no longer in use.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

STALE_TEMP_SECONDS = 3600  # a temporary file this old was left by a writer that died
_warned: set[str] = set()


def entry_name(source: str, kind: str) -> str:
    """The cache file of `source` (`kind`: what it holds, e.g. "rgb" or "label") in its current state."""
    st = os.stat(source)
    where = hashlib.sha1(os.path.abspath(source).encode()).hexdigest()[:10]
    return f"{Path(source).stem}.{kind}.{where}.{st.st_mtime_ns}-{st.st_size}.npy"


def read_rows(folder: str, source: str, kind: str, shape: tuple[int, ...], rows: slice,
              decode: Callable[[], np.ndarray]) -> np.ndarray:
    """Rows `rows` (start and stop set, within the shape) of `source` decoded at `shape` (uint8): read
    from the cache, or `decode()`d whole, cached, and cut."""
    path = os.path.join(folder, entry_name(source, kind))
    band = _read_band(path, shape, rows)
    if band is None:
        array = np.ascontiguousarray(decode(), dtype=np.uint8)
        if array.shape != tuple(shape):
            raise ValueError(f"{source}: decoded to {array.shape}, expected {tuple(shape)}")
        _write(path, array)
        band = array[rows]
    return band


def _read_band(path: str, shape: tuple[int, ...], rows: slice) -> np.ndarray | None:
    """The rows from the entry at `path`, or None when it is missing, of another shape or truncated."""
    try:
        f = open(path, "rb", buffering=0)  # unbuffered: tell() is where the header ends
    except OSError:  # missing, or the folder is unusable: decode
        return None
    with f:
        try:
            np.lib.format.read_magic(f)
            got, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        except ValueError:
            return None
        row_bytes = int(np.prod(shape[1:], dtype=np.int64))
        start = f.tell()
        if got != tuple(shape) or fortran or dtype != np.uint8 or \
                os.fstat(f.fileno()).st_size != start + shape[0] * row_bytes:
            return None
        n = rows.stop - rows.start
        data = os.pread(f.fileno(), n * row_bytes, start + rows.start * row_bytes)
    if len(data) != n * row_bytes:  # replaced by a shorter file between the checks: decode instead
        return None
    return np.frombuffer(data, np.uint8).reshape((n, *shape[1:]))


def _write(path: str, array: np.ndarray) -> None:
    folder = os.path.dirname(path)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except OSError as exc:  # a full or read-only disk: train on, decoding this file each time
        if folder not in _warned:  # once per process, not once per crop
            _warned.add(folder)
            log.warning("cannot keep decoded copies in %s (%s); decoding on every read", folder, exc)
        try:
            os.unlink(tmp)
        except OSError:
            pass


def prune(folder: str, keep: Iterable[tuple[str, str]]) -> tuple[int, int]:
    """Remove every entry of `folder` but those of the (source, kind) pairs in `keep` in their current
    state, and temporary files left by dead writers. Returns (files removed, bytes freed)."""
    wanted = set()
    for source, kind in keep:
        try:
            wanted.add(entry_name(source, kind))
        except FileNotFoundError:  # the cycle's input check names the missing file
            continue
    removed = freed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0, 0
    now = time.time()
    for entry in entries:
        try:
            st = entry.stat()
            stale_temp = entry.name.endswith(".tmp") and now - st.st_mtime > STALE_TEMP_SECONDS
            if (entry.name.endswith(".npy") and entry.name not in wanted) or stale_temp:
                os.unlink(entry.path)
                removed, freed = removed + 1, freed + st.st_size
        except FileNotFoundError:  # another process removed or replaced it meanwhile
            continue
    return removed, freed
