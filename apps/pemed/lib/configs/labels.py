"""Label names the clients show, and the structures held out of training for honest evaluation.

The names and values are the AAL atlas's own (mricron-data's aal.nii.txt), 116 hand-drawn
structures on the Colin27 T1 grid. The automatic methods also know the lobes, per hemisphere, as
named unions of AAL structures with values of their own (STRUCTURES, parts).
"""

import json
import os
from typing import Dict, Tuple

with open(os.path.join(os.path.dirname(__file__), "aal_labels.json")) as _f:
    AAL_LABELS = {name: int(value) for name, value in json.load(_f).items()}

# Never a training target (nor part of a union target); the evaluation runs on these. Deep grey
# matter, mesial temporal, cortical, insular, occipital and cerebellar structures, both hemispheres.
HELD_OUT = (
    "Hippocampus_L", "Hippocampus_R", "Caudate_L", "Caudate_R", "Putamen_L", "Putamen_R",
    "Thalamus_L", "Thalamus_R", "Precentral_L", "Precentral_R", "Insula_L", "Insula_R",
    "Cuneus_L", "Cuneus_R", "Cerebelum_6_L", "Cerebelum_6_R",
)
HELD_OUT_VALUES = tuple(AAL_LABELS[n] for n in HELD_OUT)

# AAL names by lobe (the AAL paper's grouping); a lobe is the union of its parts.
LOBES = {
    "frontal": ("Precentral", "Frontal_", "Supp_Motor_Area", "Olfactory", "Rectus", "Paracentral_Lobule",
                "Rolandic_Oper"),
    "temporal": ("Temporal_", "Heschl"),
    "parietal": ("Postcentral", "Parietal_", "SupraMarginal", "Angular", "Precuneus"),
    "occipital": ("Occipital_", "Calcarine", "Cuneus", "Lingual", "Fusiform"),
    "limbic": ("Cingulum_", "Hippocampus", "ParaHippocampal", "Amygdala", "Insula"),
    "cerebellum": ("Cerebelum_", "Vermis_"),
}
LOBE_VALUE_BASE = 200  # above every AAL value
# "Temporal_Lobe_L" (and "Cerebellum_L") -> the AAL values of its parts (the vermis, which has no
# side, belongs to neither cerebellar hemisphere)
LOBE_PARTS: Dict[str, Tuple[int, ...]] = {
    ("Cerebellum" if lobe == "cerebellum" else lobe.capitalize() + "_Lobe") + "_" + side:
        tuple(v for n, v in AAL_LABELS.items() if n.startswith(prefixes) and n.endswith("_" + side))
    for lobe, prefixes in LOBES.items() for side in ("L", "R")}
# Every structure the automatic methods can be asked for by name: AAL's and the lobes.
STRUCTURES: Dict[str, int] = {**AAL_LABELS, **{n: LOBE_VALUE_BASE + 1 + i for i, n in enumerate(LOBE_PARTS)}}
_PARTS = {STRUCTURES[n]: p for n, p in LOBE_PARTS.items()}


def parts(value: int) -> Tuple[int, ...]:
    """The AAL values a structure's value stands for: a lobe's parts, or the value itself."""
    return _PARTS.get(int(value), (int(value),))


# The automatic methods' default structures: the held-out ones (small nuclei to gyri) and the two
# temporal lobes, none a part of another.
AUTO_DEFAULT = HELD_OUT + ("Temporal_Lobe_L", "Temporal_Lobe_R")


def structure_values(names) -> Tuple[int, ...]:
    """The values of the named structures, checked: known names, and none a part of another (a
    pixel has one class)."""
    unknown = [n for n in names if n not in STRUCTURES]
    if unknown or not names:
        raise ValueError(f"unknown structure names {unknown}" if unknown else "no structure names")
    values = tuple(STRUCTURES[n] for n in names)
    seen: Dict[int, str] = {}
    for name, value in zip(names, values):
        for p in parts(value):
            if p in seen:
                raise ValueError(f"{name} and {seen[p]} overlap: the automatic methods need disjoint structures")
            seen[p] = name
    return values
