"""File storage under `settings.storage_dir`: durable atomic writes and the key layout.

Keys are relative POSIX paths ("projects/3/images/17.png"); the database stores keys, never absolute
paths, so a data directory can move. Every write goes to a temporary file in the same directory, is
fsynced, renamed over the target and the directory fsynced: a reader sees the old file or the new one,
never half of one, and a crash right after `write_bytes` returns cannot lose the file.
"""

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Annotated

from fastapi import Depends, Request


class StorageError(ValueError):
    """A key that is malformed or would leave the storage root."""


def _norm_ext(ext: str) -> str:
    ext = ext.lower()
    return ext if ext.startswith(".") else "." + ext


def project_prefix(project_id: int) -> str:
    return f"projects/{int(project_id)}"


def image_key(project_id: int, image_id: int | str, ext: str) -> str:
    return f"{project_prefix(project_id)}/images/{image_id}{_norm_ext(ext)}"


def mask_key(project_id: int, name: str) -> str:
    """An annotation mask: `name` is one path component chosen by the caller (e.g. a uuid)."""
    name = name if name.endswith(".png") else name + ".png"
    return f"{project_prefix(project_id)}/masks/{name}"


def oracle_key(project_id: int, image_id: int) -> str:
    """Ground truth kept for simulation; never served to annotators."""
    return f"{project_prefix(project_id)}/oracle/{int(image_id)}.png"


def checkpoint_key(project_id: int, cycle_number: int) -> str:
    return f"{project_prefix(project_id)}/checkpoints/cycle-{int(cycle_number):04d}.pt"


def label_key(project_id: int, image_id: int, through: int, count: int) -> str:
    """An image's materialized labels: `count` annotations applied, the last with id `through`."""
    return f"{project_prefix(project_id)}/labels/{int(image_id)}-{int(through)}-{int(count)}.png"


def superpixel_key(project_id: int, image_id: int, size: int) -> str:
    """An image's SLIC map for superpixels of about `size` px (computed once, by the engine)."""
    return f"{project_prefix(project_id)}/superpixels/{int(image_id)}-{int(size)}.npy"


def decoded_prefix(project_id: int) -> str:
    """The folder of decoded copies of training images and labels (kept and pruned by the worker)."""
    return f"{project_prefix(project_id)}/decoded"


MODEL_EXTENSIONS = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}


def model_export_key(project_id: int, cycle_number: int, fmt: str) -> str:
    """A cycle's exported teacher, beside its checkpoint; its sidecar is this key + ".json"."""
    return f"{project_prefix(project_id)}/checkpoints/cycle-{int(cycle_number):04d}{MODEL_EXTENSIONS[fmt]}"


def prediction_keys(project_id: int, cycle_id: int, image_id: int) -> tuple[str, str]:
    """A cycle's prediction of one image: class ids (8-bit PNG) and max softmax (16-bit PNG, p × 65535)."""
    base = f"{project_prefix(project_id)}/predictions/cycle-{int(cycle_id)}/{int(image_id)}"
    return f"{base}.png", f"{base}.conf.png"


def prelabel_key(project_id: int, cycle_id: int, index: int) -> str:
    """Fixed by the cycle and the region's rank: a re-run of a crashed attempt overwrites, never piles up."""
    return f"{project_prefix(project_id)}/prelabels/cycle-{int(cycle_id)}/{int(index)}.png"


class Storage:
    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()

    def path(self, rel: str) -> Path:
        """The absolute path of a key; refuses absolute keys, `..` and symlinks that leave the root."""
        if not rel or "\\" in rel or "\x00" in rel:
            raise StorageError(f"bad storage key {rel!r}")
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts:
            raise StorageError(f"storage key {rel!r} leaves the storage root")
        full = (self.root / pure).resolve()
        if full != self.root and self.root not in full.parents:
            raise StorageError(f"storage key {rel!r} leaves the storage root")
        return full

    def exists(self, rel: str) -> bool:
        return self.path(rel).is_file()

    def read_bytes(self, rel: str) -> bytes:
        return self.path(rel).read_bytes()

    def write_bytes(self, rel: str, data: bytes) -> None:
        target = self.path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    def write_many(self, items: dict[str, bytes]) -> None:
        """Write many files with one durable step: plain writes, then one flush of the file system
        (syncfs) and one fsync per directory, instead of two fsyncs per file. For files whose keys are
        fixed by the caller and that nothing reads before a later commit names them (pre-labels)."""
        if not items:
            return
        dirs = set()
        for rel, data in items.items():
            target = self.path(rel)
            if target.parent not in dirs:
                target.parent.mkdir(parents=True, exist_ok=True)
                dirs.add(target.parent)
            target.write_bytes(data)
        _syncfs(self.root)
        for d in dirs:
            _fsync_dir(d)

    def delete(self, rel: str) -> None:
        """Remove one file if it is there (used to undo a write whose row did not commit)."""
        self.path(rel).unlink(missing_ok=True)

    def delete_tree(self, rel: str) -> None:
        full = self.path(rel)
        if full == self.root:
            raise StorageError("refusing to delete the storage root")
        shutil.rmtree(full, ignore_errors=True)

    def delete_project(self, project_id: int) -> None:
        self.delete_tree(project_prefix(project_id))


def _syncfs(path: Path) -> None:
    """Flush every dirty page of the file system holding `path` (Linux syncfs), else os.sync()."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        pass
    os.sync()


def private_file(path: Path) -> Path:
    """Make sure `path` exists and only its owner may read or write it: the SQLite database (token
    hashes), the embedded broker and the worker's log are as private as the images. SQLite gives its
    -wal and -shm files the database's mode; ones left from before are tightened here too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    for f in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        if f.exists():
            os.chmod(f, 0o600)
    return path


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def storage_for(settings) -> Storage:
    """The Storage of a Settings (its `storage_dir`)."""
    return Storage(settings.storage_dir)


def get_storage(request: Request) -> Storage:
    """FastAPI dependency: the app's storage."""
    return storage_for(request.app.state.settings)


StorageDep = Annotated[Storage, Depends(get_storage)]
