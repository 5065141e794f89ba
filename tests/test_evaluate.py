"""YouTube-VIS / LV-VIS mAP on tiny hand-made cases whose numbers are derived in the comments.

Reminders used throughout (docs/ytvis_format.md §5): precision is read at the 101 recall points
0, 0.01, ..., 1 with searchsorted(side="left") on the recall curve, after a right-to-left max
envelope; points past the final recall read 0. So a curve that reaches recall 0.5 with
precision 1 and stops there scores 51/101 (points 0..0.50), not 0.5.
Precision is tp / (tp + fp + eps) in the reference, so a "perfect" AP is 1 - 2.2e-16: compare
with `approx`.
"""

import copy
import json

import numpy as np
import pytest

from ovformer.tools.eval import main as eval_main
from ovformer.ytvis.evaluate import STAT_NAMES, evaluate
from ovformer.ytvis.io import parse_gt
from ovformer.ytvis.results import parse_results
from ovformer.ytvis.rle import encode_mask

H = W = 10


def approx(x):
    return pytest.approx(x, rel=0, abs=1e-12)


def box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


A = box(0, 2, 0, 4)   # 8 px
B = box(5, 7, 5, 9)   # 8 px, disjoint from A
FAR = box(8, 10, 0, 2)  # 4 px, disjoint from A and B


def seg(frames):
    return [None if m is None else encode_mask(m) for m in frames]


def gt(videos, anns, cats=None):
    """videos: {id: length}; cats: {id: partition or None}."""
    cats = cats or {1: None}
    return {
        "videos": [{"id": v, "height": H, "width": W, "length": n,
                    "file_names": [f"{v}/{t:05d}.jpg" for t in range(n)]} for v, n in videos.items()],
        "annotations": anns,
        "categories": [{"id": c, "name": f"cat{c}", **({} if p is None else {"partition": p})}
                       for c, p in cats.items()],
    }


def ann(aid, vid, frames, cat=1, iscrowd=0, areas=None):
    return {"id": aid, "video_id": vid, "category_id": cat, "iscrowd": iscrowd,
            "segmentations": seg(frames), "bboxes": [None] * len(frames),
            "areas": areas or [None if m is None else int(m.sum()) for m in frames]}


def pred(vid, score, frames, cat=1):
    return {"video_id": vid, "category_id": cat, "score": score, "segmentations": seg(frames)}


def test_perfect_prediction():
    g = gt({1: 2}, [ann(1, 1, [A, B])])
    m = evaluate(g, [pred(1, 0.9, [A, B])])
    # A and B are 8 px: every GT is "small" (avg_area 8 <= 128^2), none medium or large.
    assert {k: m[k] for k in STAT_NAMES} == approx({
        "AP": 1.0, "AP50": 1.0, "AP75": 1.0, "APs": 1.0, "APm": -1.0, "APl": -1.0,
        "AR1": 1.0, "AR10": 1.0, "AR100": 1.0, "ARs": 1.0, "ARm": -1.0, "ARl": -1.0})
    assert m["per_category"] == [{"id": 1, "name": "cat1", "AP": approx(1.0), "num_gt_tracks": 1}]
    assert (m["num_videos"], m["num_results"]) == (1, 1)
    assert "AP_base" not in m


def test_one_tp_then_one_fp():
    # 2 GT. Ranked: TP (0.9), FP (0.8): tp=[1,1] fp=[0,1] -> recall [.5,.5], precision [1,.5].
    # Recall points 0..0.50 -> index 0 -> precision 1 (51 points); 0.51..1 -> past the end -> 0.
    g = gt({1: 1}, [ann(1, 1, [A]), ann(2, 1, [B])])
    m = evaluate(g, [pred(1, 0.9, [A]), pred(1, 0.8, [FAR])])
    assert m["AP"] == approx(51 / 101)
    assert m["AR100"] == approx(0.5)
    # FP ranked first: precision [0, .5], envelope [.5, .5]; points 0..0.50 read 0.5 -> 25.5/101.
    m = evaluate(g, [pred(1, 0.9, [FAR]), pred(1, 0.8, [A])])
    assert m["AP"] == approx(25.5 / 101)


