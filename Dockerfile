# soco with the official Detectron2 built from source (CUDA ops included).
# torch 2.14.1 / torchvision 0.29.1 wheels from PyPI are built against CUDA 13.0: match the devel image.
FROM nvidia/cuda:13.0.0-cudnn-devel-ubuntu24.04

ARG TORCH_CUDA_ARCH_LIST="7.0;8.0;8.6;9.0"
ENV DEBIAN_FRONTEND=noninteractive \
    FORCE_CUDA=1 \
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST} \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-dev python3-venv git build-essential ninja-build libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

RUN pip install torch==2.14.1 torchvision==0.29.1

WORKDIR /workspace/soco
COPY requirements.txt setup.py README.md ./
RUN pip install -r requirements.txt \
    && pip install --no-deps lvis==0.5.3 \
    && pip install --no-build-isolation "git+https://github.com/facebookresearch/detectron2.git"

COPY . .
RUN pip install --no-deps --no-build-isolation -e . \
    && pip install --no-deps --target /opt/venv/mmdet-site -r requirements-mmdet.txt \
    && python -m soco.collect_env

CMD ["python", "-m", "soco.collect_env"]
