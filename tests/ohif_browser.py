"""The annotation workflow in a real browser: OHIF (bundled with MONAI Label) over Orthanc.

    python tests/ohif_browser.py --out runs/ohif_browser

It runs itself in a private network namespace (Orthanc cannot choose its listen address). It starts Orthanc
with the sample's ch2bet volume as a DICOM MR series, the app on it at 127.0.0.1:8000 (the address
OHIF's MONAI Label panel connects to by default), and Debian's headless Chromium through Playwright,
then does what an annotator does:
  1. the study list shows the sample; 2. the study opens in OHIF's MONAI Label mode; 3. the panel
  connects and lists ``pemed`` and the structures; 4. a structure is chosen and a click placed on it
  (Run), and the mask comes back and is drawn where the click was; 5. a correcting click, placed by
  the project's click protocol where the mask is most wrong, is sent with the first one; then a
  second structure on the same slice gets its own mask, and the first keeps its own;
  6. the drawn labelmap (both structures) is saved as a final label, written to Orthanc as DICOM SEG,
  read back from Orthanc by a fresh DICOMweb datastore (what training reads), and schedules
  fine-tuning; a SEG that another client stores straight to Orthanc schedules fine-tuning too;
  7. Curriculum Prompting runs from the Auto-Segmentation section on the whole volume, and a PE-MED
  click on its errors corrects it (starting from the automatic mask).
OHIF 3.10's MONAI Label panel has no save button (its client's ``save_label`` is never called), so
step 6 sends the labelmap OHIF holds the way that client's ``save_label`` does, from the page.
Screenshots of each step and report.json go to --out; the exit code is 1 if any check fails.
"""

import argparse
import json
import os
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
from conftest import write_untrained_automatic_models  # noqa: E402
from lib.local_server import LocalServer, copy_app  # noqa: E402
from lib.prompts.clicks import next_eval_click  # noqa: E402
from orthanc import Orthanc, run_in_private_network, upload_volume  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
STRUCTURE, VALUE, SLICE = "Thalamus_L", 77, 80  # AAL's left thalamus on an axial slice where it is large
SECOND, SECOND_VALUE = "Putamen_L", 73  # a second structure on the same slice
AUTO, AUTO_VALUE = "Caudate_L", 71  # the automatic task's structure, clicked nowhere before step 7

# index [i, j, k] of OHIF's volume -> canvas position in the axial viewport
JS_CANVAS = """([i, j, k]) => {
  const vp = window.cornerstone.getRenderingEngines()[0].getViewport('mpr-axial');
  return vp.worldToCanvas(vp.getImageData().imageData.indexToWorld([i, j, k]));
}"""
# show slice k in the axial viewport (OHIF counts its slices from either end)
JS_SHOW_SLICE = """async (ijk) => {
  const vp = window.cornerstone.getRenderingEngines()[0].getViewport('mpr-axial');
  const want = vp.getImageData().imageData.indexToWorld(ijk);
  for (const index of [ijk[2], vp.getNumberOfSlices() - 1 - ijk[2]]) {
    await window.cornerstone.utilities.jumpToSlice(vp.element, {imageIndex: index});
    const cam = vp.getCamera();
    const d = [0, 1, 2].reduce((s, a) => s + (cam.focalPoint[a] - want[a]) * cam.viewPlaneNormal[a], 0);
    if (Math.abs(d) < 0.5) return index;
  }
  return -1;
}"""
JS_ACTIVE_TOOL = """() => {
  const engine = window.cornerstone.getRenderingEngines()[0];
  return window.cornerstoneTools.ToolGroupManager.getToolGroupForViewport('mpr-axial', engine.id)
    .getActivePrimaryMouseButtonTool();
}"""
JS_PROBE_POINTS = """() => window.cornerstoneTools.annotation.state.getAnnotationManager()
  .getNumberOfAllAnnotations()"""