def test_crowd_gt_absorbs_several_detections():
    crowd = box(3, 10, 3, 10)
    g = gt({1: 1}, [ann(1, 1, [A]), ann(2, 1, [crowd], iscrowd=1)])
    preds = [pred(1, 0.9, [crowd]), pred(1, 0.8, [crowd]), pred(1, 0.7, [A])]
    # Both copies of the crowd region match it (crowd GT can be matched again) and are ignored:
    # only the TP on A counts, npig = 1 -> AP 1.
    m = evaluate(g, preds)
    assert (m["AP"], m["AR100"]) == approx((1.0, 1.0))
    # The same GT without the crowd flag: TP, FP (region already taken), TP over 2 GT:
    # recall [.5,.5,1], precision [1,.5,2/3] -> envelope [1,2/3,2/3] -> (51*1 + 50*2/3)/101.
    g["annotations"][1]["iscrowd"] = 0
    assert evaluate(g, preds)["AP"] == approx((51 + 50 * 2 / 3) / 101)


def test_small_detection_inside_crowd_stays_a_false_positive():
    # Crowd IoU is the plain video IoU here (not COCO's I/area(d)): a 4 px detection inside a
    # 49 px crowd region has IoU 4/49 < 0.5, so it is an FP ranked before the TP. One non-crowd GT:
    # recall [0, 1], precision [0, .5] -> envelope .5 at all 101 points -> 0.5 (COCO's crowd IoU,
    # 4/4, would have ignored it and given 1).
    crowd = box(3, 10, 3, 10)
    g = gt({1: 1}, [ann(1, 1, [A]), ann(2, 1, [crowd], iscrowd=1)])
    m = evaluate(g, [pred(1, 0.9, [box(4, 6, 4, 6)]), pred(1, 0.8, [A])])
    assert m["AP"] == approx(0.5)


def test_null_frames_and_union():
    g = gt({1: 3}, [ann(1, 1, [A, None, B])])
    # Frames 0 and 2 match exactly (I = 8 + 8); on the GT-null frame 1 the prediction's 6 px
    # enlarge the union: IoU = 16 / (8 + 6 + 8) = 0.727. Matched at t = .50 .. .70 (5 of 10).
    six = box(8, 10, 4, 7)
    m = evaluate(g, [pred(1, 0.9, [A, six, B])])
    assert (m["AP"], m["AP50"], m["AP75"]) == approx((0.5, 1.0, 0.0))
    assert m["AR100"] == approx(0.5)
    # Null where the GT is null: the union is 16, IoU 1 (a mean of per-frame IoUs could not
    # tell these two cases apart).
    assert evaluate(g, [pred(1, 0.9, [A, None, B])])["AP"] == approx(1.0)
    # Missing the object on frame 2: I = 8, U = 8 + 8 = 16 -> IoU exactly 0.5, which matches at
    # t = 0.5 only (equality counts): AP = 1/10.
    assert evaluate(g, [pred(1, 0.9, [A, None, None])])["AP"] == approx(0.1)


def test_wrong_size_frames_and_short_tracks_count_as_nothing():
    g = gt({1: 3}, [ann(1, 1, [A, None, B])])
    wrong = {"size": [H + 1, W], "counts": encode_mask(np.zeros((H + 1, W), bool))["counts"]}
    # pycocotools' merge of different sizes is empty: frame 2 adds 0 to I and U -> IoU 8/8.
    p = pred(1, 0.9, [A, None, B])
    p["segmentations"][2] = wrong
    assert evaluate(g, [p])["AP"] == approx(1.0)
    # A 1-frame prediction is zipped with the 3-frame GT: only frame 0 is compared (G13).
    assert evaluate(g, [pred(1, 0.9, [A])])["AP"] == approx(1.0)


def test_score_ties_go_to_lower_video_id_then_results_order():
    # Videos listed 10 then 2. GT only in video 2. Equal scores: TP in video 2, FP in video 10.
    g = gt({10: 1, 2: 1}, [ann(1, 2, [A])])
    fp, tp = pred(10, 0.5, [A]), pred(2, 0.5, [A])
    # Ascending video id puts the TP first: precision [1, .5], recall [1, 1] -> AP 1.
    assert evaluate(g, [fp, tp])["AP"] == approx(1.0)
    # In one video, ties keep results order: FP first -> precision [0,.5], envelope .5 -> AP .5.
    g = gt({1: 1}, [ann(1, 1, [A])])
    fp, tp = pred(1, 0.5, [FAR]), pred(1, 0.5, [A])
    assert evaluate(g, [fp, tp])["AP"] == approx(0.5)
    assert evaluate(g, [tp, fp])["AP"] == approx(1.0)


