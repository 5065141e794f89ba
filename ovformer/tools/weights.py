"""``ovformer weights``: the files the released models need (checkpoints, CLIP, DetPro prompts), their state, and downloading them.

    ovformer weights list
    ovformer weights download r50-lvvis            # checkpoint + CLIP ViT-B/32 + DetPro prompts
    ovformer weights download r50-lvvis --offline  # download nothing: say what is missing
    ovformer weights download detpro-lvis          # only the prompt set
    ovformer weights download clip-openai          # only the CLIP weights

Downloads go to $OVFORMER_HOME/weights (CLIP to the Hugging Face hub cache, where open_clip
finds it); HF_HUB_OFFLINE does not stop an explicit download, OVFORMER_OFFLINE=1 does.
"""
from __future__ import annotations

import argparse

from ..clip_weights import clip_weights_path, download_clip_weights, hub_cache_dir, list_clip_weights
from ..model_files import download_required, required_files
from ..weights import (WeightsDownloadError, WeightsNotFoundError, download_prompts, list_pretrained,
                       list_prompt_sets, ovformer_home, prompt_problems, prompts_dir, weights_path)
from .common import fail


def _list() -> int:
    print(f"cache: {ovformer_home() / 'weights'}  (set OVFORMER_HOME to move it)")
    print("checkpoints:")
    for e in list_pretrained():
        path = weights_path(e.name)
        state = "cached" if path.is_file() else "missing"
        print(f"  {e.name:<12} {e.backbone:<7} trained on {e.trained_on:<7} {state:<8} {path}")
    print("prompt sets (text classifiers for any vocabulary, see ovformer.detpro):")
    for s in list_prompt_sets():
        have = len(s.filenames) - len(prompt_problems(s))
        state = "cached" if have == len(s.filenames) else f"{have}/{len(s.filenames)} files"
        print(f"  {s.name:<12} {len(s.filenames)} files from a Drive folder    {state:<8} {prompts_dir(s.name)}")
        print(f"  {'':<12} {s.description}")
    print(f"CLIP weights (Hugging Face hub cache {hub_cache_dir()}):")
    for c in list_clip_weights():
        path = clip_weights_path(c.name)
        print(f"  {c.name:<12} --clip {c.spec:<17}           {'cached' if path else 'missing':<8} "
              f"{path or c.repo_id + '/' + c.filename}")
    print("models (ovformer weights download NAME fetches what is missing):")
    for e in list_pretrained():
        missing = [f.kind for f in required_files(e.name) if not f.present]
        print(f"  {e.name:<12} {'ready' if not missing else 'missing: ' + ', '.join(missing)}")
    return 0


def _download(name: str, offline: bool) -> int:
    if name in {c.name for c in list_clip_weights()}:
        path = clip_weights_path(name)
        if path is None and offline:
            raise WeightsNotFoundError(f"CLIP weights '{name}' are not cached and --offline forbids downloading them "
                                       f"(they go to {hub_cache_dir()})")
        print(path or download_clip_weights(name))
        return 0
    if name in {s.name for s in list_prompt_sets()}:
        problems = prompt_problems(next(s for s in list_prompt_sets() if s.name == name))
        if problems and offline:
            raise WeightsNotFoundError(f"prompt set '{name}' lacks {', '.join(problems)} and --offline forbids "
                                       f"downloading (they go to {prompts_dir(name)})")
        print(download_prompts(name) if problems else prompts_dir(name))
        return 0
    for f in download_required(name, progress=True, offline=offline):
        print(f"{f.kind:<10} {f.state:<8} {f.path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    names = ([e.name for e in list_pretrained()] + [s.name for s in list_prompt_sets()]
             + [c.name for c in list_clip_weights()])
    p = argparse.ArgumentParser(prog="ovformer weights", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="each file the released models need, and whether it is cached")
    d = sub.add_parser("download", help="download what a released model needs (or one prompt set / CLIP)")
    d.add_argument("name", choices=names)
    d.add_argument("--offline", action="store_true", help="download nothing; fail when a file is missing")
    args = p.parse_args(argv)
    if args.action == "list":
        return _list()
    try:
        return _download(args.name, args.offline)
    except (WeightsDownloadError, WeightsNotFoundError, OSError) as exc:
        return fail(str(exc))
