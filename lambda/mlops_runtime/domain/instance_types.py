"""The one table of SageMaker ``ml.*`` hosting instance types the platform knows (pure, stdlib only).

Used by the deployer's endpoint-spec validation and by the CDK config validation, so it must stay
dependency-free. Figures are the EC2 specifications of the underlying instance: vCPUs, memory in GiB,
NVIDIA GPU count and memory per GPU, Neuron (Inferentia) chip count, and whether the instance's
storage is local NVMe (instance store) rather than an EBS volume. NVMe matters twice on SageMaker endpoints:

- ``VolumeSizeInGB`` is rejected for such instances (no EBS volume is attached);
- ``KmsKeyId`` on the endpoint config is rejected for them (the instance store is encrypted by a
  hardware module on the instance, not with a customer key).

The SageMaker Python SDK encodes the same rule as "any family with a ``d`` (c5d, g4dn, p4d...) or
g5/g6/p5/trn1" (``volume_size_supported``). Extend the table rather than special-casing a type
elsewhere; ``tests/unit/deployment`` checks every entry against botocore's list of hosting types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: float
    gpus: int = 0
    gpu_memory_gib: float = 0.0  # per GPU
    neuron_chips: int = 0
    local_nvme: bool = False
    accelerator: str | None = None

    @property
    def family(self) -> str:
        """``"g5"`` for ``ml.g5.12xlarge``."""
        return self.name.split(".")[1]

    @property
    def has_gpu(self) -> bool:
        return self.gpus > 0

    @property
    def total_gpu_memory_gib(self) -> float:
        return self.gpus * self.gpu_memory_gib

    @property
    def has_neuron(self) -> bool:
        return self.neuron_chips > 0

    @property
    def supports_volume_size(self) -> bool:
        """Whether ``ProductionVariant.VolumeSizeInGB`` may be set (an EBS volume is attached)."""
        return not self.local_nvme

    @property
    def supports_endpoint_kms_key(self) -> bool:
        """Whether ``CreateEndpointConfig.KmsKeyId`` may be set for a variant on this type."""
        return not self.local_nvme


class UnknownInstanceType(ValueError):
    """The name is not an ``ml.*`` type of :data:`INSTANCE_TYPES`."""


# (family, size, vCPUs, memory GiB, GPUs) rows per family keep the table readable.
_CPU_SIZES = {
    # family: [(size, vcpus, memory GiB)]
    "t2": [("medium", 2, 4), ("large", 2, 8), ("xlarge", 4, 16), ("2xlarge", 8, 32)],
    "m5": [
        ("large", 2, 8),
        ("xlarge", 4, 16),
        ("2xlarge", 8, 32),
        ("4xlarge", 16, 64),
        ("12xlarge", 48, 192),
        ("24xlarge", 96, 384),
    ],
    "m6i": [
        ("large", 2, 8),
        ("xlarge", 4, 16),
        ("2xlarge", 8, 32),
        ("4xlarge", 16, 64),
        ("8xlarge", 32, 128),
        ("12xlarge", 48, 192),
        ("16xlarge", 64, 256),
        ("24xlarge", 96, 384),
        ("32xlarge", 128, 512),
    ],
    "c5": [
        ("large", 2, 4),
        ("xlarge", 4, 8),
        ("2xlarge", 8, 16),
        ("4xlarge", 16, 32),
        ("9xlarge", 36, 72),
        ("18xlarge", 72, 144),
    ],
    "c6i": [
        ("large", 2, 4),
        ("xlarge", 4, 8),
        ("2xlarge", 8, 16),
        ("4xlarge", 16, 32),
        ("8xlarge", 32, 64),
        ("12xlarge", 48, 96),
        ("16xlarge", 64, 128),
        ("24xlarge", 96, 192),
        ("32xlarge", 128, 256),
    ],
    "r5": [
        ("large", 2, 16),
        ("xlarge", 4, 32),
        ("2xlarge", 8, 64),
        ("4xlarge", 16, 128),
        ("12xlarge", 48, 384),
        ("24xlarge", 96, 768),
    ],
}

# family: (accelerator, GiB per GPU, local NVMe, [(size, vcpus, memory GiB, GPUs)])
_GPU_SIZES = {
    "g4dn": (
        "NVIDIA T4",
        16,
        True,
        [
            ("xlarge", 4, 16, 1),
            ("2xlarge", 8, 32, 1),
            ("4xlarge", 16, 64, 1),
            ("8xlarge", 32, 128, 1),
            ("12xlarge", 48, 192, 4),
            ("16xlarge", 64, 256, 1),
        ],
    ),
    "g5": (
        "NVIDIA A10G",
        24,
        True,
        [
            ("xlarge", 4, 16, 1),
            ("2xlarge", 8, 32, 1),
            ("4xlarge", 16, 64, 1),
            ("8xlarge", 32, 128, 1),
            ("12xlarge", 48, 192, 4),
            ("16xlarge", 64, 256, 1),
            ("24xlarge", 96, 384, 4),
            ("48xlarge", 192, 768, 8),
        ],
    ),
    "g6": (
        "NVIDIA L4",
        24,
        True,
        [
            ("xlarge", 4, 16, 1),
            ("2xlarge", 8, 32, 1),
            ("4xlarge", 16, 64, 1),
            ("8xlarge", 32, 128, 1),
            ("12xlarge", 48, 192, 4),
            ("16xlarge", 64, 256, 1),
            ("24xlarge", 96, 384, 4),
            ("48xlarge", 192, 768, 8),
        ],
    ),
    "p3": ("NVIDIA V100", 16, False, [("2xlarge", 8, 61, 1), ("8xlarge", 32, 244, 4), ("16xlarge", 64, 488, 8)]),
    "p4d": ("NVIDIA A100", 40, True, [("24xlarge", 96, 1152, 8)]),
    "p5": ("NVIDIA H100", 80, True, [("4xlarge", 16, 256, 1), ("48xlarge", 192, 2048, 8)]),
}

# family: (accelerator, [(size, vcpus, memory GiB, Neuron chips)])
_NEURON_SIZES = {
    "inf2": (
        "AWS Inferentia2",
        [
            ("xlarge", 4, 16, 1),
            ("8xlarge", 32, 128, 1),
            ("24xlarge", 96, 384, 6),
            ("48xlarge", 192, 768, 12),
        ],
    ),
}


def _build() -> Mapping[str, InstanceType]:
    table: dict[str, InstanceType] = {}
    for family, sizes in _CPU_SIZES.items():
        for size, vcpus, memory in sizes:
            name = f"ml.{family}.{size}"
            table[name] = InstanceType(name, vcpus, float(memory))
    for family, (accelerator, gpu_memory, nvme, gpu_sizes) in _GPU_SIZES.items():
        for size, vcpus, memory, gpus in gpu_sizes:
            name = f"ml.{family}.{size}"
            table[name] = InstanceType(
                name, vcpus, float(memory), gpus=gpus, gpu_memory_gib=float(gpu_memory), local_nvme=nvme,
                accelerator=accelerator,
            )
    for family, (accelerator, neuron_sizes) in _NEURON_SIZES.items():
        for size, vcpus, memory, chips in neuron_sizes:
            name = f"ml.{family}.{size}"
            table[name] = InstanceType(
                name, vcpus, float(memory), neuron_chips=chips, accelerator=accelerator
            )
    return MappingProxyType(dict(sorted(table.items())))


INSTANCE_TYPES: Mapping[str, InstanceType] = _build()
"""Every known ``ml.*`` hosting instance type, by name (read-only)."""


def is_known(name: object) -> bool:
    return isinstance(name, str) and name in INSTANCE_TYPES


def instance_type(name: str) -> InstanceType:
    """The table entry for ``name``; :class:`UnknownInstanceType` (a ``ValueError``) if there is none."""
    try:
        return INSTANCE_TYPES[name]
    except (KeyError, TypeError):
        raise UnknownInstanceType(
            f"unknown SageMaker instance type {name!r}; known families: {', '.join(known_families())}"
        ) from None


def known_families() -> tuple[str, ...]:
    """Families in table order without duplicates, e.g. ``("c5", "c6i", "g4dn", ...)``."""
    return tuple(dict.fromkeys(entry.family for entry in INSTANCE_TYPES.values()))


# --- how a model uses an instance's GPUs (endpoint config ``gpus``, the deployer's ``gpu_layout``) ---

WORKER_PER_GPU = "worker_per_gpu"
"""One model-server worker per GPU, each pinned to its device, each holding a whole copy of the model."""
SPLIT_MODEL = "split_model"
"""One worker; the model's layers placed across every GPU (for a model too big for one)."""
GPU_LAYOUTS = (WORKER_PER_GPU, SPLIT_MODEL)

