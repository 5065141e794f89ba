"""YouTube-VIS / LV-VIS video instance segmentation mAP, equal to the reference ``ytvoseval``.

Rules (``docs/ytvis_format.md`` §4-7), in the order they apply:

* video IoU of a (prediction, GT) pair = Σ_t |D_t ∩ G_t| / Σ_t |D_t ∪ G_t| over the frames both
  tracks have (the reference zips the two lists); a prediction on a GT-null frame enlarges the
  union; masks of different sizes add 0 to both sums (pycocotools' merge of mismatched sizes);
* per (video, category): predictions stable-sorted by score (mergesort, so results order breaks
  ties) and cut to 100; GT sorted non-ignored first; greedy matching per IoU threshold
  (0.50:0.05:0.95), a prediction taking the best IoU >= t (on equal IoU the *later* GT wins, as
  in the reference's ``ious < iou`` test); crowd GT are ignored and absorb any number of matches;
* size ranges all/small/medium/large = [0, 1e10] / [0, 128²] / [128², 256²] / [256², 1e10],
  inclusive, on ``avg_area`` = mean of the truthy GT ``areas`` (for predictions, of their RLE areas);
* accumulation per (category, range, maxDets 1/10/100 applied per (video, category)): videos in
  ascending id order, then a stable sort by score; 101-point interpolated precision; -1 where a
  category has no non-ignored GT; every stat is the mean over the defined entries.

Where the reference crashes, this module defines the result instead: an empty results list
scores 0 wherever GT exists, and an empty base or novel split gives -1.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from .io import GroundTruth, YTVISFormatError, is_base_partition
from .results import ResultEntry
from .rle import to_compressed

__all__ = ["evaluate", "IOU_THRESHOLDS", "RECALL_THRESHOLDS", "MAX_DETS", "AREA_RANGES", "STAT_NAMES"]

logger = logging.getLogger(__name__)

# Built exactly as Params.setDetParams does: linspace (not arange) so that 0.5 and 0.75 are
# exact members (AP50/AP75 look them up with ==) and every threshold has the reference's bits.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RANGES = ((0.0, 1e5**2), (0.0, 128.0**2), (128.0**2, 256.0**2), (256.0**2, 1e5**2))
AREA_LABELS = ("all", "small", "medium", "large")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class _Track:
    """One GT or predicted track, ready for IoU computation (never aliases caller data)."""

    id: Any                          # GT: annotation id; prediction: position in results + 1
    rles: list[dict | None]          # compressed RLE or None, per frame
    areas: np.ndarray                # (frames,) int64 RLE pixel areas, 0 where None
    sizes: list[tuple[int, int] | None]
    avg_area: float                  # YTVOSeval rule
    avg_area_lv: float               # LVVISeval rule (int() of each area first)
    iscrowd: bool = False
    score: float = 0.0


def _avg_area(areas: Sequence[Any], as_int: bool) -> float:
    # `if a` drops null *and* 0 areas; np.mean for bit-identical floats with the reference.
    vals = [int(a) if as_int else a for a in areas if a]
    return float(np.array(vals).mean()) if vals else 0.0


def _track(segs: Sequence[Any], h: int, w: int, **kw: Any) -> _Track:
    rles: list[dict | None] = [to_compressed(s, h, w) if s else None for s in segs]
    present = [r for r in rles if r is not None]
    areas = np.zeros(len(rles), np.int64)
    if present:
        areas[[i for i, r in enumerate(rles) if r is not None]] = mask_utils.area(present)
    sizes = [None if r is None else (int(r["size"][0]), int(r["size"][1])) for r in rles]
    return _Track(rles=rles, areas=areas, sizes=sizes, **kw)


def _video_iou(dts: list[_Track], gts: list[_Track]) -> np.ndarray:
    """(D, G) video IoU matrix, Σ intersections / Σ unions over the zipped frames."""
    D, G = len(dts), len(gts)
    if D == 0 or G == 0:
        return np.zeros((D, G))
    inter = np.zeros((D, G), np.int64)
    union = np.zeros((D, G), np.int64)
    d_len = np.array([len(t.rles) for t in dts])
    g_len = np.array([len(t.rles) for t in gts])
    for f in range(int(min(d_len.max(), g_len.max()))):
        # zip(d_seq, g_seq) truncates: frame f counts only for pairs where both tracks have it.
        di, gi = np.flatnonzero(d_len > f), np.flatnonzero(g_len > f)
        if di.size == 0 or gi.size == 0:
            continue
        da = np.array([dts[i].areas[f] for i in di])
        ga = np.array([gts[j].areas[f] for j in gi])
        u = da[:, None] + ga[None, :]  # one side null: union = the other's area
        dn = [k for k, i in enumerate(di) if dts[i].rles[f] is not None]
        gn = [k for k, j in enumerate(gi) if gts[j].rles[f] is not None]
        if dn and gn:
            iou = np.asarray(mask_utils.iou([dts[di[k]].rles[f] for k in dn],
                                            [gts[gi[k]].rles[f] for k in gn], [0] * len(gn)))
            iou = np.clip(iou.reshape(len(dn), len(gn)), 0.0, None)
            dsz = np.array([dts[di[k]].sizes[f] for k in dn])
            gsz = np.array([gts[gi[k]].sizes[f] for k in gn])
            same = (dsz[:, None, :] == gsz[None, :, :]).all(-1)
            a_sum = da[dn][:, None] + ga[gn][None, :]
            # pycocotools' C rleIou gives I/U with U = a_d + a_g - I, hence I = iou*(a_d+a_g)/(1+iou)
            # exactly up to rounding (areas < 2^32): one C call per frame instead of D*G merges.
            i_pix = np.rint(iou * a_sum / (1.0 + iou)).astype(np.int64)
            # Mismatched sizes: merge() returns an empty mask, so 0 is added to I *and* U.
            i_pix = np.where(same, i_pix, 0)
            u[np.ix_(dn, gn)] = np.where(same, a_sum - i_pix, 0)
            inter[np.ix_(di[dn], gi[gn])] += i_pix
        union[np.ix_(di, gi)] += u
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _match(ious: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray,
           gt_truthy_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of score-sorted predictions, per IoU threshold (evaluateVid's loop).

    Returns ``matched`` (T, D) (matched to a GT whose id is truthy: id 0 reads as "unmatched" in
    the reference, which stores GT ids) and ``ignored`` (T, D) (matched to an ignored GT).
    """
    D, G = ious.shape
    order = np.argsort(gt_ignore.astype(np.int64), kind="mergesort")  # non-ignored GT first
    rows = ious[:, order].tolist()
    ig = gt_ignore[order].tolist()
    crowd = gt_crowd[order].tolist()
    truthy = gt_truthy_id[order].tolist()
    T = len(IOU_THRESHOLDS)
    matched = np.zeros((T, D), bool)
    ignored = np.zeros((T, D), bool)
    for t_idx, t in enumerate(IOU_THRESHOLDS.tolist()):
        taken = [False] * G
        for d in range(D):
            best, m = min(t, 1 - 1e-10), -1
            row = rows[d]
            for g in range(G):
                if taken[g] and not crowd[g]:
                    continue
                if m > -1 and not ig[m] and ig[g]:
                    break  # matched a real GT already: ignored GT (sorted last) cannot win
                if row[g] < best:
                    continue  # `<`, not `<=`: equal IoU moves the match to the later GT
                best, m = row[g], g
            if m == -1:
                continue
            ignored[t_idx, d] = ig[m]
            matched[t_idx, d] = truthy[m]
            taken[m] = True
    return matched, ignored


