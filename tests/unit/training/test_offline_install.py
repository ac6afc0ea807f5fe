"""The train step's packed source installs with `pip install --no-index` into a clean venv, and its
entry point imports: the job needs nothing from the internet (a VPC without NAT).

The archive is packed for this machine's Python (the synthesized one targets the training image's
CPython 3.10); the wheels were fetched by `make install` (python -m mlops_platform.wheels).
numpy, pandas and xgboost come from the training image; here they come from this environment,
appended after the clean venv so that they cannot stand in for a packaged requirement.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tarfile
import venv

import pytest

from mlops_platform.paths import REPO_ROOT
from mlops_platform.pipelines.packaging import pack_source_dir
from mlops_platform.wheels import local_target

pytestmark = pytest.mark.xdist_group("offline-install")  # beside the synthesis, on the other worker

SOURCE = REPO_ROOT / "training" / "example_classifier"


def test_the_packed_train_source_installs_offline_and_its_entry_point_imports(tmp_path):
    packed = pack_source_dir(SOURCE, tmp_path / "packed", wheels=local_target())
    code = tmp_path / "code"
    with tarfile.open(packed) as archive:
        archive.extractall(code, filter="data")
    clean = tmp_path / "venv"
    venv.create(clean, with_pip=False)
    python = str(clean / "bin" / "python")
    # What the framework container runs in the code folder, with no index to fall back on.
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--disable-pip-version-check", "--no-index", "--no-compile",
         "-r", "requirements.txt"], cwd=code, capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    probe = (f"import sys; sys.path.insert(0, {str(code)!r}); sys.path.append({sysconfig.get_paths()['purelib']!r}); "
             "import train, mlflow, sagemaker_mlflow, wandb; "
             "print(*(m.__file__ for m in (mlflow, sagemaker_mlflow, wandb)), sep='\\n')")
    done = subprocess.run([python, "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(line.startswith(str(clean)) for line in done.stdout.splitlines())  # from the wheels
