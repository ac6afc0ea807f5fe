"""Minimal SageMaker serving contract: GET /ping and POST /invocations on port 8080."""

from __future__ import annotations

import json
import os

from flask import Flask, Response, request

app = Flask(__name__)
MODEL_DIR = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")
_model = None


def model():
    """Load the model from the artifacts SageMaker unpacked, once per worker."""
    global _model
    if _model is None:
        import torch

        _model = torch.jit.load(os.path.join(MODEL_DIR, "model.pt"), map_location="cpu")
        _model.eval()
    return _model


@app.get("/ping")
def ping() -> Response:
    return Response(status=200 if os.path.exists(os.path.join(MODEL_DIR, "model.pt")) else 503)


@app.post("/invocations")
def invocations() -> Response:
    import torch

    graph = request.get_json(force=True)
    x = torch.tensor(graph["node_features"], dtype=torch.float32)
    edge_index = torch.tensor(graph["edge_index"], dtype=torch.long)
    with torch.no_grad():
        scores = model()(x, edge_index)
    return Response(json.dumps({"scores": scores.tolist()}), mimetype="application/json")
