"""Transforms for the automatic methods, which learn structures by name: a class map (0 background,
k + 1 for the k-th name) becomes one named binary target and the [image, name plane] input, or
every name's heatmap targets."""

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from ..configs.labels import parts
from ..networks.curriculum import all_heatmap_targets
from ..networks.promise import with_name


class ToClassIndicesd(MapTransform):
    """A label map of atlas values -> the class map of ``values`` (everything else 0). A lobe's
    value stands for itself (a saved automatic result) and for its AAL parts (an atlas label)."""

    def __init__(self, keys: KeysCollection, values: Sequence[int]):
        super().__init__(keys)
        self.lookup = {p: k + 1 for k, v in enumerate(values) for p in (int(v),) + parts(v)}

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            lab = d[key]
            arr = np.asarray(lab.detach().cpu() if isinstance(lab, torch.Tensor) else lab).round().astype(np.int64)
            out = np.zeros(arr.shape, np.float32)
            for v, k in self.lookup.items():
                out[arr == v] = k
            d[key] = torch.as_tensor(out)
        return d


class PickNamed(Randomizable, MapTransform):
    """One class present with at least ``min_area`` pixels (else the largest) becomes the binary
    ``label``; the image becomes [image, name plane]; ``name`` keeps the index."""

    def __init__(self, image_key: str = "image", label_key: str = "label", min_area: int = 20):
        MapTransform.__init__(self, keys=[image_key, label_key])
        self.image_key, self.label_key, self.min_area = image_key, label_key, min_area

    def __call__(self, data):
        d = dict(data)
        classes = torch.as_tensor(d[self.label_key])
        values, counts = torch.unique(classes.round().long(), return_counts=True)
        present = [(int(v), int(c)) for v, c in zip(values, counts) if v > 0]
        if not present:
            raise ValueError("no named structure on this sample")
        big = [v for v, c in present if c >= self.min_area] or [max(present, key=lambda vc: vc[1])[0]]
        chosen = int(self.R.choice(big))
        d[self.label_key] = (classes.round() == chosen).float()
        d[self.image_key] = with_name(torch.as_tensor(d[self.image_key])[None], chosen - 1)[0]
        d["name"] = chosen - 1
        return d


class HeatmapTargetd(MapTransform):
    """The class map -> every name's target maps for the heatmap network (lib/networks/curriculum.py)."""

    def __init__(self, head: str, n_names: int, label_key: str = "label", size: int = 0):
        super().__init__(keys=label_key)
        self.head, self.n_names, self.size = head, n_names, size  # size: the maps' side (0: the label's)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            classes = torch.as_tensor(d[key])[None].float()
            if self.size:
                classes = F.interpolate(classes, size=(self.size, self.size), mode="nearest")
            classes = classes[0, 0].round().long().numpy()
            d[key] = torch.from_numpy(all_heatmap_targets(classes, self.n_names, self.head))
        return d
