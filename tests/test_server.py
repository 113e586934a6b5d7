"""End to end: `monailabel start_server --app apps/pemed` on 127.0.0.1, clicks through the
MONAILabelClient (what the 3D Slicer module uses) and over raw HTTP, bad requests answered with 4xx."""

import json
import os
import shutil
import time

import nibabel as nib
import numpy as np
import pytest
import requests

from conftest import APP_DIR, MRICRON, served_app, write_nifti
from lib.local_server import LocalServer


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("e2e")
    app = served_app(str(root / "app"), tiny_checkpoint)
    studies = root / "studies"
    if os.path.exists(os.path.join(MRICRON, "aal.nii.gz")):
        os.makedirs(studies / "labels" / "final")
        shutil.copy(os.path.join(MRICRON, "ch2bet.nii.gz"), studies / "ch2bet.nii.gz")
        shutil.copy(os.path.join(MRICRON, "aal.nii.gz"), studies / "labels" / "final" / "ch2bet.nii.gz")
    else:
        label = np.zeros((64, 64, 20), np.int16)
        label[20:40, 25:45, 5:15] = 77
        write_nifti(str(studies / "ch2bet.nii.gz"), 50 + 100 * (label > 0) + np.random.rand(*label.shape))
        write_nifti(str(studies / "labels" / "final" / "ch2bet.nii.gz"), label, np.int16)
    # the publishing machinery is what these tests check: the gate's verdict on a tiny network is a coin toss
    with LocalServer(app, str(studies), str(root / "server.log"), conf={"pemed_publish_gate": "off"}) as srv:
        yield {"url": srv.url, "studies": studies, "proc": srv.proc}


def structure_click(studies, value=77, axis=2):
    """The voxel of the Thalamus_L (AAL 77) farthest from its boundary on its largest axial slice."""
    from scipy import ndimage

    label = np.asanyarray(nib.load(str(studies / "labels" / "final" / "ch2bet.nii.gz")).dataobj)
    mask = label == value
    z = int(np.argmax(mask.sum(axis=(0, 1))))
    dt = ndimage.distance_transform_edt(mask[:, :, z])
    x, y = np.unravel_index(int(np.argmax(dt)), dt.shape)
    return [int(x), int(y), z], mask


def test_info_lists_the_task_and_labels(server):
    info = requests.get(f"{server['url']}/info/", timeout=10).json()
    assert info["models"]["pemed"]["type"] == "deepgrow"
    assert info["models"]["pemed"]["labels"]["Thalamus_L"] == 77 and "pemed" in info["trainers"]
    # OHIF's panel appends to the app's labels: a list, in value order
    assert isinstance(info["labels"], list) and info["labels"][:2] == ["Precentral_L", "Precentral_R"]
    assert info["continual_training"] == {"enabled": True, "saves_waiting": 0, "runs_started": 0, "last_error": ""}


def test_clicks_through_the_slicer_client(server, tmp_path):
    from monailabel.client import MONAILabelClient

    click, mask = structure_click(server["studies"])
    client = MONAILabelClient(server["url"], tmpdir=str(tmp_path))
    out_file, params = client.infer("pemed", "ch2bet", {"foreground": [click], "background": [], "label": "Thalamus_L",
                                                        "reset_state": True})
    result = np.asanyarray(nib.load(out_file).dataobj)
    assert result.shape == mask.shape
    z = click[2]
    assert result[click[0], click[1], z] == 1  # the clicked voxel is in the mask
    others = np.delete(result, z, axis=2)
    assert others.sum() == 0  # only the clicked slice is filled
    assert params["slice"] == z and params["steps_run"] == 1 and "self_loop_ms" in params["timings_ms"]


