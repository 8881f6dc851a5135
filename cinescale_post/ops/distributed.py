"""The process group of a ``torchrun`` launch, and this rank's device
(context parallelism, ``ops.context_parallel``)."""

from __future__ import annotations

import atexit
import logging
import os
from typing import Any

from cinescale_post.contracts.errors import PlanError
from cinescale_post.ops.context_parallel_spec import WHERE, parse_context_parallel

log = logging.getLogger(__name__)

def world() -> tuple[int, int]:
    """(rank, world size): from torch.distributed when initialised, else
    from the torchrun environment, else (0, 1)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _local_rank() -> int:
    import torch

    if "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return world()[0] % n if n else 0


_CREATED_GROUP = False


def _destroy_group() -> None:  # pragma: no cover - runs at interpreter exit
    try:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001
        pass


def init_distributed(spec: Any, device: Any):
    """Make sure the process group exists (``torchrun`` sets RANK/WORLD_SIZE;
    NCCL for CUDA with gloo for CPU tensors, gloo on CPU), that its size is
    ``ulysses * ring``, and return this rank's device (``cuda`` ->
    ``cuda:LOCAL_RANK``, made current). Call before moving any module."""
    import torch
    import torch.distributed as dist

    global _CREATED_GROUP
    spec = parse_context_parallel(spec)
    dev = torch.device(device)
    if not dist.is_available():
        raise PlanError(f"{WHERE}: this torch build has no torch.distributed")
    if not dist.is_initialized():
        if "WORLD_SIZE" not in os.environ or "MASTER_ADDR" not in os.environ:
            raise PlanError(f"{WHERE} = {spec.to_dict()} needs {spec.degree} processes, but this is a plain "
                            "single process (no torchrun environment)",
                            fix=f"launch with: torchrun --standalone --nproc_per_node {spec.degree} "
                                "-m cinescale_post render ...; or remove context_parallel")
        if dev.type == "cuda":
            torch.cuda.set_device(_local_rank())
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if dev.type == "cuda" else "gloo")
        if not _CREATED_GROUP:
            atexit.register(_destroy_group)
        _CREATED_GROUP = True
    rank, size = dist.get_rank(), dist.get_world_size()
    if size != spec.degree:
        raise PlanError(f"{WHERE} = {spec.to_dict()} splits over {spec.degree} processes but torchrun started "
                        f"{size}", fix=f"use --nproc_per_node {spec.degree}, or set ulysses * ring = {size}")
    if dev.type == "cuda":
        local = _local_rank()
        if dev.index is not None and dev.index != local:
            log.warning("context parallel: device %s on local rank %d; using cuda:%d", dev, local, local)
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    log.info("context parallel: rank %d of %d on %s (%s)", rank, size, dev, spec.describe())
    return dev


__all__ = ["init_distributed", "world"]