# zoom the axial viewport in on a voxel, for a close look at the mask
JS_ZOOM = """([i, j, k]) => {
  const vp = window.cornerstone.getRenderingEngines()[0].getViewport('mpr-axial');
  const world = vp.getImageData().imageData.indexToWorld([i, j, k]);
  const cam = vp.getCamera();
  const shift = [0, 1, 2].map(a => world[a] - cam.focalPoint[a]);
  const dot = shift.reduce((s, v, a) => s + v * cam.viewPlaneNormal[a], 0);
  const inPlane = shift.map((v, a) => v - dot * cam.viewPlaneNormal[a]);
  vp.setCamera({focalPoint: cam.focalPoint.map((v, a) => v + inPlane[a]),
                position: cam.position.map((v, a) => v + inPlane[a]), parallelScale: cam.parallelScale / 3});
  vp.render();
}"""
JS_RESET_ZOOM = """() => {
  const vp = window.cornerstone.getRenderingEngines()[0].getViewport('mpr-axial');
  vp.resetCamera();
  vp.render();
}"""
# the labelmap OHIF draws, as its value at one voxel
JS_LABELMAP_AT = """([i, j, k]) => {
  const vol = window.services.segmentationService.getLabelmapVolume('1');
  const [nx, ny] = vol.dimensions;
  return vol.voxelManager.getCompleteScalarDataArray()[i + nx * (j + ny * k)];
}"""
# save OHIF's labelmap as MONAI Label's OHIF client does (PUT /datastore/label, 'label.bin')
JS_SAVE = """async (image) => {
  const seg = window.services.segmentationService;
  const data = seg.getLabelmapVolume('1').voxelManager.getCompleteScalarDataArray();
  const segments = seg.getSegmentation('1').segments;
  const values = [...new Set(data)].filter(v => v > 0).sort((a, b) => a - b);
  const form = new FormData();
  form.append('params', JSON.stringify({label_info: values.map(v => ({name: segments[v].label}))}));
  form.append('label', new Blob([new Uint8Array(data)]), 'label.bin');
  const r = await fetch('/datastore/label?image=' + encodeURIComponent(image), {method: 'PUT', body: form});
  return [r.status, await r.text()];
}"""


class Report:
    def __init__(self, out: str):
        self.out, self.checks, self.figures = out, [], {}

    def check(self, name: str, ok: bool, detail="") -> bool:
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}", flush=True)
        return bool(ok)

    def save(self) -> bool:
        passed = all(c["ok"] for c in self.checks)
        with open(os.path.join(self.out, "report.json"), "w") as f:
            json.dump({"passed": passed, "checks": self.checks, "figures": self.figures}, f, indent=2)
        return passed


def read_nrrd(content: bytes) -> np.ndarray:
    import SimpleITK as sitk

    with tempfile.NamedTemporaryFile(suffix=".nrrd") as f:
        f.write(content)
        f.flush()
        return sitk.GetArrayFromImage(sitk.ReadImage(f.name)).transpose()  # (x, y, z)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def form_params(body: bytes) -> dict:
    """The JSON 'params' field of a multipart/form-data request body."""
    part = body.split(b'name="params"', 1)[1]
    return json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0])


def visible(page, text: str):
    """The visible element showing exactly ``text`` (the Auto-Segmentation tab lists its labels too)."""
    return page.get_by_text(text, exact=True).filter(visible=True).first


def add_point(page, voxel, label: str) -> None:
    """Choose ``label`` in the panel and click ``voxel`` in the axial viewport (a probe point)."""
    visible(page, label).click()
    time.sleep(1)  # the panel switches the probe tool to this structure
    tool = page.evaluate(JS_ACTIVE_TOOL)
    if tool != "ProbeMONAILabel":
        raise RuntimeError(f"OHIF's active tool is {tool}, not MONAI Label's probe")
    box = page.locator("[data-viewport-uid='mpr-axial'] canvas").bounding_box()
    x, y = page.evaluate(JS_CANVAS, [int(v) for v in voxel])
    # Cornerstone's probe tool places its point from a hover then a press, not from a synthetic tap;
    # a press that lands while the viewport re-renders is lost, so it is repeated until a point appears
    points = page.evaluate(JS_PROBE_POINTS)
    for _ in range(3):
        page.mouse.move(box["x"] + x, box["y"] + y)
        time.sleep(0.3)
        page.mouse.down()
        time.sleep(0.2)
        page.mouse.up()
        time.sleep(0.5)
        if page.evaluate(JS_PROBE_POINTS) > points:
            break
    else:
        raise RuntimeError(f"no probe point appeared at {list(voxel)}")


