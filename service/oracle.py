"""The oracle annotator: labels queued regions from the ground truth kept at import (`--masks oracle`),
through the same lease + submit path a human uses, so the real service can be benchmarked end to end.

The oracle is an annotator token named "oracle" (its secret is never shown: nobody logs in with it).
Grid regions get the ground truth of their whole box. A superpixel region also gets its whole box: the
region row keeps only the box, so the oracle labels slightly more than the superpixel itself. In a
project with dominant-class annotation a superpixel region gets instead its majority ground-truth class,
submitted as a class id as the page does (the service stores it on the superpixel's own pixels); one
with no labeled ground truth inside is skipped, since it has no class to give.
"""

import hashlib
import secrets
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.annotations import SubmitError, submit_annotation
from service.auto_cycle import maybe_start_auto_cycle
from service.dominant import DOMINANT, ShapeUnknown, region_annotation, superpixel_shape
from service.masks import IGNORE, dominant_class, encode_mask_png
from service.models import Image, Project, Region, Token
from service.queue import lease_next, skip
from service.storage import storage_for

ORACLE_TOKEN_NAME = "oracle"


class NoGroundTruth(ValueError):
    """The project (or one of its queued regions' images) has no oracle mask."""


@dataclass
class OracleResult:
    project_id: int
    labeled: int
    remaining: int


def oracle_token(session: Session) -> Token:
    token = session.scalar(select(Token).where(Token.name == ORACLE_TOKEN_NAME, Token.role == "annotator",
                                               Token.revoked.is_(False)).order_by(Token.id).limit(1))
    if token is None:  # a random secret nobody sees; only its hash is stored, as for every token
        token = Token(name=ORACLE_TOKEN_NAME, role="annotator",
                      token_hash=hashlib.sha256(secrets.token_bytes(32)).hexdigest())
        session.add(token)
        session.commit()
    return token


def queued_count(session: Session, project_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Region).where(
        Region.project_id == project_id, Region.status == "queued")) or 0


def run_oracle(session: Session, settings, project_id: int, limit: int | None = None,
               progress=None) -> OracleResult:
    """Lease and submit up to `limit` regions (all queued ones by default), best first."""
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"project {project_id} not found")
    has_truth = session.scalar(select(func.count()).select_from(Image).where(
        Image.project_id == project_id, Image.oracle_mask_path.is_not(None)))
    if not has_truth:
        raise NoGroundTruth(f"project {project.name!r} has no ground truth: import its masks with "
                            "`--masks oracle` to use the oracle")
    token = oracle_token(session)
    storage = storage_for(settings)
    truth: dict[int, np.ndarray] = {}
    labeled = 0
    total = limit if limit is not None else queued_count(session, project_id)
    while limit is None or labeled < limit:
        region = lease_next(session, settings, project_id, token)
        if region is None:
            break
        if region.image_id not in truth:
            image = session.get(Image, region.image_id)
            if image.oracle_mask_path is None:
                raise NoGroundTruth(f"image {image.stem!r} has no ground truth")
            with PILImage.open(storage.path(image.oracle_mask_path)) as m:
                truth[region.image_id] = np.array(m, dtype=np.uint8)
        gt = truth[region.image_id][region.y:region.y + region.h, region.x:region.x + region.w]
        if region_annotation(session, region) == DOMINANT:
            if not _submit_dominant(session, settings, storage, project, region, gt, token):
                continue
        else:
            png = encode_mask_png(np.ascontiguousarray(gt))
            submit_annotation(session, settings, region.lease_id, token, png, source="oracle")
        labeled += 1
        if progress is not None:
            progress(labeled, max(total, labeled))
    if labeled:  # one check for the batch, as if its labels had come in at once
        maybe_start_auto_cycle(session, settings, project_id=project_id)
    return OracleResult(project_id, labeled, queued_count(session, project_id))


def _submit_dominant(session: Session, settings, storage, project: Project, region, gt: np.ndarray,
                     token: Token) -> bool:
    """Give the region its majority ground-truth class; False (and a skip) when none is labeled inside."""
    try:
        shape = superpixel_shape(storage, project, region, session.get(Image, region.image_id))
    except ShapeUnknown as exc:
        raise SubmitError(409, str(exc)) from exc
    class_id = dominant_class(gt, shape)
    if class_id == IGNORE:
        skip(session, settings, region.lease_id, token, "no ground truth inside the superpixel")
        return False
    submit_annotation(session, settings, region.lease_id, token, None, class_id=class_id, source="oracle")
    return True
