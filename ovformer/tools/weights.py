"""``ovformer weights``: list the released checkpoints and where they are, or download one.

    ovformer weights list
    ovformer weights download r50-lvvis
"""
from __future__ import annotations

import argparse

from ..weights import (WeightsDownloadError, download_weights, list_pretrained, ovformer_home,
                       weights_path)
from .common import fail


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ovformer weights", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="released checkpoints and whether they are cached")
    d = sub.add_parser("download", help="download a released checkpoint into the cache")
    d.add_argument("name", choices=[e.name for e in list_pretrained()])
    args = p.parse_args(argv)
    if args.action == "list":
        print(f"cache: {ovformer_home() / 'weights'}  (set OVFORMER_HOME to move it)")
        for e in list_pretrained():
            path = weights_path(e.name)
            state = "cached" if path.is_file() else "missing"
            print(f"  {e.name:<12} {e.backbone:<7} trained on {e.trained_on:<7} {state:<8} {path}")
        return 0
    try:
        print(download_weights(args.name))
    except (WeightsDownloadError, OSError) as exc:
        return fail(str(exc))
    return 0
