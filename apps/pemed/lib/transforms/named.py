"""Transforms for the automatic methods, which learn structures by name: a saved label becomes the
class map of the names (0 background, k + 1 for the k-th name) with, per name, whether the label
says where it is (``known``); a class map becomes one named binary target and the [image, name
plane] input, or every name's heatmap targets (-1 for the names a sample says nothing about)."""

from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import MapTransform, Randomizable

from ..named_labels import class_map, segment_names
from ..networks.curriculum import all_heatmap_targets
from ..networks.promise import with_name


class NamedClassesd(MapTransform):
    """A saved label -> the class map of ``values``' names and ``known`` (module docstring), its
    values named by the item's ``label_info`` (the segments a client sent with it) or the app's
    label map (lib/named_labels.py)."""

    def __init__(self, values: Dict[str, int], label_key: str = "label", info_key: str = "label_info"):
        super().__init__(keys=label_key)
        self.values, self.label_key, self.info_key = dict(values), label_key, info_key

    def __call__(self, data):
        d = dict(data)
        lab = d[self.label_key]
        arr = np.asarray(lab.detach().cpu() if isinstance(lab, torch.Tensor) else lab).round().astype(np.int64)
        names = segment_names({"label_info": d.pop(self.info_key, None)}, np.unique(arr))
        classes, known = class_map(arr, names, self.values)
        d[self.label_key] = torch.as_tensor(classes.astype(np.float32))
        d["known"] = torch.tensor(known)
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
        d.pop("known", None)  # one name present: what the others are does not matter
        d[self.label_key] = (classes.round() == chosen).float()
        d[self.image_key] = with_name(torch.as_tensor(d[self.image_key])[None], chosen - 1)[0]
        d["name"] = chosen - 1
        return d


class HeatmapTargetd(MapTransform):
    """The class map -> every name's target maps for the heatmap network (lib/networks/curriculum.py),
    -1 for a name the sample says nothing about: the item's ``known`` (a saved label), else
    ``replay_known`` (an engine draw: the names with atlas values)."""

    def __init__(self, head: str, n_names: int, label_key: str = "label", size: int = 0,
                 replay_known: Optional[Sequence[bool]] = None):
        super().__init__(keys=label_key)
        self.head, self.n_names, self.size = head, n_names, size  # size: the maps' side (0: the label's)
        self.replay_known = [True] * n_names if replay_known is None else list(replay_known)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            classes = torch.as_tensor(d[key])[None].float()
            if self.size:
                classes = F.interpolate(classes, size=(self.size, self.size), mode="nearest")
            classes = classes[0, 0].round().long().numpy()
            maps = all_heatmap_targets(classes, self.n_names, self.head)
            known = [bool(k) for k in d.pop("known", self.replay_known)]
            maps.reshape(self.n_names, -1, *maps.shape[-2:])[~np.asarray(known, bool)] = -1
            d[key] = torch.from_numpy(maps)
        return d


class KnownOnlyd(MapTransform):
    """For metrics: where a target is -1 (a name the sample says nothing about), the prediction and
    the target both become 0, so they count as agreeing."""

    def __init__(self, pred_key: str = "pred", label_key: str = "label"):
        super().__init__(keys=[pred_key, label_key])
        self.pred_key, self.label_key = pred_key, label_key

    def __call__(self, data):
        d = dict(data)
        unknown = torch.as_tensor(d[self.label_key]) < 0
        if unknown.any():
            d[self.pred_key] = torch.where(unknown, torch.zeros_like(d[self.pred_key]), d[self.pred_key])
            d[self.label_key] = torch.where(unknown, torch.zeros_like(d[self.label_key]), d[self.label_key])
        return d
