import numpy as np
import pytest
import torch

from worker.engine.metrics import ConfusionMeter, confusion_matrix, iou, iou_list, miou, pixel_accuracy

# 3 classes; target row-major 2x4, 255 = unlabeled.
TARGET = np.array([[0, 0, 1, 1],
                   [2, 255, 1, 0]], dtype=np.uint8)
PRED = np.array([[0, 1, 1, 1],
                 [0, 2, 2, 0]], dtype=np.uint8)
# Hand counts (rows = target, cols = pred), the 255 pixel skipped:
# t0: p0,p1,p0 -> [2,1,0]; t1: p1,p1,p2 -> [0,2,1]; t2: p0 -> [1,0,0]
HAND_CM = np.array([[2, 1, 0],
                    [0, 2, 1],
                    [1, 0, 0]])


def test_confusion_matrix_numpy_matches_hand_counts():
    cm = confusion_matrix(PRED, TARGET, 3)
    assert isinstance(cm, np.ndarray)
    np.testing.assert_array_equal(cm, HAND_CM)


def test_confusion_matrix_torch_stays_torch_and_rows_are_targets():
    cm = confusion_matrix(torch.from_numpy(PRED), torch.from_numpy(TARGET).long(), 3)
    assert isinstance(cm, torch.Tensor)
    np.testing.assert_array_equal(cm.numpy(), HAND_CM)
    # Swapping arguments transposes: rows are the target.
    np.testing.assert_array_equal(confusion_matrix(TARGET.clip(0, 2), PRED, 3),
                                  confusion_matrix(PRED, TARGET.clip(0, 2), 3).T)


def test_iou_against_hand_counts():
    values = iou(HAND_CM)
    # class0: tp2 / (row 3 + col 3 - 2) = 2/4; class1: 2/(3+3-2)=0.5; class2: 0/(1+1-0)=0
    np.testing.assert_allclose(values, [0.5, 0.5, 0.0])
    assert miou(HAND_CM) == pytest.approx(1 / 3)
    assert pixel_accuracy(HAND_CM) == pytest.approx(4 / 7)


def test_class_absent_from_both_is_nan_and_left_out_of_mean():
    target = np.array([0, 0, 1, 255], dtype=np.uint8)
    pred = np.array([0, 1, 1, 3], dtype=np.uint8)  # prediction under the ignored pixel is not counted
    cm = confusion_matrix(pred, target, 4)
    values = iou(cm)
    assert np.isnan(values[2]) and np.isnan(values[3])
    np.testing.assert_allclose(values[:2], [0.5, 0.5])
    assert miou(cm) == pytest.approx(0.5)
    assert iou_list(cm) == [0.5, 0.5, None, None]


def test_class_only_predicted_counts_as_zero_iou():
    cm = confusion_matrix(np.array([0, 2]), np.array([0, 0]), 3)
    values = iou(cm)
    assert values[2] == 0.0 and np.isnan(values[1])


def test_all_ignored_gives_nan_miou():
    cm = confusion_matrix(np.zeros(4, np.uint8), np.full(4, 255, np.uint8), 2)
    assert cm.sum() == 0 and np.isnan(miou(cm))


@pytest.mark.parametrize("pred,target", [([0, 3], [0, 1]), ([0, 1], [0, 7])])
def test_out_of_range_ids_are_an_error(pred, target):
    with pytest.raises(ValueError, match="class ids must be in 0..2"):
        confusion_matrix(np.array(pred), np.array(target), 3)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 2)


def test_meter_accumulates_batches():
    meter = ConfusionMeter(3)
    assert meter.cm.sum() == 0
    meter.update(torch.from_numpy(PRED[:1]), torch.from_numpy(TARGET[:1]))
    meter.update(PRED[1:], TARGET[1:])
    np.testing.assert_array_equal(meter.cm, HAND_CM)
    assert meter.miou() == pytest.approx(miou(HAND_CM))
    np.testing.assert_allclose(meter.iou(), iou(HAND_CM))
