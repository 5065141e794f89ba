# OVFormer Studio. CPU image by default; for a GPU build pass a CUDA base, e.g.
#   docker build --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 -t ovformer .
# The pinned torch/torchvision wheels run on both (CPU or CUDA at run time).
#
# First use is the same as `make run`: the page's banner lists the files the model needs and its
# Download button fetches them into the volume (/data: OVFORMER_HOME, with the Hugging Face cache
# for CLIP in /data/huggingface). The container makes no outbound request until Download is pressed.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 \
    GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 \
    OVFORMER_HOME=/data HF_HOME=/data/huggingface
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ovformer
COPY requirements.txt pyproject.toml README.md ./
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt
COPY . .
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps -e .
ENV PATH=/opt/venv/bin:$PATH
# Not root: the app runs as `ovformer`, who owns only the data volume.
RUN useradd --create-home --user-group --shell /usr/sbin/nologin ovformer \
    && mkdir -p /data/huggingface && chown -R ovformer:ovformer /data
USER ovformer
VOLUME /data
EXPOSE 7860
# Listen on all interfaces inside the container; publish with -p 127.0.0.1:7860:7860.
CMD ["ovformer", "app", "--host", "0.0.0.0", "--port", "7860"]
