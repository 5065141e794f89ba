"""Click to add / fix from the kept queries, through the app's services (no browser, no model).

A stand-in predictor writes the synthetic query bank of tests/test_query_candidates.py when the
pre-label job asks it to keep every query; its top-k tracks are object A and a big "cover" query,
and object B (a weak "dog") is left out.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from app.annotate.clicks import ClickService
from app.annotate.edits import Editor
from app.annotate.export import ground_truth
from app.annotate.prelabel import JobRunner, PrelabelSettings, query_bank_dir
from app.annotate.review import ReviewService
from app.annotate.session import Session
from app.annotate.store import Store, counts_mask
from app.hub import ModelHub, ModelSpec, PredictorCache
from ovformer.inference.types import PredictOptions
from ovformer.text_embeddings import TextEmbeddings
from ovformer.ytvis.rle import decode_rle
from tests import test_query_candidates as syn

H, W = syn.OUT
NAMES = ["cat", "dog", "person", "car"]


class BankPredictor:
    """Predicts the synthetic video: tracks for queries 0 (cat) and 3 (person, the cover)."""

    weights_label, untrained = "fake", True

    @property
    def defaults(self) -> PredictOptions:
        return PredictOptions(min_size=360, max_size=1333, clip_length=5, top_k=50, preview_k=0)

    @property
    def default_text(self):
        return None

    def embed_vocabulary(self, vocabulary, templates=None) -> TextEmbeddings:
        return TextEmbeddings(vocabulary, torch.zeros(len(vocabulary), 4), ("templates",) * len(vocabulary))

    def predict(self, source, text=None, options=None, *, num_frames=None, on_clip=None):
        n = sum(1 for _ in source)
        assert n == syn.T
        bank, scores = syn._build_bank(options.keep_queries_dir)
        tracks = []
        for q in (0, 3):
            lab = int(scores[q].argmax())
            segs = bank.track(q)
            tracks.append(SimpleNamespace(query=q, label=lab, score=float(scores[q, lab]),
                                          alternatives=bank.top_classes(q), segmentations=segs))
        return SimpleNamespace(tracks=tracks, height=H, width=W, weights_label="fake", untrained=True,
                               num_frames=n, queries_dir=str(bank.path))


def _setup(tmp_path):
    store = Store(tmp_path / "data")
    pid = store.create_project("p", NAMES)
    staged = store.reserve_video_dir()
    for i in range(syn.T):
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(staged / f"{i:05d}.jpg")
    vid = store.add_video(pid, "v", staged, W, H, syn.T, 10.0)
    runner = JobRunner(store, ModelHub(ModelSpec("fake", untrained=True), PredictorCache(lambda spec: BankPredictor())))
    job = runner.start(vid, NAMES, PrelabelSettings(clip_length=5, score_threshold=0.0, max_tracks=5))
    import time
    t = time.time()
    while not job.finished and time.time() - t < 60:
        time.sleep(0.05)
    assert job.state == "done", job.message
    editor = Editor(store)
    clicks = ClickService(store, editor, ReviewService(store, editor))
    return store, pid, vid, editor, clicks


def _track_masks(store, tid):
    return {f: counts_mask(c, H, W) for f, c in store.track_masks(tid).items()}


def test_prelabel_keeps_the_bank_and_a_click_adds_the_missed_object(tmp_path):
    store, pid, vid, editor, clicks = _setup(tmp_path)
    d = query_bank_dir(store, vid)
    assert (d / "meta.json").exists() and json.loads((d / "links.json").read_text())["indices"] == list(range(syn.T))
    assert not list(d.parent.glob("*.new-*"))  # the temporary bank was moved into place
    before = {t.id for t in store.tracks(vid)}
    assert sorted(t.label for t in store.tracks(vid)) == ["cat", "person"]  # B (dog) was missed

    s = Session(project=pid, video=vid, frame=4)
    screen = clicks.click(s, 150, 60, True)  # inside B; the cover is a track already: excluded
    assert "dog" in screen.status and "candidate 1/" in screen.status, screen.status
    assert screen.frame_img.shape == (H, W, 3)
    assert screen.session.clicks == ((150.0, 60.0, True),)
    screen = clicks.accept(screen.session)
    assert screen.status.startswith("✔"), screen.status
    [new] = [t for t in store.tracks(vid) if t.id not in before]
    assert new.label == "dog" and screen.session.track == new.id and screen.session.clicks == ()
    masks = _track_masks(store, new.id)
    for f in range(syn.T):
        box = syn._box_b(f)
        if box is None:
            assert f not in masks
        else:
            assert syn._iou(masks[f], syn._box_mask(box)) >= 0.8, f
    # the export contains the new track with its class
    gt = ground_truth(store, pid)
    cat = {c["name"]: c["id"] for c in gt["categories"]}
    [ann] = [a for a in gt["annotations"] if a["category_id"] == cat["dog"]]
    assert sum(s is not None for s in ann["segmentations"]) == 9
    assert syn._iou(decode_rle(ann["segmentations"][4]).astype(bool), syn._box_mask(syn._box_b(4))) >= 0.8
    # one Undo removes it
    assert editor.undo(vid) == "add from click"
    assert {t.id for t in store.tracks(vid)} == before


def test_negative_click_next_cancel_and_errors(tmp_path):
    store, pid, vid, editor, clicks = _setup(tmp_path)
    s = Session(project=pid, video=vid, frame=2)
    assert "first" in clicks.click(s, 50, 50, False).status  # a negative needs a positive first
    assert "outside" in clicks.click(s, W + 5, 10, True).status
    # with the cover's track deleted, its query is a candidate again: first without negatives
    cover = next(t.id for t in store.tracks(vid) if t.label == "person")
    editor.delete_track(cover)
    sc = clicks.click(s, 140, 50, True)
    assert "person" in sc.status.split("classes:")[1].split(",")[0]
    sc2 = clicks.next(sc.session)
    assert sc2.session.pick == 1 and "dog" in sc2.status.split("classes:")[1].split(",")[0]
    # a negative click on A excludes the cover: B comes first
    sc3 = clicks.click(sc.session, 50, 50, False)
    assert sc3.session.clicks[-1] == (50.0, 50.0, False)
    assert "dog" in sc3.status.split("classes:")[1].split(",")[0]
    n_before = len(store.tracks(vid))
    out = clicks.cancel(sc3.session)
    assert out.session.clicks == () and len(store.tracks(vid)) == n_before
    # nothing fits a click on the empty corner
    assert "no query" in clicks.click(s, 3, H - 3, True).status


def test_fix_by_clicking_replaces_only_the_rest_of_the_clip_and_one_undo_reverts(tmp_path):
    store, pid, vid, editor, clicks = _setup(tmp_path)
    cover = next(t.id for t in store.tracks(vid) if t.label == "person")
    old = _track_masks(store, cover)
    s = Session(project=pid, video=vid, frame=6)
    sc = clicks.start_fix(s, cover)
    assert sc.session.fixing == cover
    sc = clicks.click(sc.session, 150, 60, True)
    sc = clicks.click(sc.session, 50, 50, False)
    assert "replace track" in sc.status and "6–9" in sc.status, sc.status
    sc = clicks.accept(sc.session)
    assert sc.status.startswith("✔") and sc.session.fixing is None, sc.status
    new = _track_masks(store, cover)
    for f in range(syn.T):
        if 6 <= f <= 9:  # the rest of the clicked clip: B's masks
            box = syn._box_b(f)
            if box is None:
                assert f not in new
            else:
                assert syn._iou(new[f], syn._box_mask(box)) >= 0.8
        else:
            assert (new[f] == old[f]).all()
    assert editor.undo(vid) == "fix from click"
    assert all((m == old[f]).all() for f, m in _track_masks(store, cover).items())
    assert set(_track_masks(store, cover)) == set(old)


def test_no_bank_is_a_message(tmp_path):
    store = Store(tmp_path / "data")
    pid = store.create_project("p", NAMES)
    staged = store.reserve_video_dir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(staged / "00000.jpg")
    vid = store.add_video(pid, "v", staged, W, H, 1, 10.0)
    editor = Editor(store)
    clicks = ClickService(store, editor, ReviewService(store, editor))
    assert "pre-label it first" in clicks.click(Session(project=pid, video=vid), 5, 5, True).status