@dataclass
class _PairEval:
    scores: np.ndarray   # (D,) sorted descending (stable), at most 100
    matched: np.ndarray  # (T, D)
    ignored: np.ndarray  # (T, D)
    gt_ignore: np.ndarray  # (G,)


def _eval_pair(dts: list[_Track], gts: list[_Track], ious: np.ndarray, area_rng: tuple[float, float],
               lv_rule: bool, cache: dict) -> _PairEval:
    lo, hi = area_rng
    gt_area = np.array([g.avg_area_lv if lv_rule else g.avg_area for g in gts], float)
    crowd = np.array([g.iscrowd for g in gts], bool)
    out_of_range = (gt_area < lo) | (gt_area > hi)  # inclusive bounds
    # LVVISeval drops the `ignore or` term: crowd GT count in recall (they still absorb matches).
    gt_ignore = out_of_range if lv_rule else (crowd | out_of_range)
    key = gt_ignore.tobytes()
    if key not in cache:  # ranges that ignore the same GT give the same matching
        cache[key] = _match(ious, gt_ignore, crowd, np.array([bool(g.id) for g in gts], bool))
    matched, ignored = cache[key]
    dt_area = np.array([d.avg_area for d in dts], float)
    dt_out = (dt_area < lo) | (dt_area > hi)
    ignored = ignored | (~matched & dt_out[None, :])  # unmatched predictions of another size
    return _PairEval(np.array([d.score for d in dts], float), matched, ignored,
                     gt_ignore[np.argsort(gt_ignore.astype(np.int64), kind="mergesort")])


