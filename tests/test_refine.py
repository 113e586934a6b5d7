import numpy as np
import torch
from scipy import ndimage

from lib.checkpoint import load_checkpoint
from lib.predictor import PEMEDPredictor
from lib.prompts.clicks import Click
from lib.refine import edge_weighted_guided_filter, refine_probability


def dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def square_scene():
    """A bright 24-pixel square on a noisy dark background, and a blurred, shifted guess of it
    (what a coarse network output looks like after bilinear upsampling)."""
    rng = np.random.default_rng(0)
    truth = np.zeros((80, 80), bool)
    truth[28:52, 28:52] = True
    image = (0.2 + 0.5 * truth + rng.normal(0, 0.02, truth.shape)).astype(np.float32)
    guess = ndimage.gaussian_filter(ndimage.shift(truth.astype(np.float32), (1, -1), order=0), 2.0)
    return image, truth, guess


def test_refinement_pulls_a_soft_shifted_mask_onto_the_image_edge():
    image, truth, guess = square_scene()
    refined = refine_probability(image, guess, 2, 1e-4)
    assert refined.min() >= 0 and refined.max() <= 1
    assert dice(truth, guess > 0.5) < 0.93 and dice(truth, refined > 0.5) > 0.97  # 0.919 -> 0.989


def test_refinement_leaves_background_empty_and_is_off_at_radius_0():
    image, _, guess = square_scene()
    assert np.array_equal(refine_probability(image, np.zeros_like(guess), 2, 1e-4), np.zeros_like(guess))
    assert refine_probability(image, guess, 0, 1e-4) is guess


def test_refinement_leaves_a_flat_image_alone():
    _, _, guess = square_scene()
    flat = np.full_like(guess, 0.3)
    assert np.allclose(refine_probability(flat, guess, 2, 1e-4), guess, atol=1e-5)  # no edge: nothing to pull to


def test_predictor_shows_the_refined_probability_and_keeps_the_networks_logits(tiny_checkpoint):
    net, _ = load_checkpoint(tiny_checkpoint)
    image = np.random.default_rng(1).random((60, 70)).astype(np.float32)
    plain = PEMEDPredictor(net, "cpu", 64, trace=False)
    refined = PEMEDPredictor(net, "cpu", 64, trace=False, refine_radius=2, refine_eps=1e-4)
    outs = []
    for p in (plain, refined):
        p.set_image(image)
        outs.append(p.predict([Click(30, 30, True)]))
    assert torch.equal(outs[0].logits, outs[1].logits)  # the state for the next click is the network's
    assert np.allclose(outs[0].probability, torch.sigmoid(outs[0].logits)[0, 0].numpy())
    assert np.allclose(outs[1].probability, refine_probability(image, outs[0].probability, 3, 1e-4))
    assert "refine_ms" in outs[1].timings_ms
    assert refined.refine_radius_px() == 3  # 2 per 64 pixels of a 70-pixel image, rounded up
    refined.set_image(np.zeros((300, 120), np.float32))
    assert refined.refine_radius_px() == 10 and plain.refine_radius_px() == 0


def test_refining_only_around_the_unsettled_pixels_matches_the_whole_image_filter():
    rng = np.random.default_rng(2)
    guide = rng.random((300, 400)).astype(np.float32)
    logits = np.full(guide.shape, -20.0, np.float32)
    logits[120:160, 250:300] = 20.0
    probability = 1 / (1 + np.exp(-ndimage.gaussian_filter(logits, 3)))
    whole = np.clip(edge_weighted_guided_filter(guide, probability, 2, 1e-4), 0, 1)
    refined = refine_probability(guide, probability, 2, 1e-4)
    assert np.abs(whole - refined).max() < 1e-3 and np.array_equal(whole > 0.5, refined > 0.5)
    hard = np.where(probability > 0.5, 1.0, 0.0).astype(np.float32)  # no unsure pixel, but an edge to move
    whole = np.clip(edge_weighted_guided_filter(guide, hard, 2, 1e-4), 0, 1)
    assert np.abs(whole - refine_probability(guide, hard, 2, 1e-4)).max() < 1e-3
    empty = np.zeros_like(hard)
    assert refine_probability(guide, empty, 2, 1e-4) is empty
