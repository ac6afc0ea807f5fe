"""Train the GNN example (GraphSAGE node classification, PyTorch Geometric) on one process or many.

Distributed data parallel (DDP), one process per GPU, across instances: SageMaker starts it with
``torchrun`` when the estimator says ``distribution={"torch_distributed": {"enabled": True}}``
(``nproc_per_node`` = the instance's GPUs, ``nnodes`` = ``instance_count``), and ``torchrun`` sets
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; locally
``torchrun --standalone --nproc_per_node 2 train.py`` does the same. Without those variables it
runs as one process. Backend: NCCL with a GPU (process ``LOCAL_RANK`` on ``cuda:LOCAL_RANK``), gloo
on CPU.

How the work is split: every process holds the graph (it must fit one instance's memory; for
larger graphs partition it, e.g. PyG's ``torch_geometric.distributed``). Each step takes a global
batch of ``--batch-size`` labelled nodes (the same shuffled order on every rank, seeded per
epoch); rank r trains on every ``world``-th of them, on their ``num_layers``-hop neighbourhood.
DDP averages the gradients, so a step's update is the one a single process makes on the whole
global batch: N processes train the same model as one, N times faster in the forward and backward
passes (``tests/unit/training/test_gnn_training.py`` checks the quality against one process).

Inputs: ``--train`` (``SM_CHANNEL_TRAIN``) a folder with ``graph.pt`` (``torch.save`` of a dict:
``x`` float [N, F], ``edge_index`` long [2, E], ``y`` long [N], ``train_mask``/``test_mask`` bool
[N]); without it a seeded synthetic graph (``--nodes``, ``--classes``) is generated, the same on
every rank. Output (rank 0 only): ``<--model-dir>`` (``SM_MODEL_DIR``) holds ``model.pt`` (the
weights), ``model.json`` (the architecture) and ``code/model.py``: what ``serving/example_gnn``
serves; ``metrics.json`` (test accuracy, epochs, world size, seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.utils import k_hop_subgraph, to_undirected

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import CONFIG_FILE, WEIGHTS_FILE, GraphSage, GraphSageConfig  # noqa: E402

GRAPH_FILE = "graph.pt"


@dataclass(frozen=True)
class Cluster:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> Cluster:
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))

    @property
    def distributed(self) -> bool:
        return self.world > 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")))
    parser.add_argument("--train", type=Path, default=Path(env["SM_CHANNEL_TRAIN"]) if "SM_CHANNEL_TRAIN" in env else None)
    parser.add_argument("--nodes", type=int, default=2000, help="synthetic graph size (without --train)")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256, help="labelled nodes per step, over all ranks")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    args, unknown = parser.parse_known_args(argv)  # SageMaker adds arguments of its own
    if unknown:
        print(f"ignoring arguments {unknown}", file=sys.stderr)
    return args


def synthetic_graph(nodes: int, classes: int, seed: int, features: int = 16, degree: int = 3,
                    homophily: float = 0.8, noise: float = 4.0) -> dict[str, torch.Tensor]:
    """A stochastic block graph: noisy class-centred features (one node's features alone classify
    poorly), and ``homophily`` of each node's edges within its class (the neighbourhood helps)."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (nodes,), generator=generator)
    centres = torch.randn(classes, features, generator=generator)
    x = centres[y] + noise * torch.randn(nodes, features, generator=generator)
    by_class = [torch.nonzero(y == c).flatten() for c in range(classes)]
    source = torch.arange(nodes).repeat_interleave(degree)
    same = torch.rand(source.numel(), generator=generator) < homophily
    target = torch.randint(0, nodes, (source.numel(),), generator=generator)
    for c, members in enumerate(by_class):
        rows = same & (y[source] == c)
        picks = torch.randint(0, members.numel(), (int(rows.sum()),), generator=generator)
        target[rows] = members[picks]
    edge_index = to_undirected(torch.stack([source, target]), num_nodes=nodes)
    order = torch.randperm(nodes, generator=generator)
    train_mask = torch.zeros(nodes, dtype=torch.bool)
    train_mask[order[: nodes // 2]] = True
    test_mask = torch.zeros(nodes, dtype=torch.bool)
    test_mask[order[nodes // 2:]] = True
    return {"x": x, "edge_index": edge_index, "y": y, "train_mask": train_mask, "test_mask": test_mask}


def load_graph(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    if args.train is None:
        return synthetic_graph(args.nodes, args.classes, args.seed)
    path = args.train / GRAPH_FILE if args.train.is_dir() else args.train
    graph = torch.load(path, weights_only=True)
    missing = {"x", "edge_index", "y", "train_mask", "test_mask"} - set(graph)
    if missing:
        raise SystemExit(f"{path}: missing {sorted(missing)}")
    return graph


def device_of(cluster: Cluster) -> torch.device:
    return torch.device(f"cuda:{cluster.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def neighbourhood(seeds: torch.Tensor, graph: dict, hops: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features, edges, seed positions) of the ``hops``-hop subgraph around ``seeds``: all a
    ``hops``-layer GNN reads to classify them."""
    subset, edge_index, mapping, _ = k_hop_subgraph(seeds, hops, graph["edge_index"], relabel_nodes=True,
                                                    num_nodes=graph["x"].size(0))
    return graph["x"][subset], edge_index, mapping


def train(args: argparse.Namespace, cluster: Cluster) -> dict:
    torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts them)
    device = device_of(cluster)
    graph = load_graph(args)
    config = GraphSageConfig(in_channels=graph["x"].size(1), hidden_channels=args.hidden,
                             num_classes=int(graph["y"].max()) + 1, num_layers=args.layers, dropout=args.dropout)
    model = GraphSage(config).to(device)
    trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if cluster.distributed else model
    optimizer = torch.optim.Adam(trained.parameters(), lr=args.lr)
    labelled = torch.nonzero(graph["train_mask"]).flatten()
    started = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = labelled[torch.randperm(labelled.numel(), generator=torch.Generator().manual_seed(args.seed + epoch))]
        for start in range(0, order.numel(), args.batch_size):
            batch = order[start:start + args.batch_size]
            seeds = batch[cluster.rank::cluster.world]
            x, edge_index, positions = neighbourhood(seeds, graph, config.num_layers)
            logits = trained(x.to(device), edge_index.to(device))[positions]
            # Scaled so that DDP's average over the ranks is the mean loss over the whole batch,
            # even when the ranks' shares differ by one node.
            loss = F.cross_entropy(logits, graph["y"][seeds].to(device), reduction="sum") \
                * cluster.world / batch.numel()
            optimizer.zero_grad()
            loss.backward()  # DDP: gradients averaged over the ranks here
            optimizer.step()
    seconds = time.perf_counter() - started
    return {"model": model, "config": config, "accuracy": evaluate(model, graph, device), "seconds": seconds}


@torch.no_grad()
def evaluate(model: GraphSage, graph: dict, device: torch.device) -> float:
    model.eval()
    logits = model(graph["x"].to(device), graph["edge_index"].to(device))
    mask = graph["test_mask"].to(device)
    return float((logits[mask].argmax(dim=1) == graph["y"].to(device)[mask]).float().mean())


def save(model_dir: Path, result: dict, args: argparse.Namespace, cluster: Cluster) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.cpu() for k, v in result["model"].state_dict().items()}, model_dir / WEIGHTS_FILE)
    (model_dir / CONFIG_FILE).write_text(json.dumps(result["config"].to_dict()))
    (model_dir / "code").mkdir(exist_ok=True)
    shutil.copy(Path(__file__).resolve().parent / "model.py", model_dir / "code" / "model.py")
    metrics = {"test_accuracy": result["accuracy"], "epochs": args.epochs, "world_size": cluster.world,
               "train_seconds": round(result["seconds"], 3)}
    (model_dir / "metrics.json").write_text(json.dumps(metrics))
    print(json.dumps(metrics))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cluster = Cluster.from_env()
    if cluster.distributed:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(cluster.local_rank)
        dist.init_process_group(backend)  # env:// from torchrun's variables
    try:
        result = train(args, cluster)
        if cluster.rank == 0:
            save(args.model_dir, result, args, cluster)
    finally:
        if cluster.distributed:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
