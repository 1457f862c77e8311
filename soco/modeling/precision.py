"""The fp32 islands of mixed-precision models: lift half precision to fp32, keep fp32 and fp64 as they are."""

from __future__ import annotations

import torch
from torch import Tensor


def at_least_float32(tensor: Tensor) -> Tensor:
    """``tensor`` in float32 if it is float16/bfloat16 (or an integer type), unchanged if float32/float64.

    Used where a computation must not run in half precision under autocast (RoIAlign, the losses, batch
    statistics); unlike ``.float()`` it leaves a float64 model in float64 (the CPU equality tests).
    """
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))
