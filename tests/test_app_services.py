"""The Annotate page's services without a server: what the live client test does, step by step,
on a 6-frame 24x32 video and a stand-in predictor, checked against numbers one can count."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from app.annotate.edits import Editor
from app.annotate.prelabel import PrelabelSettings
from app.annotate.review import EDITS, ReviewService
from app.annotate.service import AnnotateService, Config
from app.annotate.session import PANEL, Session
from app.annotate.store import Store
from app.hub import ModelHub, ModelSpec, PredictorCache
from ovformer.ytvis.dataset import load_dataset_folder
from ovformer.ytvis.rle import decode_rle

from tests.test_app_prelabel import FakePredictor

H, W, N = 16, 20, 8  # FakePredictor's frame size


def rows(screen) -> dict[int, list]:
    return {int(r[0]): list(r) for r in screen.tracks.values.tolist()}


def layer(box: tuple[int, int, int, int]) -> dict:
    """A paint editor value whose layer covers rows y0:y1, cols x0:x1."""
    y0, y1, x0, x1 = box
    a = np.zeros((H, W, 4), np.uint8)
    a[y0:y1, x0:x1] = (255, 48, 48, 255)
    return {"background": np.zeros((H, W, 3), np.uint8), "layers": [a], "composite": None}


@pytest.fixture()
def page(tmp_path):
    """The services on a project with one 8-frame video at 10 fps, pre-labelled by the fake."""
    cfg = Config(home=tmp_path / "home", datasets=tmp_path / "datasets")
    store = Store(cfg.home)
    editor = Editor(store)
    review = ReviewService(store, editor)
    hub = ModelHub(ModelSpec("fake", untrained=True), PredictorCache(lambda spec: FakePredictor()))
    svc = AnnotateService(cfg, store, editor, hub, review)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(N):
        Image.fromarray(np.full((H, W, 3), 10 * i, np.uint8)).save(folder / f"{i:05d}.png")
    with zipfile.ZipFile(tmp_path / "clip.zip", "w") as z:
        for p in sorted(folder.iterdir()):
            z.write(p, f"clip/{p.name}")
    s = svc.create_project(Session(), "demo", "person, bicycle, car").session
    out = svc.add_video(s, str(tmp_path / "clip.zip"), None, 10, "")
    assert out.status.startswith("✔ added") and out.info.startswith("**clip**: 8 frames"), out.status
    return svc, review, out.session


def test_prelabel_streams_then_commits(page):
    svc, review, s = page
    screens = list(svc.prelabel(s, "person, bicycle, car", PrelabelSettings(clip_length=2, max_tracks=5), poll_s=0.01))
    final = screens[-1]
    assert final.status.startswith("✔ Done: 1 tracks on 8 frames"), final.status
    assert all(getattr(final, f) is not None for f in PANEL)  # the whole panel is redrawn
    assert "UNTRAINED" in final.banner
    (row,) = rows(final).values()
    assert row[1:4] == ["bicycle", 0.9, 8]  # class, score, frames
    assert next(svc.prelabel(s, " ,\n", PrelabelSettings())).status.startswith("✖")


def test_every_edit_button(page):
    svc, review, s = page
    s = list(svc.prelabel(s, "person, bicycle, car", PrelabelSettings(clip_length=2), poll_s=0.01))[-1].session
    (a,) = rows(review.panel(s))
    out = review.edit("relabel", s, a, "unicycle")
    assert "relabelled to **unicycle**" in out.status and rows(out)[a][1] == "unicycle"
    out = review.edit("delete_span", out.session, a, 2, 3)
    assert rows(out)[a][3] == 6  # 8 frames - 2
    out = review.edit("split", review.scrub(out.session, 5).session, a)
    b = out.session.track
    assert rows(out)[a][3] == 3 and rows(out)[b][3] == 3  # frames 0,1,4 | 5,6,7
    out = review.edit("merge", out.session, a, b)
    assert set(rows(out)) == {a} and rows(out)[a][3] == 6
    s5 = review.scrub(out.session, 5).session
    out = review.edit("save_mask", s5, a, layer((0, 4, 0, 5)))
    assert "(20 px)" in out.status
    out = review.edit("new_track", s5, "dog", layer((10, 12, 10, 13)))
    dog = out.session.track
    out = review.edit("copy_forward", out.session, dog, 5)
    assert "next 2 frames" in out.status and rows(out)[dog][3] == 3  # frames 5, 6, 7
    out = review.edit("undo", out.session)
    assert rows(out)[dog][3] == 1
    out = review.edit("redo", out.session)
    assert rows(out)[dog][3] == 3
    out = review.edit("delete_track", out.session, dog)
    assert dog not in rows(out)
    for name in EDITS:  # without a video open every button says so and changes nothing
        assert review.edit(name, Session(), *[None] * 3).status.startswith("✖")

    root = load_dataset_folder(svc.export_dataset(out.session).status.split("`")[1])
    (ann,) = root.gt.annotations
    assert [s is not None for s in ann.segmentations] == [True, True, False, False, True, True, True, True]
    assert int(decode_rle(ann.segmentations[5]).sum()) == 20 == ann.areas[5]
    assert ann.bboxes[5] == [0.0, 0.0, 5.0, 4.0]


def test_review_navigation_and_user_errors(page):
    svc, review, s = page
    s = list(svc.prelabel(s, "person, bicycle, car", PrelabelSettings(clip_length=2), poll_s=0.01))[-1].session
    assert review.scrub(s, 99).session.frame == N - 1  # clamped to the video
    assert review.step(review.scrub(s, 3).session, +1).slider.value == 4
    (a,) = rows(review.panel(s))
    hidden = review.toggle_hidden(s, a)
    assert hidden.session.hidden == {a} and rows(hidden)[a][6] == False  # noqa: E712 (the "shown" column)
    assert review.next_in_queue(s).session.track == a
    out = review.edit("merge", s, a, a)
    assert out.status == "✖ pick two different tracks to merge" and set(rows(out)) == {a}
    out = svc.set_reviewed(s, True)
    assert out.reviewed is True and out.videos.choices == [("clip ✔", s.video)]
    assert svc.open_video(s, 12345).status.startswith("✖")


def test_a_bad_upload_changes_nothing(page, tmp_path):
    svc, review, s = page
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00not a video" * 500)
    out = svc.add_video(s, str(bad), None, 1, "")
    assert out.status.startswith("✖") and "broken.mp4" in out.status and "nothing was changed" in out.status
    assert len(svc.store.videos(s.project)) == 1
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": "world"}))
    assert "not YouTube-VIS" in svc.add_video(s, str(bad), str(other), 1, "").status


def test_sessions_do_not_share_state(page):
    """Two tabs on one video: each keeps its own frame; a tab without a video cannot undo."""
    svc, review, s = page
    other = svc.open_project(Session(), s.project).session
    one, two = review.scrub(s, 3).session, review.scrub(other, 1).session
    assert review.step(one, +1).session.frame == 4 and review.step(two, +1).session.frame == 2
    assert review.edit("undo", Session()).status.startswith("✖")

