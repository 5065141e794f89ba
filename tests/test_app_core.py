"""Model-independent core of the annotation app: store, edits + undo/redo, import, export."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from app.annotate.edits import EditError, Editor
from app.annotate.export import export_dataset, ground_truth, results, zip_folder
from app.annotate.media import Limits, MediaError, decode_any
from app.annotate.store import Store, counts_rle
from app.annotate.store import mask_counts as encode
from app.annotate.ytvis_import import ImportError_, tracks_from_json
from ovformer.ytvis.dataset import load_dataset_folder
from ovformer.ytvis.rle import rle_area

H, W, N = 24, 32, 6


def box(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture()
def proj(tmp_path):
    store = Store(tmp_path / "home")
    pid = store.create_project("demo", ["person", "bicycle", "car"])
    staged = store.reserve_video_dir()
    for i in range(N):
        Image.fromarray(np.full((H, W, 3), 20 * i, np.uint8)).save(staged / f"{i:05d}.jpg")
    vid = store.add_video(pid, "clip", staged, W, H, N, 5.0)
    ed = Editor(store)
    tracks = [{"label": "person", "score": 0.9, "alternatives": [("car", 0.1)], "source": "model",
               "masks": {f: encode(box(2, 10, 2, 10)) for f in range(N)}},
              {"label": "car", "score": 0.2, "source": "model",
               "masks": {f: encode(box(12, 20, 12, 30)) for f in range(2, 4)}}]
    t1, t2 = ed.replace_tracks(vid, tracks)
    return store, ed, pid, vid, t1, t2


def test_wal_and_edits_roundtrip(proj):
    store, ed, pid, vid, t1, t2 = proj
    assert store.q("PRAGMA journal_mode")[0][0] == "wal"
    ed.relabel(t2, "bicycle")
    ed.delete_span(t1, 4, 5)
    assert store.track(t1).frames == [0, 1, 2, 3]
    t3 = ed.split(t1, 2)
    assert store.track(t1).frames == [0, 1] and store.track(t3).frames == [2, 3]
    ed.merge(t1, t3)
    assert store.track(t1).frames == [0, 1, 2, 3] and store.track(t3) is None
    ed.set_mask(t1, 0, box(0, 5, 0, 5))
    assert rle_area(counts_rle(store.track_masks(t1)[0], H, W)) == 25
    ed.copy_forward(t1, 0, 2)
    assert store.track_masks(t1)[2] == store.track_masks(t1)[0]
    t4 = ed.add_track(vid, "dog", 5, box(1, 3, 1, 3))
    ed.delete_track(t2)
    assert sorted(t.id for t in store.tracks(vid)) == [t1, t4]
    n_undo, _ = ed.history(vid)
    for _ in range(n_undo):
        assert ed.undo(vid)
    assert ed.undo(vid) is None  # the initial pre-label import is undone too
    assert store.tracks(vid) == []
    for _ in range(n_undo):
        assert ed.redo(vid)
    assert sorted(t.id for t in store.tracks(vid)) == [t1, t4]
    assert store.track(t4).label == "dog" and store.track(t1).frames == [0, 1, 2, 3]
    with pytest.raises(EditError):
        ed.merge(t1, t1)
    with pytest.raises(EditError):
        ed.add_track(vid, "x", 0, np.zeros((H, W), bool))


def test_undo_depth_at_least_50(proj):
    store, ed, pid, vid, t1, _ = proj
    for i in range(60):
        ed.relabel(t1, f"label{i}")
    for _ in range(55):
        ed.undo(vid)
    assert store.track(t1).label == "label4"


def test_export_matches_pycocotools(proj, tmp_path):
    store, ed, pid, vid, t1, t2 = proj
    ed.relabel(t2, "truck")  # not in the vocabulary: appended as a category
    root = export_dataset(store, pid, tmp_path / "datasets")
    gt = json.loads((root / "annotations.json").read_text())
    assert [c["name"] for c in gt["categories"]] == ["person", "bicycle", "car", "truck"]
    assert len(list((root / "JPEGImages" / "clip").glob("*.jpg"))) == N
    a = {x["category_id"]: x for x in gt["annotations"]}
    seg = a[4]["segmentations"]
    assert seg[0] is None and mask_utils.area(seg[2]) == 8 * 18 == a[4]["areas"][2]
    assert a[4]["bboxes"][2] == [12.0, 12.0, 18.0, 8.0]
    assert (mask_utils.decode(a[1]["segmentations"][0]).astype(bool) == box(2, 10, 2, 10)).all()
    res = results(store, pid)
    assert sorted(r["score"] for r in res) == [0.2, 0.9]
    z = zip_folder(root, tmp_path / "out.zip")
    assert "p1-demo/annotations.json" in zipfile.ZipFile(z).namelist()  # the project id in the name
    ds = load_dataset_folder(root)
    assert len(ds.gt.annotations) == 2


def test_import_results_merges_queries(proj):
    store, ed, pid, vid, t1, t2 = proj
    seg = [mask_utils.encode(np.asfortranarray(box(1, 4, 1, 4).astype(np.uint8))) for _ in range(N)]
    for s in seg:
        s["counts"] = s["counts"].decode()
    data = [{"video_id": 3, "category_id": 2, "score": 0.7, "segmentations": seg},
            {"video_id": 3, "category_id": 1, "score": 0.2, "segmentations": seg}]
    tracks, note = tracks_from_json(data, "clip", N, H, W, ["person", "bicycle"])
    assert len(tracks) == 1 and tracks[0]["label"] == "bicycle" and tracks[0]["alternatives"] == [("person", 0.2)]
    gt = ground_truth(store, pid)
    tracks, note = tracks_from_json(gt, "clip", N, H, W, [])
    assert sorted(t["label"] for t in tracks) == ["car", "person"]
    with pytest.raises(ImportError_):
        tracks_from_json({"foo": 1}, "clip", N, H, W, [])


def test_bad_media_leaves_nothing(tmp_path):
    store = Store(tmp_path / "h")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    out = store.reserve_video_dir()
    with pytest.raises(MediaError):
        decode_any(bad, out, 5, Limits())
    assert not out.exists()
    z = tmp_path / "f.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in (10, 2, 1):
            Image.fromarray(np.full((8, 10, 3), i * 20, np.uint8)).save(tmp_path / "x.png")
            zf.write(tmp_path / "x.png", f"frames/{i}.png")
    d = decode_any(z, store.reserve_video_dir(), None, Limits())
    assert d.num_frames == 3 and d.names == ["1.png", "2.png", "10.png"] and (d.width, d.height) == (10, 8)
