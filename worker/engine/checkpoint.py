"""Checkpoints: one dict holding student and teacher weights, the training config and the class list.

`torch.save`d with only tensors, numbers, strings, lists and dicts inside, so `load` can use
`weights_only=True` (no pickled code runs when a checkpoint is read).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from worker.engine.models import build_model

FORMAT = 1


def make(student: nn.Module, teacher: nn.Module, config: dict[str, Any], class_names: list[str],
         **extra: Any) -> dict[str, Any]:
    """A checkpoint dict; weights are copied to CPU so the dict outlives the training device."""
    def cpu(module: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    return {"format": FORMAT, "student": cpu(student), "teacher": cpu(teacher), "config": dict(config),
            "class_names": list(class_names), **extra}


def save(path: str | Path, ckpt: dict[str, Any]) -> Path:
    """Write atomically: a crash leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path) -> dict[str, Any]:
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    missing = {"student", "teacher", "config", "class_names"} - set(ckpt)
    if missing:
        raise ValueError(f"{path}: not an s4al checkpoint (missing {', '.join(sorted(missing))})")
    return ckpt


def load_model(ckpt: dict[str, Any], which: str = "teacher") -> nn.Module:
    """Rebuild the network of a checkpoint (the teacher by default: it is the one that scores)."""
    if which not in ("student", "teacher"):
        raise ValueError(f"which must be 'student' or 'teacher', got {which!r}")
    model = build_model(ckpt["config"]["model"], len(ckpt["class_names"]))
    model.load_state_dict(ckpt[which])
    return model.eval()
