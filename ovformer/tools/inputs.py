"""What ``ovformer predict`` accepts: video files, frame folders, YouTube-VIS / LV-VIS dataset
folders or their annotation JSON (recognised by `ovformer.ytvis.dataset`)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..data.video import DEFAULT_FOLDER_FPS, VideoInfo, VideoSource, open_video
from ..ytvis.dataset import is_dataset, load_dataset_folder
from ..ytvis.io import Category


@dataclass
class InputVideo:
    """One video to predict.

    ``key`` is its identity in resumable outputs: the full resolved path of a video file or
    frame folder, ``<resolved dataset path>#<video id>`` for a dataset's video (two inputs with
    one stem, ``a/clip.mp4`` and ``b/clip.mp4`` or ``clip.mp4`` and ``clip.webm``, never share
    it). ``label`` is what messages print, ``slug`` a file-name-safe name unique per key.
    ``video_id`` is kept from a dataset, else assigned in order; ``categories`` come with
    dataset inputs."""
    key: str
    path: Path
    video_id: int | None
    frame_files: list[Path] | None = None
    categories: list[Category] | None = None
    size: tuple[int, int] | None = None  # (height, width) recorded by a dataset
    label: str = ""

    @property
    def slug(self) -> str:
        """``<readable name>-<12 hex digits of the key's SHA-256>``: a part file's or frame
        folder's name; the readable part alone (the stem) would collide."""
        name = self.path.stem if self.frame_files is None else f"{self.path.stem}_{self.video_id}"
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:12]
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)[:60]}-{digest}"

    def count_frames(self, fps: float | None, max_frames: int | None) -> int:
        """Frames :meth:`open` will yield (from the container's header for a file: an estimate
        for balancing work, not a promise)."""
        if self.frame_files is not None:
            n = len(self.frame_files)
            return n if max_frames is None else min(n, max_frames)
        return open_video(self.path, fps=fps, max_frames=max_frames).info.num_frames

    def open(self, fps: float | None, max_frames: int | None) -> VideoSource:
        """Open the video for streaming. A dataset video keeps exactly its listed frames (its
        annotations index them), so ``fps`` does not apply to it."""
        if self.frame_files is None:
            return open_video(self.path, fps=fps, max_frames=max_frames)
        missing = [f for f in self.frame_files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{self.label}: frame {missing[0]} is missing")
        h, w = self.size
        n = len(self.frame_files) if max_frames is None else min(max_frames,
                                                                len(self.frame_files))
        info = VideoInfo(self.frame_files[0].parent, w, h, n, float(DEFAULT_FOLDER_FPS))
        return VideoSource(info, fps=None, max_frames=max_frames, frame_files=self.frame_files)


def is_dataset_folder(path: Path) -> bool:
    """A dataset folder or annotation JSON (`ovformer.ytvis.dataset.is_dataset`), not a video."""
    return is_dataset(path)


def expand_inputs(paths: list[str]) -> Iterator[InputVideo]:
    """Every video of every input, in order. A dataset folder yields each of its videos."""
    for raw in paths:
        path = Path(raw)
        if is_dataset_folder(path):
            ds = load_dataset_folder(path, check_frames=False)
            for v in ds.gt.videos:
                files = ds.frame_paths[v.id]
                name = path.name if path.is_dir() else path.stem
                yield InputVideo(f"{path.resolve()}#{v.id}", path, v.id, files,
                                 ds.gt.categories, (v.height, v.width), f"{name}/{v.id}")
        else:
            yield InputVideo(str(path.resolve()), path, None, label=raw)
