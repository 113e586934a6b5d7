"""Hostile and malformed requests against a running server on 127.0.0.1 (issue 10, part 1).

Hypothesis generates them (derandomized, so CI sees the same ones each run): broken JSON, wrong
types, NaN / infinite / negative / huge coordinates, click lists past the bound, unknown models and
images, path traversal in every id and tag (``../``, absolute, URL-encoded), corrupt uploads
(garbage, truncated NIfTI, a PNG with a broken header, a 4D volume, an all-NaN image, wrong shapes,
values outside the label set) and bodies past the size bound. Passing means: no 5xx, no file
written outside the studies folder, the server still answers ``/info/`` and a correct click, and the
datastore lists what it listed before, apart from the saves it accepted (which must read back as sent).
"""

import gzip
import json
import os
import threading

import nibabel as nib
import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import served_app, write_nifti
from lib.local_server import LocalServer

SHAPE = (48, 40, 12)
MARKER = "pwned"  # every traversal target ends in it: found anywhere afterwards, a write escaped
TRAVERSALS = [f"../../{MARKER}", f"../../../../tmp/{MARKER}", f"/tmp/{MARKER}", f"..%2F..%2F{MARKER}",
              f"%2e%2e%2f%2e%2e%2f{MARKER}", f"labels/../../{MARKER}", f"..\\..\\{MARKER}", "/etc/hostname",
              "../../etc/passwd", ".", "..", "a/b", "", " ", "x" * 300, "ok\x00id", "final/../../x"]
REQUESTS = {"count": 0, "statuses": {}}
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def nifti_bytes(array, dtype=np.int16, truncate=0) -> bytes:
    img = nib.Nifti1Image(np.asarray(array).astype(dtype), np.eye(4))
    raw = gzip.compress(img.to_bytes())
    return raw[: len(raw) - truncate] if truncate else raw


def the_label():
    label = np.zeros(SHAPE, np.int16)
    label[10:30, 12:28, 3:9] = 77
    return label


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("hostile")
    app = served_app(str(root / "app"), tiny_checkpoint)
    studies = root / "studies"
    label = the_label()
    rng = np.random.default_rng(0)
    for name in ("vol_a", "vol_b"):
        write_nifti(str(studies / f"{name}.nii.gz"), 50 + 100 * (label > 0) + rng.random(SHAPE))
    write_nifti(str(studies / "labels" / "final" / "vol_a.nii.gz"), label, np.int16)
    conf = {"pemed_auto_train": "false", "pemed_max_upload_mb": "1", "pemed_seg_poll_s": "0"}
    with LocalServer(app, str(studies), str(root / "server.log"), conf=conf) as srv:
        listing = requests.get(f"{srv.url}/datastore/?output=all", timeout=30).json()
        yield {"url": srv.url, "studies": studies, "root": root, "listing": listing, "accepted": {}}


def send(server, method, path, **kwargs):
    r = requests.request(method, server["url"] + path, timeout=60, **kwargs)
    REQUESTS["count"] += 1
    REQUESTS["statuses"][r.status_code] = REQUESTS["statuses"].get(r.status_code, 0) + 1
    assert r.status_code < 500, f"{method} {path} {str(kwargs)[:300]} -> {r.status_code} {r.text[:500]}"
    return r


# --- what the requests are made of ---------------------------------------------------------------

names = st.sampled_from(TRAVERSALS + ["vol_a", "vol_b", "nosuch", "final", "original", "pemed"])
numbers = st.one_of(st.integers(-10 ** 12, 10 ** 12), st.integers(0, 60),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("nan"), float("inf"), -1, 1e308]))
junk = st.one_of(st.none(), st.booleans(), st.text(max_size=20), st.dictionaries(st.text(max_size=5), st.integers()),
                 numbers)
