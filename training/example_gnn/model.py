"""The GNN example's model: GraphSAGE node classification (PyTorch Geometric).

One definition for training (``train.py``) and serving: the training job copies this file into the
model artifact (``code/model.py``) and the serving container (``serving/example_gnn/serve.py``)
imports it from there, so the image does not have to change with the architecture.

Each layer's inputs are moved to that layer's device, so the same module runs on one device or
split across several (``place``: the serving layout ``split_model``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch_geometric.nn import SAGEConv

CONFIG_FILE = "model.json"
WEIGHTS_FILE = "model.pt"


@dataclass(frozen=True)
class GraphSageConfig:
    in_channels: int
    hidden_channels: int = 32
    num_classes: int = 2
    num_layers: int = 2
    dropout: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


class GraphSage(torch.nn.Module):
    def __init__(self, config: GraphSageConfig) -> None:
        super().__init__()
        self.config = config
        sizes = [config.in_channels] + [config.hidden_channels] * (config.num_layers - 1) + [config.num_classes]
        self.convs = torch.nn.ModuleList(SAGEConv(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Logits per node; ``edge_index`` is ``[2, E]`` (source, target)."""
        last = len(self.convs) - 1
        for index, conv in enumerate(self.convs):
            device = next(conv.parameters()).device
            x, edge_index = x.to(device), edge_index.to(device)
            x = conv(x, edge_index)
            if index < last:
                x = F.dropout(F.relu(x), p=self.config.dropout, training=self.training)
        return x

    def place(self, devices: Sequence[torch.device | str]) -> GraphSage:
        """Spread the layers over ``devices`` in contiguous blocks (layer i on device i*n//layers)."""
        for index, conv in enumerate(self.convs):
            conv.to(devices[index * len(devices) // len(self.convs)])
        return self
