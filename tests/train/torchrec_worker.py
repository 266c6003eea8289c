"""A TorchRec job for tests/train/test_torchrec.py (importable by spawned workers): an
EmbeddingBagCollection of two tables sharded over the ranks by TorchRec's planner, the
item table split by columns across both ranks (a table larger than one device; TorchRec
offers row-wise splits on CUDA only), the user table placed whole on one rank."""

from __future__ import annotations

import json

import torch
import torch.distributed as dist

DIM = 8


def run_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    import torchrec
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        tables = [torchrec.EmbeddingBagConfig(name="item_table", embedding_dim=DIM, num_embeddings=1000,
                                              feature_names=["item"]),
                  torchrec.EmbeddingBagConfig(name="user_table", embedding_dim=DIM, num_embeddings=500,
                                              feature_names=["user"])]
        collection = torchrec.EmbeddingBagCollection(tables=tables, device=torch.device("meta"))
        planner = EmbeddingShardingPlanner(
            topology=Topology(world_size=world_size, compute_device="cpu"),
            constraints={"item_table": ParameterConstraints(sharding_types=["column_wise"], min_partition=DIM // 2),
                         "user_table": ParameterConstraints(sharding_types=["table_wise"])})
        plan = planner.collective_plan(collection, None, dist.GroupMember.WORLD)
        model = DistributedModelParallel(collection, device=torch.device("cpu"), plan=plan)
        # Row r of every table holds the value r, so a summed bag is the sum of its ids.
        placement = {}
        for name, tensor in model.state_dict().items():
            for shard in tensor.local_shards():
                first = shard.metadata.shard_offsets[0]
                rows = shard.tensor.shape[0]
                shard.tensor.copy_(torch.arange(first, first + rows, dtype=torch.float32)[:, None].expand_as(shard.tensor))
                placement.setdefault(name, []).append([list(shard.metadata.shard_offsets),
                                                       list(shard.metadata.shard_sizes)])
        # This rank's examples: ids that live on either rank.
        items = torch.tensor([1, 998, 3]) + rank
        users = torch.tensor([4, 5, 400]) + rank
        batch = KeyedJaggedTensor.from_lengths_sync(keys=["item", "user"], values=torch.cat([items, users]),
                                                    lengths=torch.tensor([2, 1, 1, 2]))
        pooled = model(batch)
        pooled = pooled.wait() if hasattr(pooled, "wait") else pooled
        values = pooled.to_dict()
        values["item"].sum().backward()  # gradients flow back through the all-to-all
        result = {"item": values["item"].detach().tolist(), "user": values["user"].detach().tolist(),
                  "placement": placement}
        with open(f"{out_dir}/rank{rank}.json", "w") as file:
            json.dump(result, file)
    finally:
        dist.destroy_process_group()
