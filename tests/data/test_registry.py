import dataclasses

import pytest

from matrixeval.data import DEFAULT_TASK, TaskRecipe, get_task, list_tasks, register_task, task_names
from matrixeval.data import registry
from matrixeval.errors import MatrixEvalError

EXPECTED = {
    "pydoc_topics", "dolly", "wikipedia", "openwebtext2", "hh_rlhf", "openbookqa", "winogrande", "piqa",
    "openorca", "openorca_system", "alpaca", "wizard", "alpaca_eval", "arena_hard",
    "wikipedia_reference", "openwebtext2_reference", "wikitext",
}


def test_all_recipes_registered_and_listed_sorted():
    names = [r.name for r in list_tasks()]
    assert set(names) == EXPECTED
    assert names == sorted(names) == task_names()
    assert DEFAULT_TASK == "pydoc_topics" and get_task(DEFAULT_TASK).builtin is not None


def test_every_recipe_is_displayable():
    for recipe in list_tasks():
        assert recipe.description and "\n" not in recipe.description
        assert recipe.fields and all(isinstance(f, str) for f in recipe.fields)
        assert recipe.builtin is not None or recipe.hf_path is not None


def test_hub_locations():
    assert get_task("hh_rlhf").hf_path == "Anthropic/hh-rlhf" and get_task("hh_rlhf").split == "test"
    assert (get_task("wikipedia").hf_name, get_task("wikipedia").sample_size) == ("20231101.en", 10_000)
    assert get_task("openwebtext2").sample_size == 10_000 and get_task("openwebtext2").sample_seed is None
    # the papers' reference code: random.seed(123), 10,000 records, openwebtext2 from suolyer/pile_openwebtext2 validation
    ref = get_task("openwebtext2_reference")
    assert (ref.hf_path, ref.split, ref.sample_size, ref.sample_seed) == ("suolyer/pile_openwebtext2", "validation", 10_000, 123)
    ref = get_task("wikipedia_reference")
    assert (ref.hf_path, ref.split, ref.sample_size, ref.sample_seed) == ("wikipedia", "train", 10_000, 123)
    assert (get_task("alpaca_eval").hf_name, get_task("alpaca_eval").split) == ("alpaca_eval", "eval")
    assert (get_task("winogrande").hf_name, get_task("winogrande").split) == ("winogrande_xl", "validation")


def test_unknown_task_suggests_the_closest_name():
    with pytest.raises(MatrixEvalError) as info:
        get_task("hh_rlfh")
    msg = str(info.value)
    assert "unknown task 'hh_rlfh'" in msg and "did you mean 'hh_rlhf'?" in msg
    assert all(name in msg for name in EXPECTED) and "\n" not in msg


def test_unknown_task_without_close_match_lists_valid_names():
    with pytest.raises(MatrixEvalError, match="unknown task 'zzzzqqq'; Valid tasks: alpaca, "):
        get_task("zzzzqqq")


def test_register_task_adds_and_rejects_duplicates_and_bad_names(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    recipe = TaskRecipe("my_task", "mine", ("text",), to_text=lambda r: r["text"])
    assert register_task(recipe) is recipe and get_task("my_task") is recipe
    with pytest.raises(MatrixEvalError, match="already registered"):
        register_task(recipe)
    for bad in ("a=b", "x,y", "p/q", "", "1abc"):
        with pytest.raises(MatrixEvalError, match="invalid task name"):
            register_task(dataclasses.replace(recipe, name=bad))
    with pytest.raises(MatrixEvalError, match="sample_size must be a positive"):
        register_task(dataclasses.replace(recipe, name="other", sample_size=0))
