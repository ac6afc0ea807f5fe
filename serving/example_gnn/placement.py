"""Where the GNN container's workers and layers run, from the variables the platform's deployer sets
on the model (``lambda/mlops_runtime/domain/deployment.py``, ``GpuLayoutSpec``). Standard library
only: gunicorn's master process reads it before any worker imports torch.

- ``SAGEMAKER_MODEL_SERVER_WORKERS``: how many gunicorn workers (default 1);
- ``MLOPS_GPU_LAYOUT``: ``worker_per_gpu`` (worker i pinned to GPU i of the list) or
  ``split_model`` (one worker, the model's layers spread over every listed GPU); unset: CPU;
- ``MLOPS_GPU_DEVICES``: the GPU indices, e.g. ``0,1,2,3``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

WORKER_PER_GPU = "worker_per_gpu"
SPLIT_MODEL = "split_model"


@dataclass(frozen=True)
class Layout:
    workers: int = 1
    layout: str | None = None
    devices: tuple[int, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Layout:
        devices = tuple(int(d) for d in env.get("MLOPS_GPU_DEVICES", "").split(",") if d.strip())
        layout = env.get("MLOPS_GPU_LAYOUT") or None
        if layout not in (None, WORKER_PER_GPU, SPLIT_MODEL):
            raise ValueError(f"MLOPS_GPU_LAYOUT={layout!r}: expected {WORKER_PER_GPU} or {SPLIT_MODEL}")
        workers = int(env.get("SAGEMAKER_MODEL_SERVER_WORKERS") or (len(devices) if layout == WORKER_PER_GPU else 1))
        if workers < 1:
            raise ValueError(f"SAGEMAKER_MODEL_SERVER_WORKERS={workers}: at least 1")
        return cls(workers, layout, devices)

    def visible_devices(self, slot: int) -> str | None:
        """``CUDA_VISIBLE_DEVICES`` for the worker in ``slot``: its own GPU (worker_per_gpu, slot i
        -> the i-th listed GPU, round robin if there are more workers than GPUs), every listed GPU
        (split_model), or ``None`` (leave the variable alone)."""
        if not self.devices:
            return None
        if self.layout == WORKER_PER_GPU:
            return str(self.devices[slot % len(self.devices)])
        if self.layout == SPLIT_MODEL:
            return ",".join(str(d) for d in self.devices)
        return None


def free_slot(taken: Iterable[int]) -> int:
    """The lowest worker slot no live worker holds: a restarted worker takes its predecessor's GPU."""
    used = set(taken)
    return next(slot for slot in range(len(used) + 1) if slot not in used)
