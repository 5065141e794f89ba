"""What ``ovformer predict`` accepts: video files, frame folders, YouTube-VIS / LV-VIS dataset
folders or their annotation JSON (recognised by `ovformer.ytvis.dataset`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..data.video import DEFAULT_FOLDER_FPS, VideoInfo, VideoSource, open_video
from ..ytvis.dataset import is_dataset, load_dataset_folder
from ..ytvis.io import Category


@dataclass
class InputVideo:
    """One video to predict. ``key`` names it in resumable outputs; ``video_id`` is kept from a
    dataset, else assigned in order; ``categories`` come with dataset inputs."""
    key: str
    path: Path
    video_id: int | None
    frame_files: list[Path] | None = None
    categories: list[Category] | None = None
    size: tuple[int, int] | None = None  # (height, width) recorded by a dataset

    def open(self, fps: float | None, max_frames: int | None) -> VideoSource:
        """Open the video for streaming. A dataset video keeps exactly its listed frames (its
        annotations index them), so ``fps`` does not apply to it."""
        if self.frame_files is None:
            return open_video(self.path, fps=fps, max_frames=max_frames)
        missing = [f for f in self.frame_files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{self.key}: frame {missing[0]} is missing")
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
                yield InputVideo(f"{name}/{v.id}", path, v.id, files, ds.gt.categories,
                                 (v.height, v.width))
        else:
            yield InputVideo(path.stem if path.is_file() else path.name, path, None)
