import math

import torch

from lib.trainers.loss import NormalizedFocalLoss


def test_nfl_matches_a_hand_computed_value():
    # Two pixels: y=1 with p=sigmoid(0)=0.5, y=0 with p=sigmoid(ln 3)=0.75.
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 1, 1, 2)
    target = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    # p_t = 0.5, 0.25; beta = 0.25, 0.5625; sum = 0.8125; beta_hat = beta * 2 / 0.8125
    # alpha_t = 0.5 for both; NFL = -(1/2) * sum(0.5 * beta_hat * log p_t)
    b1, b2 = 0.25 * 2 / 0.8125, 0.5625 * 2 / 0.8125
    expected = -(0.5 * b1 * math.log(0.5) + 0.5 * b2 * math.log(0.25)) / 2
    got = NormalizedFocalLoss(alpha=0.5, gamma=2.0)(logits, target).item()
    assert abs(got - expected) < 1e-5, (got, expected)


def test_nfl_ignores_pixels_and_holds_normaliser_constant():
    logits = torch.tensor([0.0, 5.0, -1.0]).view(1, 1, 1, 3).requires_grad_()
    target = torch.tensor([1.0, -1.0, 0.0]).view(1, 1, 1, 3)
    loss = NormalizedFocalLoss()(logits, target)
    loss.backward()
    assert logits.grad[0, 0, 0, 1] == 0  # the ignored pixel gets no gradient
    only_valid = NormalizedFocalLoss()(logits.detach()[..., [0, 2]], target[..., [0, 2]])
    assert abs(loss.item() - only_valid.item()) < 1e-6
