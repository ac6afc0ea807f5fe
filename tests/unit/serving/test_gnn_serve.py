"""The GNN serving container's handler on CPU (marker ``gnn``: needs torch, `make test-gnn`):
/ping and /invocations with a tiny model trained by the example's train.py, then the real gunicorn
with two workers, each pinned to its "GPU" slot (CPU fallback inside)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from gnn_support import SERVING_DIR, TRAINING_DIR, load

pytestmark = pytest.mark.gnn

GRAPH = {"node_features": [[0.1 * i] * 16 for i in range(5)], "edge_index": [[0, 1, 2, 3], [1, 2, 3, 4]]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model trained for one epoch on a small synthetic graph, as the training job writes it."""
    directory = tmp_path_factory.mktemp("model")
    train = load(TRAINING_DIR, "train")
    train.main(["--model-dir", str(directory), "--nodes", "300", "--epochs", "1"])
    return directory


@pytest.fixture
def client(model_dir, monkeypatch):
    monkeypatch.setenv("SM_MODEL_DIR", str(model_dir))
    serve = load(SERVING_DIR, "serve")
    serve.loaded.cache_clear()
    yield serve.app.test_client()
    serve.loaded.cache_clear()


def test_ping_once_the_model_loads(client):
    assert client.get("/ping").status_code == 200


def test_ping_fails_without_a_model(tmp_path, monkeypatch):
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path))
    serve = load(SERVING_DIR, "serve")
    serve.loaded.cache_clear()
    response = serve.app.test_client().get("/ping")
    assert response.status_code == 503 and "model not loaded" in response.get_json()["error"]
    serve.loaded.cache_clear()


def test_invocations_return_class_probabilities_per_node(client, model_dir):
    import torch

    response = client.post("/invocations", json=GRAPH)
    assert response.status_code == 200
    body = response.get_json()
    assert len(body["scores"]) == 5 and body["device"] == "cpu"
    assert all(abs(sum(row) - 1) < 1e-5 for row in body["scores"])
    # the same numbers the trained model gives
    model_module = load(model_dir / "code", "model")
    config = model_module.GraphSageConfig(**json.loads((model_dir / "model.json").read_text()))
    model = model_module.GraphSage(config)
    model.load_state_dict(torch.load(model_dir / "model.pt", weights_only=True))
    model.eval()
    expected = torch.softmax(model(torch.tensor(GRAPH["node_features"]), torch.tensor(GRAPH["edge_index"])), dim=1)
    assert torch.allclose(torch.tensor(body["scores"]), expected, atol=1e-6)
    assert body["classes"] == expected.argmax(dim=1).tolist()


@pytest.mark.parametrize(("graph", "message"), [
    ({"node_features": [[1.0] * 16]}, "expected JSON"),
    ({"node_features": [[1.0] * 3], "edge_index": [[], []]}, "16 features per node"),
    ({"node_features": [[1.0] * 16], "edge_index": [[0], [7]]}, "outside 0..0"),
    ({"node_features": [[1.0] * 16, [1.0]], "edge_index": [[0], [1]]}, "equal-length"),
])
def test_bad_graphs_are_400_with_the_reason(client, graph, message):
    response = client.post("/invocations", json=graph)
    assert response.status_code == 400 and message in response.get_json()["error"]


def test_split_model_places_layers_over_the_devices(model_dir):
    """What split_model does with n GPUs, shown with CPU devices: layer i on device i*n//layers."""
    model_module = load(model_dir / "code", "model")
    model = model_module.GraphSage(model_module.GraphSageConfig(in_channels=16, num_layers=4))
    placed = []
    model.place(["cpu", "meta"])
    placed = [next(conv.parameters()).device.type for conv in model.convs]
    assert placed == ["cpu", "cpu", "meta", "meta"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_gunicorn_runs_one_worker_per_gpu_each_pinned_and_a_restarted_worker_keeps_its_gpu(model_dir, tmp_path):
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "SM_MODEL_DIR": str(model_dir), "MLOPS_BIND_HOST": "127.0.0.1",
           "SAGEMAKER_BIND_TO_PORT": str(port),
           # what the deployer writes for worker_per_gpu on a 2-GPU layout
           "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "MLOPS_GPU_LAYOUT": "worker_per_gpu", "MLOPS_GPU_DEVICES": "0,1"}
    with log.open("w") as output:
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
                                   "--error-logfile", "-", "serve:app"],
                                  cwd=SERVING_DIR, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/ping")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(GRAPH).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert len(json.loads(response.read())["scores"]) == 5  # no CUDA here: the worker falls back to CPU
        pinned = pinned_workers(log)
        assert sorted(pinned.values()) == [("0", "0"), ("1", "1")]
        (pid_of_slot_1,) = [pid for pid, (slot, _) in pinned.items() if slot == "1"]
        os.kill(pid_of_slot_1, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(pinned_workers(log)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        replacement = {pid: p for pid, p in pinned_workers(log).items() if pid not in pinned}
        assert list(replacement.values()) == [("1", "1")]
    finally:
        server.terminate()
        server.wait(timeout=30)


def pinned_workers(log) -> dict[int, tuple[str, str]]:
    """pid -> (slot, CUDA_VISIBLE_DEVICES) from gunicorn.conf.py's post_fork log lines."""
    found = {}
    for line in log.read_text().splitlines():
        if "CUDA_VISIBLE_DEVICES=" in line and "worker " in line:
            words = line.split("worker ", 1)[1]
            pid, rest = words.split(":", 1)
            slot = rest.split("slot ", 1)[1].split(",", 1)[0]
            found[int(pid)] = (slot, rest.rsplit("=", 1)[1].strip())
    return found
