"""experiment checkpoints on a model actually trained here (scripts/train_tiny_family.py): what training does to
the metrics, checked against a direct HF forward; plus how checkpoints are found and ordered."""

import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.checkpoints import checkpoints_experiment, resolve_checkpoints, split_revisions
from tests import faults

ROOT = Path(__file__).resolve().parents[2]
STEPS, SAVE_EVERY, SEQ_LEN, LIMIT = 60, 20, 64, 12


def _script():
    spec = importlib.util.spec_from_file_location("train_tiny_family", ROOT / "scripts" / "train_tiny_family.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One tiny member (width 32, 1 layer) trained 60 steps on pydoc topics, checkpoints every 20 steps, and the
    held-out paragraphs as a task file."""
    script = _script()
    out = tmp_path_factory.mktemp("family")
    train, heldout = script.corpus()
    tokenizer = script.train_tokenizer(train, vocab_size=512, max_length=SEQ_LEN)
    stream = script.tokenize_stream(tokenizer, train)
    folders = script.train_member(out / "member", tokenizer, stream, width=32, layers=1, steps=STEPS,
                                  save_every=SAVE_EVERY, seq_len=SEQ_LEN, batch=8, seed=0)
    task = out / "heldout.jsonl"
    task.write_text("".join(json.dumps(r) + "\n" for r in heldout[:LIMIT]))
    return {"root": out / "member", "folders": folders, "task": task}


def _sweep(trained, output, pattern="checkpoint-*", **kw):
    return checkpoints_experiment(tasks=str(trained["task"]), checkpoints=str(trained["root"] / pattern),
                                  include_init=True, max_length=SEQ_LEN, batch_size=4, output_path=output, **kw)


@pytest.fixture(scope="session")
def sweep(trained, tmp_path_factory):
    output = tmp_path_factory.mktemp("sweep")
    return _sweep(trained, output), output


@pytest.mark.slow
def test_training_compresses_and_lowers_the_loss(sweep):
    out, _ = sweep
    rows = {r["step"]: r for r in out["table"]}
    assert sorted(rows) == [0, 20, 40, 60]
    init, last = rows[0], rows[60]
    assert last["loss"] < init["loss"]
    assert init["diff_erank"] == pytest.approx(0.0, abs=1e-9)  # step 0 is the very init Diff-eRank compares with
    assert last["diff_erank"] > 0
    assert last["effective_rank"] < init["effective_rank"]
    assert all(r["n_samples"] == LIMIT for r in rows.values())
    assert [s["step"] for s in out["sweep"]] == [0, 20, 40, 60]
    png = Path(out["outputs"]["plots"][0])
    assert png.read_bytes()[:4] == b"\x89PNG" and Path(out["outputs"]["csv"]).is_file()
    assert png.parent.name.endswith("member")  # the sweep's files go under the family, not one checkpoint


def _direct(folder: Path, texts: list[str]) -> tuple[float, float]:
    """Mean per-sample loss and mean effective rank of the last hidden state, straight from transformers and
    torch.linalg (centre, L2-normalise tokens, trace-1 covariance, exp of its spectral entropy)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    losses, eranks = [], []
    for text in texts:
        ids = tok(text, return_tensors="pt", truncation=True, max_length=SEQ_LEN)["input_ids"]
        with torch.no_grad():
            out = model(input_ids=ids, labels=ids, output_hidden_states=True)
        losses.append(out.loss.item())
        h = out.hidden_states[-1][0].double()
        z = h - h.mean(0)
        z = z / z.norm(dim=1, keepdim=True)
        lam = torch.linalg.eigvalsh(z.T @ z / z.shape[0]).clamp(min=0)
        lam = lam[lam > 0] / lam.sum()
        eranks.append(math.exp(-(lam * lam.log()).sum().item()))
    return sum(losses) / len(losses), sum(eranks) / len(eranks)


@pytest.mark.slow
def test_a_checkpoint_row_equals_a_plain_run_and_a_direct_forward(sweep, trained, tmp_path):
    import matrixeval

    out, _ = sweep
    row = next(r for r in out["table"] if r["step"] == 40)
    folder = trained["root"] / "checkpoint-40"
    plain = matrixeval.evaluate(f"pretrained={folder}", str(trained["task"]), max_length=SEQ_LEN, batch_size=4,
                                metrics="matrix_entropy,effective_rank,nuclear_norm,diff_erank,loss,perplexity",
                                output_path=tmp_path)  # its own store: computed afresh
    entry = plain["results"]["heldout"]
    assert entry["n_resumed"] == 0
    for m in ("matrix_entropy", "effective_rank", "nuclear_norm", "diff_erank", "loss", "perplexity"):
        assert row[m] == pytest.approx(entry[m], rel=1e-9), m
    texts = [json.loads(line)["text"] for line in trained["task"].read_text().splitlines()]
    loss, erank = _direct(folder, texts)
    assert row["loss"] == pytest.approx(loss, rel=1e-4)
    assert row["effective_rank"] == pytest.approx(erank, rel=1e-4)


@pytest.mark.slow
def test_a_killed_sweep_resumes_at_the_checkpoint_and_sample_where_it_stopped(sweep, trained, tmp_path):
    """SIGKILL the CLI once the first checkpoint and one batch of the second are durable, then run it again."""
    argv = [sys.executable, "-m", "matrixeval", "experiment", "checkpoints", "--checkpoints",
            str(trained["root"] / "checkpoint-*"), "--include_init", "--tasks", str(trained["task"]), "--max_length",
            str(SEQ_LEN), "--batch_size", "4", "--output_path", str(tmp_path)]
    proc = subprocess.Popen(argv, env=faults.env(delay=0.5), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while faults.stored_lines(tmp_path) < LIMIT + 4:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline, "no samples were stored in time"
        time.sleep(0.05)
    faults.kill_tree(proc.pid)
    proc.wait()
    assert not list(tmp_path.rglob("checkpoints_*.json")), "a killed sweep must not leave a results file"
    resumed = _sweep(trained, tmp_path)
    n_resumed = {k: v["n_resumed"] for k, v in resumed["results"].items()}
    assert n_resumed["heldout/step20"] == LIMIT and n_resumed["heldout/step60"] == n_resumed["heldout/init"] == 0
    assert 4 <= n_resumed["heldout/step40"] < LIMIT  # mid-checkpoint: the stored batches, not more
    assert resumed["table"] == sweep[0]["table"]  # identical to the uninterrupted sweep
    again = _sweep(trained, tmp_path)
    assert all(v["n_resumed"] == LIMIT for v in again["results"].values())


@pytest.mark.slow
def test_two_gloo_ranks_give_the_single_process_sweep(sweep, trained, tmp_path):
    argv = [str(faults.VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "matrixeval", "experiment",
            "checkpoints", "--checkpoints", str(trained["root"] / "checkpoint-*"), "--include_init", "--tasks",
            str(trained["task"]), "--max_length", str(SEQ_LEN), "--batch_size", "4", "--output_path", str(tmp_path)]
    proc = subprocess.run(argv, env=faults.env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    two = json.loads(next(tmp_path.rglob("checkpoints_*.json")).read_text())
    assert two["config"]["world_size"] == 2
    assert two["table"] == json.loads(json.dumps(sweep[0]["table"]))


@pytest.mark.slow
def test_cli_layers_all_draws_one_line_per_layer(trained, tmp_path, capsys):
    argv = ["experiment", "checkpoints", "--checkpoints", str(trained["root"] / "checkpoint-*"), "--tasks",
            str(trained["task"]), "--layers", "all", "--metrics", "effective_rank,loss", "--max_length",
            str(SEQ_LEN), "--output_path", str(tmp_path)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "| step |" in table and "diff_erank" not in table
    rows = json.loads(next(tmp_path.rglob("checkpoints_*.json")).read_text())["table"]
    assert {(r["step"], r["layer"]) for r in rows} == {(s, layer) for s in (20, 40, 60) for layer in (0, 1)}
    assert next(tmp_path.rglob("checkpoints_*.png")).stat().st_size > 10_000


def test_revisions_are_the_items_after_revisions():
    assert split_revisions("pretrained=org/m,revisions=step1000,step2000,dtype=bfloat16") == (
        "pretrained=org/m,dtype=bfloat16", ["step1000", "step2000"])
    points = resolve_checkpoints("pretrained=org/m,revisions=step3000,step1000", None)
    assert [(p.step, p.name, p.model_args) for p in points] == [
        (1000, "step1000", "pretrained=org/m,revision=step1000"), (3000, "step3000", "pretrained=org/m,revision=step3000")]
    with pytest.raises(MatrixEvalError, match="no step number"):
        resolve_checkpoints("pretrained=org/m,revisions=main", None)


def test_folders_are_ordered_by_trainer_state_then_name(tmp_path):
    for name, state in (("checkpoint-100", None), ("checkpoint-20", None), ("final", {"global_step": 300})):
        (tmp_path / name).mkdir()
        if state:
            (tmp_path / name / "trainer_state.json").write_text(json.dumps(state))
    points = resolve_checkpoints("dtype=float32", str(tmp_path / "*"))
    assert [(p.step, p.name) for p in points] == [(20, "checkpoint-20"), (100, "checkpoint-100"), (300, "final")]
    assert points[0].model_args == f"pretrained={tmp_path / 'checkpoint-20'},dtype=float32"


@pytest.mark.parametrize("model_args, pattern, message", [
    (None, None, "one of the two"),
    ("pretrained=m,revisions=step1", "x-*", "one of the two"),
    (None, "nothing-here-*", "matches no folder"),
    ("pretrained=m", "*", "drop pretrained="),
])
def test_bad_checkpoint_specs_say_what_to_do(tmp_path, model_args, pattern, message):
    (tmp_path / "checkpoint-1").mkdir()
    with pytest.raises(MatrixEvalError, match=message):
        resolve_checkpoints(model_args, str(tmp_path / pattern) if pattern else None)


def test_two_folders_of_one_step_are_an_error(tmp_path):
    (tmp_path / "a-5").mkdir()
    (tmp_path / "b-5").mkdir()
    with pytest.raises(MatrixEvalError, match="share step 5"):
        resolve_checkpoints(None, str(tmp_path / "*"))


# --- issue 16/18 rows: each reproduces the reported case, then asserts the fixed behaviour ---------------------

TEXTS = [{"text": t} for t in ("the cat sat on the mat and looked at the dog .",
                               "a dog ran across the green field to find a stick .",
                               "we compress text into hidden states and measure their rank .")]


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in TEXTS))
    return path


def _folders(root: Path, models: dict[str, Path]) -> Path:
    import shutil

    for name, src in models.items():
        shutil.copytree(src, root / name)
    return root


def _quick(root, task_file, out, **kw):
    kw.setdefault("metrics", "matrix_entropy,diff_erank,loss")
    return checkpoints_experiment(tasks=str(task_file), checkpoints=str(root / "checkpoint-*"), output_path=out,
                                  batch_size=4, max_length=32, **kw)


def test_a_shared_store_gives_each_architecture_its_own_init(gpt2_path, llama_path, task_file, tmp_path, capsys):
    store = tmp_path / "store"
    g = _folders(tmp_path / "g", {"checkpoint-10": gpt2_path})
    ll = _folders(tmp_path / "l", {"checkpoint-10": llama_path})
    first = _quick(g, task_file, tmp_path / "out", include_init=True, store=store)
    second = _quick(ll, task_file, tmp_path / "out", include_init=True, store=store)
    inits = sorted(store.glob("random_init_seed1234-*"))
    assert len(inits) == 2  # today: one folder, GPT-2's, reused for Llama
    used = {s["checkpoint"]: s["model_name"] for s in second["sweep"]}
    init_dir = next(d for d in inits if d.name in used["init"])
    assert json.loads((init_dir / "config.json").read_text())["model_type"] == "llama"
    assert second["table"][0]["checkpoint"] == "init" and second["table"][0]["diff_erank"] == pytest.approx(0, abs=1e-9)
    assert first["table"][0]["matrix_entropy"] != second["table"][0]["matrix_entropy"]
    capsys.readouterr()
    again = _quick(g, task_file, tmp_path / "out", include_init=True, store=store)
    assert "random init: reusing" in capsys.readouterr().err
    assert again["table"] == first["table"] and len(list(store.glob("random_init_seed1234-*"))) == 2


def test_revisions_of_a_local_folder_are_one_line_before_loading(gpt2_path, task_file, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "matrixeval", "experiment", "checkpoints", "--model_args",
                           f"pretrained={gpt2_path},revisions=a1,b2", "--tasks", str(task_file), "--output_path",
                           str(tmp_path)], env=faults.env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("matrixeval: error: revisions= needs a Hub ID")
    assert not list(tmp_path.rglob("*.json"))


def test_checkpoint_0_and_the_init_are_two_labelled_step_0_points(gpt2_path, task_file, tmp_path):
    root = _folders(tmp_path / "g", {"checkpoint-0": gpt2_path, "checkpoint-10": gpt2_path})
    out = _quick(root, task_file, tmp_path / "out", include_init=True)
    assert [(r["step"], r["checkpoint"]) for r in out["table"]] == [(0, "init"), (0, "checkpoint-0"),
                                                                    (10, "checkpoint-10")]
    assert set(out["results"]) == {"t/init", "t/step0", "t/step10"}  # today: one t/step0 overwrote the other
    real0, ten = out["table"][1], out["table"][2]
    assert real0["matrix_entropy"] == pytest.approx(ten["matrix_entropy"], rel=1e-12)  # same weights
    assert out["table"][0]["diff_erank"] == pytest.approx(0, abs=1e-9) and real0["diff_erank"] != 0
    assert Path(out["outputs"]["plots"][0]).stat().st_size > 10_000


def test_mixed_architectures_in_one_glob_name_two_checkpoints(gpt2_path, llama_path, tmp_path):
    root = _folders(tmp_path, {"checkpoint-1": gpt2_path, "checkpoint-2": llama_path})
    with pytest.raises(MatrixEvalError, match="'checkpoint-1' and 'checkpoint-2' differ in architecture"):
        resolve_checkpoints(None, str(root / "checkpoint-*"))


@pytest.mark.parametrize("content, message", [
    (b'{"global_step": true}', "global_step True, not a non-negative integer"),
    (b'{"global_step": -7}', "global_step -7, not a non-negative integer"),
    (b'{"global_step": 1.5}', "global_step 1.5"),
    (b'\xff\xfe{"global_step": 3}', "is not UTF-8"),
    (b'{"global_step": ', "is not valid JSON"),
])
def test_a_bad_trainer_state_is_one_line_naming_the_file(tmp_path, content, message):
    (tmp_path / "checkpoint-5").mkdir()
    state = tmp_path / "checkpoint-5" / "trainer_state.json"
    state.write_bytes(content)
    with pytest.raises(MatrixEvalError, match=message) as err:
        resolve_checkpoints(None, str(tmp_path / "checkpoint-*"))
    assert str(state) in str(err.value)
    assert main(["experiment", "checkpoints", "--checkpoints", str(tmp_path / "checkpoint-*")]) != 0


def test_a_nan_checkpoint_is_marked_and_the_sweep_goes_on(gpt2_path, task_file, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    root = _folders(tmp_path / "g", {"checkpoint-10": gpt2_path, "checkpoint-20": gpt2_path,
                                     "checkpoint-30": gpt2_path})
    model = AutoModelForCausalLM.from_pretrained(root / "checkpoint-20")
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight.fill_(float("nan"))
    model.save_pretrained(root / "checkpoint-20")
    out = _quick(root, task_file, tmp_path / "out")
    err = capsys.readouterr().err
    rows = {r["checkpoint"]: r for r in out["table"]}
    assert rows["checkpoint-20"]["n_samples"] == 0 and rows["checkpoint-20"]["n_nonfinite"] == len(TEXTS)
    assert rows["checkpoint-20"]["matrix_entropy"] is None
    assert rows["checkpoint-10"]["n_samples"] == rows["checkpoint-30"]["n_samples"] == len(TEXTS)
    line = next(x for x in err.splitlines() if "matrixeval: warning: checkpoint 'checkpoint-20'" in x)
    assert "float32 model" in line and "weights hold NaN/Inf" in line and "c_attn.weight" in line
    assert "fp16" not in err.split("checkpoint-20")[-1].split("\n")[0]
    assert Path(out["results_path"]).is_file()


def test_compare_labels_a_sweep_with_the_swept_model(gpt2_path, task_file, tmp_path):
    from matrixeval.report.compare import model_name as compare_label

    root = _folders(tmp_path / "member", {"checkpoint-10": gpt2_path})
    out = _quick(root, task_file, tmp_path / "out", include_init=True)
    on_disk = json.loads(Path(out["results_path"]).read_text())
    label = compare_label(on_disk)
    assert "random_init" not in label and label.endswith("member")  # today: the init folder's name
    assert "random_init" not in on_disk["config"]["model_args"]


def test_resume_lines_name_the_checkpoint(gpt2_path, task_file, tmp_path, capsys):
    root = _folders(tmp_path / "g", {"checkpoint-10": gpt2_path})
    _quick(root, task_file, tmp_path / "out")
    capsys.readouterr()
    _quick(root, task_file, tmp_path / "out")
    assert f"task t @ checkpoint-10: resumed {len(TEXTS)} of {len(TEXTS)}" in capsys.readouterr().err


def test_baseline_checkpoint_makes_diff_erank_relative_to_it(tiny_root, gpt2_path, task_file, tmp_path):
    from tests.tiny_models import make_tiny_causal_lm

    other = make_tiny_causal_lm(tiny_root, "gpt2", seed=1)
    root = _folders(tmp_path / "g", {"checkpoint-10": gpt2_path, "checkpoint-20": other})
    plain = {r["step"]: r["diff_erank"] for r in _quick(root, task_file, tmp_path / "out")["table"]}
    based = {r["step"]: r["diff_erank"] for r in _quick(root, task_file, tmp_path / "out",
                                                         baseline="checkpoint-10")["table"]}
    assert based[10] == pytest.approx(0, abs=1e-9)
    # exp(mean H0) − exp(mean H1) is a difference: relative to checkpoint-10 it is D_init(20) − D_init(10)
    assert based[20] == pytest.approx(plain[20] - plain[10], rel=1e-6, abs=1e-9)
    again = {r["step"]: r["diff_erank"] for r in _quick(root, task_file, tmp_path / "out")["table"]}
    assert again == plain  # the baseline is part of the store's key: no stale values either way
    with pytest.raises(MatrixEvalError, match="neither 'init', a checkpoint of this sweep"):
        _quick(root, task_file, tmp_path / "out", baseline="checkpoint-99")
    with pytest.raises(MatrixEvalError, match="no diff_erank"):
        _quick(root, task_file, tmp_path / "out", baseline="10", metrics="matrix_entropy")
