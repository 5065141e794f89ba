"""YouTube-VIS file layouts: round trips, helpers and the error messages of malformed files."""

import json

import numpy as np
import pytest

from ovformer.ytvis.dataset import load_dataset_folder
from ovformer.ytvis.io import (
    GroundTruth, YTVISFormatError, annotation_from_masks, is_base_partition, parse_gt, read_gt,
    write_gt,
)
from ovformer.ytvis.results import (
    ResultEntry, check_results_against_gt, parse_results, read_results, result_from_masks,
    write_results,
)

H, W = 4, 5


def square() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[1:3, 2:4] = True  # the spec's example: RLE "92203", area 4, bbox [2, 1, 2, 2]
    return m


def gt_dict() -> dict:
    return {
        "info": {"description": "toy"},
        "videos": [{"id": 0, "width": W, "height": H, "length": 3,  # LV-VIS numbers videos from 0
                    "file_names": ["v0/00000.jpg", "v0/00005.jpg", "v0/00010.jpg"]}],
        "annotations": [{"id": 1, "video_id": 0, "category_id": 7, "iscrowd": 0,
                         "segmentations": [None, {"size": [H, W], "counts": "92203"},
                                           {"size": [H, W], "counts": [9, 2, 2, 2, 5]}],
                         "areas": [None, 4, 4], "bboxes": [None, [2.0, 1.0, 2.0, 2.0], [2.0, 1.0, 2.0, 2.0]]}],
        "categories": [{"id": 7, "name": "accordion", "partition": 3}],
    }


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_gt_round_trip(tmp_path):
    gt = read_gt(write_json(tmp_path / "gt.json", gt_dict()))
    assert [v.length for v in gt.videos] == [3]
    assert gt.categories[0].partition == 3
    assert gt.annotations[0].segmentations[1]["counts"] == "92203"
    write_gt(tmp_path / "again.json", gt)
    assert json.loads((tmp_path / "again.json").read_text()) == gt_dict()  # nothing lost or added
    assert read_gt(tmp_path / "again.json") == gt


def test_annotation_from_masks_computes_areas_and_bboxes():
    masks = [square(), np.zeros((H, W), bool), None]
    ann = annotation_from_masks(5, 0, 7, masks)
    # empty and None frames are null, like absent frames in the official files
    assert ann.segmentations == [{"size": [H, W], "counts": "92203"}, None, None]
    assert ann.areas == [4, None, None]
    assert ann.bboxes == [[2.0, 1.0, 2.0, 2.0], None, None]


def test_missing_areas_and_bboxes_are_computed():
    d = gt_dict()
    del d["annotations"][0]["areas"], d["annotations"][0]["bboxes"]
    ann = parse_gt(d).annotations[0]
    assert ann.areas == [None, 4, 4]
    assert ann.bboxes == [None, [2.0, 1.0, 2.0, 2.0], [2.0, 1.0, 2.0, 2.0]]


def test_test_split_without_annotations(tmp_path):
    d = gt_dict()
    del d["annotations"]
    gt = parse_gt(d)
    assert gt.annotations is None
    write_gt(tmp_path / "test.json", gt)
    assert "annotations" not in json.loads((tmp_path / "test.json").read_text())


def test_results_round_trip(tmp_path):
    stack = np.stack([square(), np.zeros((H, W), bool), square()])
    entry = result_from_masks(0, 7, 0.75, stack)
    # An empty frame still gets an RLE (as the official exporter writes): one run of 20 zeros.
    # 20 = 0b10100 has the 5-bit chunk's sign bit (0x10) set, so a 0 chunk must follow:
    # chr(48 + 20 + 0x20) = "d", chr(48 + 0) = "0".
    assert entry.segmentations[1] == {"size": [H, W], "counts": "d0"}
    raw = {"video_id": 0, "category_id": 7, "score": 0.5,
           "segmentations": [{"size": [H, W], "counts": b"92203"}, None, None]}  # bytes, as encode() gives
    write_results(tmp_path / "res.json", [entry, raw])
    text = (tmp_path / "res.json").read_text()
    assert '"counts":"92203"' in text  # bytes were decoded to str
    back = read_results(tmp_path / "res.json", gt=read_gt(write_json(tmp_path / "gt.json", gt_dict())))
    assert back[0] == entry
    assert back[1] == ResultEntry(0, 7, 0.5, [{"size": [H, W], "counts": "92203"}, None, None])


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("videos"), "not a YouTube-VIS json: missing 'videos'"),
    (lambda d: d.pop("categories"), "not a YouTube-VIS json: missing 'categories'"),
    (lambda d: d["annotations"][0]["segmentations"].pop(), "2 segmentations but the video has length 3"),
    (lambda d: d["annotations"][0]["areas"].append(1), "4 areas but the video has length 3"),
    (lambda d: d["annotations"][0]["segmentations"].__setitem__(1, {"size": [W, H], "counts": "92203"}),
     r"segmentations\[1\]: RLE size \[5, 4\] != \[height, width\] = \[4, 5\]"),
    (lambda d: d["annotations"][0]["segmentations"].__setitem__(2, {"size": [H, W], "counts": [9, 2, 2]}),
     "counts sum to 13, expected H\\*W = 20"),
    (lambda d: d["annotations"][0].__setitem__("id", 0), "annotation id 0 is not allowed"),
    (lambda d: d["annotations"][0].__setitem__("video_id", 3), "video_id 3 is not in 'videos'"),
    (lambda d: d["annotations"][0].__setitem__("category_id", 8), "category_id 8 is not in 'categories'"),
    (lambda d: d["annotations"][0].__setitem__("iscrowd", 2), "iscrowd must be 0 or 1"),
    (lambda d: d["videos"][0].__setitem__("length", 4), "length 4 != 3 file_names"),
    (lambda d: d["videos"].append(dict(d["videos"][0])), "duplicate video id 0"),
    (lambda d: d["categories"][0].__setitem__("partition", 5), "partition must be 0, 1, 2 or 3"),
])
def test_gt_errors_name_file_and_problem(tmp_path, mutate, message):
    d = gt_dict()
    mutate(d)
    path = write_json(tmp_path / "bad_gt.json", d)
    with pytest.raises(YTVISFormatError, match=message) as e:
        read_gt(path)
    assert str(path) in str(e.value)