def test_raw_http_session_continues_and_resets(server):
    click, _ = structure_click(server["studies"])
    away = [click[0] + 25, click[1], click[2]]
    url = f"{server['url']}/infer/pemed?image=ch2bet&output=json"

    def post(params):
        r = requests.post(url, files={"params": (None, json.dumps(params))}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    first = post({"foreground": [click], "background": [], "label": "raw", "reset_state": True})
    second = post({"foreground": [click], "background": [away], "label": "raw"})
    assert first["steps_run"] == 1 and second["steps_run"] == 1 and second["clicks"] == 2
    assert "self_loop_ms" not in second["timings_ms"]  # the session continued from the first click
    again = post({"foreground": [click], "background": [away], "label": "raw", "reset_state": True})
    assert again["steps_run"] == 2


def test_sessions_are_kept_per_client(server):
    """Two clients on the same image, slice and label: neither continues nor rewinds the other's state."""
    click, _ = structure_click(server["studies"])
    away = [click[0] + 25, click[1], click[2]]
    url = f"{server['url']}/infer/pemed?image=ch2bet&output=json"

    def post(client_id, background):
        params = {"foreground": [click], "background": background, "label": "shared", "client_id": client_id}
        r = requests.post(url, files={"params": (None, json.dumps(params))}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    post("a", [])
    a = post("a", [away])
    b = post("b", [])  # for one shared session this would be an undo of a's second click
    again = post("a", [away])
    assert a["steps_run"] == 1 and b["steps_run"] == 1 and b["clicks"] == 1
    assert again["steps_run"] == 0 and again["clicks"] == 2  # a's session is as a left it
    r = requests.post(url, files={"params": (None, json.dumps({"foreground": [click], "client": "a"}))}, timeout=30)
    assert r.status_code == 400 and "client" in r.json()["detail"]


def ohif_request(server, params):
    """A click as OHIF's MONAI Label panel sends it (output=image, NRRD as uint8, no label); returns
    the answer's size on the wire and its inflated bytes."""
    import gzip

    params = {**params, "result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False,
              "restore_label_idx": False}
    r = requests.post(f"{server['url']}/infer/pemed?image=ch2bet&output=image", stream=True,
                      files={"params": (None, json.dumps(params))}, headers={"Accept-Encoding": "gzip"}, timeout=60)
    assert r.status_code == 200 and r.headers.get("content-encoding") == "gzip"
    wire = r.raw.read(decode_content=False)
    return len(wire), gzip.decompress(wire)


def read_nrrd_bytes(content, tmp_path):
    import SimpleITK as sitk

    path = tmp_path / f"answer{len(list(tmp_path.iterdir()))}.nrrd"
    path.write_bytes(content)
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose()  # back to (x, y, z)


def test_ohif_clicks_come_back_compressed_and_structures_keep_apart(server, tmp_path):
    click, mask = structure_click(server["studies"])
    other, _ = structure_click(server["studies"], value=78)  # Thalamus_R, on the same slice or near it
    other[2] = click[2]
    wire, content = ohif_request(server, {"foreground": [click], "background": []})
    assert wire < len(content) / 20  # a one-slice mask travels compressed
    first = read_nrrd_bytes(content, tmp_path)
    assert first.shape == mask.shape and first[tuple(click)] == 1
    assert np.delete(first, click[2], axis=2).sum() == 0
    # a second structure on the same slice: OHIF sends only its clicks, and no label
    second = read_nrrd_bytes(ohif_request(server, {"foreground": [other], "background": []})[1], tmp_path)
    assert second[tuple(other)] == 1
    # back to the first: its click is re-sent with a new one, and only the new one runs
    away = [click[0] + 25, click[1], click[2]]
    url = f"{server['url']}/infer/pemed?image=ch2bet&output=json"
    r = requests.post(url, files={"params": (None, json.dumps({"foreground": [click], "background": [away]}))},
                      timeout=60)
    assert r.status_code == 200 and r.json()["steps_run"] == 1 and r.json()["clicks"] == 2


@pytest.mark.parametrize("image,params,status,words", [
    ("ch2bet", {"foreground": [[5000, 1, 1]]}, 400, "outside the image"),
    ("ch2bet", {"foreground": [], "background": []}, 400, "no clicks"),
    ("ch2bet", {"foreground": [[1, 2]]}, 400, "3 numbers"),
    ("ch2bet", {"foreground": "middle"}, 400, "list of"),
    ("ch2bet", {"foreground": [[10, 10, 10]], "slice": 11}, 400, "no click lies on slice"),
    ("ch2bet", {"foreground": [[10, 10, 10]], "axis": "sideways"}, 400, "'axis' must be an integer"),
    ("ch2bet", {"foreground": [[10, 10, 10]], "axis": 5}, 400, "'axis' must be 0, 1 or 2"),
    ("no_such_image", {"foreground": [[1, 1, 1]]}, 404, "unknown image"),
])
def test_bad_requests_get_clear_4xx(server, image, params, status, words):
    r = requests.post(f"{server['url']}/infer/pemed?image={image}&output=json",
                      files={"params": (None, json.dumps(params))}, timeout=30)
    assert r.status_code == status and words in r.json()["detail"], r.text


def test_malformed_params_unknown_model_and_corrupt_upload(server, tmp_path):
    base = server["url"]
    r = requests.post(f"{base}/infer/pemed?image=ch2bet", files={"params": (None, "{not json")}, timeout=30)
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
    r = requests.post(f"{base}/infer/nomodel?image=ch2bet", files={"params": (None, "{}")}, timeout=30)
    assert r.status_code == 404 and "unknown model" in r.json()["detail"]
    corrupt = tmp_path / "broken.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b this is not a nifti file")
    r = requests.post(f"{base}/infer/pemed?output=json", files={"params": (None, json.dumps({"foreground": [[1, 1, 1]]})),
                                                                 "file": ("broken.nii.gz", open(corrupt, "rb"))}, timeout=30)
    assert r.status_code == 422 and "cannot read image" in r.json()["detail"]
    # ... and the server keeps serving
    assert requests.get(f"{base}/info/", timeout=10).status_code == 200
    assert server["proc"].poll() is None


def test_a_2d_slice_uploaded_as_a_file(server, tmp_path):
    from monailabel.client import MONAILabelClient

    volume = nib.load(str(server["studies"] / "ch2bet.nii.gz"))
    click, _ = structure_click(server["studies"])
    slice_path = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(volume.dataobj)[:, :, click[2]].astype(np.float32), np.eye(4)), str(slice_path))
    client = MONAILabelClient(server["url"], tmpdir=str(tmp_path))
    out_file, params = client.infer("pemed", "", {"foreground": [click[:2]], "background": []}, file=str(slice_path))
    result = np.asanyarray(nib.load(out_file).dataobj)
    assert result.shape == volume.shape[:2] and result[click[0], click[1]] == 1
    assert params["axis"] is None


