"""A rotated phone video gives the same frames in the app, the CLI and training.

The app imports through ``ovformer.data.video.open_video`` (the one decode loop); its export is
what training reads. The stored frames are JPEG (quality 92), so pixels agree to within JPEG
error, while shapes and orientation agree exactly.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from app.annotate.export import export_dataset
from app.annotate.media import Limits, decode_any
from app.annotate.store import Store
from ovformer.data.video import open_video
from ovformer.tools.inputs import expand_inputs
from training.data import VideoClipDataset, load_ytvis_folder


def rotated_video(path: Path, n: int = 4) -> Path:
    """A 64 wide, 32 high H.264 stream whose display matrix says "turn 90° clockwise" (phones'
    rotate=90); each frame is dark with a bright block in its top-left quarter."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(5))
        s.height, s.width, s.pix_fmt = 32, 64, "yuv420p"
        s.set_display_rotation(-90)  # counter-clockwise degrees
        for i in range(n):
            a = np.full((32, 64, 3), 20 + 10 * i, np.uint8)
            a[:16, :16] = 230
            c.mux(s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        c.mux(s.encode(None))
    return path


def test_rotated_video_same_frames_in_app_cli_and_training(tmp_path):
    video = rotated_video(tmp_path / "phone.mp4")
    reference = [f.rgb for f in open_video(video)]
    assert len(reference) == 4 and reference[0].shape == (64, 32, 3)  # upright: 32 wide, 64 high
    assert reference[0][:8, -8:].mean() > 200 and reference[0][-8:, :8].mean() < 60  # block now top-right

    (cli_input,) = list(expand_inputs([str(video)]))  # `ovformer predict`'s reader
    cli = [f.rgb for f in cli_input.open(None, None)]
    assert all(np.array_equal(a, b) for a, b in zip(cli, reference, strict=True))

    store = Store(tmp_path / "home")  # the app's import, then its dataset export
    project = store.create_project("phone", ["person"])
    decoded = decode_any(video, store.reserve_video_dir(), None, Limits())
    assert (decoded.num_frames, decoded.height, decoded.width) == (4, 64, 32)
    store.add_video(project, "phone", decoded.folder, decoded.width, decoded.height, decoded.num_frames, decoded.fps)
    root = export_dataset(store, project, tmp_path / "datasets")

    folder = load_ytvis_folder(root)  # training's reader, with an augmentation that changes nothing
    data = VideoClipDataset([folder], ["person"], lambda rng, frames, masks: (frames, masks), num_frames=4,
                            frame_range=4)
    clip = data.clip(np.random.default_rng(0), 0)
    assert len(clip.frame_paths) == 4
    for path, frame in zip(clip.frame_paths, clip.frames):
        t = int(Path(path).stem)
        rgb = frame.permute(1, 2, 0).numpy()
        assert rgb.shape == reference[t].shape == (64, 32, 3)
        assert np.abs(rgb - reference[t].astype(np.float32)).mean() < 3  # JPEG error only
