"""Edge-aware refinement of the network's foreground probability: a guided filter (He, Sun and Tang,
"Guided Image Filtering", TPAMI 2013) with the image as the guide.

The network answers at a quarter of its input resolution and its logits are upsampled bilinearly, so
a mask edge is a soft ramp a few pixels wide that need not lie on the image's edge. Within each
(2r+1)^2 window the filter fits the probability as a linear function of the image intensity: where the
window holds an intensity edge, the ramp is pulled onto it; where the image is flat (an atlas border
no intensity shows), it only smooths. It runs on the displayed probability only: the network's own
logits stay the state for the next click.
"""

import cv2
import numpy as np


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """``guide``, ``source``: (H, W) float arrays; ``eps`` is in the guide's squared intensity units
    (an edge whose contrast is well above sqrt(eps) steers the output). Box filters: O(H W) for any radius."""
    guide = np.ascontiguousarray(guide, dtype=np.float32)
    source = np.ascontiguousarray(source, dtype=np.float32)
    size = (2 * radius + 1, 2 * radius + 1)

    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    mean_g, mean_s = mean(guide), mean(source)
    var_g = mean(guide * guide) - mean_g * mean_g
    slope = (mean(guide * source) - mean_g * mean_s) / (var_g + eps)
    offset = mean_s - slope * mean_g
    return mean(slope) * guide + mean(offset)


def refine_probability(guide: np.ndarray, probability: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """``guide``: the (H, W) image, intensities about [0, 1]; ``probability``: (H, W). ``radius`` 0
    returns the probability unchanged."""
    if radius <= 0:
        return probability
    return np.clip(guided_filter(guide, probability, radius, eps), 0.0, 1.0)
