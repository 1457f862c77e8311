"""Test-session settings: deterministic, single-threaded CPU torch."""

import torch

torch.set_num_threads(1)
