"""Multi-process training on PyTorch's own distributed engine (DDP): NCCL on GPUs, gloo on CPUs.

One process per device, started by torchrun (`torchrun --nproc_per_node N -m yolonas_cli train ...`, also across
machines with torchrun's multi-node flags), or by `yolo-nas train device=0,1`, which runs that same torchrun
command (`launch_command`). Each process finds its place in the environment torchrun sets (RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT: `Distributed.from_environment`). DDP only wraps the loop's model; the loop is
the same in every process: the sampler gives each rank its share of every epoch (`data.TrainSampler`), the loss
all-reduces its sums (`loss.all_reduce_sums`), DDP averages the gradients, and only rank 0 prints and writes.

BatchNorm is synchronised across processes as the recipes say (`sync_bn: True`, training-facts.md §8, §12): on
GPUs with torch's SyncBatchNorm; on CPUs, where torch refuses SyncBatchNorm, with `SyncedBatchNorm2d`: the same
statistics (mean and biased variance over every process's batch, the running statistics updated with the
unbiased global variance), computed with two all-reduces whose backward pass all-reduces the gradients, so each
process back-propagates through the statistics of the whole batch as one process with the whole batch would.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

from yolonas_cli.core.errors import UsageError

ENV_KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes (rank 0 of 1 without DDP)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints and writes."""
        return self.rank == 0

    @staticmethod
    def from_environment() -> Distributed:
        """The place torchrun gives this process (RANK, LOCAL_RANK, WORLD_SIZE), or rank 0 of 1."""
        if not all(key in os.environ for key in ENV_KEYS):
            return Distributed()
        try:
            rank, local, world = (int(os.environ[key]) for key in ENV_KEYS)
        except ValueError:
            raise UsageError(f"{', '.join(ENV_KEYS)} must be whole numbers (they come from torchrun)") from None
        if not (0 <= rank < world and 0 <= local < world):
            raise UsageError(f"RANK={rank}, LOCAL_RANK={local} do not fit WORLD_SIZE={world}")
        return Distributed(rank, local, world)


def process_device(place: Distributed, device: str) -> str:
    """The device of this process: with several CUDA devices listed (`cuda:0,cuda:2`) the one of its local rank,
    `cuda` alone means cuda:<local rank>; anything else as given."""
    listed = device.split(",")
    if len(listed) > 1:
        if place.local_rank >= len(listed):
            raise UsageError(f"device={device} lists {len(listed)} devices for {place.world_size} processes")
        return listed[place.local_rank]
    if place.enabled and device in ("cuda", "auto") and torch.cuda.is_available():
        return f"cuda:{place.local_rank}"
    return device


def start(place: Distributed, device: torch.device) -> None:
    """Join the process group (NCCL for CUDA devices, gloo otherwise); nothing without DDP."""
    if not place.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def stop() -> None:
    """Leave the process group (when one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def any_process(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true in any process (every process gets the same answer); the flag itself without DDP."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def main_process_text(text: str) -> str:
    """Rank 0's `text` in every process (its own without DDP): a choice only rank 0 makes, such as the run folder."""
    if not (dist.is_available() and dist.is_initialized()):
        return text
    box: list[Any] = [text]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def barrier() -> None:
    """Wait for every process (nothing without DDP)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# --------------------------------------------------------------------------------------------------------
# Wrapping the model
# --------------------------------------------------------------------------------------------------------
def wrap(forward: nn.Module, device: torch.device, unused: Sequence[str] = ()) -> nn.Module:
    """`forward` (a module whose forward is the training forward) inside DistributedDataParallel.

    `unused`: parameter names (as in `forward.named_parameters()`) that the training forward never uses (the
    `rbr_reparam` placeholders): DDP leaves them alone, so they keep no gradient and never change, as without DDP.
    """
    names = [name for name in unused]
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(forward, names)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(forward, device_ids=ids)


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d of `model` synchronised across processes (in place where possible; returns the model).
    Parameters and buffers are shared with the old layers, so state-dict keys and values do not change."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                setattr(parent, name, SyncedBatchNorm2d.like(child))
    return model


class _AllReduceSum(torch.autograd.Function):
    """Forward: the sum over processes. Backward: the sum over processes of the incoming gradients (every process's
    loss depends on the sum, so each local term receives the gradients of all of them)."""

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor) -> torch.Tensor:
        total = local.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


def _all_reduce_sum(local: torch.Tensor) -> torch.Tensor:
    return cast(torch.Tensor, _AllReduceSum.apply(local))


class SyncedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover every process's batch (for CPUs; see the module docstring).

    Input [B, C, H, W]. In training under an initialised process group: mean = Σx / n, var = Σ(x − mean)² / n over
    all processes (n = their B·H·W together), output (x − mean) / sqrt(var + eps) · weight + bias; running_mean
    and running_var move by `momentum` towards mean and var · n / (n − 1). Otherwise plain BatchNorm2d.
    """

    @staticmethod
    def like(bn: nn.BatchNorm2d) -> SyncedBatchNorm2d:
        """A synced layer with `bn`'s settings that shares its parameters and buffers."""
        synced = SyncedBatchNorm2d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        synced.weight, synced.bias = bn.weight, bn.bias
        synced.running_mean, synced.running_var = bn.running_mean, bn.running_var
        synced.num_batches_tracked = bn.num_batches_tracked
        return synced.train(bn.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.shape[1]
        count = _all_reduce_sum(torch.tensor([x.numel() / channels], dtype=x.dtype, device=x.device))
        mean = _all_reduce_sum(x.sum((0, 2, 3))) / count
        centred = x - mean.reshape(1, channels, 1, 1)
        var = _all_reduce_sum((centred * centred).sum((0, 2, 3))) / count
        self._update_running_stats(mean.detach(), var.detach(), float(count.item()))
        scale = torch.rsqrt(var + self.eps)
        return centred * (scale * self.weight).reshape(1, channels, 1, 1) + self.bias.reshape(1, channels, 1, 1)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        if not self.track_running_stats or self.running_mean is None or self.running_var is None:
            return
        momentum = self.momentum if self.momentum is not None else 0.1
        self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(var * (count / max(count - 1, 1)), alpha=momentum)
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)


# --------------------------------------------------------------------------------------------------------
# Launching
# --------------------------------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for the processes' rendezvous)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_command(processes: int, arguments: Sequence[str], port: int) -> list[str]:
    """The torchrun command that runs `yolo-nas train <arguments>` in `processes` processes on this machine."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={processes}",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        "-m",
        "yolonas_cli",
        "train",
        *arguments,
    ]


def run_processes(processes: int, arguments: Sequence[str]) -> int:
    """Run `yolo-nas train <arguments>` in `processes` processes through torchrun and wait; returns its exit code.

    Ctrl-C reaches the processes from the terminal (each stops cleanly, see `signals.py`); a SIGTERM sent to this
    process alone is passed on to torchrun, which passes it to them."""
    import signal
    import subprocess

    child = subprocess.Popen(launch_command(processes, arguments, free_port()))

    def forward(signum: int, frame: Any) -> None:
        if signum == signal.SIGTERM:
            child.send_signal(signal.SIGTERM)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
