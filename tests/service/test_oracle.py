"""The oracle annotator labels queued regions from the ground truth, through lease + submit."""

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from service.labels import assemble_labels
from service.models import Annotation, Image, Lease, Region
from service.storage import storage_for
from tests.worker.tiny import make_dataset, make_project


def _queue_regions(session, project, boxes):
    images = session.scalars(select(Image).where(Image.project_id == project.id, Image.split == "train")
                             .order_by(Image.id)).all()
    for i, (x, y) in enumerate(boxes):
        session.add(Region(project_id=project.id, image_id=images[i % len(images)].id, x=x, y=y, w=16, h=16,
                           score=1.0 - i / 10))
    session.commit()


def test_oracle_labels_the_best_regions_with_the_ground_truth(client, admin, session, settings, tmp_path):
    project = make_project(session, settings, tmp_path)
    _queue_regions(session, project, [(0, 0), (16, 16), (0, 16)])
    r = client.post(f"/api/projects/{project.id}/oracle", json={"limit": 2}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"project_id": project.id, "labeled": 2, "remaining": 1}
    storage = storage_for(settings)
    anns = session.scalars(select(Annotation).order_by(Annotation.id)).all()
    assert [a.source for a in anns] == ["oracle", "oracle"] and all(a.lease_id for a in anns)
    for a in anns:
        image = session.get(Image, a.image_id)
        gt = np.array(PILImage.open(storage.path(image.oracle_mask_path)))
        labels = assemble_labels(session, storage, image)
        box = (slice(a.y, a.y + a.h), slice(a.x, a.x + a.w))
        assert (labels[box] == gt[box]).all()
    statuses = sorted(r.status for r in session.scalars(select(Region)))
    assert statuses == ["labeled", "labeled", "queued"]
    r = client.post(f"/api/projects/{project.id}/oracle", headers=admin)
    assert r.json()["labeled"] == 1 and r.json()["remaining"] == 0


def test_oracle_needs_an_admin_a_project_and_ground_truth(client, admin, annotator, session, settings,
                                                          tmp_path):
    from service.importer import import_dataset

    assert client.post("/api/projects/999/oracle", headers=admin).status_code == 404
    project = make_project(session, settings, tmp_path)
    assert client.post(f"/api/projects/{project.id}/oracle", headers=annotator).status_code == 403
    folder = make_dataset(tmp_path / "plain")
    plain = import_dataset(session, settings, folder, "no-truth", "none")
    r = client.post(f"/api/projects/{plain['project_id']}/oracle", headers=admin)
    assert r.status_code == 409 and "--masks oracle" in r.json()["detail"]


def _superpixel_region(session, image, ids, sp) -> Region:
    ys, xs = np.nonzero(ids == sp)
    region = Region(project_id=image.project_id, image_id=image.id, kind="superpixel", superpixel_id=int(sp),
                    x=int(xs.min()), y=int(ys.min()), w=int(xs.max() - xs.min() + 1),
                    h=int(ys.max() - ys.min() + 1), score=1.0)
    session.add(region)
    return region


def test_oracle_gives_a_dominant_region_its_majority_class(client, admin, session, settings, tmp_path):
    from tests.service.dominant_helpers import DOMINANT_REGION
    from tests.service.superpixel_helpers import slanted_ids, write_superpixels

    project = make_project(session, settings, tmp_path)
    project.region = dict(DOMINANT_REGION)
    session.commit()
    storage = storage_for(settings)
    image = session.scalars(select(Image).where(Image.project_id == project.id, Image.split == "train")
                            .order_by(Image.id)).first()
    gt = np.array(PILImage.open(storage.path(image.oracle_mask_path)))
    ids = slanted_ids(image.width, image.height)
    write_superpixels(settings, project.id, image.id, ids)
    mixed = [sp for sp in np.unique(ids) if len(np.unique(gt[ids == sp])) > 1]
    assert mixed, "the tiny dataset should have a superpixel on a class boundary"
    labeled = _superpixel_region(session, image, ids, mixed[0])
    # A superpixel whose ground truth is all unlabeled has no class to give: the oracle skips it.
    empty_sp = next(sp for sp in np.unique(ids) if sp != mixed[0])
    gt[ids == empty_sp] = 255
    PILImage.fromarray(gt).save(storage.path(image.oracle_mask_path))
    unlabeled = _superpixel_region(session, image, ids, empty_sp)
    session.commit()

    r = client.post(f"/api/projects/{project.id}/oracle", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["labeled"] == 1
    ann = session.scalars(select(Annotation)).one()
    assert ann.region_id == labeled.id and ann.source == "oracle" and ann.strokes == 1
    shape = ids[labeled.y:labeled.y + labeled.h, labeled.x:labeled.x + labeled.w] == mixed[0]
    inside = gt[labeled.y:labeled.y + labeled.h, labeled.x:labeled.x + labeled.w][shape]
    majority = np.bincount(inside).argmax()
    stored = np.array(PILImage.open(storage.path(ann.mask_path)))
    assert np.array_equal(stored, np.where(shape, majority, 255))
    session.expire_all()
    assert session.get(Region, unlabeled.id).status != "labeled"
    assert session.scalars(select(Lease).where(Lease.region_id == unlabeled.id)).one().state == "skipped"
