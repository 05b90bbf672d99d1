"""One cycle from the worker's side: claim the row, read the project, run the engine, write the results.

The cycle row is the source of truth, and every write to it is a compare-and-set on (status, worker,
attempts), so only the holder of the current attempt can change it:
- claim: `UPDATE cycle SET status='running', worker=me, attempts=attempts+1 WHERE id=:id AND
  status='queued' AND attempts=:seen`; a second delivery of a claimed cycle changes nothing and exits.
  A cycle still `running` is taken over only when its holder is surely dead (its heartbeat is stale, or
  it was a process of this host that no longer exists: the message came back after a pool child died).
- heartbeat: a thread writes progress and heartbeat_at every second or so and reads cancel_requested;
  `should_stop` is a flag it sets (cancel asked, or the cycle was taken away from us).
- results: the checkpoint and the pre-label PNGs are written first, under keys fixed by the cycle (a
  re-run overwrites them); then ONE transaction sets the cycle `succeeded` (compare-and-set) and inserts
  its regions. A crash before that commit leaves no row; a re-run writes the same keys.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db import session_factory
from service.labels import materialize_labels
from service.masks import encode_mask_png
from service.models import Cycle, Image, Project, Region, utcnow
from service.settings import Settings
from service.storage import Storage, checkpoint_key, prelabel_key, project_prefix, storage_for, superpixel_key
from service.tags import store_tag_uncertainty, tags_by_image
from worker.decoded_copies import copies_folder, images_with_copies, prune_copies
from worker.engine.errors import Cancelled
from worker.training_config import resolve_configs

if TYPE_CHECKING:  # the engine (torch) is imported only when a cycle runs
    from worker.engine.cycle import AcquisitionConfig, CycleData, TrainConfig

log = logging.getLogger(__name__)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Claim:
    cycle_id: int
    project_id: int
    number: int
    attempt: int
    worker: str


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child that its parent has not reaped yet is a zombie: dead all the same
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def why_holder_is_dead(cycle: Cycle, settings: Settings, me: str) -> str | None:
    """Why the worker recorded on a running cycle is surely gone, or None while it may be alive."""
    beat = cycle.heartbeat_at or cycle.started_at or cycle.created_at
    if beat is not None and utcnow() - beat > timedelta(seconds=settings.heartbeat_stale_seconds):
        return f"its heartbeat is older than the stale time ({settings.heartbeat_stale_seconds} s)"
    if not cycle.worker:
        return None
    if cycle.worker == me:  # we are starting now, so the attempt recorded under our name is over
        return "its process was restarted"
    host, _, pid = cycle.worker.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and _pid_gone(int(pid)):
        return f"its process {pid} is gone"
    return None


def claim_cycle(session: Session, settings: Settings, cycle_id: int, me: str) -> Claim | None:
    """Take the cycle for this process, or return None (unknown, finished, or held by a live worker)."""
    cycle = session.get(Cycle, cycle_id)
    if cycle is None:
        log.warning("cycle %s does not exist; message dropped", cycle_id)
        return None
    seen_status, seen_attempts = cycle.status, cycle.attempts
    dead = why_holder_is_dead(cycle, settings, me) if seen_status == "running" else None
    if dead:
        if settings.stale_cycle_action == "fail" or seen_attempts >= settings.max_cycle_attempts:
            from service.cycles import lost_worker_error

            now = utcnow()
            session.execute(update(Cycle).where(
                Cycle.id == cycle_id, Cycle.status == "running", Cycle.attempts == seen_attempts).values(
                status="failed", finished_at=now, eta_seconds=None, phase=None,
                error=lost_worker_error(cycle.worker, cycle.heartbeat_at, seen_attempts, settings, now,
                                        dead)))
            session.commit()
            return None
    elif seen_status != "queued":
        log.info("cycle %s is %s (worker %s); this delivery does nothing", cycle_id, seen_status,
                 cycle.worker)
        return None
    now = utcnow()
    res = session.execute(update(Cycle).where(
        Cycle.id == cycle_id, Cycle.status == seen_status, Cycle.attempts == seen_attempts).values(
        status="running", worker=me, attempts=seen_attempts + 1, started_at=now, heartbeat_at=now,
        finished_at=None, phase="load", step=0, total=0, loss=None, eta_seconds=None, error=None))
    session.commit()
    if res.rowcount != 1:
        return None
    return Claim(cycle_id, cycle.project_id, cycle.number, seen_attempts + 1, me)


def _mine(claim: Claim):
    return (Cycle.id == claim.cycle_id, Cycle.status == "running", Cycle.worker == claim.worker,
            Cycle.attempts == claim.attempt)


class Heartbeat:
    """Progress in memory (cheap, called every step), flushed to the row by a thread every `interval`."""

    def __init__(self, sessions: sessionmaker, claim: Claim, interval: float):
        self.sessions, self.claim, self.interval = sessions, claim, interval
        self.state: dict = {"phase": "load", "step": 0, "total": 0, "loss": None, "eta_seconds": None}
        self.cancel = threading.Event()
        self.lost = threading.Event()
        self._done = threading.Event()
        self._phase_start = (None, time.monotonic())
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{claim.cycle_id}", daemon=True)

    def progress(self, phase: str, step: int, total: int, losses: dict | None = None) -> None:
        now = time.monotonic()
        if self._phase_start[0] != phase:
            self._phase_start = (phase, now)
        elapsed = now - self._phase_start[1]
        eta = elapsed / step * (total - step) if step > 0 and total >= step else None
        loss = (losses or {}).get("loss", (losses or {}).get("total"))
        self.state = {"phase": phase, "step": int(step), "total": int(total),
                      "loss": float(loss) if loss is not None and np.isfinite(loss) else None,
                      "eta_seconds": eta}

    def should_stop(self) -> bool:
        return self.cancel.is_set() or self.lost.is_set()

    def beat(self) -> None:
        with self.sessions() as s:
            row = s.execute(update(Cycle).where(*_mine(self.claim)).values(
                heartbeat_at=utcnow(), **self.state).returning(Cycle.cancel_requested)).first()
            s.commit()
        if row is None:
            self.lost.set()
        elif row[0]:
            self.cancel.set()

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a database hiccup: try again next time; staleness is the reaper's call
                log.exception("heartbeat of cycle %s failed", self.claim.cycle_id)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def _finish(sessions: sessionmaker, claim: Claim, **values) -> bool:
    values.setdefault("phase", None)  # a finished cycle is in no phase
    with sessions() as s:
        res = s.execute(update(Cycle).where(*_mine(claim)).values(finished_at=utcnow(), eta_seconds=None,
                                                                  **values))
        s.commit()
    return res.rowcount == 1


@dataclass
class Inputs:
    project: Project
    train_ids: list[int]
    data: CycleData  # over files: nothing is decoded here
    train_config: TrainConfig
    acquisition: AcquisitionConfig
    resolved: dict


def load_inputs(session: Session, storage: Storage, settings: Settings, project_id: int) -> Inputs:
    """The project's train pool as samples (image file, materialized label file, superpixel cache, folder
    of decoded copies), and its val images with their ground truth (the oracle mask when imported as
    oracle, else their labels). Label files are brought up to date here, only for images with new
    annotations; decoded copies no longer read are removed."""
    from worker.engine.cycle import CycleData, FilePool, Sample

    project = session.get(Project, project_id)
    train_config, acquisition, resolved = resolve_configs(project, settings)
    rows = session.scalars(select(Image).where(Image.project_id == project_id).order_by(Image.id)).all()
    train = [im for im in rows if im.split == "train"]
    if not train:
        raise ValueError("the project has no train images")
    val = [im for im in rows if im.split == "val"]
    labels = materialize_labels(session, storage, train + [im for im in val if not im.oracle_mask_path])
    sp = acquisition.region_size if acquisition.region_kind == "superpixel" else None
    copies = images_with_copies(train, {im.id for im in train if labels[im.id]}, train_config.base,
                                settings.decoded_cache_bytes)
    folder = copies_folder(storage, project_id)

    def sample(im: Image, label: str | None) -> Sample:
        cache = None
        if sp and im.split == "train":
            cache = str(storage.path(superpixel_key(project_id, im.id, sp)))
        return Sample(image=str(storage.path(im.path)), label=str(storage.path(label)) if label else None,
                      superpixels=cache, name=f"{im.stem} (image {im.id})",
                      cache=folder if im.id in copies else None)

    val_samples = [sample(im, im.oracle_mask_path or labels[im.id]) for im in val
                   if im.oracle_mask_path or labels[im.id]]
    names = [c["name"] for c in sorted(project.classes, key=lambda c: c["id"])]
    tagged = tags_by_image(session, project_id)  # PseudoSeg: image-level tags, newest per image
    train_pool = FilePool([sample(im, labels[im.id]) for im in train])
    prune_copies(folder, train_pool)
    data = CycleData.from_pools(train_pool, FilePool(val_samples),
                                num_classes=len(names), class_names=names,
                                tags=[tagged.get(im.id) for im in train] if tagged else None)
    return Inputs(project, [im.id for im in train], data, train_config, acquisition, resolved)


def write_results(sessions: sessionmaker, storage: Storage, claim: Claim, inputs: Inputs, out,
                  extra_metrics: dict, progress=None) -> str:
    """Checkpoint and pre-label files first, then one transaction; returns the cycle's final status."""
    from worker.engine import checkpoint

    t0 = time.monotonic()
    ckpt_key = None
    if out.checkpoint:  # a cold start trains nothing, so it has no model to keep
        ckpt_key = checkpoint_key(claim.project_id, claim.number)
        checkpoint.save(storage.path(ckpt_key), out.checkpoint)
    version = f"cycle-{claim.number}"
    rows, files = [], {}
    for rank, sel in enumerate(out.regions):
        if progress is not None and rank % 256 == 0:
            progress("write", rank, len(out.regions), None)
        key = None
        if sel.prelabel is not None:
            key = prelabel_key(claim.project_id, claim.cycle_id, rank)
            files[key] = encode_mask_png(sel.prelabel)
        rows.append(dict(project_id=claim.project_id, image_id=inputs.train_ids[sel.image_index],
                         cycle_id=claim.cycle_id, kind="grid" if sel.superpixel_id < 0 else "superpixel",
                         x=int(sel.x), y=int(sel.y), w=int(sel.w), h=int(sel.h),
                         superpixel_id=int(sel.superpixel_id), score=float(sel.score), status="queued",
                         model_version=version, prelabel_path=key))
    storage.write_many(files)  # one durable step for all pre-labels, before the commit that names them
    metrics = {**out.metrics, **extra_metrics, "regions": len(rows),
               "prelabels": sum(r["prelabel_path"] is not None for r in rows),
               "write_seconds": round(time.monotonic() - t0, 3)}
    with sessions() as s:
        done = s.execute(update(Cycle).where(*_mine(claim), Cycle.cancel_requested.is_(False)).values(
            status="succeeded", finished_at=utcnow(), phase=None, eta_seconds=None, metrics=metrics,
            checkpoint_path=ckpt_key, config=inputs.resolved))
        if done.rowcount != 1:  # cancelled meanwhile, or no longer ours: none of it counts
            s.rollback()
            if _mine_still(sessions, claim):  # cancelled: the files are ours (another attempt's otherwise)
                storage.delete_tree(f"{project_prefix(claim.project_id)}/prelabels/cycle-{int(claim.cycle_id)}")
                if ckpt_key:
                    storage.delete(ckpt_key)
            return _lost_or_cancelled(sessions, claim)
        # Queued regions of earlier cycles were ranked by an older model: this cycle's ranking replaces
        # them (leased ones stay with their annotator).
        superseded = s.execute(update(Region).where(
            Region.project_id == claim.project_id, Region.status == "queued",
            Region.cycle_id != claim.cycle_id).values(status="superseded")).rowcount
        if rows:
            s.execute(Region.__table__.insert(), rows)
        if out.tag_uncertainty is not None:  # PseudoSeg: orders the tagging queue
            store_tag_uncertainty(s, dict(zip(inputs.train_ids, out.tag_uncertainty, strict=True)))
        metrics["superseded"] = superseded
        s.execute(update(Cycle).where(Cycle.id == claim.cycle_id).values(metrics=metrics))
        s.commit()
    return "succeeded"


