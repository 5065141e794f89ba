"""Click-to-add from the query bank: every query kept compactly, ranked by clicks.

Synthetic videos are built as per-clip query logits (ClipResults made by hand) and run through
:class:`VideoState` with a :class:`QueryBankWriter`, as ``predict`` does; no model runs except in
the last test (the tiny untrained model, for the hook in ``predict``).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ovformer.inference.postprocess import select_topk, video_scores
from ovformer.inference.queries import QueryBank, QueryBankWriter
from ovformer.inference.tracker import ClipResult, VideoState
from ovformer.inference.types import PredictOptions, VideoPrediction
from ovformer.ytvis.rle import decode_rle

OUT = (120, 200)      # original frame (H, W)
IMAGE = (96, 160)     # model input
PADDED = (128, 160)   # padded to the size divisibility
LOW = (PADDED[0] // 4, PADDED[1] // 4)
Q, K, T, CLIP = 20, 4, 12, 5


def _lowres_grid() -> tuple[np.ndarray, np.ndarray]:
    """Original-frame (x, y) of each low-res pixel centre (inverse of the resize chain)."""
    ly, lx = np.mgrid[0:LOW[0], 0:LOW[1]].astype(np.float64)
    py, px = (ly + 0.5) * PADDED[0] / LOW[0] - 0.5, (lx + 0.5) * PADDED[1] / LOW[1] - 0.5
    return (px + 0.5) * OUT[1] / IMAGE[1] - 0.5, (py + 0.5) * OUT[0] / IMAGE[0] - 0.5


def _box_logits(box, strength=8.0) -> np.ndarray:
    x, y = _lowres_grid()
    x0, y0, x1, y1 = box
    inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    return np.where(inside, strength, -strength).astype(np.float32)


def _box_mask(box) -> np.ndarray:
    m = np.zeros(OUT, bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


# object A: found by the model (query 0, confident "cat"); object B: missed (query 7, weak
# "dog", visible on frames 0..8 only, moving right); query 3: one big mask over A and B
# (confident "person": a covering-but-wrong proposal); the other queries are empty.
def _box_a(f):
    return (20, 20, 80, 90)


def _box_b(f):
    return (110 + 3 * f, 30, 170 + 3 * f, 100) if f <= 8 else None


def _box_cover(f):
    return (10, 10, 195, 110)


def _frame_logits(f: int) -> np.ndarray:
    x = np.full((Q, *LOW), -8.0, np.float32)
    x[0] = _box_logits(_box_a(f))
    if _box_b(f) is not None:
        x[7] = _box_logits(_box_b(f))
    x[3] = _box_logits(_box_cover(f))
    return x


def _class_logits() -> tuple[torch.Tensor, torch.Tensor]:
    cls = torch.full((Q, K + 1), -6.0)
    obj = torch.tensor([[-4.0, 4.0]]).repeat(Q, 1)  # "no object" for the empty queries
    cls[0, 0], obj[0] = 5.0, torch.tensor([4.0, -4.0])        # A: cat
    cls[3, 2], obj[3] = 3.0, torch.tensor([3.0, -3.0])        # cover: person
    cls[7, 1], obj[7] = -1.5, torch.tensor([0.0, 0.5])        # B: dog, weak
    return cls, obj


def _build_bank(path, dtype="int8", shuffle=True, compress=True) -> tuple[QueryBank, torch.Tensor]:
    """Clips whose query order is shuffled per clip (association puts it back); returns the
    bank and the video-level scores."""
    gen = torch.Generator().manual_seed(0)
    embds = torch.randn(Q, 16, generator=gen)
    cls, obj = _class_logits()
    writer = QueryBankWriter(path, dtype=dtype, compress=compress)
    with VideoState(keep=writer) as state:
        for start in range(0, T, CLIP):
            frames = range(start, min(start + CLIP, T))
            masks = torch.from_numpy(np.stack([_frame_logits(f) for f in frames], 1))
            clip = ClipResult(cls.clone(), obj.clone(), masks, embds + 0.01 * torch.randn(
                Q, 16, generator=gen))
            if shuffle and start:
                perm = torch.randperm(Q, generator=gen)
                clip = clip.permuted(perm)
            state.add(clip)
        scores = video_scores(*state.video_logits())
    return writer.finish(scores, PADDED, IMAGE, OUT, ["cat", "dog", "person", "car"],
                         [1, 2, 3, 4]), scores


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = (a | b).sum()
    return float((a & b).sum() / u) if u else 1.0


def test_topk_misses_b_and_a_click_on_b_returns_its_whole_track(tmp_path):
    bank, scores = _build_bank(tmp_path / "bank")
    _, queries, _ = select_topk(scores, 2)
    assert 7 not in queries.tolist()  # the model's top-k leaves B out
    assert bank.num_frames == T and bank.clip_lengths == [5, 5, 2]
    # a click inside B on frame 4; the app leaves out the queries that are tracks already
    # (the covering "person" query holds the click too, and comes first when not excluded)
    assert [c.query for c in bank.candidates(4, [(150, 60, True)])][:2] == [3, 7]
    [best, *_] = bank.candidates(4, [(150, 60, True)], exclude=queries.tolist())
    assert best.query == 7
    assert best.classes[0][0] == 1 and len(best.classes) == 4  # "dog" (label 1) first, K < 5
    assert best.frames == (0, T)
    segs = best.segmentations()
    assert len(segs) == T
    for f, seg in enumerate(segs):
        box = _box_b(f)
        if box is None:
            assert seg is None
        else:
            assert _iou(decode_rle(seg).astype(bool), _box_mask(box)) >= 0.8, f
    # the same through the Python API of a prediction
    pred = VideoPrediction(bank.vocabulary, bank.category_ids, *OUT, T, "", True, [], [],
                           queries_dir=str(bank.path))
    assert pred.candidates(4, [(150, 60, True)], exclude=[0, 3])[0].query == 7


def test_negative_clicks_push_a_covering_query_down(tmp_path):
    bank, _ = _build_bank(tmp_path / "bank")
    # a click on B alone: the big confident "person" mask covers it too and comes first
    # (class weight breaks the tie between masks that both hold the click)
    first = [c.query for c in bank.candidates(2, [(140, 50, True)], class_weight=1.0)]
    assert first[:2] == [3, 7]
    # a negative click on A (inside the cover, outside B) excludes the cover
    ranked = bank.candidates(2, [(140, 50, True), (50, 50, False)], class_weight=1.0)
    assert ranked[0].query == 7
    assert 3 not in [c.query for c in ranked]  # its fit falls under min_score
    # a click on empty background finds nothing fitting
    assert bank.candidates(2, [(5, 115, True)]) == []
    # exclude leaves out existing tracks
    assert 7 not in [c.query for c in bank.candidates(2, [(140, 50, True)], exclude=[7])]


def test_fix_candidates_cover_the_rest_of_the_clip_or_video(tmp_path):
    bank, _ = _build_bank(tmp_path / "bank")
    # the "cover" track is wrong on frame 6: a click on B proposes B for frames 6..9 (its clip)
    fix = bank.fix_candidates(3, 6, [(150, 60, True), (50, 50, False)])
    assert fix[0].query == 7 and fix[0].frames == (6, 10)
    assert [f for f, _ in fix[0].masks()] == [6, 7, 8, 9]
    assert 3 not in [c.query for c in fix]
    assert bank.fix_candidates(3, 6, [(150, 60, True)], until="video")[0].frames == (6, T)


def test_float16_bank_and_quantisation_agree(tmp_path):
    b8, _ = _build_bank(tmp_path / "i8", dtype="int8", shuffle=False)
    b16, _ = _build_bank(tmp_path / "f16", dtype="float16", shuffle=False)
    for f in (0, 5, 11):
        m8, m16 = b8.frame_masks(f, range(Q)), b16.frame_masks(f, range(Q))
        assert (m8 == m16).mean() > 0.999
    assert b8.disk_bytes() < b16.disk_bytes()
    per_frame = sum(p.stat().st_size for p in (tmp_path / "i8").glob("clip_*.npz")) / T
    assert per_frame < Q * LOW[0] * LOW[1] / 10  # saturated background compresses well
    raw = _build_bank(tmp_path / "raw", shuffle=False, compress=False)[0]
    assert not list((tmp_path / "raw").glob("*.npz"))
    per_frame = sum(p.stat().st_size for p in (tmp_path / "raw").glob("clip_*.npy")) / T
    assert per_frame < Q * LOW[0] * LOW[1] * 1.01 + 200  # int8: one byte per low-res pixel
    assert (raw.frame_masks(5, range(Q)) == b8.frame_masks(5, range(Q))).all()
    assert [c.query for c in raw.candidates(4, [(150, 60, True)])] == \
        [c.query for c in b8.candidates(4, [(150, 60, True)])]


def test_bad_clicks_are_errors(tmp_path):
    bank, _ = _build_bank(tmp_path / "bank")
    with pytest.raises(ValueError):
        bank.candidates(0, [(10, 10, False)])  # no positive
    with pytest.raises(ValueError):
        bank.candidates(0, [(500, 10, True)])  # outside the frame
    with pytest.raises(IndexError):
        bank.candidates(T, [(10, 10, True)])
    with pytest.raises(FileNotFoundError):
        QueryBank(tmp_path / "nothing")
    with pytest.raises(RuntimeError):
        VideoPrediction([], [], *OUT, T, "", True, [], []).candidates(0, [(1, 1, True)])


def test_predict_keeps_every_query_when_asked(tmp_path):
    from ovformer import OVFormerVideoPredictor

    pred = OVFormerVideoPredictor.from_pretrained(None, preset="tiny", untrained=True,
                                                  clip="tiny-random")
    text = pred.embed_vocabulary(["a", "b"])
    frames = [np.full((40, 60, 3), 100, np.uint8)] * 7
    out = pred.predict(frames, text, PredictOptions(preview_k=0, top_k=3,
                                                    keep_queries_dir=tmp_path / "q"))
    bank = out.query_bank()
    assert bank.num_frames == 7 and bank.clip_lengths == [5, 2]
    assert bank.output_size == (40, 60) and bank.scores.shape[1] == 2
    # a kept track's query gives back the same masks as the prediction (int8 rounding aside)
    track = out.tracks[0]
    again = bank.track(track.query)
    agree = [(decode_rle(a) if a else np.zeros((40, 60), np.uint8)) ==
             (decode_rle(b) if b else np.zeros((40, 60), np.uint8))
             for a, b in zip(track.segmentations, again)]
    assert np.mean(agree) > 0.99
    assert pred.predict(frames, text, PredictOptions(preview_k=0)).queries_dir is None
