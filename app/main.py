"""Entry point of the annotation app: ``ovformer app`` calls :func:`main`.

Serves on 127.0.0.1 by default and makes no outbound request: analytics and the Hugging Face
hub are switched off before Gradio is imported, and ``share`` is never enabled.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

if TYPE_CHECKING:
    from .hub import PredictorCache
    from .studio import Studio


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ovformer app", description="OVFormer Studio: annotate videos in the browser")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--auth", default=None, metavar="USER:PASSWORD",
                   help="one shared login (visible in `ps`; prefer --users)")
    p.add_argument("--users", action="store_true",
                   help="require the accounts of `ovformer users add NAME`; each user sees only their own work")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without --users (anyone who reaches the port sees everything)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="data folder (projects, frames); default $OVFORMER_HOME or ~/.ovformer")
    p.add_argument("--datasets", default=None, metavar="DIR",
                   help="where dataset exports go (default DATA/datasets); `ovformer train` reads them")
    p.add_argument("--preset", default="r50-lvvis", help="model preset / released weights name")
    p.add_argument("--weights", default=None, help="a checkpoint file instead of the preset's weights")
    p.add_argument("--untrained", action="store_true", help="random weights (for trying the editor)")
    p.add_argument("--clip", default=None, help='CLIP spec: "openai", a path, "random", "tiny-random"')
    p.add_argument("--device", default="auto", help="auto (default: the GPU when CUDA is available), cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto (default): the fastest whose masks agree with fp32 on >= 99%% of pixels; fp32 for exact output")
    p.add_argument("--max-upload-mb", type=float, default=500.0)
    p.add_argument("--max-duration", type=float, default=600.0, help="longest video accepted, seconds")
    p.add_argument("--max-frames", type=int, default=3000, help="most frames kept per video")
    args = p.parse_args(argv)
    if args.auth is not None and ":" not in args.auth:
        p.error("--auth needs USER:PASSWORD")
    if args.users and args.auth:
        p.error("--users and --auth exclude each other")
    if not args.users and not args.insecure and not is_loopback(args.host):
        p.error(f"--host {args.host} serves other machines: add --users (accounts from `ovformer users add NAME`), "
                "or --insecure to serve everything to anyone who reaches the port")
    return args


def is_loopback(host: str) -> bool:
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: only "localhost" is known to stay on this machine
        return False


def create_app(args: argparse.Namespace, cache: PredictorCache | None = None) -> tuple[Any, Studio]:
    """Build (demo, studio) without launching; tests use this with an in-process server.
    ``cache``: loaded predictors to share (tests running several apps share one)."""
    from ovformer.data.sample import ensure_sample

    from .annotate.media import Limits
    from .annotate.service import Config
    from .annotate.store import default_home
    from .hub import ModelHub, ModelSpec
    from .predictors import PredictorCache
    from .studio import Studio
    from .ui import build

    home = Path(args.data) if args.data else default_home()
    home.mkdir(parents=True, exist_ok=True)
    try:
        sample = ensure_sample(home)
    except Exception as e:  # the sample is a convenience, never a reason not to start
        print(f"sample video unavailable: {e}", file=sys.stderr)
        sample = None
    cfg = Config(home=home, datasets=Path(args.datasets) if args.datasets else home / "datasets",
                 limits=Limits(args.max_upload_mb, args.max_duration, args.max_frames), sample_video=sample,
                 users=bool(getattr(args, "users", False)))
    if cache is None:
        cache = PredictorCache(device=getattr(args, "device", "auto"), dtype=getattr(args, "dtype", "auto"))
    studio = Studio(cfg, ModelHub(ModelSpec(args.preset, args.weights, args.untrained, args.clip), cache,
                                  runs_root=home / "runs"))
    return build(studio), studio


def launch_kwargs(args: argparse.Namespace, studio: Studio) -> dict[str, Any]:
    from .ui import CSS

    users = getattr(studio, "users", None)
    auth = users.verify if users else (tuple(args.auth.split(":", 1)) if args.auth else None)
    # the data folder is never served as such: a file reaches a browser only when an event of its
    # owner returns it (app.annotate.ui.publish)
    return dict(server_name=args.host, server_port=args.port, auth=auth, share=False, quiet=True,
                max_file_size=f"{int(args.max_upload_mb)}mb", blocked_paths=[str(studio.cfg.home)],
                footer_links=[], run_history=False, css=CSS, show_error=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and serve until interrupted. Returns the exit code."""
    args = parse_args(argv)
    if args.users:
        from .auth import Users
        from .annotate.store import default_home
        if not Users(Path(args.data) if args.data else default_home()).exists():
            print("error: --users needs at least one account: run `ovformer users add NAME --admin` first",
                  file=sys.stderr)
            return 2
    demo, studio = create_app(args)
    print(f"OVFormer Studio on http://{args.host}:{args.port}  (data: {studio.cfg.home}; "
          f"model: {studio.hub.label()})", flush=True)
    if note := studio.hub.startup_note():  # e.g. a first run: the weights come from the page's Download button
        print(note, flush=True)
    demo.queue(default_concurrency_limit=4).launch(**launch_kwargs(args, studio))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
