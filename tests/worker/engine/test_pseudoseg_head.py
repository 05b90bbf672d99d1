"""Image-level labels, the classifier head and its masked BCE (PseudoSeg)."""

import math

import numpy as np
import pytest
import torch

from worker.engine.classifier_head import (
    ClassifierHead,
    absent_classes,
    cam_class_mask,
    classifier_loss,
    image_level_labels,
)

U = 255


def test_head_shapes_and_pooling():
    head = ClassifierHead(4, 3)
    feats = torch.randn(2, 4, 5, 7)
    logits = head(feats)
    assert logits.shape == (2, 3)
    expected = feats.mean(dim=(2, 3)) @ head.fc.weight.T + head.fc.bias
    assert torch.allclose(logits, expected, atol=1e-6)


def test_partly_labeled_image_knows_only_what_it_shows():
    lab = torch.full((4, 4), U)
    lab[0, 0], lab[1, 1] = 2, 0
    target, known = image_level_labels(lab, 4)
    assert target.tolist() == [[1, 0, 1, 0]]
    assert known.tolist() == [[True, False, True, False]]  # 1 and 3 may hide in the unlabeled pixels


def test_fully_labeled_image_knows_absent_classes():
    lab = np.array([[0, 0], [3, 3]], dtype=np.uint8)
    target, known = image_level_labels(lab, 4)
    assert target.tolist() == [[1, 0, 0, 1]]
    assert known.all()
    assert absent_classes(target, known).tolist() == [[False, True, True, False]]


def test_tags_make_every_class_known_and_pixels_add_to_them():
    lab = torch.full((2, 3, 3), U)
    lab[1, 0, 0] = 3  # pixels show class 3 that the tag list forgot
    target, known = image_level_labels(lab, 5, tags=[[1, 2], [0]])
    assert target.tolist() == [[0, 1, 1, 0, 0], [1, 0, 0, 1, 0]]
    assert known.all()


def test_batch_of_different_sizes_and_missing_tags():
    maps = [np.full((2, 3), U, np.uint8), np.zeros((5, 4), np.uint8)]
    target, known = image_level_labels(maps, 3, tags=[None, None])
    assert target.tolist() == [[0, 0, 0], [1, 0, 0]]
    assert known.tolist() == [[False, False, False], [True, True, True]]


def test_background_is_never_known():
    lab = np.zeros((2, 2), np.uint8)
    target, known = image_level_labels(lab, 3, tags=[0, 1], background=0)
    assert target.tolist() == [[0, 1, 0]]
    assert known.tolist() == [[False, True, True]]
    assert not absent_classes(target, known)[0, 0]


@pytest.mark.parametrize("tags", [[7], [-1]])
def test_bad_tag_ids_are_refused(tags):
    with pytest.raises(ValueError, match="tag class ids"):
        image_level_labels(np.full((2, 2), U, np.uint8), 3, tags=tags)


def test_bad_label_values_are_refused():
    with pytest.raises(ValueError, match="label values"):
        image_level_labels(np.full((2, 2), 9, np.uint8), 3)


def test_tag_list_count_must_match_batch():
    with pytest.raises(ValueError, match="tag lists"):
        image_level_labels(torch.zeros(2, 2, 2, dtype=torch.long), 3, tags=[[0]])


def test_bce_counts_only_known_entries():
    logits = torch.tensor([[2.0, -1.0, 0.5]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0, 1.0]])
    known = torch.tensor([[True, True, False]])
    loss = classifier_loss(logits, target, known)
    by_hand = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    loss.backward()
    assert logits.grad[0, 2] == 0 and logits.grad[0, 0] != 0


def test_bce_with_nothing_known_is_zero_and_differentiable():
    logits = torch.randn(2, 3, requires_grad=True)
    loss = classifier_loss(logits, torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_cam_class_mask_uses_labels_where_known_else_prediction():
    logits = torch.tensor([[5.0, 5.0, -5.0, -5.0]])
    target = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    known = torch.tensor([[True, False, True, False]])
    assert cam_class_mask(logits, target, known).tolist() == [[0.0, 1.0, 1.0, 0.0]]