def place_click(page, voxel, label: str, report: Report, shot: str, run_as: str = ""):
    """A probe point of ``label`` at ``voxel``, then Run (with ``run_as`` chosen first, when given: OHIF
    sends the chosen structure's points as the foreground and the "background" points as the
    background, and needs at least one of the structure's); the answer."""
    add_point(page, voxel, label)
    if run_as:
        visible(page, run_as).click()
        time.sleep(1)
    page.screenshot(path=os.path.join(report.out, "before_" + shot))
    with page.expect_response(lambda r: "/infer/pemed" in r.url, timeout=120000) as answer:
        # a click event on the button itself: a pointer press there would first reach Cornerstone's
        # tool listeners and drop the probe point
        page.locator("button[title='Run PointPrompts']").dispatch_event("click")
    response = answer.value
    params = form_params(response.request.post_data_buffer)
    time.sleep(2)  # OHIF redraws the labelmap
    page.screenshot(path=os.path.join(report.out, shot))
    return response, params


def run(args) -> bool:
    report = Report(args.out)
    try:
        annotate(args, report)
    except Exception as e:  # a step that could not run is a failed check, with the report kept
        report.check("every step ran", False, f"{type(e).__name__}: {e}")
    return report.save()


def annotate(args, report: Report) -> None:
    from playwright.sync_api import sync_playwright

    work = tempfile.mkdtemp(prefix="ohif_browser_")
    truth = np.asanyarray(nib.load(args.labels).dataobj) == VALUE
    os.environ["MONAI_LABEL_DICOMWEB_CACHE_PATH"] = os.path.join(work, "cache")
    with Orthanc(os.path.join(work, "orthanc")) as orthanc:
        series = upload_volume(orthanc.dicomweb, args.volume)
        study = orthanc.series()[0]["0020000D"]["Value"][0]
        app = copy_app(os.path.join(work, "app"), args.checkpoint)
        conf = {"pemed_train_quiet_s": "2", "pemed_seg_poll_s": "2", "auto_labels": AUTO}
        if not os.path.exists(os.path.join(app, "model", "curriculum_edges.pt")):  # no trained automatic models here
            conf.update(write_untrained_automatic_models(os.path.join(app, "model"), [AUTO]))
            conf["curriculum_min_score"] = "0"
        with LocalServer(app, orthanc.dicomweb, os.path.join(args.out, "server.log"), port=8000,
                         conf=conf) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--use-gl=swiftshader",
                                                                         "--enable-unsafe-swiftshader"])
            page = browser.new_page(viewport={"width": 1900, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            console = open(os.path.join(args.out, "console.log"), "w")
            page.on("console", lambda m: console.write(f"{m.type}: {m.text}\n"))

            page.goto(f"{server.url}/ohif/", wait_until="networkidle", timeout=120000)
            page.get_by_text("PEMED-SAMPLE").first.wait_for(timeout=60000)
            page.screenshot(path=os.path.join(args.out, "1_study_list.png"))
            report.check("study list shows the sample from Orthanc", page.get_by_text("PEMED-SAMPLE").count() > 0)

            page.goto(f"{server.url}/ohif/monai-label?StudyInstanceUIDs={study}&SeriesInstanceUIDs={series}",
                      wait_until="networkidle", timeout=120000)
            page.locator("[data-viewport-uid='mpr-axial'] canvas").wait_for(timeout=60000)
            time.sleep(5)
            if page.get_by_text("Confirm and Hide").count():
                page.get_by_text("Confirm and Hide").click()
            page.screenshot(path=os.path.join(args.out, "2_viewer.png"))

            page.locator("#monailabelServerURL").locator("xpath=../..").locator("button").click()
            page.get_by_text("Connected to MONAI Label").first.wait_for(timeout=60000)
            page.get_by_text("Point Prompts").click()
            visible(page, STRUCTURE).wait_for(timeout=60000)
            time.sleep(1)
            models = page.locator("button[title='Run PointPrompts']").locator("xpath=ancestor::table[1]//option").all_inner_texts()
            page.screenshot(path=os.path.join(args.out, "3_panel_connected.png"))
            report.check("panel lists pemed and the structures", any(m.strip() == "pemed" for m in models), str(models))

            z = SLICE
            inside = ndimage.distance_transform_edt(truth[:, :, z])
            first = np.unravel_index(int(np.argmax(inside)), inside.shape) + (z,)
            report.check("axial viewport shows the slice", page.evaluate(JS_SHOW_SLICE, [int(v) for v in first]) >= 0)
            t0 = time.perf_counter()
            response, params = place_click(page, first, STRUCTURE, report, "4_first_click.png")
            report.figures["first_click_round_trip_s_incl_first_image_fetch"] = round(time.perf_counter() - t0, 2)
            mask = read_nrrd(response.body()) > 0
            report.check("OHIF sent the click at the chosen voxel",
                         params.get("foreground") == [list(map(int, first))], f"{params.get('foreground')} vs {list(first)}")
            report.check("the answer is compressed on the wire", response.headers.get("content-encoding") == "gzip")
            d1 = dice(mask[:, :, z], truth[:, :, z])
            report.figures["dice_after_1_click"] = round(d1, 3)
            report.check("the mask covers the click, on that slice only",
                         mask[first] and not np.delete(mask, z, axis=2).any(), f"slice Dice {d1:.3f}")
            drawn = page.evaluate(JS_LABELMAP_AT, [int(v) for v in first])
            report.check("OHIF draws the segmentation where the click was", drawn > 0, f"labelmap value {drawn}")

            click = next_eval_click(truth[:, :, z], mask[:, :, z])
            if report.check("the click protocol finds an error to correct", click is not None):
                second = (click.row, click.col, z)
                label = STRUCTURE if click.positive else "background"
                response, params = place_click(page, second, label, report, "5_correcting_click.png")
                corrected = read_nrrd(response.body()) > 0
                d2 = dice(corrected[:, :, z], truth[:, :, z])
                report.figures["dice_after_2_clicks"] = round(d2, 3)
                sent = len(params.get("foreground", [])) + len(params.get("background", []))
                report.check("both clicks sent, the correction honoured",
                             sent == 2 and bool(corrected[second]) == click.positive,
                             f"{'positive' if click.positive else 'negative'} click at {list(second)}, slice Dice "
                             f"{d2:.3f}; sent {params.get('foreground')} / {params.get('background')}")

            other_truth = np.asanyarray(nib.load(args.labels).dataobj) == SECOND_VALUE
            inside = ndimage.distance_transform_edt(other_truth[:, :, z])
            third = np.unravel_index(int(np.argmax(inside)), inside.shape) + (z,)
            response, params = place_click(page, third, SECOND, report, "5b_second_structure.png")
            other = read_nrrd(response.body()) > 0
            report.figures["second_structure_dice_after_1_click"] = round(dice(other[:, :, z], other_truth[:, :, z]), 3)
            values = [page.evaluate(JS_LABELMAP_AT, [int(v) for v in p]) for p in (first, third)]
            report.check("a second structure on the slice keeps apart",
                         params.get("foreground") == [list(map(int, third))] and other[third] and not other[first]
                         and values[0] > 0 and values[1] > 0 and values[0] != values[1],
                         f"sent {params.get('foreground')}, labelmap values {values}")
            drawn_mask = (corrected if click else mask) | other

            page.evaluate(JS_ZOOM, [int(v) for v in first])
            time.sleep(1)
            page.locator("[data-viewport-uid='mpr-axial']").screenshot(path=os.path.join(args.out, "5_zoomed.png"))

            status, text = page.evaluate(JS_SAVE, series)
            report.check("the drawn labels save as one final label", status == 200, text[:300])
            segs = orthanc.series("SEG")
            report.check("a DICOM SEG of it is in Orthanc", len(segs) == 1, f"{len(segs)} SEG series")
            readback = read_back_labels(orthanc.dicomweb, os.path.join(work, "fresh_cache"))
            saved = readback.get(series)
            kinds = 0 if saved is None else len(np.unique(saved[saved > 0]))
            report.check("a fresh DICOMweb datastore reads the SEG back, both structures (what training reads)",
                         saved is not None and kinds == 2 and dice(saved > 0, drawn_mask) > 0.99,
                         f"{0 if saved is None else int((saved > 0).sum())} voxels, {kinds} values")
            deadline = time.monotonic() + 60
            info = {}
            while time.monotonic() < deadline:
                info = requests.get(f"{server.url}/info/", timeout=10).json().get("continual_training", {})
                if info.get("runs_started", 0) >= 1:
                    break
                time.sleep(2)
            report.check("saving scheduled fine-tuning", info.get("runs_started", 0) >= 1, json.dumps(info))
            page.screenshot(path=os.path.join(args.out, "6_saved.png"))

            # another client (OHIF's own SEG export, a PACS) stores a SEG straight to Orthanc
            before = requests.get(f"{server.url}/info/", timeout=10).json()["continual_training"]
            store_copy_of_seg(orthanc.dicomweb, segs[0])
            deadline, info = time.monotonic() + 60, before
            while time.monotonic() < deadline:
                info = requests.get(f"{server.url}/info/", timeout=10).json()["continual_training"]
                if info["saves_waiting"] + info["runs_started"] > before["saves_waiting"] + before["runs_started"]:
                    break
                time.sleep(2)
            report.check("a SEG stored in Orthanc by another client schedules fine-tuning",
                         info["saves_waiting"] + info["runs_started"] > before["saves_waiting"] + before["runs_started"],
                         f"before {before}, after {info}")
            automatic_then_correct(page, server.url, series, np.asanyarray(nib.load(args.labels).dataobj) == AUTO_VALUE,
                                   report)
            report.check("no uncaught error in the page", not errors, "; ".join(errors)[:500])
            browser.close()
    shutil.rmtree(work, ignore_errors=True)


def automatic_then_correct(page, url: str, series: str, truth: np.ndarray, report: Report) -> None:
    """7. Curriculum Prompting from OHIF's Auto-Segmentation section (no clicks: the whole volume, the
    task's default structure), then a PE-MED click on its errors on one slice: PE-MED starts from the
    automatic mask there, so its answer is nearer the automatic mask than the answer to the same
    clicks from a fresh start (asked for over HTTP as another client)."""
    page.get_by_text("Auto-Segmentation", exact=True).click()
    run = page.locator("button[title='Run Segmentation']")
    run.locator("xpath=ancestor::table[1]//select").select_option("curriculum")
    t0 = time.perf_counter()
    with page.expect_response(lambda r: "/infer/curriculum" in r.url, timeout=600000) as answer:
        run.dispatch_event("click")
    response = answer.value
    report.figures["curriculum_whole_volume_round_trip_s"] = round(time.perf_counter() - t0, 2)
    time.sleep(3)  # OHIF draws the labelmap
    page.screenshot(path=os.path.join(report.out, "7_curriculum.png"))
    auto = read_nrrd(response.body()) > 0 if response.status == 200 else np.zeros(truth.shape, bool)
    areas = auto.sum(axis=(0, 1))
    # of the slices where the mask finds part of the structure, the one whose mask is most like an
    # object (a tenth of the slice), whatever models are served
    found = (auto & truth).any(axis=(0, 1))
    z = int(np.argmin(np.where(found, np.abs(areas / (auto.shape[0] * auto.shape[1]) - 0.1), np.inf)))
    report.figures["curriculum_dice_3d"] = round(dice(auto, truth), 3)
    if not report.check("curriculum answers with a mask that finds the structure, no click given",
                        response.status == 200 and found[z], f"status {response.status}, {int(auto.sum())} voxels"):
        return
    inside = tuple(int(v) for v in np.argwhere(auto[:, :, z])[0]) + (z,)
    report.check("OHIF draws the automatic segmentation", page.evaluate(JS_LABELMAP_AT, list(inside)) > 0)
    page.get_by_text("Point Prompts").click()
    page.evaluate(JS_RESET_ZOOM)  # step 5 zoomed in on the first structure
    report.check("axial viewport shows the automatic mask's slice", page.evaluate(JS_SHOW_SLICE, list(inside)) >= 0)
    click = next_eval_click(truth[:, :, z], auto[:, :, z])
    if click is None:
        return
    at = (click.row, click.col, z)
    kept_point = None
    if not click.positive:  # OHIF sends a structure's points only with one of its own: one where the mask is right
        right = ndimage.distance_transform_edt(auto[:, :, z] & truth[:, :, z])
        if right.max() > 0:
            kept_point = np.unravel_index(int(np.argmax(right)), right.shape) + (z,)
            add_point(page, kept_point, AUTO)
    response, params = place_click(page, at, AUTO if click.positive else "background", report, "8_corrected.png",
                                   AUTO)
    corrected = read_nrrd(response.body()) > 0
    fresh_params = {k: params.get(k, []) for k in ("foreground", "background")}
    fresh_params.update(client_id="fresh-start", start_from="none", result_extension=".nrrd", result_dtype="uint8",
                        result_compress=False)
    fresh = requests.post(f"{url}/infer/pemed?image={series}&output=image",
                          files={"params": (None, json.dumps(fresh_params))}, timeout=120)
    fresh = read_nrrd(fresh.content) > 0
    kept, kept_fresh = dice(corrected[:, :, z], auto[:, :, z]), dice(fresh[:, :, z], auto[:, :, z])
    report.figures["pemed_after_curriculum_slice_dice_to_automatic"] = round(kept, 3)
    report.figures["pemed_fresh_start_slice_dice_to_automatic"] = round(kept_fresh, 3)
    report.check("a PE-MED click corrects the automatic mask (starts from it, honours the click)",
                 kept > kept_fresh and bool(corrected[at]) == click.positive,
                 f"{'positive' if click.positive else 'negative'} click at {list(at)}"
                 f"{f' with a positive one at {list(kept_point)}' if kept_point else ''}; sent {params.get('foreground')}"
                 f" / {params.get('background')}; Dice to the automatic mask {kept:.3f}, from a fresh start {kept_fresh:.3f}")


def store_copy_of_seg(dicomweb: str, seg_series: dict) -> None:
    """Store a copy of a SEG series under new UIDs, as a client other than the app would."""
    from dicomweb_client.api import DICOMwebClient
    from pydicom.uid import generate_uid

    client = DICOMwebClient(url=dicomweb)
    study, series = seg_series["0020000D"]["Value"][0], seg_series["0020000E"]["Value"][0]
    copies = []
    new_series = generate_uid()
    for ds in client.retrieve_series(study, series):
        ds.SeriesInstanceUID, ds.SOPInstanceUID = new_series, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        copies.append(ds)
    client.store_instances(copies)


def read_back_labels(dicomweb: str, cache: str) -> dict:
    """{image series: label array} as MONAI Label's DICOMweb datastore builds its datalist from SEGs."""
    from monailabel.datastore.dicom import DICOMwebClientX, DICOMWebDatastore

    client = DICOMwebClientX(url=dicomweb, session=None, qido_url_prefix=None, wado_url_prefix=None,
                             stow_url_prefix=None)
    store = DICOMWebDatastore(client=client, search_filter={"Modality": "MR"}, cache_path=cache)
    from monai.transforms import LoadImage

    return {os.path.basename(item["image"]).split(".nii")[0]: np.asarray(LoadImage(image_only=True)(item["label"]))
            for item in store.datalist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--volume", default="/usr/share/mricron/templates/ch2bet.nii.gz")
    parser.add_argument("--labels", default="/usr/share/mricron/templates/aal.nii.gz")
    parser.add_argument("--checkpoint", default=os.path.join(ROOT, "apps", "pemed", "model", "pemed.pt"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    run_in_private_network()
    sys.exit(0 if run(args) else 1)


if __name__ == "__main__":
    main()
