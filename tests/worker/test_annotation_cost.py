"""The cost model on arrays small enough to count by hand."""

import numpy as np

from worker.annotation_cost import (
    Cost,
    border_crossings,
    components_inside,
    dominant_class,
    region_clicks,
    region_cost,
)


def test_a_uniform_rectangle_costs_one_click():
    assert region_clicks(np.zeros((4, 4), np.uint8)) == 1


def test_a_straight_boundary_through_a_rectangle_adds_two_crossings():
    truth = np.zeros((4, 4), np.uint8)
    truth[:, 2:] = 1  # enters at the top border, leaves at the bottom
    assert components_inside(truth, np.ones_like(truth, bool)) == 2
    assert border_crossings(truth, np.ones_like(truth, bool)) == 2
    assert region_clicks(truth) == 4


def test_an_object_inside_the_rectangle_crosses_nothing():
    truth = np.zeros((6, 6), np.uint8)
    truth[2:4, 2:4] = 1
    assert region_clicks(truth) == 2  # two components, no crossing


def test_three_classes_meeting_cross_the_border_three_times():
    truth = np.zeros((4, 4), np.uint8)
    truth[:2, :2], truth[:2, 2:] = 1, 2
    assert border_crossings(truth, np.ones_like(truth, bool)) == 3
    assert region_clicks(truth) == 3 + 3


def test_two_strips_of_one_class_are_two_components_and_four_crossings():
    truth = np.zeros((5, 5), np.uint8)
    truth[:, 0] = truth[:, 4] = 1
    assert components_inside(truth, np.ones_like(truth, bool)) == 3
    assert border_crossings(truth, np.ones_like(truth, bool)) == 4
    assert region_clicks(truth) == 7


def test_a_superpixel_counts_only_its_own_pixels_and_its_own_border():
    truth = np.ones((5, 5), np.uint8)
    truth[:, 0] = 0  # outside the superpixel: must not count
    mask = np.zeros((5, 5), bool)
    mask[1:4, 1:4] = True
    assert region_clicks(truth, mask) == 1
    truth[1:4, 3] = 2  # a vertical boundary inside it: 2 components + 2 crossings
    assert region_clicks(truth, mask) == 4


def test_dominant_labeling_is_one_click_and_the_majority_class():
    truth = np.array([[0, 1, 1], [2, 1, 255]], np.uint8)
    mask = np.ones_like(truth, bool)
    assert region_clicks(truth, mask, dominant=True) == 1
    assert dominant_class(truth, mask) == 1
    assert dominant_class(np.array([[3, 2]], np.uint8), np.ones((1, 2), bool)) == 2  # tie: smaller id
    assert dominant_class(np.full((2, 2), 255, np.uint8), np.ones((2, 2), bool)) == 255


def test_corrected_pixels_are_new_pixels_whose_prelabel_is_wrong():
    truth = np.array([[0, 0], [1, 1]], np.uint8)
    before = np.array([[255, 0], [255, 255]], np.uint8)  # one pixel already labeled
    prelabel = np.array([[0, 1], [0, 1]], np.uint8)  # right, (labeled), wrong, right
    cost = region_cost(truth, before, prelabel, truth)
    assert cost == Cost(pixels=3, corrected=1, clicks=4)
    cold = region_cost(truth, before, None, truth)  # no model yet: every new pixel is painted
    assert (cold.pixels, cold.corrected) == (3, 3)


def test_corrected_pixels_of_a_dominant_label_compare_the_prelabel_with_the_class_given():
    truth = np.array([[0, 0], [0, 1]], np.uint8)
    given = np.zeros_like(truth)  # dominant class 0 for all four pixels
    prelabel = np.array([[0, 0], [1, 1]], np.uint8)
    cost = region_cost(given, np.full_like(truth, 255), prelabel, truth, dominant=True)
    assert cost == Cost(pixels=4, corrected=2, clicks=1)


def test_costs_add_up():
    assert (Cost(1, 2, 3) + Cost(10, 20, 30)).as_dict() == {"pixels": 11, "corrected": 22, "clicks": 33}
