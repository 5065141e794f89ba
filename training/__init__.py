"""Video-level fine-tuning of OVFormer (imports `ovformer`, never `app`).

Public entry points:

    from training import TrainSettings, run_training, start_run, read_metrics, read_progress
    settings = TrainSettings(data=["datasets/mine"], out="runs/r1", preset="r50-lvvis",
                             init="weights/ovformer_r50_lvvis.pth", clip="openai", iters=2000)
    result = run_training(settings, progress_callback=lambda p: print(p.iteration, p.loss))
    handle = start_run(settings)            # same, in a background process
    read_metrics("runs/r1")                 # [{"iteration": 20, "loss": ..., "lr": ...}, ...]
"""

from training.metrics import read_metrics, read_progress, request_stop
from training.settings import TrainSettings

__all__ = ["TrainSettings", "run_training", "start_run", "RunHandle", "read_metrics", "read_progress",
           "request_stop", "TrainProgress", "TrainResult"]


def __getattr__(name: str):
    # the loop pulls in the model and CLIP: import it only when used
    if name in ("run_training", "TrainProgress", "TrainResult"):
        from training import loop

        return getattr(loop, name)
    if name in ("start_run", "RunHandle"):
        from training import run

        return getattr(run, name)
    raise AttributeError(name)
