"""TorchRec's sharded embeddings on 2 CPU processes (gloo) with recloop's torch.

recloop has no sharding layer of its own: for embedding tables larger than one device,
TorchRec's planner shards them (split by columns across ranks, or whole tables per rank,
on CPU; also by rows on CUDA) and its all-to-all sends each rank's lookups to the ranks
that hold them. Installing it
without replacing torch is in docs/scale.md ("Past one machine"); the test is skipped
where it is not installed.
"""

import json

import pytest
import torch.multiprocessing as mp


def _torchrec_importable() -> bool:
    try:
        import torchrec  # noqa: F401  (fbgemm_gpu's libraries load here; a torch ABI mismatch is an OSError)
    except (ImportError, OSError):
        return False
    return True


pytestmark = pytest.mark.skipif(not _torchrec_importable(), reason="torchrec (with fbgemm-gpu-cpu) is not installed")


def test_sharded_embedding_bags_look_up_rows_held_by_other_ranks(tmp_path):
    from tests.train.torchrec_worker import DIM, run_worker

    mp.spawn(run_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # The item table is split by columns over both ranks (all 1000 rows on each); the user
    # table lives whole on one rank.
    item_shards = [shard for r in range(2) for shard in ranks[r]["placement"]["embedding_bags.item_table.weight"]]
    assert all(shard[0][0] == 0 and shard[1][0] == 1000 for shard in item_shards)
    assert sum(shard[1][1] for shard in item_shards) == DIM
    assert all(ranks[r]["placement"]["embedding_bags.item_table.weight"] for r in range(2))
    assert sum(len(ranks[r]["placement"].get("embedding_bags.user_table.weight", [])) for r in range(2)) == 1
    for r, result in enumerate(ranks):
        # Bags: item [1, 998] and [3]; user [4] and [5, 400] (each id + r). Row i holds i.
        assert result["item"] == [[1 + 998 + 2 * r] * DIM, [3 + r] * DIM]
        assert result["user"] == [[4 + r] * DIM, [5 + 400 + 2 * r] * DIM]
