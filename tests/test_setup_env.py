"""tools/setup_env.sh: a failed step is named with advice, and never leaves an environment marked complete."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run_setup(venv: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "tools" / "setup_env.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "SOCO_VENV": str(venv), **env},
        timeout=300,
    )


def test_failed_venv_creation_names_the_step(tmp_path):
    result = _run_setup(tmp_path / "venv", SOCO_PYTHON="false")
    assert result.returncode == 1
    assert "FAILED at step: create virtual environment" in result.stderr
    assert "what to do:" in result.stderr
    assert not (tmp_path / "venv" / ".soco-setup-complete").exists()


def test_failed_install_is_not_taken_for_complete_on_rerun(tmp_path):
    venv = tmp_path / "venv"
    offline = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}
    first = _run_setup(venv, **offline)
    assert first.returncode == 1
    assert "FAILED at step: install torch" in first.stderr
    assert (venv / "bin" / "python").exists(), "the venv itself was created"
    assert not (venv / ".soco-setup-complete").exists()
    second = _run_setup(venv, **offline)
    assert "up to date" not in second.stdout
    assert second.returncode == 1 and "FAILED at step: install torch" in second.stderr