def test_not_json_and_wrong_top_level(tmp_path):
    (tmp_path / "x.json").write_text("{oops")
    with pytest.raises(YTVISFormatError, match="not valid JSON"):
        read_gt(tmp_path / "x.json")
    with pytest.raises(YTVISFormatError, match="top level is a list"):
        read_gt(write_json(tmp_path / "l.json", []))
    with pytest.raises(YTVISFormatError, match="expected a list of predictions, got a dict"):
        read_results(write_json(tmp_path / "r.json", gt_dict()))


@pytest.mark.parametrize("entry, message", [
    ({"video_id": 0, "category_id": 7, "segmentations": []}, "missing 'score'"),
    ({"video_id": 0, "category_id": 7, "score": "high", "segmentations": []}, "score must be a finite number"),
    ({"video_id": 0, "category_id": 7, "score": 0.5,
      "segmentations": [{"size": [H, W], "counts": [9, 2, 2, 2, 5]}]}, "results need compressed RLE"),
])
def test_results_structure_errors(entry, message):
    with pytest.raises(YTVISFormatError, match=message):
        parse_results([entry], source="res.json")


@pytest.mark.parametrize("segs, message", [
    ([None, None], "2 segmentations but video 0 has length 3"),
    ([None, None, {"size": [H + 1, W], "counts": "T0"}], r"RLE size \[5, 5\] != \[height, width\] = \[4, 5\]"),
])
def test_results_checked_against_gt(segs, message):
    results = parse_results([{"video_id": 0, "category_id": 7, "score": 1.0, "segmentations": segs}])
    with pytest.raises(YTVISFormatError, match=message):
        check_results_against_gt(results, parse_gt(gt_dict()), source="res.json")


def test_results_unknown_video_is_an_error_unknown_category_is_not():
    gt = parse_gt(gt_dict())
    check_results_against_gt([ResultEntry(0, 99, 1.0, [None] * 3)], gt)  # dropped later by the evaluator
    with pytest.raises(YTVISFormatError, match="video_id 4 is not in the ground truth"):
        check_results_against_gt([ResultEntry(4, 7, 1.0, [None] * 3)], gt)


def test_is_base_partition():
    assert [is_base_partition(p) for p in (0, 1, 2, 3)] == [True, True, False, False]
    with pytest.raises(ValueError):
        is_base_partition(4)


def test_load_dataset_folder(tmp_path):
    d = gt_dict()
    d["videos"][0]["file_names"][2] = "v0\\00010.jpg"  # Windows separator, as in some LV-VIS copies
    write_json(tmp_path / "instances.json", d)
    (tmp_path / "JPEGImages" / "v0").mkdir(parents=True)
    for n in ("00000", "00005", "00010"):
        (tmp_path / "JPEGImages" / "v0" / f"{n}.jpg").write_bytes(b"")
    ds = load_dataset_folder(tmp_path)
    assert ds.annotation_file.name == "instances.json"
    assert isinstance(ds.gt, GroundTruth) and len(ds.gt.annotations) == 1
    paths = ds.frame_paths[0]
    assert [p.name for p in paths] == ["00000.jpg", "00005.jpg", "00010.jpg"]
    assert all(p.is_absolute() and p.is_file() for p in paths)

    (tmp_path / "JPEGImages" / "v0" / "00005.jpg").unlink()
    with pytest.raises(YTVISFormatError, match="1 of 3 frames missing"):
        load_dataset_folder(tmp_path)
    assert len(load_dataset_folder(tmp_path, check_frames=False).frame_paths[0]) == 3


def test_load_dataset_folder_without_annotation_file(tmp_path):
    with pytest.raises(YTVISFormatError, match="no annotation file.*annotations.json"):
        load_dataset_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no annotation file"):  # both kinds of error
        load_dataset_folder(tmp_path)