point = st.one_of(st.lists(numbers, min_size=0, max_size=4), st.lists(junk, max_size=3), junk)
points = st.one_of(st.lists(point, max_size=6), st.lists(st.just([20, 20, 6]), min_size=95, max_size=130), junk)
params = st.one_of(
    st.fixed_dictionaries({}, optional={"foreground": points, "background": points, "label": junk,
                                        "axis": junk, "slice": junk, "reset_state": junk,
                                        "image": names, "model": names}),
    st.text(max_size=40),  # broken JSON, mostly
    st.sampled_from(["[]", "1", "null", '"text"', "NaN", "{", '{"foreground": [[NaN, Infinity, -Infinity]]}',
                     "[" * 5000 + "]" * 5000]),
)


def body_of(value):
    return value if isinstance(value, str) else json.dumps(value, allow_nan=True)


def label_upload(kind: str):
    """(file name, bytes) of one kind of label upload; ``valid`` is the only one that should be saved."""
    label = the_label()
    if kind == "valid":
        return "label.nii.gz", nifti_bytes(label)
    if kind == "garbage":
        return "label.nii.gz", b"garbage"
    if kind == "truncated":
        return "label.nii.gz", nifti_bytes(label, truncate=500)
    if kind == "png_bad_header":
        return "label.png", b"\x89PNX\r\n\x1a\n" + bytes(200)
    if kind == "4d":
        return "label.nii.gz", nifti_bytes(np.stack([label, label], -1))
    if kind == "nan":
        return "label.nii.gz", nifti_bytes(np.full(SHAPE, np.nan), np.float32)
    if kind == "wrong_shape":
        return "label.nii.gz", nifti_bytes(label[:, :, :5])
    if kind == "fractional":
        return "label.nii.gz", nifti_bytes(label * 0.5, np.float32)
    if kind == "outside_label_set":
        return "label.nii.gz", nifti_bytes(np.where(label > 0, 999, 0))
    if kind == "raw_wrong_length":
        return "label.bin", bytes(100)
    if kind == "odd_extension":
        return "label.exe", nifti_bytes(label)
    raise ValueError(kind)


LABEL_KINDS = ["valid", "garbage", "truncated", "png_bad_header", "4d", "nan", "wrong_shape", "fractional",
               "outside_label_set", "raw_wrong_length", "odd_extension"]


# --- the generated requests ----------------------------------------------------------------------

@settings(max_examples=220, **SETTINGS)
@given(model=st.sampled_from(["pemed", "pemed_3d", "nomodel", "..", "pemed%2F..%2F"]), image=names,
       p=params, output=st.sampled_from(["json", "image", "dicom_seg", "all", "bogus", None]))
def test_generated_infer_requests(server, model, image, p, output):
    query = {"image": image}
    if output is not None:
        query["output"] = output
    send(server, "POST", f"/infer/{model}", params=query, files={"params": (None, body_of(p))})


@settings(max_examples=160, **SETTINGS)
@given(image=names, tag=names, kind=st.sampled_from(LABEL_KINDS), p=st.one_of(st.just("{}"), params))
def test_generated_label_saves(server, image, tag, kind, p):
    filename, data = label_upload(kind)
    r = send(server, "PUT", "/datastore/label", params={"image": image, "tag": tag},
             files={"label": (filename, data), "params": (None, body_of(p))})
    if r.status_code == 200:
        server["accepted"][(image, tag or "final")] = data
        assert kind == "valid", f"accepted a {kind} label: {r.text[:300]}"


@settings(max_examples=60, **SETTINGS)
@given(image=names, kind=st.sampled_from(["garbage", "truncated", "png_bad_header", "4d", "nan"]))
def test_generated_image_uploads(server, image, kind):
    filename, data = label_upload(kind)
    if kind == "nan":
        data = nifti_bytes(np.full(SHAPE, np.nan), np.float32)
    elif kind == "4d":
        data = nifti_bytes(np.zeros(SHAPE + (2, 2)), np.float32)
    r = send(server, "PUT", "/datastore/image", params={"image": image}, files={"file": (filename, data)})
    assert r.status_code != 200, f"accepted a {kind} image as {image!r}"