USABLE_GPU_MEMORY = 0.9
"""Share of a GPU's memory a model may plan on: the CUDA context and the allocator's cache take the rest."""


def gpu_layout_problem(name: str, layout: str, model_memory_gib: float) -> str | None:
    """Why a model needing ``model_memory_gib`` (weights and activations at the largest batch) cannot
    be served on instance type ``name`` with ``layout``, or ``None`` when it can."""
    entry = instance_type(name)
    if layout not in GPU_LAYOUTS:
        return f"unknown GPU layout {layout!r}; allowed: {', '.join(GPU_LAYOUTS)}"
    if not entry.has_gpu:
        gpu_families = ", ".join(dict.fromkeys(e.family for e in INSTANCE_TYPES.values() if e.has_gpu))
        return f"{name} has no GPU: a GPU layout needs a GPU instance type ({gpu_families})"
    per_gpu = entry.gpu_memory_gib * USABLE_GPU_MEMORY
    fits_one = model_memory_gib <= per_gpu
    if layout == WORKER_PER_GPU and not fits_one:
        return (
            f"{model_memory_gib:g} GiB does not fit one {entry.accelerator} of {name} ({per_gpu:g} of "
            f"{entry.gpu_memory_gib:g} GiB usable): use {SPLIT_MODEL} or a type with larger GPUs"
        )
    if layout == SPLIT_MODEL:
        if entry.gpus < 2:
            return f"{SPLIT_MODEL} needs at least 2 GPUs; {name} has 1"
        if fits_one:
            return (
                f"{model_memory_gib:g} GiB fits one {entry.accelerator} ({per_gpu:g} GiB usable): use "
                f"{WORKER_PER_GPU}, which serves {entry.gpus} copies in parallel instead of passing "
                f"activations between GPUs"
            )
        total = per_gpu * entry.gpus
        if model_memory_gib > total:
            return (
                f"{model_memory_gib:g} GiB does not fit the {entry.gpus} GPUs of {name} together "
                f"({total:g} GiB usable)"
            )
    return None


def gpu_model_server_workers(name: str, layout: str) -> int:
    """Model-server workers for ``layout`` on ``name``: one per GPU, or one for a split model."""
    return instance_type(name).gpus if layout == WORKER_PER_GPU else 1