# (annotation file, frames folder, folders to open it by) under tmp_path, as released:
# app exports; LV-VIS (LVVIS/<split>/<split>_instances.json + JPEGImages beside it, official
# builtin.py); YouTube-VIS (ytvis_2019/<split>.json + <split>/JPEGImages); OVIS.
LAYOUTS = [
    ("d/annotations.json", "d/JPEGImages", ["d"]),
    ("d/instances.json", "d/JPEGImages", ["d"]),
    ("LVVIS/train/train_instances.json", "LVVIS/train/JPEGImages", ["LVVIS/train"]),
    ("LVVIS/val/val_instances.json", "LVVIS/val/JPEGImages", ["LVVIS/val"]),
    ("ytvis_2019/train.json", "ytvis_2019/train/JPEGImages", ["ytvis_2019", "ytvis_2019/train"]),
    ("ytvis_2019/valid.json", "ytvis_2019/valid/JPEGImages", ["ytvis_2019", "ytvis_2019/valid"]),
    ("ovis/annotations/valid.json", "ovis/valid", ["ovis/annotations", "ovis/valid"]),
]


def _layout(tmp_path, ann, frames):
    d = gt_dict()
    write_json((tmp_path / ann).parent.mkdir(parents=True, exist_ok=True) or tmp_path / ann, d)
    (tmp_path / frames / "v0").mkdir(parents=True, exist_ok=True)
    for name in d["videos"][0]["file_names"]:
        (tmp_path / frames / name).write_bytes(b"")


@pytest.mark.parametrize("ann,frames,opened_as", LAYOUTS, ids=[x[0] for x in LAYOUTS])
def test_every_reader_recognises_the_official_layouts(tmp_path, ann, frames, opened_as):
    from app.dashboard.datasets import load_dataset
    from ovformer.tools.inputs import expand_inputs
    from training.data import load_ytvis_folder

    _layout(tmp_path, ann, frames)
    expected = [tmp_path / frames / "v0" / n for n in ("00000.jpg", "00005.jpg", "00010.jpg")]
    for where in [ann] + opened_as:  # the JSON itself, its folder, the split folder
        path = tmp_path / where
        ds = load_dataset_folder(path)  # predict, the app
        assert ds.annotation_file == (tmp_path / ann).resolve() and ds.frame_paths[0] == [p.resolve() for p in expected]
        [item] = list(expand_inputs([str(path)]))  # `ovformer predict PATH`
        assert item.frame_files == ds.frame_paths[0] and item.video_id == 0
        folder = load_ytvis_folder(path)  # `ovformer train --data PATH`
        assert folder.annotation_file == tmp_path / ann
        assert [folder.image_root / n for n in folder.videos[0]["file_names"]] == expected
    assert load_dataset(str(tmp_path / ann)).frames_root == str(tmp_path / frames)  # dashboard


def test_several_or_no_annotation_files_are_an_error(tmp_path):
    from training.data import load_ytvis_folder

    _layout(tmp_path, "LVVIS/train/train_instances.json", "LVVIS/train/JPEGImages")
    write_json(tmp_path / "LVVIS/train/train_instances_nonovel.json", gt_dict())
    for read in (load_dataset_folder, load_ytvis_folder):
        with pytest.raises(YTVISFormatError, match="several annotation files.*train_instances.json, "
                                                   "train_instances_nonovel.json.*pass the one"):
            read(tmp_path / "LVVIS/train")
    # the file itself is unambiguous
    assert load_ytvis_folder(tmp_path / "LVVIS/train/train_instances_nonovel.json").videos
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "results.json").write_text("[]")  # not a ground-truth name
    with pytest.raises(FileNotFoundError, match="empty: no annotation file.*val_instances.json"):
        load_ytvis_folder(tmp_path / "empty")
    # a folder of frames beside its predictions (bikes/ + bikes.json) is a video, not a dataset
    from ovformer.tools.inputs import expand_inputs

    (tmp_path / "bikes").mkdir()
    (tmp_path / "bikes" / "00000.jpg").write_bytes(b"")
    (tmp_path / "bikes.json").write_text("[]")
    [item] = list(expand_inputs([str(tmp_path / "bikes")]))
    assert item.video_id is None and item.frame_files is None


def test_windows_separators_keep_video_and_frame(tmp_path):
    """LV-VIS copies with "JPEGImages\\v0\\00000.jpg": the official loader keeps the last
    two components (lvvis.py), so do the readers."""
    from training.data import load_ytvis_folder

    d = gt_dict()
    d["videos"][0]["file_names"] = [f"JPEGImages\\v0\\{n}.jpg" for n in ("00000", "00005", "00010")]
    write_json(tmp_path / "val_instances.json", d)
    (tmp_path / "JPEGImages" / "v0").mkdir(parents=True)
    for n in ("00000", "00005", "00010"):
        (tmp_path / "JPEGImages" / "v0" / f"{n}.jpg").write_bytes(b"")
    assert load_dataset_folder(tmp_path).frame_paths[0][0] == (tmp_path / "JPEGImages/v0/00000.jpg").resolve()
    f = load_ytvis_folder(tmp_path)
    assert f.videos[0]["file_names"][2] == "v0/00010.jpg" and f.image_root == tmp_path / "JPEGImages"
