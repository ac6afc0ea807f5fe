"""Every set of wheels synthesis installs somewhere else, so ``make install`` can prefetch them
(``python -m mlops_platform.wheels``) and synthesis then runs offline."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import version

from .pipelines.images import image_python
from .wheels import WheelTarget, linux_target, local_target

# The Lambda functions' Python (constructs/platform_function.py RUNTIME) and the bulk-indexing
# job's image Python (constructs/semantic_search.py). The SDK and its dependencies are pure
# Python: one set of wheels serves arm64 and x86_64.
LAMBDA_SDK_TARGET = WheelTarget("3.13", ("manylinux2014_aarch64", "manylinux2014_x86_64"))
BULK_JOB_SDK_TARGET = WheelTarget("3.12", ("manylinux2014_x86_64",))
SDK_DISTRIBUTIONS = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six")


def sdk_requirements() -> tuple[str, ...]:
    """The AWS SDK and its dependencies at the versions the tests ran with (constraints.txt
    pins them), for code whose runtime's own SDK may predate a service it calls."""
    return tuple(f"{name}=={version(name)}" for name in SDK_DISTRIBUTIONS)


def training_wheels(pipeline) -> WheelTarget:
    """Wheels for a training pipeline's train step: its XGBoost image's Python, x86_64 Linux."""
    return linux_target(image_python("xgboost", pipeline.framework_version))


def all_wheel_sets() -> Iterator[tuple[tuple[str, ...], WheelTarget]]:
    from .config import load_environments
    from .paths import REPO_ROOT
    from .pipelines.packaging import REQUIREMENTS, requirement_lines

    yield sdk_requirements(), LAMBDA_SDK_TARGET
    yield sdk_requirements(), BULK_JOB_SDK_TARGET
    seen = set()
    for config in load_environments():
        for pipeline in config.training.pipelines:
            requirements = REPO_ROOT / pipeline.code.train_source_dir / REQUIREMENTS
            wanted = (requirement_lines(requirements), training_wheels(pipeline)) if requirements.is_file() else None
            if wanted and wanted not in seen:
                seen.add(wanted)
                yield wanted
                # the same packages for this machine: the tests install the packed source offline
                yield wanted[0], local_target()
