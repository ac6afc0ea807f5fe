"""gunicorn settings of the GNN container: the worker count and each worker's GPU come from the
variables the platform sets on the model (placement.py). CPU fallback: without them, one worker."""

import os

from placement import Layout, free_slot

LAYOUT = Layout.from_env(os.environ)

# SageMaker reaches the container on port 8080 of every interface; tests bind 127.0.0.1.
bind = f"{os.environ.get('MLOPS_BIND_HOST', '0.0.0.0')}:{os.environ.get('SAGEMAKER_BIND_TO_PORT', '8080')}"
workers = LAYOUT.workers
timeout = int(os.environ.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", "60"))
preload_app = False  # each worker imports torch after its GPU is pinned


def pre_fork(server, worker):
    """In the master, before the fork: give the new worker the lowest slot no live worker holds."""
    worker.slot = free_slot(getattr(w, "slot", -1) for w in server.WORKERS.values())


def post_fork(server, worker):
    """In the worker, before the app (and torch) is imported: pin it to its GPU(s)."""
    os.environ["MLOPS_WORKER_SLOT"] = str(worker.slot)
    visible = LAYOUT.visible_devices(worker.slot)
    if visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible
    server.log.info("worker %s: slot %s, CUDA_VISIBLE_DEVICES=%s", worker.pid, worker.slot, visible)
