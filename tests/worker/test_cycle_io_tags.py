"""Tags flow through a real cycle (in-process, both databases): the project's tags reach the engine, the
classifier's uncertainty comes back to Image.tag_uncertainty and orders the tagging queue."""

from sqlalchemy import select

from service.cycles import create_cycle
from service.models import Cycle, Image
from service.storage import storage_for
from service.tags import next_to_tag, set_tags
from tests.worker.tiny import label_with_oracle, make_project
from worker.cycle_io import execute_cycle, load_inputs
from worker.engine.checkpoint import load


def test_pseudoseg_cycle_reads_tags_and_writes_uncertainty(session, settings, tmp_path):
    settings.device = "cpu"
    project = make_project(session, settings, tmp_path, training={"pseudo_label": "pseudoseg"})
    train = session.scalars(select(Image).where(Image.project_id == project.id, Image.split == "train")
                            .order_by(Image.id)).all()
    set_tags(session, train[1], [2, 1], None)
    set_tags(session, train[3], [], None)
    label_with_oracle(session, settings, project)
    inputs = load_inputs(session, storage_for(settings), settings, project.id)
    assert inputs.data.tags == [None, [1, 2], None, []]
    assert inputs.train_config.pseudo_label == "pseudoseg"

    cycle = create_cycle(session, project)
    assert execute_cycle(settings, cycle.id) == "succeeded"
    session.expire_all()
    values = [im.tag_uncertainty for im in session.scalars(select(Image).where(
        Image.project_id == project.id, Image.split == "train").order_by(Image.id))]
    assert all(v is not None and 0 <= v <= 1 for v in values)
    val = session.scalars(select(Image).where(Image.project_id == project.id, Image.split == "val")).all()
    assert all(im.tag_uncertainty is None for im in val)
    tagged = {train[1].id, train[3].id}
    untagged = [(-v, im.id) for v, im in zip(values, train, strict=True) if im.id not in tagged]
    assert next_to_tag(session, project.id).id == min(untagged)[1]  # most uncertain, then upload order
    c = session.get(Cycle, cycle.id)
    assert c.config["train"]["pseudo_label"] == "pseudoseg"
    assert "pseudoseg" in load(storage_for(settings).path(c.checkpoint_path))
