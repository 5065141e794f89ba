"""The whole annotation flow through gradio_client, checked against the exported files.

upload bikes.mp4 -> vocabulary -> pre-label (untrained tiny model) -> scrub -> relabel -> delete
-> merge -> delete a span -> split -> paint a correction -> new track -> copy -> undo/redo ->
export; the exported YouTube-VIS json is decoded with pycocotools and compared with the edits.
"""
from __future__ import annotations

import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

sys.path.insert(0, str(Path(__file__).parent / "ui"))
from apptest import VOCAB, NamedClient, bikes, table_rows  # noqa: E402


def rows_by_id(out: dict) -> dict[int, list]:
    return {int(r[0]): r for r in table_rows(out["tracks"])}


def test_full_flow(app_server, tmp_path):
    from gradio_client import handle_file

    url, studio, home = app_server
    c = NamedClient(url, studio.api)
    out = c.predict("bikes-flow", VOCAB, api_name="/create_project")
    assert "bikes-flow" in out["status"]
    out = c.predict(handle_file(str(bikes())), None, 1, VOCAB, api_name="/add_video")
    assert "10 frames" in out["status"], out["status"]

    # pre-label: progress and the first clip's preview arrive before the end
    job = c.submit(VOCAB, 96, 5, 0, 0.0, 8, api_name="/prelabel")
    seen_progress = False
    while not job.done():
        seen_progress |= any(job.status().progress_data or [])
        time.sleep(0.2)
    res = c.named("prelabel", job.result())
    assert res["status"].startswith("✔ Done"), res["status"]
    assert "UNTRAINED" in res["banner"]
    partial = [c.named("prelabel", o) for o in job.outputs()[:-1]]
    assert any(isinstance(o["status"], str) and "Pre-labelling" in o["status"] for o in partial)
    assert any(isinstance(o["frame_img"], str) and o["frame_img"].endswith((".jpeg", ".jpg", ".png"))
               for o in partial), \
        "the first clip's provisional masks were shown before the run ended"
    assert seen_progress or len(partial) > 1
    rows = {int(r[0]): r for r in table_rows(res["tracks"])}
    assert len(rows) == 8
    ids = sorted(rows)
    a, b, d, e = ids[:4]

    # scrub
    out = c.predict(5, api_name="/scrub")
    img, fig = out["frame_img"], out["timeline"]
    assert Path(img).exists() and "frame 5" in json.dumps(fig)

    # relabel from text, delete, merge, delete a span, split
    out = c.predict(a, "unicycle", api_name="/relabel")
    assert "unicycle" in out["status"] and rows_by_id(out)[a][1] == "unicycle"
    out = c.predict(ids[-1], api_name="/delete_track")
    assert ids[-1] not in rows_by_id(out)
    out = c.predict(a, b, api_name="/merge")
    assert b not in rows_by_id(out) and rows_by_id(out)[a][3] == 10
    out = c.predict(d, 2, 3, api_name="/delete_span")
    assert rows_by_id(out)[d][3] == 8
    c.predict(7, api_name="/scrub")
    out = c.predict(e, api_name="/split")
    new_split = [t for t in rows_by_id(out) if t not in ids]
    assert len(new_split) == 1 and rows_by_id(out)[e][3] == 7

    # paint a correction on frame 5 of track a: a box replaces the model's mask
    c.predict(5, api_name="/scrub")
    assert "painting track" in c.predict(a, api_name="/load_editor")["status"]
    painted = np.zeros((272, 640), bool)
    painted[100:180, 200:330] = True
    layer = np.zeros((272, 640, 4), np.uint8)
    layer[painted] = (255, 48, 48, 255)
    Image.fromarray(layer).save(tmp_path / "layer.png")
    Image.fromarray(np.zeros((272, 640, 3), np.uint8)).save(tmp_path / "bg.png")
    value = {"background": handle_file(str(tmp_path / "bg.png")), "layers": [handle_file(str(tmp_path / "layer.png"))],
             "composite": None, "id": None}
    out = c.predict(a, value, api_name="/save_mask")
    assert "saved" in out["status"], out["status"]
    # a new track painted on frame 5, copied to the next 2 frames
    small = np.zeros((272, 640, 4), np.uint8)
    small[10:40, 10:50] = (255, 48, 48, 255)
    Image.fromarray(small).save(tmp_path / "new.png")
    value["layers"] = [handle_file(str(tmp_path / "new.png"))]
    out = c.predict("dog", value, api_name="/new_track")
    new_id = max(rows_by_id(out))
    assert rows_by_id(out)[new_id][1] == "dog"
    out = c.predict(new_id, 2, api_name="/copy_forward")
    assert rows_by_id(out)[new_id][3] == 3
    # undo/redo the copy
    out = c.predict(api_name="/undo")
    assert rows_by_id(out)[new_id][3] == 1
    out = c.predict(api_name="/redo")
    assert rows_by_id(out)[new_id][3] == 3
    before = len(rows_by_id(out))
    out = c.predict(True, api_name="/set_reviewed")
    assert "reviewed" in out["status"]

    # bad input: nothing already there is lost
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00not a video" * 500)
    out2 = c.predict(handle_file(str(bad)), None, 1, VOCAB, api_name="/add_video")
    assert out2["status"].startswith("✖") and "broken.mp4" in out2["status"]
    assert len({int(r[0]) for r in table_rows(out2["tracks"])}) == before
    assert c.predict("  ,\n", 96, 5, 0, 0.0, 8, api_name="/prelabel")["status"].startswith("✖")
    notytvis = tmp_path / "other.json"
    notytvis.write_text(json.dumps({"hello": "world"}))
    out3 = c.predict(handle_file(str(bikes())), handle_file(str(notytvis)), 1, VOCAB, api_name="/add_video")
    assert "not YouTube-VIS" in out3["status"]

    # export and check with pycocotools against what was done
    out = c.predict(api_name="/export_dataset")
    status, zpath = out["status"], out["export_file"]
    assert status.startswith("✔"), status
    with zipfile.ZipFile(zpath) as z:
        names = z.namelist()
        root = names[0].split("/")[0]
        gt = json.loads(z.read(f"{root}/annotations.json"))
    assert sum(n.startswith(f"{root}/JPEGImages/bikes/") for n in names) == 10
    cats = {x["id"]: x["name"] for x in gt["categories"]}
    assert [cats[i] for i in (1, 2, 3)] == ["person", "bicycle", "car"]
    anns = gt["annotations"]
    assert len(anns) == 8 - 1 - 1 + 1 + 1  # -deleted -merged +split +new
    by_cat = {}
    for x in anns:
        by_cat.setdefault(cats[x["category_id"]], []).append(x)
    uni, dog = by_cat["unicycle"][0], by_cat["dog"][0]
    m = mask_utils.decode(uni["segmentations"][5]).astype(bool)
    assert (m == painted).all() and uni["areas"][5] == painted.sum() == mask_utils.area(uni["segmentations"][5])
    assert uni["bboxes"][5] == [200.0, 100.0, 130.0, 80.0]
    assert [s is not None for s in dog["segmentations"]] == [False] * 5 + [True] * 3 + [False] * 2
    assert sorted(sum(s is not None for s in x["segmentations"]) for x in anns).count(8) >= 1  # the span delete
    for x in anns:
        for s, area in zip(x["segmentations"], x["areas"]):
            assert (s is None) == (area is None)
            if s is not None:
                assert s["size"] == [272, 640] and mask_utils.area(s) == area
    ds = Path(studio.cfg.datasets) / root
    assert (ds / "annotations.json").exists()
    from ovformer.ytvis.dataset import load_dataset_folder
    assert len(load_dataset_folder(ds).gt.annotations) == len(anns)
    from training.data import load_ytvis_folder  # the training loop reads the export as is

    load_ytvis_folder(ds)

    rpath = c.predict(api_name="/export_results")["export_file"]
    results = json.loads(Path(rpath).read_text())
    assert len(results) == len(anns) and all("score" in r for r in results)
    vpath = c.predict(api_name="/export_video")["player"]
    import av
    with av.open(vpath) as cont:
        assert cont.streams.video[0].codec_context.name == "h264" and cont.streams.video[0].frames == 10

    # re-import the export (ground-truth layout + frames zip) as pre-labels of a new video
    frames_zip = tmp_path / "bikes.zip"
    with zipfile.ZipFile(frames_zip, "w") as z:
        for i in range(10):
            z.write(ds / "JPEGImages" / "bikes" / f"{i:05d}.jpg", f"bikes/{i:05d}.jpg")
    out = c.predict(handle_file(str(frames_zip)), handle_file(str(ds / "annotations.json")), 0, VOCAB,
                    api_name="/add_video")
    assert "imported 8 tracks" in out["status"], out["status"]


def test_sessions_are_separate(app_server):
    url, studio, home = app_server
    c1, c2 = NamedClient(url, studio.api), NamedClient(url, studio.api)
    c1.predict("s1", "", api_name="/create_project")
    from gradio_client import handle_file

    pid = c1.predict(handle_file(str(bikes())), None, 0.5, VOCAB, api_name="/add_video")["projects"]["value"]
    c1.predict(3, api_name="/scrub")
    out = c2.predict(api_name="/undo")  # the second session has no video open: it cannot touch the first's
    assert out["status"].startswith("✖")
    c2.predict(pid, api_name="/open_project")  # the same project and video, its own position
    c2.predict(1, api_name="/scrub")
    assert c1.predict(api_name="/next")["slider"]["value"] == 4
    assert c2.predict(api_name="/next")["slider"]["value"] == 2