def test_equal_iou_goes_to_the_later_gt():
    # G1 = cols 0-1, G2 = cols 2-3 (4 px each); D1 (0.9) covers both: IoU 4/8 = 0.5 with each.
    # The reference replaces its match while `iou >= best`, so D1 takes G2 at t = 0.5 and D2 (a
    # copy of G1) is a TP too: AP50 = 1. At t >= .55 D1 matches nothing: FP then TP over 2 GT,
    # precision [0, .5] -> 51 points of 0.5 = 25.5/101.
    g1, g2, both = box(0, 2, 0, 2), box(0, 2, 2, 4), box(0, 2, 0, 4)
    g = gt({1: 1}, [ann(1, 1, [g1]), ann(2, 1, [g2])])
    m = evaluate(g, [pred(1, 0.9, [both]), pred(1, 0.8, [g1])])
    assert m["AP50"] == approx(1.0)
    assert m["AP"] == approx((1 + 9 * 25.5 / 101) / 10)


def test_area_ranges_use_the_areas_field_and_are_inclusive():
    # Category 1: areas [16384, null, 0] -> avg_area = 16384 = 128^2 (null and 0 are skipped;
    # 16384 / 3 frames would be small only). Inclusive bounds: small AND medium.
    # Category 2: avg_area 16385 -> medium only, and nothing predicted for it (AP 0).
    # The masks are tiny: the ranges read the GT "areas" field, not the masks.
    g = gt({1: 3}, [ann(1, 1, [A, None, None], cat=1, areas=[16384, None, 0]),
                    ann(2, 1, [B, None, None], cat=2, areas=[16385, None, None])],
           cats={1: None, 2: None})
    m = evaluate(g, [pred(1, 0.9, [A, None, None], cat=1)])
    assert (m["APs"], m["APm"], m["APl"]) == approx((1.0, 0.5, -1.0))
    assert (m["ARs"], m["ARm"], m["ARl"]) == approx((1.0, 0.5, -1.0))
    assert m["AP"] == approx(0.5)


def test_max_dets_per_video_and_category():
    g = gt({1: 1}, [ann(1, 1, [A]), ann(2, 1, [B])])
    preds = [pred(1, 0.9, [FAR]), pred(1, 0.8, [A]), pred(1, 0.7, [B])]
    m = evaluate(g, preds)
    # Top-1 is the FP: AR1 = 0; with 10/100 both GT are found.
    assert (m["AR1"], m["AR10"], m["AR100"]) == approx((0.0, 1.0, 1.0))
    # precision [0, .5, 2/3] -> envelope 2/3 everywhere up to recall 1.
    assert m["AP"] == approx(2 / 3)
    # maxDets counts per (video, category): one detection in each of two categories -> AR1 = 1.
    g = gt({1: 1}, [ann(1, 1, [A], cat=1), ann(2, 1, [B], cat=2)], cats={1: None, 2: None})
    assert evaluate(g, [pred(1, 0.9, [A], cat=1), pred(1, 0.8, [B], cat=2)])["AR1"] == approx(1.0)


def test_only_the_top_100_predictions_are_matched():
    g = gt({1: 1}, [ann(1, 1, [A])])
    preds = [pred(1, 0.9, [FAR]) for _ in range(100)] + [pred(1, 0.1, [A])]
    m = evaluate(g, preds)
    assert (m["AP"], m["AR100"]) == approx((0.0, 0.0))


def test_category_without_gt_is_excluded():
    g = gt({1: 1}, [ann(1, 1, [A])], cats={1: None, 2: None})
    m = evaluate(g, [pred(1, 0.9, [A]), pred(1, 0.95, [B], cat=2)])
    assert m["AP"] == approx(1.0)  # category 2 is -1 (undefined), not 0
    assert m["per_category"][1] == {"id": 2, "name": "cat2", "AP": -1.0, "num_gt_tracks": 0}


def test_empty_results_score_zero_where_gt_exists():
    m = evaluate(gt({1: 1}, [ann(1, 1, [A])]), [])
    assert (m["AP"], m["AP50"], m["AR1"], m["AR100"], m["APs"]) == approx((0.0, 0.0, 0.0, 0.0, 0.0))
    assert (m["APm"], m["APl"], m["ARl"]) == approx((-1.0, -1.0, -1.0))
    assert m["num_results"] == 0


