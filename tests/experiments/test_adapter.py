"""adapter: the base model and the same model with a real LoRA adapter, checked against HF forwards."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from matrixeval.cli import main
from matrixeval.errors import MatrixEvalError
from matrixeval.experiments.adapter import adapter_experiment, with_adapter
from tests.metrics import reference as ref

from .conftest import check_outputs, read_jsonl

COLUMNS = ["task", "n_samples", "matrix_entropy_base", "matrix_entropy_adapter", "matrix_entropy_delta",
           "loss_base", "loss_adapter", "loss_delta"]


@pytest.fixture(scope="module")
def lora(llama_path, tmp_path_factory):
    from peft import LoraConfig, get_peft_model

    out = tmp_path_factory.mktemp("lora") / "adapter"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(llama_path)
        config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
        get_peft_model(base, config).save_pretrained(out)
    return out


def _direct(path, adapter, texts):
    """Mean matrix entropy and loss from HF forwards (batch size 1) of the model, with the adapter if given."""
    from peft import PeftModel

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    ent, loss = [], []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, return_tensors="pt")
            out = model(**enc, labels=enc["input_ids"], output_hidden_states=True)
            ent.append(ref.matrix_entropy(out.hidden_states[-1][0]))
            loss.append(out.loss.item())
    return sum(ent) / len(ent), sum(loss) / len(loss)


def test_base_and_adapter_side_by_side(llama_path, lora, tiny_corpus, tmp_path):
    out = adapter_experiment(f"pretrained={llama_path}", str(tiny_corpus), adapter=str(lora), limit=8,
                             metrics="matrix_entropy,loss", output_path=tmp_path)
    check_outputs(out, COLUMNS)
    texts = [r["text"] for r in read_jsonl(tiny_corpus)[:8]]
    row = out["table"][0]
    for role, adapter in (("base", None), ("adapter", lora)):
        ent, loss = _direct(llama_path, adapter, texts)
        assert row[f"matrix_entropy_{role}"] == pytest.approx(ent, abs=1e-5)
        assert row[f"loss_{role}"] == pytest.approx(loss, abs=1e-5)
    assert row["matrix_entropy_delta"] == pytest.approx(row["matrix_entropy_adapter"] - row["matrix_entropy_base"])
    assert abs(row["matrix_entropy_delta"]) > 1e-3
    assert out["config"]["adapter"] == str(lora) and out["config"]["base"]["n_params"] < out["config"]["n_params"]


def test_cli_and_errors(llama_path, lora, tiny_corpus, tmp_path, capsys):
    argv = ["experiment", "adapter", "--model_args", f"pretrained={llama_path}", "--adapter", str(lora),
            "--tasks", str(tiny_corpus), "--limit", "3", "--output_path", str(tmp_path)]
    assert main(argv) == 0
    assert "matrix_entropy_adapter" in capsys.readouterr().out
    data = json.loads(next(tmp_path.rglob("adapter_*.json")).read_text())
    assert set(data["results"]) == {"tiny/base", "tiny/adapter"}
    with pytest.raises(MatrixEvalError, match="already name an adapter"):
        with_adapter(f"pretrained={llama_path},adapter={lora}", str(lora))


def _direct_loss(path, adapter, texts):
    """Mean causal-LM loss of `texts` (one HF forward each) of the model from `path`, with the saved adapter."""
    return _direct(path, adapter, texts)[1]


@pytest.fixture(scope="module")
def trained(llama_path, tiny_corpus, tmp_path_factory):
    from matrixeval.experiments.adapter import LoraTraining

    out_dir = tmp_path_factory.mktemp("train")
    settings = LoraTraining(learning_rate=3e-2, epochs=8, batch_size=4)
    out = adapter_experiment(f"pretrained={llama_path}", str(tiny_corpus), train=settings, limit=8,
                             metrics="matrix_entropy,loss", output_path=out_dir)
    return out, out_dir


def test_train_lowers_the_loss_on_the_training_texts_by_a_direct_forward(llama_path, tiny_corpus, trained):
    out, out_dir = trained
    check_outputs(out, COLUMNS)
    adapter = out["config"]["adapter"]
    assert adapter.startswith(str(out_dir)) and Path(adapter).name.startswith("lora-")
    texts = [r["text"] for r in read_jsonl(tiny_corpus)[:8]]
    base, tuned = _direct_loss(llama_path, None, texts), _direct_loss(llama_path, adapter, texts)
    assert tuned < base - 0.1, (base, tuned)
    row = out["table"][0]
    assert row["loss_base"] == pytest.approx(base, abs=1e-5)
    assert row["loss_adapter"] == pytest.approx(tuned, abs=1e-5)
    training = out["config"]["training"]
    assert training["n_steps"] == 8 * 2 and training["n_texts"] == 8  # 8 texts in batches of 4, 8 epochs
    assert training["settings"]["target_modules"] == ["q_proj", "v_proj"]  # PEFT's choice for Llama
    assert training["settings"]["r"] == 8 and training["settings"]["lora_alpha"] == 16
    saved = json.loads((Path(adapter) / "adapter_config.json").read_text())
    assert saved["r"] == 8 and saved["lora_alpha"] == 16 and saved["lora_dropout"] == 0.05


def test_training_is_seeded(llama_path, tiny_corpus, trained, tmp_path):
    from safetensors.torch import load_file

    from matrixeval.experiments.adapter import LoraTraining

    out, _ = trained
    again = adapter_experiment(f"pretrained={llama_path}", str(tiny_corpus), limit=8, metrics="loss",
                               train=LoraTraining(learning_rate=3e-2, epochs=8, batch_size=4), output_path=tmp_path)
    first = load_file(Path(out["config"]["adapter"]) / "adapter_model.safetensors")
    second = load_file(Path(again["config"]["adapter"]) / "adapter_model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    other = adapter_experiment(f"pretrained={llama_path}", str(tiny_corpus), limit=8, metrics="loss", seed=7,
                               train=LoraTraining(learning_rate=3e-2, epochs=8, batch_size=4), output_path=tmp_path)
    third = load_file(Path(other["config"]["adapter"]) / "adapter_model.safetensors")
    assert not all(torch.equal(first[k], third[k]) for k in first)


def test_cli_train_prints_the_adapter_path_and_states_defaults(llama_path, tiny_corpus, tmp_path, capsys):
    argv = ["experiment", "adapter", "--model_args", f"pretrained={llama_path}", "--train", "--max_steps", "2",
            "--tasks", str(tiny_corpus), "--limit", "4", "--metrics", "loss", "--output_path", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "loss_adapter" in captured.out
    [adapter] = [p for p in tmp_path.glob("*/lora-*") if p.is_dir()]
    assert f"LoRA adapter saved to {adapter}" in captured.err
    training = json.loads((adapter / "training.json").read_text())
    assert training["n_steps"] == 2 and len(training["losses"]) == 2 and training["seed"] == 1234
    with pytest.raises(SystemExit) as exit_:  # --train and --adapter are exclusive
        main([*argv, "--adapter", str(adapter)])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["experiment", "adapter", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--train", "LoRA rank (default: 8)", "(default: 16)", "(default: 0.05)", "(default: 0.0003)",
                   "(default: 3)", "default: none, every epoch runs", "q_proj,v_proj for Llama"):
        assert phrase in text, phrase


def test_train_settings_and_sources_are_checked_before_any_loading(llama_path, lora):
    from matrixeval.experiments.adapter import LoraTraining

    with pytest.raises(MatrixEvalError, match="either --adapter PEFT_DIR .* or --train"):
        adapter_experiment(f"pretrained={llama_path}", "x.jsonl")
    with pytest.raises(MatrixEvalError, match="either --adapter PEFT_DIR .* or --train"):
        adapter_experiment(f"pretrained={llama_path}", "x.jsonl", adapter=str(lora), train=True)
    with pytest.raises(MatrixEvalError, match="already name an adapter"):
        adapter_experiment(f"pretrained={llama_path},adapter={lora}", "x.jsonl", train=True)
    for bad in ({"r": 0}, {"max_steps": 0}, {"lora_dropout": 1.0}, {"learning_rate": -1.0}):
        with pytest.raises(MatrixEvalError, match="must be"):
            LoraTraining(**bad)


# --- issue 16: the adapter keyed, reused, resumed; checks before training; a full disk; another base -------------

def _adapters(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/lora-*") if p.is_dir())


def test_the_same_command_reuses_the_adapter_and_another_setting_or_text_trains_another(
        llama_path, tiny_corpus, trained, capsys):
    """issue 16: a re-run after training finished trained a new adapter into a new timestamped folder; now the
    adapter's key (base identity, texts, settings) finds it, and the reuse is said on screen."""
    from matrixeval.experiments.adapter import LoraTraining

    out, out_dir = trained
    [first] = _adapters(out_dir)
    capsys.readouterr()
    again = adapter_experiment(f"pretrained={llama_path}", str(tiny_corpus), train=LoraTraining(learning_rate=3e-2,
                               epochs=8, batch_size=4), limit=8, metrics="matrix_entropy,loss", output_path=out_dir)
    err = capsys.readouterr().err
    assert f"LoRA adapter: reusing {str(first)!r}: same model, inputs and settings" in err
    assert "LoRA adapter saved" not in err and _adapters(out_dir) == [first]
    assert again["config"]["adapter"] == out["config"]["adapter"] == str(first)
    assert again["config"]["training"] == out["config"]["training"]
    assert again["table"] == out["table"]
    # one setting, or one text fewer, is another key: another adapter, trained
    for settings, limit in ((LoraTraining(learning_rate=1e-2, epochs=1, batch_size=4), 8),
                            (LoraTraining(learning_rate=3e-2, epochs=1, batch_size=4), 7)):
        adapter_experiment(f"pretrained={llama_path}", str(tiny_corpus), train=settings, limit=limit,
                           metrics="loss", output_path=out_dir)
        assert "LoRA adapter saved to" in capsys.readouterr().err
    assert len(_adapters(out_dir)) == 3 and not list(out_dir.rglob("*.state.pt"))


