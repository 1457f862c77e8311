"""The proposal pipeline's cluster pieces: the shard of a SLURM array task, unfinished shards, file names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pretrain_testing import write_tiny_images

from soco_proposals.cluster_jobs import default_json_paths, shard_from_environment
from soco_proposals.generate import generate_shard
from soco_proposals.raw_shards import SUMMARY_FILE, incomplete_shard_ids, shard_dir_name

REPO = Path(__file__).resolve().parents[1]


def _array(task: int, count: int, first: int = 0, step: int = 1) -> dict[str, str]:
    last = first + (count - 1) * step
    values = {"ID": task, "COUNT": count, "MIN": first, "MAX": last, "STEP": step}
    return {f"SLURM_ARRAY_TASK_{key}": str(value) for key, value in values.items()}


def test_shard_comes_from_the_command_line_then_from_slurm():
    assert shard_from_environment(None, None, {}) == (0, 1)
    assert shard_from_environment(None, 4, {}) == (0, 4)
    assert shard_from_environment(2, 4, _array(7, 100)) == (2, 4)  # explicit wins
    assert shard_from_environment(None, None, _array(7, 100)) == (7, 100)
    assert shard_from_environment(None, 100, _array(17, 2, first=3, step=14)) == (17, 100)  # a re-run


@pytest.mark.parametrize("array", [_array(5, 10, first=1), _array(4, 3, step=2)])
def test_an_array_that_is_not_0_to_n_minus_1_needs_the_number_of_shards(array):
    with pytest.raises(ValueError, match="pass --num-shards N"):
        shard_from_environment(None, None, array)


def test_the_generator_reads_its_shard_from_a_slurm_array(tmp_path):
    images = write_tiny_images(tmp_path / "images", count=3, size=(48, 40))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **_array(1, 2)}
    command = [sys.executable, str(REPO / "selective_search" / "generate_imagenet_ss_proposals.py")]
    command += ["--image-root", str(images), "--output", str(tmp_path / "raw"), "--workers", "1"]
    command.append("--no-progress")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [shard_dir_name(1, 2)]
    assert incomplete_shard_ids(tmp_path / "raw", 2) == [0]
    bad = subprocess.run(command, env={**env, **_array(1, 2, first=1)}, capture_output=True, text=True)
    assert bad.returncode == 2 and "pass --num-shards N" in bad.stderr


def test_unfinished_shards_are_the_ones_without_a_summary(tmp_path):
    images = write_tiny_images(tmp_path / "images", count=4, size=(48, 40))
    assert incomplete_shard_ids(tmp_path / "raw", 3) == [0, 1, 2]
    for shard_id in (0, 2):
        generate_shard(images, tmp_path / "raw", shard_id=shard_id, num_shards=3, progress=False)
    assert incomplete_shard_ids(tmp_path / "raw", 3) == [1]
    (tmp_path / "raw" / shard_dir_name(2, 3) / SUMMARY_FILE).unlink()
    assert incomplete_shard_ids(tmp_path / "raw", 3) == [1, 2]
    assert incomplete_shard_ids(tmp_path / "raw", 2) == [0, 1]  # another split: nothing of it exists


def test_default_json_names_sit_beside_the_raw_folder(tmp_path):
    filtered, post = default_json_paths(tmp_path / "raw", "ratio3size0308")
    assert filtered == tmp_path / "train_ratio3size0308.json"
    assert post == tmp_path / "train_ratio3size0308post.json"