def _accumulate(evals: list[_PairEval]) -> tuple[np.ndarray, np.ndarray]:
    """(T, R, M) precision and (T, M) recall of one (category, range) cell; -1 if undefined."""
    T, R, M = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(MAX_DETS)
    precision, recall = -np.ones((T, R, M)), -np.ones((T, M))
    if not evals:
        return precision, recall
    npig = int(sum(np.count_nonzero(~e.gt_ignore) for e in evals))
    if npig == 0:
        return precision, recall
    for m, max_det in enumerate(MAX_DETS):
        scores = np.concatenate([e.scores[:max_det] for e in evals])
        # Videos are concatenated in ascending id order: with mergesort, ties go to the lower id.
        inds = np.argsort(-scores, kind="mergesort")
        dtm = np.concatenate([e.matched[:, :max_det] for e in evals], axis=1)[:, inds]
        dtig = np.concatenate([e.ignored[:, :max_det] for e in evals], axis=1)[:, inds]
        tp = np.cumsum(dtm & ~dtig, axis=1).astype(float)
        fp = np.cumsum(~dtm & ~dtig, axis=1).astype(float)
        nd = tp.shape[1]
        if nd == 0:
            recall[:, m] = 0.0
            precision[:, :, m] = 0.0
            continue
        rc = tp / npig
        pr = tp / (fp + tp + np.spacing(1))
        recall[:, m] = rc[:, -1]
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # monotone envelope
        for t in range(T):
            idx = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
            # recall points past the maximum recall stay 0 (the reference's swallowed IndexError)
            precision[t, :, m] = np.where(idx < nd, pr[t, np.minimum(idx, nd - 1)], 0.0)
    return precision, recall


def _run(pairs: Mapping[tuple[int, int], tuple[list[_Track], list[_Track], np.ndarray]],
         vid_ids: list[int], cat_ids: list[int], lv_rule: bool) -> tuple[np.ndarray, np.ndarray]:
    """(T, R, K, A, M) precision and (T, K, A, M) recall over all categories."""
    T, R, K, A, M = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(cat_ids), len(AREA_RANGES), len(MAX_DETS)
    precision, recall = -np.ones((T, R, K, A, M)), -np.ones((T, K, A, M))
    vid_rank = {v: i for i, v in enumerate(vid_ids)}
    by_cat: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for vid, cat in pairs:
        by_cat[cat].append((vid_rank[vid], vid))
    for k, cat in enumerate(cat_ids):
        vids = [v for _, v in sorted(by_cat.get(cat, []))]
        caches = {vid: {} for vid in vids}
        for a, rng in enumerate(AREA_RANGES):
            evals = [_eval_pair(*pairs[vid, cat], rng, lv_rule, caches[vid]) for vid in vids]
            precision[:, :, k, a, :], recall[:, k, a, :] = _accumulate(evals)
    return precision, recall


def _mean_defined(s: np.ndarray) -> float:
    vals = s[s > -1]
    return float(np.mean(vals)) if vals.size else -1.0