def test_an_adapter_loaded_on_another_base_of_the_same_shape_warns_once(llama_path, tiny_root, tiny_corpus, trained,
                                                                        capsys):
    """issue 16: an adapter trained for one base loaded on another base of the same shape: no warning; now the
    adapter folder records its base and one line says so."""
    from matrixeval.experiments.adapter import BASE_FILE, check_base
    from tests.tiny_models import make_tiny_causal_lm

    out, _ = trained
    adapter = out["config"]["adapter"]
    recorded = json.loads((Path(adapter) / BASE_FILE).read_text())
    assert recorded["model_args"] == f"pretrained={llama_path}" and recorded["model_name"]
    check_base(f"pretrained={llama_path}", adapter)
    check_base(f"pretrained={llama_path},dtype=float32", adapter)  # the same base, loaded another way
    assert capsys.readouterr().err == ""
    other = make_tiny_causal_lm(tiny_root, "llama", seed=1)  # the same shape, other weights
    got = adapter_experiment(f"pretrained={other}", str(tiny_corpus), adapter=adapter, limit=2, metrics="loss",
                             output_path=None)
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("matrixeval: warning: adapter ")]
    assert len(warnings) == 1 and f"was trained on base 'pretrained={llama_path}'" in warnings[0], warnings
    assert f"not on '{other}'" in warnings[0] and got["table"]


