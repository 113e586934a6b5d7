import numpy as np
import pytest
import torch

from lib.checkpoint import load_checkpoint
from lib.predictor import Letterbox, PEMEDPredictor
from lib.prompts.clicks import Click


def test_letterbox_maps_clicks_and_images_consistently():
    box = Letterbox(100, 50, 256)
    assert box.inner == (256, 128) and box.offset == (0, 64)
    assert box.to_network(Click(0, 0, True)) == Click(1, 65, True)
    img = torch.zeros(1, 1, 100, 50)
    img[0, 0, 40:60, 10:20] = 1
    back = box.network_to_image(box.image_to_network(img))
    assert back.shape == img.shape and torch.allclose(back, img, atol=0.3)


def test_predictor_self_loop_and_state(tiny_checkpoint):
    net, _ = load_checkpoint(tiny_checkpoint)
    p = PEMEDPredictor(net, "cpu", 128)
    p.set_image(np.random.rand(90, 70))
    first = p.predict([Click(40, 30, True)])
    assert first.probability.shape == (90, 70) and first.logits.shape == (1, 1, 90, 70)
    assert "self_loop_ms" in first.timings_ms
    second = p.predict([Click(40, 30, True), Click(10, 10, False)], first.logits)
    assert "self_loop_ms" not in second.timings_ms
    with pytest.raises(ValueError, match="outside"):
        p.predict([Click(90, 0, True)])
    with pytest.raises(ValueError, match="at least one click"):
        p.predict([])
    p.set_image(np.random.rand(3, 40, 40))  # an RGB image on a 1-channel network becomes grey
    assert p.image.shape == (1, 1, 40, 40)


def test_traced_predictor_matches_the_eager_network(tiny_checkpoint):
    net, _ = load_checkpoint(tiny_checkpoint)
    image = np.random.default_rng(0).random((70, 90))
    clicks = [Click(30, 40, True), Click(5, 5, False)]
    outs = []
    for trace in (False, True):
        p = PEMEDPredictor(net, "cpu", 128, trace=trace)
        p.set_image(image)
        first = p.predict(clicks[:1])
        outs.append(p.predict(clicks, first.logits).probability)
    assert np.abs(outs[0] - outs[1]).max() < 1e-3


def test_a_batch_of_steps_gives_what_each_step_gives_alone(tiny_checkpoint):
    net, _ = load_checkpoint(tiny_checkpoint)
    p = PEMEDPredictor(net, "cpu", 64, trace=True, zoom_in=True, zoom_grow=2, refine_radius=2)
    rng = np.random.default_rng(1)
    images = [rng.random((80, 100)), rng.random((120, 60))]
    prev = torch.full((1, 1, 120, 60), -20.0)
    prev[..., 50:70, 20:40] = 4.0
    steps = [(images[0], [Click(40, 50, True)], None),  # a first click: Self-Loop, whole image
             (images[1], [Click(60, 30, True), Click(10, 10, False)], prev)]  # zoomed on the previous mask
    batched = p.predict_many(steps)
    p.set_image(images[0])
    alone = [p.predict(*steps[0][1:])]
    p.set_image(images[1])
    alone.append(p.predict(*steps[1][1:]))
    for b, a in zip(batched, alone):
        assert b.logits.shape == a.logits.shape and torch.allclose(b.logits, a.logits, atol=1e-4)
        assert np.allclose(b.probability, a.probability, atol=1e-4)
    assert "self_loop_ms" in batched[0].timings_ms and "self_loop_ms" not in batched[1].timings_ms
    with pytest.raises(ValueError, match="outside"):
        p.predict_many([(images[0], [Click(80, 0, True)], None)])


def test_zoom_in_box_covers_the_mask_and_clicks(tiny_checkpoint):
    net, _ = load_checkpoint(tiny_checkpoint)
    p = PEMEDPredictor(net, "cpu", 64, trace=False, zoom_in=True, zoom_expand=1.4, zoom_min=0.2)
    p.set_image(np.random.rand(100, 120))
    assert p.region([Click(5, 5, True)], None) == Letterbox(100, 120, 64)  # first click: whole image
    prev = torch.full((1, 1, 100, 120), -5.0)
    prev[..., 40:50, 60:70] = 5.0
    box = p.region([Click(45, 65, True), Click(30, 65, False)], prev)
    assert box.top <= 30 and box.top + box.height > 49 and box.left <= 60 and box.left + box.width > 69
    assert box.height < 100 and box.width < 120
    out = p.predict([Click(45, 65, True), Click(30, 65, False)], prev)
    outside = np.ones((100, 120), bool)
    outside[box.top:box.top + box.height, box.left:box.left + box.width] = False
    assert np.allclose(out.logits[0, 0].numpy()[outside], -5.0)  # untouched outside the box