def _summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    # Index layout and means exactly as YTVOSeval.summarize (maxDets index 2 = 100).
    t50, t75 = np.where(IOU_THRESHOLDS == 0.5)[0], np.where(IOU_THRESHOLDS == 0.75)[0]
    return {
        "AP": _mean_defined(precision[:, :, :, 0, 2]),
        "AP50": _mean_defined(precision[t50][:, :, :, 0, 2]),
        "AP75": _mean_defined(precision[t75][:, :, :, 0, 2]),
        "APs": _mean_defined(precision[:, :, :, 1, 2]),
        "APm": _mean_defined(precision[:, :, :, 2, 2]),
        "APl": _mean_defined(precision[:, :, :, 3, 2]),
        "AR1": _mean_defined(recall[:, :, 0, 0]),
        "AR10": _mean_defined(recall[:, :, 0, 1]),
        "AR100": _mean_defined(recall[:, :, 0, 2]),
        "ARs": _mean_defined(recall[:, :, 1, 2]),
        "ARm": _mean_defined(recall[:, :, 2, 2]),
        "ARl": _mean_defined(recall[:, :, 3, 2]),
    }


def _gt_tracks(annotations: list[Mapping[str, Any]], videos: Mapping[Any, tuple[int, int]],
               cats: Mapping[Any, Any]) -> dict[tuple[Any, Any], list[_Track]]:
    """GT tracks per (video, category), in file order (the order matching walks them)."""
    gts: dict[tuple[Any, Any], list[_Track]] = defaultdict(list)
    seen: set = set()
    for ann in annotations:
        if ann["id"] in seen:
            raise YTVISFormatError(f"ground truth: duplicate annotation id {ann['id']}")
        seen.add(ann["id"])
        vid, cat = ann["video_id"], ann["category_id"]
        if vid not in videos or cat not in cats:
            continue  # getAnnIds(vidIds, catIds) never returns these
        if "areas" not in ann:
            raise YTVISFormatError(f"ground truth: annotation {ann['id']} has no 'areas' (size ranges need it)")
        h, w = videos[vid]
        gts[vid, cat].append(_track(ann["segmentations"], h, w, id=ann["id"],
                                    avg_area=_avg_area(ann["areas"], False),
                                    avg_area_lv=_avg_area(ann["areas"], True),
                                    iscrowd=bool(ann.get("iscrowd", 0))))
    return gts


def _dt_tracks(results: list[Mapping[str, Any]], videos: Mapping[Any, tuple[int, int]],
               cats: Mapping[Any, Any]) -> dict[tuple[Any, Any], list[_Track]]:
    """Predicted tracks per (video, category), in results order; ids = position + 1 (loadRes)."""
    unknown = sorted({r["video_id"] for r in results} - set(videos), key=str)
    if unknown:
        raise ValueError(f"results refer to video ids not in the ground truth: {unknown[:10]}")
    dts: dict[tuple[Any, Any], list[_Track]] = defaultdict(list)
    dropped = 0
    for i, r in enumerate(results):
        vid, cat = r["video_id"], r["category_id"]
        if cat not in cats:
            dropped += 1
            continue
        h, w = videos[vid]
        trk = _track(r["segmentations"], h, w, id=i + 1, avg_area=0.0, avg_area_lv=0.0,
                     score=float(r["score"]))
        # loadRes computes a prediction's areas from its RLEs (no "areas" field is read)
        trk.avg_area = trk.avg_area_lv = _avg_area(trk.areas[trk.areas > 0].tolist(), False)
        dts[vid, cat].append(trk)
    if dropped:
        logger.warning("%d of %d results have a category id not in the ground truth; they are "
                       "ignored (0-based labels need +1?)", dropped, len(results))
    return dts