def _read_only(folder: Path):
    import subprocess

    folder.mkdir()
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode:
        pytest.skip("cannot make a read-only bind mount here")
    if subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode:
        subprocess.run(["umount", str(folder)])
        pytest.skip("cannot make a read-only bind mount here")
    return folder


def test_an_unwritable_output_path_fails_before_training(llama_path, tiny_corpus, tmp_path, capsys, monkeypatch):
    """issue 16: a read-only --output_path, or one that is a file: a traceback after training; now one line before
    any model loads (train_lora is never reached)."""
    import subprocess

    import matrixeval.experiments.adapter as adapter_module

    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(adapter_module, "train_lora", never)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["experiment", "adapter", "--model_args", f"pretrained={llama_path}", "--train", "--tasks",
            str(tiny_corpus), "--limit", "2", "--output_path"]
    assert main([*argv, str(blocker)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"matrixeval: error: output_path '{blocker}' is a file; give a folder (it is created if missing)"]
    # what the measuring after training would refuse is refused before it too
    for flags, says in ((["--metrics", "nosuch"], "nosuch"), (["--layers", "99"], "99"),
                        (["--store", str(blocker)], f"store '{blocker}' is a file")):
        assert main([*argv, str(tmp_path / "out"), *flags]) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith("matrixeval: error: ") and says in line, line
    ro = _read_only(tmp_path / "ro")
    try:
        assert main([*argv, str(ro / "out")]) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"matrixeval: error: cannot write into folder '{ro}' for output_path"), line
        assert "Read-only file system" in line
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def _cli(*argv, delay: float = 0.0, **popen):
    import subprocess
    import sys

    from tests import faults

    return subprocess.run([sys.executable, "-m", "matrixeval", *map(str, argv)], env=faults.env(delay),
                          capture_output=True, text=True, timeout=300, **popen)