def test_a_far_positive_click_widens_the_zoom_to_the_whole_image(tiny_checkpoint):
    net, _ = load_checkpoint(tiny_checkpoint)
    p = PEMEDPredictor(net, "cpu", 64, trace=False, zoom_in=True, zoom_far=0.25)  # 50 of the 200 pixels
    p.set_image(np.random.rand(200, 200))
    prev = torch.full((1, 1, 200, 200), -20.0)
    prev[..., 90:110, 90:110] = 5.0
    near = p.region([Click(100, 100, True), Click(100, 118, True)], prev)
    far = p.region([Click(100, 100, True), Click(100, 170, True)], prev)
    assert (near.height, near.width) != (200, 200)
    assert (far.top, far.left, far.height, far.width) == (0, 0, 200, 200)
    negative = p.region([Click(100, 100, True), Click(100, 170, False)], prev)
    assert (negative.height, negative.width) != (200, 200)  # only a positive click says "bigger"


def test_letterbox_cuts_and_grows_inside_the_image():
    box = Letterbox(40, 40, 64, top=30, left=30)
    inside = torch.full((1, 1, 40, 40), -1.0)
    inside[..., 10:30, 10:30] = 1.0
    assert not box.cuts(inside, 100, 100)
    inside[..., 39, 20] = 1.0  # the mask reaches the bottom side, which lies inside the image
    assert box.cuts(inside, 100, 100)
    at_border = Letterbox(40, 40, 64, top=60, left=30)  # its bottom side is the image's
    assert not at_border.cuts(inside, 100, 100)
    grown = box.grown(100, 100, 2.0)
    assert (grown.top, grown.left, grown.height, grown.width) == (10, 10, 80, 80)
    assert box.grown(100, 100, 4.0).whole(100, 100)


def test_zoom_grow_reruns_on_a_larger_box_while_the_mask_reaches_its_side(tiny_checkpoint):
    net, _ = load_checkpoint(tiny_checkpoint)
    prev = torch.full((1, 1, 200, 200), -20.0)
    prev[..., 95:105, 95:105] = 5.0
    clicks = [Click(100, 100, True), Click(100, 104, True)]
    areas = {}
    for grow in (0, 1, 3):
        p = PEMEDPredictor(net, "cpu", 64, trace=False, zoom_in=True, zoom_min=0.2, zoom_grow=grow)
        p.set_image(np.random.rand(200, 200))
        p.run = lambda x: torch.full_like(x[:, :1], 3.0)  # a network that says "everything"
        out = p.predict(clicks, prev)
        areas[grow] = int((out.logits > 0).sum())
    assert areas[0] == 40 * 40  # the zoom box alone (zoom_min 0.2 of 200)
    assert areas[1] == 80 * 80  # one re-run, twice as long per side
    assert areas[3] == 200 * 200  # grown until it is the whole image


def test_the_apps_serve_conf_reaches_the_predictor(tmp_path, tiny_checkpoint):
    import shutil

    from lib.configs.pemed import PEMED, SERVE_DEFAULTS

    shutil.copy(tiny_checkpoint, tmp_path / "pemed.pt")
    config = PEMED()
    config.init("pemed", str(tmp_path), {}, None)
    predictor = config.infer()["pemed"].predictor("cpu")
    settings = (predictor.zoom_in, predictor.zoom_far, predictor.zoom_grow, predictor.refine_radius, predictor.refine_eps)
    assert settings == tuple(SERVE_DEFAULTS.values())
    config.init("pemed", str(tmp_path), {"pemed_zoom_far": "0.2", "pemed_zoom_grow": "0", "pemed_zoom_in": "false",
                                         "pemed_refine_radius": "0", "pemed_refine_eps": "0.01"}, None)
    predictor = config.infer()["pemed"].predictor("cpu")
    settings = (predictor.zoom_in, predictor.zoom_far, predictor.zoom_grow, predictor.refine_radius, predictor.refine_eps)
    assert settings == (False, 0.2, 0, 0, 0.01)
