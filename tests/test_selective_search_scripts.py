"""The selective_search/ command-line scripts, run end to end on a tiny folder of images."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPTS = Path(__file__).resolve().parents[1] / "selective_search"


def _run(script, *args):
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_pipeline_scripts(tmp_path):
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        image = np.full((64, 96, 3), 120, dtype=np.uint8)
        image[10 : 30 + 10 * i, 20:70] = rng.integers(0, 256, 3)
        Image.fromarray(image).save(images / f"img_{i}.jpg")
    (images / "broken.jpg").write_bytes(b"broken")
    raw = tmp_path / "raw"
    log = _run("generate_imagenet_ss_proposals.py", "--image-root", images, "--output", raw, "--workers", "1")
    assert "1 failed" in log
    filtered = tmp_path / "train_none.json"
    _run("filter_ss_proposals_json.py", "--input", raw, "--strategy", "none", "--output", filtered)
    post = tmp_path / "train_nonepost.json"
    _run("filter_ss_proposals_json_post_no_prop.py", "--input", raw, "--filtered", filtered, "--output", post)
    store = tmp_path / "post.store"
    _run("convert_proposals.py", post, store)
    _run("convert_proposals.py", store, tmp_path / "back.json")
    assert json.loads((tmp_path / "back.json").read_text()) == json.loads(post.read_text())
    assert sorted(json.loads(post.read_text())) == ["img_0", "img_1", "img_2"]
    assert (tmp_path / "train_nonefailed_images.txt").read_text().split() == ["broken"]
    png = tmp_path / "visualizations" / "vis.png"  # the folder does not exist yet
    _run(
        "visualize_proposals.py",
        "--image",
        images / "img_1.jpg",
        "--raw",
        raw,
        "--proposals",
        store,
        "--output",
        png,
    )
    assert Image.open(png).size[0] > 2 * 96
