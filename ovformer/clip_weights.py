"""Registry entry, presence check and download of the CLIP weights the released models use.

``ovformer.clip.load_clip("openai")`` builds ViT-B-32-quickgelu and has open_clip fetch OpenAI's
weights from the Hugging Face Hub repo ``timm/vit_base_patch32_clip_224.openai``. With
safetensors installed open_clip asks for ``open_clip_model.safetensors`` first
(``open_clip/pretrained.py::download_pretrained_from_hf``), at the default revision; so having
that file in the hub cache at revision ``"main"`` is what lets ``load_clip("openai")`` work
with the hub offline (``HF_HUB_OFFLINE=1``, as the app and ``make run`` keep it).

:func:`download_clip_weights` fetches it on request, lifting the hub's offline switch for that
call only (:func:`ovformer.download.hub_online`); :func:`clip_weights_path` says whether it is
cached without any network access.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .weights import Progress, WeightsNotFoundError, _hashes_file, _read_known, _record_known, downloads_forbidden

__all__ = ["CLIP_OPENAI", "ClipEntry", "clip_weights_path", "download_clip_weights", "get_clip_entry",
           "hub_cache_dir", "list_clip_weights"]


@dataclass(frozen=True)
class ClipEntry:
    """CLIP weights kept in the Hugging Face Hub cache (where open_clip looks for them).

    Attributes:
        name: registry name (``"clip-openai"``).
        spec: the :func:`ovformer.clip.load_clip` spec they serve (``"openai"``).
        repo_id, filename, revision: the file on the hub.
        description: what they are.
        kind: always ``"clip"``.
    """

    name: str
    spec: str
    repo_id: str
    filename: str
    revision: str
    description: str
    kind: str = "clip"

    @property
    def url(self) -> str:
        """Where a person can download the file by hand."""
        return f"https://huggingface.co/{self.repo_id}/resolve/{self.revision}/{self.filename}"


CLIP_OPENAI = "clip-openai"

_CLIPS: dict[str, ClipEntry] = {
    CLIP_OPENAI: ClipEntry(CLIP_OPENAI, "openai", "timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors",
                           "main", "OpenAI CLIP ViT-B/32, the frozen text and image encoder of every released model"),
}


def list_clip_weights() -> list[ClipEntry]:
    """All registered CLIP weights (``kind == "clip"``)."""
    return list(_CLIPS.values())


def get_clip_entry(name_or_spec: str = CLIP_OPENAI) -> ClipEntry:
    """The registered CLIP weights by registry name (``"clip-openai"``) or load_clip spec (``"openai"``).

    Raises:
        KeyError: neither (the message lists the known names).
    """
    for entry in _CLIPS.values():
        if name_or_spec in (entry.name, entry.spec):
            return entry
    raise KeyError(f"unknown CLIP weights {name_or_spec!r}; known: {', '.join(_CLIPS)}")


def hub_cache_dir(cache_dir: str | None = None) -> Path:
    """The hub cache the CLIP weights go to: ``cache_dir``, else huggingface_hub's (``$HF_HUB_CACHE``)."""
    from huggingface_hub import constants

    return Path(cache_dir or constants.HF_HUB_CACHE).expanduser()


def _expected(entry: ClipEntry) -> tuple[int | None, str | None]:
    rec = _read_known().get(entry.name, {})
    if rec.get("repo_id") != entry.repo_id or rec.get("filename") != entry.filename:
        return None, None  # a record of another file says nothing about this one
    return rec.get("size"), rec.get("sha256")


def clip_weights_path(name_or_spec: str = CLIP_OPENAI, *, cache_dir: str | None = None) -> Path | None:
    """The cached CLIP weights file, or None when it is not cached. Never touches the network.

    A cached file whose size disagrees with the size recorded at download counts as missing.
    """
    from .download import hub_cached_path

    entry = get_clip_entry(name_or_spec)
    path = hub_cached_path(entry.repo_id, entry.filename, revision=entry.revision, cache_dir=cache_dir)
    size = _expected(entry)[0]
    if path is not None and size is not None and path.stat().st_size != size:
        return None
    return path


def missing_message(entry: ClipEntry, cache_dir: str | None, why: str) -> str:
    """What to do about missing CLIP weights: the file, where it goes, the command."""
    return (f"CLIP weights '{entry.name}' ({entry.description}) {why}.\n"
            f"  missing file: {entry.repo_id}/{entry.filename} in the Hugging Face cache {hub_cache_dir(cache_dir)}\n"
            f"  download it:  ovformer weights download {entry.name}  (or the model's name: it fetches CLIP too)\n"
            f"  or by hand:   {entry.url} -> pass the file with --clip /path/to/{entry.filename}")


def download_clip_weights(name_or_spec: str = CLIP_OPENAI, *, cache_dir: str | None = None, force: bool = False,
                          progress: Progress = True, file_index: int = 1, file_count: int = 1) -> Path:
    """Fetch CLIP weights into the hub cache, the hub's offline switch lifted for this call only.

    ``HF_HUB_OFFLINE`` in the environment does not stop this (the point is to download on
    request while everything else stays offline); ``OVFORMER_OFFLINE`` does. Size and SHA-256
    are recorded in ``known_hashes.json`` on the first download and checked afterwards.

    Args:
        name_or_spec: ``"clip-openai"`` or ``"openai"``.
        cache_dir: hub cache (default huggingface_hub's).
        force: download even when cached.
        progress: True for a terminal bar, False for none, or a DownloadProgress callback.

    Returns:
        The cached file's path (a hub snapshot path).

    Raises:
        WeightsNotFoundError: ``OVFORMER_OFFLINE`` is set.
        WeightsDownloadError: network, disk-full, verification or other (``reason``).
    """
    from .download import fetch_hub_file
    from .model_files import progress_callback

    entry = get_clip_entry(name_or_spec)
    cached = clip_weights_path(entry.name, cache_dir=cache_dir)
    if cached is not None and not force:
        return cached
    if downloads_forbidden():
        raise WeightsNotFoundError(missing_message(entry, cache_dir, "are not cached and OVFORMER_OFFLINE is set"))
    expected = _expected(entry)
    with progress_callback(progress, f"CLIP weights {entry.name}") as callback:
        path, size, digest = fetch_hub_file(
            entry.repo_id, entry.filename, revision=entry.revision, cache_dir=cache_dir, label=f"CLIP weights '{entry.name}'",
            expected=expected, by_hand=f"or download {entry.url} by hand and pass it with --clip PATH",
            record_hint=f"If the release really changed, delete the '{entry.name}' entry of {_hashes_file()} "
                        "and download again.",
            progress=callback, file_index=file_index, file_count=file_count)
    if expected[1] is None:
        _record_known(entry.name, {"repo_id": entry.repo_id, "filename": entry.filename, "size": size, "sha256": digest})
    return path
