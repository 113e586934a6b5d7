import numpy as np
import pytest

from lib.evaluation import noc, run_protocol
from lib.prompts.clicks import Click, TrainingClickSampler, disk_maps, next_eval_click


def test_disk_maps_radius_and_polarity():
    maps = disk_maps([Click(10, 10, True), Click(30, 5, False)], (40, 20), radius=5)
    assert maps.shape == (2, 40, 20)
    assert maps[0, 10, 10] == 1 and maps[0, 10, 15] == 1 and maps[0, 10, 16] == 0  # 5 px in, 6 px out
    assert maps[0, 14, 13] == 1 and maps[0, 14, 14] == 0  # 4^2+3^2=25 in, 4^2+4^2=32 out
    assert maps[1, 30, 5] == 1 and maps[0, 30, 5] == 0
    assert int(maps[0].sum()) == 81  # lattice points in a radius-5 disk
    assert disk_maps([], (4, 4)).sum() == 0


def square(n=41, lo=10, hi=31):
    gt = np.zeros((n, n), bool)
    gt[lo:hi, lo:hi] = True
    return gt


def test_first_eval_click_is_the_farthest_interior_point():
    gt = square()
    assert next_eval_click(gt, np.zeros_like(gt)) == Click(20, 20, True)


def test_eval_click_polarity_follows_the_larger_error():
    gt = square()
    pred = np.zeros_like(gt)
    pred[:, :] = False
    pred[0:9, 0:41] = True  # a large false positive band, no overlap with the object
    pred[10:31, 10:31] = True
    pred[15:18, 15:18] = False  # a small hole
    click = next_eval_click(gt, pred)
    assert click.positive is False and click.row < 9
    assert next_eval_click(gt, gt) is None


def test_eval_click_skips_clicked_pixels():
    gt = square()
    first = next_eval_click(gt, np.zeros_like(gt))
    second = next_eval_click(gt, np.zeros_like(gt), [first])
    assert second != first and gt[second.row, second.col]


class Oracle:
    def __init__(self, gt, perfect):
        self.gt, self.perfect = gt, perfect

    def start(self, image):
        pass

    def step(self, clicks):
        return self.gt.astype(float) if self.perfect else np.zeros(self.gt.shape)


@pytest.mark.parametrize("perfect,expected", [(True, 1), (False, 20)])
def test_noc_with_ground_truth_and_empty_oracles(perfect, expected):
    gt = square()
    result = run_protocol(Oracle(gt, perfect), np.zeros(gt.shape), gt, max_clicks=20)
    assert len(result.dice) == 20
    assert noc(result.dice, 0.90) == expected and noc(result.iou, 0.85) == expected


def test_training_sampler_clicks_land_where_they_should():
    gt = square()
    sampler = TrainingClickSampler(seed=1)
    for _ in range(20):
        clicks = sampler.initial(gt)
        assert clicks and clicks[0].positive
        for c in clicks:
            assert gt[c.row, c.col] == c.positive
    prob = np.zeros(gt.shape)
    c = sampler.corrective(gt, prob)
    assert c.positive and gt[c.row, c.col]
    prob = np.ones(gt.shape)
    c = sampler.corrective(gt, prob)
    assert not c.positive and not gt[c.row, c.col]


def test_request_points_are_the_inverse_of_clicks_by_slice():
    from lib.prompts.clicks import clicks_by_slice, request_points

    clicks = [Click(3, 4, True), Click(7, 1, False), Click(2, 2, True)]
    for axis in (0, 1, 2):
        points = request_points(clicks, 9, axis)
        assert points["foreground"][0][axis] == 9 and len(points["background"]) == 1
        back = clicks_by_slice(points["foreground"], points["background"], axis)
        assert sorted(back[9]) == sorted(clicks)