def test_training_in_the_server_publishes_a_finetuned_model(server):
    base = server["url"]
    r = requests.post(f"{base}/train/pemed?run_sync=true", json={"max_epochs": 1, "train_batch_size": 2,
                                                                 "val_batch_size": 2, "device": "cpu"}, timeout=600)
    assert r.status_code == 200, r.text
    assert r.json()["total_epochs"] == 1
    app_model = server["studies"].parent / "app" / "model" / "pemed_finetuned.pt"
    assert app_model.exists()
    click, _ = structure_click(server["studies"])
    r = requests.post(f"{base}/infer/pemed?image=ch2bet&output=json",
                      files={"params": (None, json.dumps({"foreground": [click], "reset_state": True}))}, timeout=60)
    assert r.status_code == 200 and r.json()["foreground_pixels"] > 0


def test_a_saved_label_fine_tunes_the_served_model_without_a_train_call(tmp_path, tiny_checkpoint):
    """PUT /datastore/label, nobody calls /train: a run starts by itself, trains on the 0/1 mask as drawn
    (value 1 is a held-out AAL value, which the bundled model's training drops), and the new model serves."""
    app = served_app(str(tmp_path / "app"), tiny_checkpoint)
    studies = tmp_path / "studies"
    label = np.zeros((64, 64, 20), np.uint8)
    label[20:40, 25:45, 5:15] = 1
    write_nifti(str(studies / "vol.nii.gz"), 50 + 100 * label + np.random.rand(*label.shape))
    write_nifti(str(tmp_path / "drawn.nii.gz"), label, np.uint8)
    maps = os.path.join(os.path.dirname(APP_DIR), "..", "datasets", "sample", "colin27_maps.npz")
    conf = {"pemed_train_quiet_s": 1, "pemed_train_epochs": 1, "pemed_train_samples": 8, "auto_train": "false",
            "pemed_replay_maps": maps if os.path.exists(maps) else "none", "pemed_publish_gate": "off"}
    with LocalServer(app, str(studies), str(tmp_path / "server.log"), conf=conf) as srv:
        with open(tmp_path / "drawn.nii.gz", "rb") as f:
            r = requests.put(f"{srv.url}/datastore/label?image=vol&tag=final",
                             files={"label": ("drawn.nii.gz", f)}, timeout=30)
        assert r.status_code == 200, r.text
        published = tmp_path / "app" / "model" / "pemed_finetuned.pt"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not published.exists():
            time.sleep(2)
        assert published.exists(), open(tmp_path / "server.log").read()[-3000:]
        info = requests.get(f"{srv.url}/info/", timeout=10).json()
        assert info["continual_training"]["runs_started"] == 1
        import torch

        meta = torch.load(published, weights_only=True)["meta"]
        assert meta["train_mean_dice"] > 0  # the mask was a target, not dropped as empty
        r = requests.post(f"{srv.url}/infer/pemed?image=vol&output=json",
                          files={"params": (None, json.dumps({"foreground": [[30, 35, 10]]}))}, timeout=60)
        assert r.status_code == 200 and r.json()["foreground_pixels"] > 0


def test_ohif_nested_files_are_served_and_paths_stay_inside(server):
    from monailabel.endpoints import ohif

    root = os.path.join(os.path.dirname(ohif.__file__), "static", "ohif")
    icon = os.path.join("assets", "android-chrome-192x192.png")
    r = requests.get(f"{server['url']}/ohif/{icon}", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == open(os.path.join(root, icon), "rb").read()
    index = open(os.path.join(root, "index.html"), "rb").read()
    assert requests.get(f"{server['url']}/ohif/", timeout=10).content == index
    escape = requests.get(f"{server['url']}/ohif/..%2F..%2F..%2Fconfig.py", timeout=10)
    assert escape.content == index  # never a file outside OHIF's folder
