"""The GNN example's serving container: SageMaker's contract (GET /ping, POST /invocations on
port 8080), run by gunicorn (gunicorn.conf.py: one worker per GPU, each pinned to its device, or
one worker with the model split across the GPUs, as the endpoint's ``gpus`` setting says).

The model artifact (``model.tar.gz``, unpacked by SageMaker under ``/opt/ml/model``) is what
``training/example_gnn/train.py`` writes: ``model.json`` (architecture), ``model.pt`` (weights) and
``code/model.py`` (the module defining it), imported from there so the image serves any version.

Request: ``{"node_features": [[...], ...], "edge_index": [[sources...], [targets...]]}``.
Response: ``{"scores": [[p_class0, ...], ...], "classes": [argmax, ...], "device": "..."}``:
class probabilities per node.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from functools import cache
from pathlib import Path

from flask import Flask, Response, request

sys.path.insert(0, str(Path(__file__).resolve().parent))
from placement import SPLIT_MODEL, Layout  # noqa: E402

app = Flask(__name__)


def model_dir() -> Path:
    return Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))


@cache
def loaded():
    """(model, devices) once per worker. CUDA_VISIBLE_DEVICES was pinned by gunicorn before this
    worker imported torch, so its GPUs are cuda:0..n-1; without CUDA everything runs on the CPU."""
    import torch

    directory = model_dir()
    spec = importlib.util.spec_from_file_location("gnn_model", directory / "code" / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    config = module.GraphSageConfig(**json.loads((directory / module.CONFIG_FILE).read_text()))
    model = module.GraphSage(config)
    model.load_state_dict(torch.load(directory / module.WEIGHTS_FILE, map_location="cpu", weights_only=True))
    model.eval()
    if torch.cuda.is_available():
        layout = Layout.from_env(os.environ)
        count = torch.cuda.device_count() if layout.layout == SPLIT_MODEL else 1
        devices = [torch.device(f"cuda:{i}") for i in range(count)]
    else:
        devices = [torch.device("cpu")]
    return model.place(devices), devices


@app.get("/ping")
def ping() -> Response:
    try:
        loaded()
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        return Response(json.dumps({"error": f"model not loaded: {error}"}), status=503, mimetype="application/json")
    return Response(status=200)


@app.post("/invocations")
def invocations() -> Response:
    import torch

    graph = request.get_json(force=True, silent=True)
    if not isinstance(graph, dict) or "node_features" not in graph or "edge_index" not in graph:
        return _bad_request('expected JSON {"node_features": [[...]], "edge_index": [[sources], [targets]]}')
    model, devices = loaded()
    try:
        x = torch.tensor(graph["node_features"], dtype=torch.float32)
        edge_index = torch.tensor(graph["edge_index"], dtype=torch.long).reshape(2, -1)
    except (TypeError, ValueError, RuntimeError) as error:
        return _bad_request(f"node_features must be a list of equal-length number lists and edge_index two "
                            f"lists of node indices: {error}")
    if x.dim() != 2 or x.size(1) != model.config.in_channels:
        return _bad_request(f"node_features must have {model.config.in_channels} features per node")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= x.size(0)):
        return _bad_request(f"edge_index refers to nodes outside 0..{x.size(0) - 1}")
    with torch.no_grad():
        scores = torch.softmax(model(x, edge_index), dim=1).cpu()
    body = {"scores": scores.tolist(), "classes": scores.argmax(dim=1).tolist(),
            "device": ",".join(str(d) for d in devices)}
    return Response(json.dumps(body), mimetype="application/json")


def _bad_request(message: str) -> Response:
    return Response(json.dumps({"error": message}), status=400, mimetype="application/json")
