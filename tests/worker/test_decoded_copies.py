"""Which training images keep decoded copies, within the disk setting, and the worker's pruning."""

import os
from pathlib import Path

from service.cycles import create_cycle
from service.models import Image
from service.storage import storage_for
from tests.worker.tiny import label_with_oracle, make_project
from worker.cycle_io import execute_cycle, load_inputs
from worker.decoded_copies import copies_folder, images_with_copies
from worker.engine.decoded import entry_name


def test_labeled_images_get_copies_first_within_the_limit():
    images = [Image(id=i, width=100, height=50) for i in (1, 2, 3, 4)]
    # 3 bytes per pixel for an image, 4 with its label: 15,000 or 20,000 bytes here.
    assert images_with_copies(images, {3}, None, 20_000 + 2 * 15_000) == {3, 1, 2}
    assert images_with_copies(images, {3}, None, 19_999) == {1}  # the labeled one does not fit
    # At base size 50 the images train at 25x50 px: 5,000 bytes with a label, 3,750 without.
    assert images_with_copies(images, {3}, 50, 5_000 + 3 * 3_750) == {3, 1, 2, 4}
    assert images_with_copies(images, {3}, 50, 5_000 + 3 * 3_750 - 1) == {3, 1, 2}
    assert images_with_copies(images, {3}, None, 0) == set()


def test_a_cycle_reads_its_copies_and_removes_those_it_no_longer_reads(session, settings, tmp_path):
    settings.device = "cpu"
    project = make_project(session, settings, tmp_path)
    label_with_oracle(session, settings, project, fraction_of_images=0.5)
    folder = Path(copies_folder(storage_for(settings), project.id))
    folder.mkdir(parents=True)
    (folder / "7.rgb.0123456789.1-2.npy").write_bytes(b"a copy of an image since deleted")
    inputs = load_inputs(session, storage_for(settings), settings, project.id)
    samples = inputs.data.train.samples
    assert [s.cache for s in samples] == [str(folder)] * 4 and os.listdir(folder) == []

    assert execute_cycle(settings, create_cycle(session, project).id) == "succeeded"
    current = {entry_name(s.image, "rgb") for s in samples} | {entry_name(s.label, "label")
                                                               for s in samples if s.label}
    written = set(os.listdir(folder))
    assert written and written <= current  # the images that training drew, and their labels

    settings.decoded_cache_bytes = 0
    inputs = load_inputs(session, storage_for(settings), settings, project.id)
    assert all(s.cache is None for s in inputs.data.train.samples) and os.listdir(folder) == []
