"""Video-level fine-tuning of OVFormer (imports `ovformer`, never `app`).

Public entry points:

    from training import TrainSettings, run_training, start_run, read_metrics, read_progress
    settings = TrainSettings(data=["datasets/mine"], out="runs/r1", preset="r50-lvvis",
                             init="weights/ovformer_r50_lvvis.pth", clip="openai", iters=2000)
    result = run_training(settings, progress_callback=lambda p: print(p.iteration, p.loss))
    handle = start_run(settings)            # same, in a background process
    read_metrics("runs/r1")                 # [{"iteration": 20, "loss": ..., "lr": ...}, ...]
"""

# metrics.py is pure Python; everything else pulls in torch and the model, so it is imported
# on first use (the dashboard reads metrics without paying for torch)
from training.metrics import read_metrics, read_progress, request_stop

__all__ = ["TrainSettings", "run_training", "start_run", "RunHandle", "read_metrics", "read_progress",
           "request_stop", "TrainProgress", "TrainResult"]


def __getattr__(name: str):
    if name == "TrainSettings":
        from training.settings import TrainSettings

        return TrainSettings
    if name in ("run_training", "TrainProgress", "TrainResult"):
        from training import loop

        return getattr(loop, name)
    if name in ("start_run", "RunHandle"):
        from training import run

        return getattr(run, name)
    raise AttributeError(name)