def test_a_full_disk_while_writing_the_adapter_names_it_and_leaves_nothing(llama_path, tiny_corpus, tmp_path):
    """issue 16: a full disk under adapter --train left a 0-byte adapter_config.json; now nothing partial is left
    and the one line names the adapter folder."""
    import re
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        proc = _cli("experiment", "adapter", "--model_args", f"pretrained={llama_path}", "--train", "--max_steps", "1",
                    "--tasks", tiny_corpus, "--limit", "4", "--metrics", "loss", "--store", tmp_path / "store",
                    "--output_path", disk / "out")
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert len(lines) == 1, lines
        failed = re.fullmatch(r"matrixeval: error: cannot write '(.+?)': No space left on device; .*", lines[0])
        assert failed and Path(failed[1]).parent.parent == disk / "out", lines
        assert Path(failed[1]).name.startswith("lora-")
        assert [p for p in disk.rglob("*") if p.is_file()] == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.slow
def test_training_killed_after_an_epoch_resumes_to_the_same_adapter(llama_path, tiny_corpus, tmp_path):
    """issue 16: Ctrl-C or a kill during adapter --train restarted training from zero; now a SIGKILL once the first
    epoch's state is on disk, then the same command, ends with the adapter, losses and metrics of a run that was
    never interrupted (exactly: same arithmetic in the same order on CPU)."""
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    from tests import faults

    def argv(out):
        return ["-m", "matrixeval", "experiment", "adapter", "--model_args", f"pretrained={llama_path}", "--train",
                "--epochs", "4", "--train_batch_size", "4", "--learning_rate", "3e-2", "--tasks", str(tiny_corpus),
                "--limit", "8", "--metrics", "matrix_entropy,loss", "--output_path", str(out)]

    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen([sys.executable, *argv(killed)], env=faults.env(0.5), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list(killed.rglob("lora-*.state.pt")):
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline, "no training state was saved in time"
        time.sleep(0.05)
    faults.kill_tree(proc.pid)
    proc.wait()
    [state] = list(killed.rglob("lora-*.state.pt"))
    saved = torch.load(state, weights_only=True)
    assert 1 <= saved["epoch"] < 4 and len(saved["losses"]) == 2 * saved["epoch"]
    assert _adapters(killed) == []  # killed mid-training: no adapter folder yet

    resumed = subprocess.run([sys.executable, *argv(killed)], env=faults.env(), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"LoRA training: resuming at epoch {saved['epoch'] + 1} (step {2 * saved['epoch'] + 1})" in resumed.stderr
    assert main(argv(whole)[2:]) == 0  # uninterrupted, in this process (one thread, as the subprocesses)
    [a], [b] = _adapters(killed), _adapters(whole)
    assert a.name == b.name  # the same key: the output folder is not part of it
    wa, wb = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ta, tb = (json.loads((x / "training.json").read_text()) for x in (a, b))
    assert ta["losses"] == tb["losses"] and ta["resumed_at_step"] == 2 * saved["epoch"] and tb["resumed_at_step"] == 0
    ra, rb = (json.loads(next(x.glob("*__adapter*/adapter_*.json")).read_text()) for x in (killed, whole))
    assert ra["table"] == rb["table"]
    assert not list(killed.rglob("*.state.pt"))


def test_ctrl_c_after_an_epoch_says_where_the_state_is_and_the_same_command_resumes(llama_path, tiny_corpus, tmp_path,
                                                                                     capsys, monkeypatch):
    """issue 16: Ctrl-C during adapter --train said "stored samples will be resumed", then training restarted
    from zero. Here Ctrl-C lands right after the first epoch's state is written (as a KeyboardInterrupt would
    between two Python steps): one line names the state, and the same command resumes at epoch 2."""
    import matrixeval.experiments.adapter as adapter_module

    real = adapter_module._save_state

    def save_then_ctrl_c(path, state):
        real(path, state)
        raise KeyboardInterrupt

    argv = ["experiment", "adapter", "--model_args", f"pretrained={llama_path}", "--train", "--epochs", "2",
            "--train_batch_size", "4", "--tasks", str(tiny_corpus), "--limit", "4", "--metrics", "loss",
            "--output_path", str(tmp_path)]
    monkeypatch.setattr(adapter_module, "_save_state", save_then_ctrl_c)
    assert main(argv) == 130
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("matrixeval:")]
    [state] = list(tmp_path.rglob("lora-*.state.pt"))
    assert line == (f"matrixeval: interrupted: LoRA training stopped at step 1 of 2; the state of its last finished "
                    f"epoch is in {str(state)!r}; re-run the same command to resume")
    monkeypatch.undo()
    assert main(argv) == 0
    assert f"LoRA training: resuming at epoch 2 (step 2) from {str(state)!r}" in capsys.readouterr().err
    assert not state.exists() and len(_adapters(tmp_path)) == 1


def test_train_under_torchrun_refuses_before_loading(llama_path, tiny_corpus, tmp_path, capsys, monkeypatch):
    """Training runs in one process: under torchrun every rank would train the same adapter. One line, and no
    model loads (no process group is even joined)."""
    import matrixeval.experiments.adapter as adapter_module

    monkeypatch.setattr(adapter_module, "train_lora", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    argv = ["experiment", "adapter", "--model_args", f"pretrained={llama_path}", "--train", "--tasks",
            str(tiny_corpus), "--limit", "2", "--output_path", str(tmp_path)]
    assert main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("matrixeval: error: --train trains in one process; run the same command without torchrun")


@pytest.mark.slow
def test_a_trained_adapter_is_reused_under_torchrun_and_the_measuring_shards(llama_path, tiny_corpus, tmp_path):
    """The README's way to use torchrun with --train: train in one process, then the same command under torchrun
    reuses the adapter (said once) and gives the one-process table."""
    import subprocess

    from tests import faults

    argv = ["experiment", "adapter", "--model_args", f"pretrained={llama_path}", "--train", "--max_steps", "2",
            "--tasks", str(tiny_corpus), "--limit", "6", "--batch_size", "2", "--metrics", "matrix_entropy,loss",
            "--output_path", str(tmp_path)]
    assert main(argv) == 0
    [adapter] = _adapters(tmp_path)
    one = json.loads(next(tmp_path.glob("*__adapter*/adapter_*.json")).read_text())
    proc = subprocess.run([str(faults.VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "matrixeval",
                           *argv], env=faults.env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count(f"LoRA adapter: reusing {str(adapter)!r}") == 1
    assert _adapters(tmp_path) == [adapter]
    two = json.loads(max(tmp_path.glob("*__adapter*/adapter_*.json")).read_text())
    assert two["config"]["world_size"] == 2 and one["config"]["world_size"] == 1
    assert two["table"] == one["table"]


def test_no_source_flag_is_one_line_before_loading(capsys):
    """Issue 17 item 6: every experiment with no flags runs or says in one line what it needs."""
    from matrixeval.cli import main

    assert main(["experiment", "adapter"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("matrixeval: error: ") and "--adapter" in err[0] and "--train" in err[0]