def evaluate(gt: Mapping[str, Any] | GroundTruth,
             results: Iterable[Mapping[str, Any] | ResultEntry]) -> dict[str, Any]:
    """YouTube-VIS video mAP of ``results`` against ``gt``; neither input is modified.

    Args:
        gt: ground truth in the JSON layout (``videos``, ``annotations``, ``categories``), or a
            :class:`~ovformer.ytvis.io.GroundTruth`. GT masks may be compressed/uncompressed RLE
            or polygons; size ranges use the GT ``areas`` field.
        results: ``[{video_id, category_id, score, segmentations}]``. Unknown category ids are
            dropped (as the reference does); an unknown video id raises ``ValueError``.

    Returns:
        ``AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl`` as fractions in
        [0, 1], -1 where undefined (e.g. ``APl`` without large GT); ``AP_base``/``AP_novel``
        when categories carry an LV-VIS ``partition``; ``per_category``: a list of
        ``{id, name, AP, num_gt_tracks[, partition]}``; ``num_videos``; ``num_results``.

    Crowd with partitions: the twelve main stats and ``per_category`` always follow YTVOSeval
    (crowd GT ignored), so ``AP`` means the same for every dataset. ``AP_base``/``AP_novel`` are
    LVVISeval's printed APb/APn: means over the base/novel category slices of a precision array
    built with LVVISeval's rules (crowd GT not ignored, ``int()`` of each GT area). On crowd-free
    integer-area data (LV-VIS itself) both arrays are identical and AP is their joint mean.
    Categories are split by position in the sorted id list; LVVISeval indexes by ``id - 1``,
    which is the same when ids are 1..K (as in LV-VIS). An empty split gives -1 (LVVISeval
    raises IndexError).
    """
    if isinstance(gt, GroundTruth):
        gt = gt.to_dict()
    for key in ("videos", "categories"):
        if key not in gt:
            raise YTVISFormatError(f"ground truth: not a YouTube-VIS json: missing '{key}'")
    if gt.get("annotations") is None:
        raise YTVISFormatError("ground truth has no 'annotations' (a test split?): nothing to evaluate")
    results = [r.to_dict() if isinstance(r, ResultEntry) else r for r in results]

    videos = {}
    for v in gt["videos"]:
        if v["id"] in videos:
            raise YTVISFormatError(f"ground truth: duplicate video id {v['id']}")
        videos[v["id"]] = (int(v["height"]), int(v["width"]))
    cats = {c["id"]: c for c in gt["categories"]}
    vid_ids, cat_ids = sorted(videos), sorted(cats)
    gts = _gt_tracks(gt["annotations"], videos, cats)
    dts = _dt_tracks(results, videos, cats)

    pairs = {}
    for key in set(gts) | set(dts):
        dt = dts.get(key, [])
        order = np.argsort([-d.score for d in dt], kind="mergesort")[:MAX_DETS[-1]]
        dt = [dt[i] for i in order]
        pairs[key] = (dt, gts.get(key, []), _video_iou(dt, gts.get(key, [])))

    precision, recall = _run(pairs, vid_ids, cat_ids, lv_rule=False)
    out: dict[str, Any] = _summarize(precision, recall)

    partitions = {c: cats[c].get("partition") for c in cat_ids}
    has_partition = any(p is not None for p in partitions.values())
    if has_partition:
        lv_differs = any(g.iscrowd or g.avg_area != g.avg_area_lv for ts in gts.values() for g in ts)
        lv_prec = _run(pairs, vid_ids, cat_ids, lv_rule=True)[0] if lv_differs else precision
        s = lv_prec[:, :, :, 0, 2]
        split = {k: is_base_partition(partitions[c]) for k, c in enumerate(cat_ids) if partitions[c] is not None}
        base = [k for k, is_base in split.items() if is_base]
        novel = [k for k, is_base in split.items() if not is_base]
        out["AP_base"] = _mean_defined(s[:, :, base]) if base else -1.0
        out["AP_novel"] = _mean_defined(s[:, :, novel]) if novel else -1.0

    per_cat = []
    for k, c in enumerate(cat_ids):
        entry = {"id": c, "name": cats[c].get("name", str(c)),
                 "AP": _mean_defined(precision[:, :, k, 0, -1]),
                 "num_gt_tracks": sum(len(ts) for (_, cat), ts in gts.items() if cat == c)}
        if has_partition:
            entry["partition"] = partitions[c]
        per_cat.append(entry)
    out["per_category"] = per_cat
    out["num_videos"] = len(vid_ids)
    out["num_results"] = len(results)
    return out
