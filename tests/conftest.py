"""Test-session settings: deterministic, single-threaded CPU torch; fixtures several test files share."""

import argparse

import pytest
import submitit
import torch

torch.set_num_threads(1)


@pytest.fixture
def submitted(monkeypatch) -> list:
    """The tasks submitted to any executor, captured instead of run (each gets job id "0")."""
    tasks = []

    def capture(executor, task):
        tasks.append(task)
        return argparse.Namespace(job_id="0")

    monkeypatch.setattr(submitit.AutoExecutor, "submit", capture)
    return tasks
