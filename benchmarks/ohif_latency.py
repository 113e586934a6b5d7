"""Click round trip on OHIF's path: a DICOMweb-backed image and OHIF's request parameters.

    python benchmarks/ohif_latency.py --out benchmarks/results/ohif_latency.json

Runs itself in a private network namespace (Orthanc listens on every address it has). Orthanc holds
the sample's ch2bet as a DICOM MR series; the app serves from it. For each of a set of AAL structures,
on its largest axial slice, clicks follow the project's click protocol (next_eval_click on the mask
that came back) and each request is what OHIF's MONAI Label panel sends: output=image, NRRD uint8,
every click of the slice re-sent, no label, gzip accepted. The round trip is timed from sending to
holding the inflated answer, after the image's first request (which fetches the series from Orthanc
and converts it). One answer is also asked for without gzip, for its size.
"""

import argparse
import gzip
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import nibabel as nib
import numpy as np
import requests
from scipy import ndimage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "apps", "pemed"), os.path.join(ROOT, "tools")]
from lib.local_server import LocalServer, copy_app  # noqa: E402
from lib.prompts.clicks import next_eval_click  # noqa: E402
from orthanc import Orthanc, run_in_private_network, upload_volume  # noqa: E402

STRUCTURES = {"Thalamus_L": 77, "Putamen_L": 73, "Caudate_L": 71, "Hippocampus_L": 37, "Frontal_Mid_L": 7,
              "Temporal_Mid_L": 85, "Lingual_L": 47, "Cerebelum_Crus1_L": 91}
OHIF_PARAMS = {"result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False,
               "restore_label_idx": False}


def ohif_click(url: str, series: str, foreground, background, gzip_ok: bool = True):
    """One request as OHIF sends it; returns (seconds, bytes on the wire, mask as (x, y, z))."""
    params = {**OHIF_PARAMS, "foreground": foreground, "background": background}
    t0 = time.perf_counter()
    r = requests.post(f"{url}/infer/pemed?image={series}&output=image", stream=True,
                      files={"params": (None, json.dumps(params))},
                      headers={"Accept-Encoding": "gzip" if gzip_ok else "identity"}, timeout=120)
    wire = r.raw.read(decode_content=False)
    body = gzip.decompress(wire) if r.headers.get("content-encoding") == "gzip" else wire
    seconds = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"{r.status_code}: {body[:300]!r}")
    return seconds, len(wire), read_nrrd(body) > 0


def read_nrrd(content: bytes) -> np.ndarray:
    """An NRRD answer's voxels as (x, y, z), read by ITK."""
    import SimpleITK as sitk

    with tempfile.NamedTemporaryFile(suffix=".nrrd") as f:
        f.write(content)
        f.flush()
        return sitk.GetArrayFromImage(sitk.ReadImage(f.name)).transpose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/ohif_latency.json")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--server-log", help="keep the server's log here")
    parser.add_argument("--volume", default="/usr/share/mricron/templates/ch2bet.nii.gz")
    parser.add_argument("--labels", default="/usr/share/mricron/templates/aal.nii.gz")
    parser.add_argument("--checkpoint", default=os.path.join(ROOT, "apps", "pemed", "model", "pemed.pt"))
    args = parser.parse_args()
    run_in_private_network()

    atlas = np.asanyarray(nib.load(args.labels).dataobj)
    work = tempfile.mkdtemp(prefix="ohif_latency_")
    os.environ["MONAI_LABEL_DICOMWEB_CACHE_PATH"] = os.path.join(work, "cache")
    rows, sizes = [], []
    with Orthanc(os.path.join(work, "orthanc")) as orthanc:
        series = upload_volume(orthanc.dicomweb, args.volume)
        app = copy_app(os.path.join(work, "app"), args.checkpoint)
        with LocalServer(app, orthanc.dicomweb, args.server_log or os.path.join(work, "server.log"),
                         conf={"pemed_auto_train": "false"}) as server:
            for name, value in STRUCTURES.items():
                truth = atlas == value
                z = int(np.argmax(truth.sum(axis=(0, 1))))
                inside = ndimage.distance_transform_edt(truth[:, :, z])
                x, y = np.unravel_index(int(np.argmax(inside)), inside.shape)
                fg, bg = [[int(x), int(y), z]], []
                for k in range(1, args.clicks + 1):
                    seconds, wire, mask = ohif_click(server.url, series, fg, bg)
                    sizes.append(wire)
                    gt = truth[:, :, z]
                    dice = float(2 * (mask[:, :, z] & gt).sum() / (mask[:, :, z].sum() + gt.sum()))
                    rows.append({"structure": name, "slice": z, "click": k, "seconds": round(seconds, 4),
                                 "wire_bytes": wire, "dice": round(dice, 3), "first_of_image": not rows})
                    print(json.dumps(rows[-1]), flush=True)
                    nxt = next_eval_click(gt, mask[:, :, z])
                    if nxt is None:
                        break
                    (fg if nxt.positive else bg).append([int(nxt.row), int(nxt.col), z])
            plain_s, plain_bytes, _ = ohif_click(server.url, series, fg, bg, gzip_ok=False)
    shutil.rmtree(work, ignore_errors=True)

    later = [r["seconds"] for r in rows if not r["first_of_image"]]
    first_clicks = [r["seconds"] for r in rows if r["click"] == 1 and not r["first_of_image"]]
    result = {
        "command": "python benchmarks/ohif_latency.py --clicks %d" % args.clicks,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
                   f"{__import__('torch').get_num_threads()}",
        "requests": len(rows),
        "first_request_of_image_s": rows[0]["seconds"],
        "round_trip_ms_p50": round(1e3 * float(np.median(later)), 1),
        "round_trip_ms_p90": round(1e3 * float(np.percentile(later, 90)), 1),
        "first_click_of_a_slice_ms_p50": round(1e3 * float(np.median(first_clicks)), 1),
        "later_clicks_ms_p50": round(1e3 * float(np.median([r["seconds"] for r in rows if r["click"] > 1])), 1),
        "wire_bytes_p50": int(np.median(sizes)),
        "uncompressed_answer": {"bytes": plain_bytes, "seconds": round(plain_s, 3)},
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
