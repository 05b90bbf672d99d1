import pytest

from service.models import Cycle
from tests.service.factories import CLASSES, counts, create_project, files_under, png_bytes


def test_create_read_list_with_design_defaults(client, admin, annotator):
    p = create_project(client, admin, name="camvid", region={"kind": "grid", "size": 30})
    assert p["classes"] == CLASSES and p["ignore_index"] == 255
    assert p["region"] == {"kind": "grid", "size": 30, "annotation": "exact"}
    t = p["training"]
    assert (t["lr"], t["momentum"], t["nesterov"], t["weight_decay"], t["poly_power"]) == (
        None, 0.9, True, 5e-4, 0.9)  # lr None: the model's own default
    assert (t["warmup_fraction"], t["ema_momentum"], t["tau"], t["mix"], t["acquisition"]) == (
        0.1, 0.99, 0.97, "classmix", "entropy")
    assert (t["budget_per_image"], t["budget"], t["model"], t["init"]) == (
        4, None, "lraspp_mobilenetv2", "pretrained")
    assert t["unsup_gate"] == "measured"
    assert client.get(f"/api/projects/{p['id']}", headers=annotator).json() == p
    listed = client.get("/api/projects", headers=annotator).json()
    assert [x["id"] for x in listed] == [p["id"]] and listed[0]["image_count"] == 0


def test_classes_are_stored_sorted_by_id(client, admin):
    p = create_project(client, admin, classes=list(reversed(CLASSES)))
    assert [c["id"] for c in p["classes"]] == [0, 1, 2]


def test_patch_name_region_training_merge_and_append_class(client, admin):
    p = create_project(client, admin, training={"iterations": 50, "lr": 0.05})
    more = CLASSES + [{"id": 3, "name": "sky", "color": "#4682b4"}]
    r = client.patch(f"/api/projects/{p['id']}", headers=admin, json={
        "name": "renamed", "region": {"kind": "superpixel", "size": 24}, "training": {"lr": 0.02},
        "classes": more})
    assert r.status_code == 200, r.text
    q = r.json()
    assert q["name"] == "renamed" and q["region"] == {"kind": "superpixel", "size": 24, "annotation": "exact"}
    assert q["training"]["lr"] == 0.02 and q["training"]["iterations"] == 50  # merged, not replaced
    assert len(q["classes"]) == 4
    assert client.get(f"/api/projects/{p['id']}", headers=admin).json()["name"] == "renamed"


def test_delete_removes_rows_and_files(client, admin, session, settings):
    p = create_project(client, admin)
    r = client.post(f"/api/projects/{p['id']}/images", headers=admin,
                    files=[("files", ("x.png", png_bytes(), "image/png"))])
    assert r.status_code == 201
    assert files_under(settings.storage_dir)
    assert client.delete(f"/api/projects/{p['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/projects/{p['id']}", headers=admin).status_code == 404
    assert counts(session) == {"project": 0, "image": 0, "annotation": 0}
    assert files_under(settings.storage_dir) == []


def test_delete_refused_while_a_cycle_runs(client, admin, session):
    p = create_project(client, admin)
    session.add(Cycle(project_id=p["id"], number=1, status="running"))
    session.commit()
    r = client.delete(f"/api/projects/{p['id']}", headers=admin)
    assert r.status_code == 409 and "cycle" in r.json()["detail"]
    assert counts(session)["project"] == 1


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_unknown_project_404(client, admin, method):
    kwargs = {"json": {"name": "x"}} if method == "patch" else {}
    r = getattr(client, method)("/api/projects/999", headers=admin, **kwargs)
    assert r.status_code == 404 and "999" in r.json()["detail"]


def _cls(i, name=None, color="#102030"):
    return {"id": i, "name": name or f"c{i}", "color": color}


BAD_BODIES = {
    "duplicate ids": {"classes": [_cls(0), _cls(0, "other")]},
    "non-contiguous ids": {"classes": [_cls(0), _cls(2)]},
    "ids not from 0": {"classes": [_cls(1), _cls(2)]},
    "256 classes": {"classes": [_cls(i) for i in range(256)]},
    "no classes": {"classes": []},
    "color name": {"classes": [_cls(0, color="red")]},
    "short color": {"classes": [_cls(0, color="#fff")]},
    "color not hex": {"classes": [_cls(0, color="#gg0000")]},
    "color no hash": {"classes": [_cls(0, color="000000")]},
    "duplicate class names": {"classes": [_cls(0, "a"), _cls(1, "a")]},
    "ignore index not 255": {"classes": CLASSES, "ignore_index": 0},
    "region kind": {"classes": CLASSES, "region": {"kind": "hexagon", "size": 32}},
    "region size": {"classes": CLASSES, "region": {"kind": "grid", "size": 0}},
    "dominant grid": {"classes": CLASSES, "region": {"kind": "grid", "size": 32, "annotation": "dominant"}},
    "annotation kind": {"classes": CLASSES, "region": {"kind": "superpixel", "annotation": "scribble"}},
    "training typo": {"classes": CLASSES, "training": {"learning_rate": 0.1}},
    "training lr": {"classes": CLASSES, "training": {"lr": -1}},
    "training acquisition": {"classes": CLASSES, "training": {"acquisition": "vibes"}},
    "crop size": {"classes": CLASSES, "training": {"crop_size": 0}},
    "base size": {"classes": CLASSES, "training": {"base_size": -1}},
    "crop over base": {"classes": CLASSES, "training": {"crop_size": 512, "base_size": 256}},
    "click budget without its number": {"classes": CLASSES, "training": {"budget_unit": "clicks"}},
    "budget unit": {"classes": CLASSES, "training": {"budget": 100, "budget_unit": "seconds"}},
    "blank name": {"classes": CLASSES, "name": "   "},
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_project_422_writes_nothing(client, admin, session, case):
    body = {"name": "p", **BAD_BODIES[case]}
    r = client.post("/api/projects", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]  # says what is wrong
    assert counts(session)["project"] == 0


def test_255_classes_is_the_maximum(client, admin):
    p = create_project(client, admin, classes=[_cls(i) for i in range(255)])
    assert len(p["classes"]) == 255


def test_duplicate_name_409(client, admin, session):
    create_project(client, admin, name="dup")
    r = client.post("/api/projects", json={"name": "dup", "classes": CLASSES}, headers=admin)
    assert r.status_code == 409
    assert counts(session)["project"] == 1


@pytest.mark.parametrize("patch,code", [
    ({"classes": CLASSES[:2]}, 422),                   # removing a class
    ({"classes": [_cls(0), _cls(0, "b")]}, 422),        # duplicate ids
    ({"training": {"lr": "fast"}}, 422),
    ({"training": {"nope": 1}}, 422),
    ({"training": {"crop_size": 600, "base_size": 500}}, 422),
    ({"training": {"budget_unit": "clicks", "budget_per_image": 4}}, 422),
    ({"region": {"kind": "grid", "size": -3}}, 422),
    ({"region": {"kind": "grid", "size": 16, "annotation": "dominant"}}, 422),
    ({"name": "other"}, 409),
])
def test_bad_patch_changes_nothing(client, admin, patch, code):
    create_project(client, admin, name="other")
    p = create_project(client, admin, name="mine")
    r = client.patch(f"/api/projects/{p['id']}", json=patch, headers=admin)
    assert r.status_code == code, r.text
    after = client.get(f"/api/projects/{p['id']}", headers=admin).json()
    assert after == p
