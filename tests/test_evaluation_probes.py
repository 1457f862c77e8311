"""run_probes / ProbeEvaluator: the keys of the configured probes only, and the same numbers when two
processes each embed half of every split."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from distributed_testing import run_distributed
from probes_testing import register_probe_box_sets, write_probe_image_folder
from transfer_testing import soco_fpn_checkpoint

from soco.checkpoint import convert_checkpoint
from soco.config import add_soco_config
from soco.data import register_coco_format_dataset
from soco.evaluation import ProbeData, ProbeEvaluator, ProbeSettings, embed_split


def _default_cfg():
    cfg = get_cfg()
    add_soco_config(cfg)
    return cfg


SETTINGS = replace(
    ProbeSettings.from_config(_default_cfg()),
    image_size=32, min_size_test=64, max_size_test=128, linear_steps=20, batch_size=2,
)  # fmt: skip


def _data(root: Path, with_images: bool = True, with_boxes: bool = True) -> ProbeData:
    train, test = register_probe_box_sets(root, f"run_{root.parent.name}_{root.name}", sizes=(5, 3))
    folder = str(write_probe_image_folder(root / "folder", per_class=(3, 2))) if with_images else ""
    return ProbeData.load(SETTINGS, folder, *((train, test) if with_boxes else ("", "")))


def _registered_data(root: Path, names: tuple[str, str]) -> ProbeData:
    """The probe data ``_data`` wrote under ``root``, registered again (in another process)."""
    for name in names:
        register_coco_format_dataset(name, str(root / name / "annotations.json"), str(root / name / "images"))
    return ProbeData.load(SETTINGS, str(root / "folder"), *names)


@pytest.fixture(scope="module")
def weights():
    torch.manual_seed(0)
    return convert_checkpoint(soco_fpn_checkpoint(randomize=False))[0]


def test_only_the_configured_probes_run(tmp_path, weights):
    both = ProbeEvaluator(_data(tmp_path / "both"), SETTINGS)(weights)
    assert set(both) == {"probe/image_knn", "probe/object_knn", "probe/object_linear", "probe/seconds"}
    images_only = ProbeEvaluator(_data(tmp_path / "images", with_boxes=False), SETTINGS)(weights)
    assert set(images_only) == {"probe/image_knn", "probe/seconds"}
    boxes_only = ProbeEvaluator(_data(tmp_path / "boxes", with_images=False), SETTINGS)(weights)
    assert set(boxes_only) == {"probe/object_knn", "probe/object_linear", "probe/seconds"}
    assert boxes_only["probe/object_knn"] == both["probe/object_knn"] and boxes_only["probe/seconds"] > 0


def _embed_in_each_process(root: str, names: tuple[str, str], weights: dict, output: str) -> None:
    from detectron2.utils import comm

    torch.set_num_threads(1)
    data = _registered_data(Path(root), names)
    evaluator = ProbeEvaluator(data, SETTINGS)
    results = evaluator(weights)
    features = embed_split(evaluator.encoder, data.box_train, SETTINGS.batch_size)
    cached = sum(len(split._cache) for split in (data.box_train, data.image_train))
    torch.save(
        {"results": results, "features": features, "cached": cached}, f"{output}.rank{comm.get_rank()}"
    )


def test_two_processes_embed_their_share_and_agree_with_one(tmp_path, weights):
    data = _data(tmp_path / "data")
    evaluator = ProbeEvaluator(data, SETTINGS)
    single = evaluator(weights)
    features, labels = embed_split(evaluator.encoder, data.box_train, SETTINGS.batch_size)
    names = (f"run_{tmp_path.name}_data_train", f"run_{tmp_path.name}_data_test")
    args = (str(tmp_path / "data"), names, weights, str(tmp_path / "out"))
    run_distributed(_embed_in_each_process, tmp_path, *args)
    for rank in range(2):
        saved = torch.load(tmp_path / f"out.rank{rank}")
        torch.testing.assert_close(saved["features"][0], features, rtol=1e-4, atol=1e-4)
        assert torch.equal(saved["features"][1], labels)
        for key in ("probe/image_knn", "probe/object_knn", "probe/object_linear"):
            assert saved["results"][key] == pytest.approx(single[key])
        # each process decoded only its half of the images (5 box images + 6 folder images)
        assert saved["cached"] == (3 + 3 if rank == 0 else 2 + 3)
