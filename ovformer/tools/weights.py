"""``ovformer weights``: list the released checkpoints and DetPro prompt files and where they are, or download one.

    ovformer weights list
    ovformer weights download r50-lvvis
    ovformer weights download detpro-lvis
"""
from __future__ import annotations

import argparse

from ..weights import (WeightsDownloadError, download_weights, list_pretrained, list_prompt_sets, ovformer_home,
                       prompts_dir, weights_path)
from .common import fail


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ovformer weights", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="released checkpoints and prompt files, and whether they are cached")
    d = sub.add_parser("download", help="download a released checkpoint or prompt set into the cache")
    d.add_argument("name", choices=[e.name for e in list_pretrained()] + [e.name for e in list_prompt_sets()])
    args = p.parse_args(argv)
    if args.action == "list":
        print(f"cache: {ovformer_home() / 'weights'}  (set OVFORMER_HOME to move it)")
        print("checkpoints:")
        for e in list_pretrained():
            path = weights_path(e.name)
            state = "cached" if path.is_file() else "missing"
            print(f"  {e.name:<12} {e.backbone:<7} trained on {e.trained_on:<7} {state:<8} {path}")
        print("prompt sets (text classifiers for any vocabulary, see ovformer.detpro):")
        for s in list_prompt_sets():
            folder = prompts_dir(s.name)
            have = sum((folder / f).is_file() for f in s.filenames)
            state = "cached" if have == len(s.filenames) else f"{have}/{len(s.filenames)} files"
            print(f"  {s.name:<12} {len(s.filenames)} files from a Drive folder    {state:<8} {folder}")
            print(f"  {'':<12} {s.description}")
        return 0
    try:
        print(download_weights(args.name))
    except (WeightsDownloadError, OSError) as exc:
        return fail(str(exc))
    return 0
