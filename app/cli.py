"""The ``ovformer`` console command: one entry point, a subcommand per job.

The dispatcher lives in ``app/`` because it reaches every package (``app`` may import
``training`` and ``ovformer``, never the reverse); each subcommand's body lives with its stage.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "app": ("app.main", "the annotation app in the browser (127.0.0.1:7860)"),
    "users": ("app.auth", "accounts of a shared app (ovformer users add NAME; ovformer app --users)"),
    "predict": ("ovformer.tools.predict", "pre-label videos, write YouTube-VIS files"),
    "eval": ("ovformer.tools.eval", "YouTube-VIS / LV-VIS mAP of a results file"),
    "bench": ("ovformer.tools.bench", "time the model and CLIP per frame"),
    "weights": ("ovformer.tools.weights", "list or download the released checkpoints"),
    "doctor": ("ovformer.tools.doctor", "check weights, CLIP, classifier and a short prediction"),
    "train": ("training.cli", "fine-tune on YouTube-VIS datasets"),
    "dashboard": ("app.dashboard.main", "runs and evaluation dashboard (Streamlit)"),
}


def _usage() -> str:
    lines = ["usage: ovformer COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "ovformer COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