@settings(max_examples=90, **SETTINGS)
@given(route=st.sampled_from([("GET", "/datastore/label", "label"), ("HEAD", "/datastore/label", "image"),
                              ("GET", "/datastore/image", "image"), ("GET", "/datastore/image/info", "image"),
                              ("GET", "/datastore/label/info", "label"), ("DELETE", "/datastore/label", "id"),
                              ("DELETE", "/datastore/image", "id"), ("GET", "/datastore/label/versions", "image"),
                              ("PUT", "/datastore/label/restore", "image")]),
       name=names.filter(lambda n: n not in ("vol_a", "vol_b")), tag=names)
def test_generated_reads_and_deletes(server, route, name, tag):
    method, path, key = route
    send(server, method, path, params={key: name, "tag": tag, "version": name})


def test_bodies_past_the_bound_are_refused(server):
    big = bytes(2 << 20)  # the test server takes 1 MB
    r = send(server, "PUT", "/datastore/label", params={"image": "vol_b"}, files={"label": ("l.nii.gz", big)})
    assert r.status_code == 413

    def chunks():  # no Content-Length: counted as it arrives
        yield b'--x\r\nContent-Disposition: form-data; name="label"; filename="l.nii.gz"\r\n\r\n'
        for _ in range(40):
            yield bytes(64 << 10)

    r = send(server, "PUT", "/datastore/label?image=vol_b", data=chunks(),
             headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413


def test_info_answers_while_a_long_request_runs(server):
    """A request of the most clicks the server takes runs in the thread pool: /info/ answers meanwhile."""
    many = [[int(x), int(y), 6] for x, y in zip(np.linspace(11, 29, 100), np.linspace(13, 27, 100))]
    done = {}

    def long_request():
        r = requests.post(f"{server['url']}/infer/pemed", params={"image": "vol_b", "output": "json"},
                          files={"params": (None, json.dumps({"foreground": many, "reset_state": True}))}, timeout=300)
        done["status"] = r.status_code

    worker = threading.Thread(target=long_request)
    worker.start()
    answered_during = 0
    while worker.is_alive():
        r = requests.get(f"{server['url']}/info/", timeout=30)
        assert r.status_code == 200
        answered_during += worker.is_alive()
    worker.join()
    assert done["status"] == 200
    assert answered_during >= 1, "no /info/ answer came back while the long request ran"


def test_the_server_is_intact_afterwards(server):
    """Runs after the generated requests (pytest keeps file order)."""
    assert REQUESTS["count"] >= 500, REQUESTS
    print(f"\nhostile requests sent: {REQUESTS['count']}, statuses: {sorted(REQUESTS['statuses'].items())}")
    assert requests.get(f"{server['url']}/info/", timeout=30).status_code == 200
    r = requests.post(f"{server['url']}/infer/pemed", params={"image": "vol_a", "output": "json"},
                      files={"params": (None, json.dumps({"foreground": [[20, 20, 6]], "reset_state": True}))},
                      timeout=60)
    assert r.status_code == 200 and r.json()["clicks"] == 1

    # the datastore lists what it did, apart from the accepted saves, which read back as sent
    after = requests.get(f"{server['url']}/datastore/?output=all", timeout=30).json()
    before = server["listing"]
    assert sorted(after["objects"]) == sorted(before["objects"])
    for image, obj in after["objects"].items():
        expected = set(before["objects"][image]["labels"]) | {t for (i, t) in server["accepted"] if i == image}
        assert set(obj["labels"]) == expected, (image, obj["labels"])
    for (image, tag), data in server["accepted"].items():
        r = requests.get(f"{server['url']}/datastore/label", params={"label": image, "tag": tag}, timeout=30)
        assert r.status_code == 200 and r.content == data

    # nothing written outside the studies folder
    escaped = []
    for top in {str(server["root"].parent), "/tmp"}:
        for folder, dirs, files in os.walk(top):
            if folder.count(os.sep) - top.count(os.sep) > 6:
                dirs[:] = []
            escaped += [os.path.join(folder, f) for f in files + dirs if MARKER in f]
    assert not escaped, escaped
