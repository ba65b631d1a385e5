import pytest

from matrixeval.engine.dist import World, rank_gpus


@pytest.mark.parametrize("local_size,n_gpus,expected", [
    (2, 8, [[0, 1, 2, 3], [4, 5, 6, 7]]),
    (4, 8, [[0, 1], [2, 3], [4, 5], [6, 7]]),
    (3, 8, [[0, 1], [2, 3], [4, 5]]),  # the last two GPUs stay idle rather than shared
    (2, 1, [[0], [0]]),  # fewer GPUs than ranks: ranks share, as plain data parallelism would
])
def test_each_rank_gets_its_own_share_of_the_node(monkeypatch, local_size, n_gpus, expected):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_size))
    got = [rank_gpus(World(rank=r, size=local_size, local_rank=r), n_gpus) for r in range(local_size)]
    assert got == expected


def test_device_map_is_limited_to_the_ranks_gpus(monkeypatch, tiny_root):
    from transformers import AutoModelForCausalLM

    from matrixeval.models import load_model, parse_model_args
    from tests.tiny_models import make_tiny_causal_lm

    path = make_tiny_causal_lm(tiny_root, "gpt2")
    seen = {}
    real = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, name, **kwargs):
        seen.update(kwargs)
        kwargs.pop("max_memory")
        return real(cls, name, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    monkeypatch.setattr("accelerate.utils.get_max_memory", lambda: {0: 10, 1: 10, 2: 10, 3: 10, "cpu": 99})
    load_model(parse_model_args(f"pretrained={path},device_map=cpu"), gpus=[2, 3])
    assert seen["max_memory"] == {2: 10, 3: 10, "cpu": 99} and seen["device_map"] == "cpu"
