"""Label names the clients show, and the structures held out of training for honest evaluation.

The names and values are the AAL atlas's own (mricron-data's aal.nii.txt), 116 hand-drawn
structures on the Colin27 T1 grid.
"""

import json
import os

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
