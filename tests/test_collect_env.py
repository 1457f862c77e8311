"""The environment report runs and names Detectron2's origin."""

import subprocess
import sys

from soco.collect_env import collect_env_info, detectron2_origin


def test_environment_report_rows():
    rows = dict(collect_env_info())
    assert rows["torch"].startswith("2.")
    assert "ximgproc" in rows["OpenCV"]
    assert rows["detectron2._C"].startswith(("yes", "no"))
    assert detectron2_origin() == rows["detectron2 origin"]
    assert not detectron2_origin().startswith("unknown")


def test_environment_report_cli():
    out = subprocess.run(
        [sys.executable, "-m", "soco.collect_env"], capture_output=True, text=True, check=True
    )
    assert "detectron2 origin" in out.stdout and "torchvision" in out.stdout
