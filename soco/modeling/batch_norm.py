"""A synchronized 1-D batch norm that runs on any device, the counterpart of Detectron2's 2-D naive one."""

from __future__ import annotations

import torch
from detectron2.utils import comm
from fvcore.nn.distributed import differentiable_all_reduce
from torch import Tensor, nn

from .precision import at_least_float32

__all__ = ["NaiveSyncBatchNorm1d"]


class NaiveSyncBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` whose training statistics are those of the samples of *all* processes.

    Like Detectron2's ``NaiveSyncBatchNorm`` (which is 2-D only), it all-reduces the per-process
    statistics with a differentiable all-reduce, so it works with any process group backend (gloo on
    CPU too, where ``nn.SyncBatchNorm`` refuses to run). The sums are weighted by each process's sample
    count, so the statistics are exact also when processes hold different batch sizes (or none), and
    the running variance is the unbiased one over the global batch, as ``BatchNorm1d`` on one process.
    With one process, or in eval mode, it is exactly ``BatchNorm1d``.

    Input ``(N, C)`` or ``(N, C, L)``; the statistics are over N (and L).
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002  (nn.Module's argument name)
        if comm.get_world_size() == 1 or not self.training:
            return super().forward(input)
        self._check_input_dim(input)
        reduce_dims = [0] if input.dim() == 2 else [0, 2]
        values = at_least_float32(input)  # fp16 sums lose too much precision
        count = values.new_full((1,), values.numel() / values.shape[1])
        local = torch.cat([values.sum(reduce_dims), (values * values).sum(reduce_dims), count])
        total = differentiable_all_reduce(local)  # (2C + 1): sums over every process's samples
        channels = values.shape[1]
        num_samples = total[-1].detach()
        mean = total[:channels] / num_samples.clamp(min=1)
        var = total[channels : 2 * channels] / num_samples.clamp(min=1) - mean * mean
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), num_samples)
        scale = torch.rsqrt(var + self.eps)
        bias = -mean * scale
        if self.affine:
            scale = scale * self.weight
            bias = bias * self.weight + self.bias
        shape = (1, channels) if input.dim() == 2 else (1, channels, 1)
        return (values * scale.reshape(shape) + bias.reshape(shape)).to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, num_samples: Tensor) -> None:
        """BatchNorm1d's update: exponential (or, with momentum None, cumulative) average, unbiased var."""
        self.num_batches_tracked += 1
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * num_samples / (num_samples - 1).clamp(min=1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
