"""Normalized focal loss (RITM), per sample, over pixels whose label is not ``ignore_index``.

p_t = 1 - |y - p|, alpha_t = alpha for y = 1 else 1 - alpha, beta = (1 - p_t)^gamma,
beta_hat = beta * |Omega| / (sum beta + eps) with the normaliser held constant,
NFL = -1 / (|Omega| + eps) * sum alpha_t * beta_hat * log(min(p_t + eps, 1)).
"""

import torch
from torch import nn


class NormalizedFocalLoss(nn.Module):
    def __init__(self, alpha: float = 0.5, gamma: float = 2.0, eps: float = 1e-8, ignore_index: int = -1):
        super().__init__()
        self.alpha, self.gamma, self.eps, self.ignore_index = alpha, gamma, eps, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits, target: (B, 1, H, W); returns the mean over the batch."""
        p = torch.sigmoid(logits.float())
        y = target.float()
        valid = (target != self.ignore_index).float()
        y = y * valid
        p_t = 1.0 - (y - p).abs()
        alpha_t = torch.where(y > 0.5, torch.full_like(p, self.alpha), torch.full_like(p, 1.0 - self.alpha))
        beta = (1.0 - p_t) ** self.gamma * valid
        dims = tuple(range(1, logits.ndim))
        n_valid = valid.sum(dim=dims, keepdim=True)
        with torch.no_grad():
            mult = n_valid / (beta.sum(dim=dims, keepdim=True) + self.eps)
        terms = -alpha_t * beta * mult * torch.log(torch.clamp(p_t + self.eps, max=1.0)) * valid
        per_sample = terms.sum(dim=dims) / (n_valid.flatten() + self.eps)
        return per_sample.mean()