def _mine_still(sessions: sessionmaker, claim: Claim) -> bool:
    """Whether the attempt is still ours (then its checkpoint file is ours to remove)."""
    with sessions() as s:
        return s.scalar(select(Cycle.id).where(*_mine(claim))) is not None


def _lost_or_cancelled(sessions: sessionmaker, claim: Claim) -> str:
    if _finish(sessions, claim, status="cancelled", phase=None):
        return "cancelled"
    return "lost"


def execute_cycle(settings: Settings, cycle_id: int) -> str:
    """Run one cycle end to end. Returns succeeded | failed | cancelled | lost | skipped."""
    me = worker_identity()
    sessions = session_factory(settings.sqlalchemy_url)
    with sessions() as s:
        claim = claim_cycle(s, settings, cycle_id, me)
    if claim is None:
        return "skipped"
    storage = storage_for(settings)
    interval = max(0.2, min(2.0, settings.heartbeat_stale_seconds / 4))
    t0 = time.monotonic()
    # The heartbeat runs until the results are written: writing many pre-labels can take a while.
    with Heartbeat(sessions, claim, interval) as hb:
        try:
            out, inputs, load_seconds = _train_and_score(sessions, storage, settings, claim, hb, t0)
        except Exception as exc:
            if isinstance(exc, Cancelled) or hb.should_stop():
                return "lost" if hb.lost.is_set() else _lost_or_cancelled(sessions, claim)
            log.exception("cycle %s failed", cycle_id)
            detail = "".join(traceback.format_exception_only(exc)).strip()
            _finish(sessions, claim, status="failed", error=f"{detail}\n\n{traceback.format_exc(limit=8)}")
            return "failed"
        extra = {"load_seconds": load_seconds, "train_images": len(inputs.train_ids),
                 "val_images": len(inputs.data.val), "attempt": claim.attempt, "worker": me}
        try:
            status = write_results(sessions, storage, claim, inputs, out, extra, progress=hb.progress)
        except Exception as exc:
            log.exception("writing the results of cycle %s failed", cycle_id)
            _finish(sessions, claim, status="failed", error=f"writing results failed: {exc!r}")
            return "failed"
    log.info("cycle %s: %s in %.1fs", cycle_id, status, time.monotonic() - t0)
    return status


def _train_and_score(sessions, storage, settings, claim: Claim, hb: Heartbeat, t0: float):
    from worker.engine.cycle import check_cycle_inputs, run_cycle
    from worker.engine.trainer import Cancelled

    with sessions() as s:
        inputs = load_inputs(s, storage, settings, claim.project_id)
    # Every sample's header and label are read once here: a missing or unreadable file fails the cycle
    # now, naming the image, before anything is trained or written.
    check_cycle_inputs(inputs.train_config, inputs.data, inputs.acquisition)
    load_seconds = round(time.monotonic() - t0, 3)
    hb.beat()
    if hb.should_stop():
        raise Cancelled("cancelled before training")
    out = run_cycle(inputs.train_config, inputs.data, inputs.acquisition, progress=hb.progress,
                    should_stop=hb.should_stop)
    return out, inputs, load_seconds