def test_gt_id_zero_is_never_a_true_positive():
    # Matches are stored as the GT id and 0 means "unmatched": the perfect prediction is an FP.
    m = evaluate(gt({1: 1}, [ann(0, 1, [A])]), [pred(1, 0.9, [A])])
    assert (m["AP"], m["AR100"]) == approx((0.0, 0.0))


def test_unknown_categories_dropped_unknown_videos_rejected():
    g = gt({1: 1}, [ann(1, 1, [A])])
    assert evaluate(g, [pred(1, 0.99, [FAR], cat=99), pred(1, 0.9, [A])])["AP"] == approx(1.0)
    with pytest.raises(ValueError, match=r"video ids not in the ground truth: \[7\]"):
        evaluate(g, [pred(7, 0.9, [A])])


def test_gt_formats_and_inputs_not_mutated():
    square = box(1, 3, 2, 4)
    g = gt({1: 2}, [ann(1, 1, [square, square])])
    g["annotations"][0]["segmentations"] = [
        {"size": [H, W], "counts": [21, 2, 8, 2, 67]},  # uncompressed RLE of `square`
        [[2, 1, 4, 1, 4, 3, 2, 3]],                        # polygon covering the same pixels
    ]
    preds = [pred(1, 0.9, [square, square])]
    g0, p0 = copy.deepcopy(g), copy.deepcopy(preds)
    assert evaluate(g, preds)["AP"] == approx(1.0)
    assert g == g0 and preds == p0
    # typed inputs work too
    assert evaluate(parse_gt(g), parse_results(preds))["AP"] == approx(1.0)


def test_lvvis_base_novel_split():
    # Category 1 (partition 0, base): perfect, AP 1. Category 2 (partition 3, novel): TP + FP over
    # 2 GT, AP 51/101 (see test_one_tp_then_one_fp). AP is the mean of both.
    g = gt({1: 1}, [ann(1, 1, [A], cat=1), ann(2, 1, [A], cat=2), ann(3, 1, [B], cat=2)],
           cats={1: 0, 2: 3})
    m = evaluate(g, [pred(1, 0.9, [A], cat=1), pred(1, 0.9, [A], cat=2), pred(1, 0.8, [FAR], cat=2)])
    assert m["AP_base"] == approx(1.0)
    assert m["AP_novel"] == approx(51 / 101)
    assert m["AP"] == approx((1 + 51 / 101) / 2)
    assert [c["partition"] for c in m["per_category"]] == [0, 3]


def test_lvvis_crowd_counts_in_base_novel_only():
    # LVVISeval does not ignore crowd GT: the unmatched crowd track is a missed GT there
    # (npig = 2, recall .5 -> 51/101), while the main AP follows YTVOSeval (crowd ignored -> 1).
    g = gt({1: 1}, [ann(1, 1, [A]), ann(2, 1, [B], iscrowd=1)], cats={1: 1})
    m = evaluate(g, [pred(1, 0.9, [A])])
    assert m["AP"] == approx(1.0)
    assert m["AP_base"] == approx(51 / 101)
    assert m["AP_novel"] == -1.0  # no novel category: undefined (the reference crashes here)


def test_eval_cli(tmp_path, capsys):
    g = gt({1: 1}, [ann(1, 1, [A]), ann(2, 1, [B])])
    (tmp_path / "gt.json").write_text(json.dumps(g))
    (tmp_path / "res.json").write_text(json.dumps([pred(1, 0.9, [A]), pred(1, 0.8, [FAR])]))
    out = tmp_path / "m" / "metrics.json"
    assert eval_main(["--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / "res.json"),
                      "--out", str(out)]) == 0
    assert json.loads(out.read_text())["AP"] == approx(51 / 101)
    assert " 50.5" in capsys.readouterr().out  # 51/101 in percent

    (tmp_path / "bad.json").write_text(json.dumps({"annotations": []}))
    assert eval_main(["--gt", str(tmp_path / "bad.json"), "--results", str(tmp_path / "res.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'bad.json'}: not a YouTube-VIS json: missing 'videos'"]
    assert eval_main(["--gt", str(tmp_path / "nope.json"), "--results", str(tmp_path / "res.json")]) == 2
    assert "nope.json" in capsys.readouterr().err
