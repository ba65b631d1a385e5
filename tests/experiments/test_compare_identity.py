"""compare identifies a model by its identity (model_args, dtype, fingerprint), not its display name; keeps one
file per identity; and refuses malformed files and bad --plot paths with one line naming the file (issues 16, 18)."""

import json
import os
import subprocess
import sys

import pytest

from matrixeval.experiments.compare import compare
from matrixeval.report.compare import identity_of, label_of


def _result(name, dtype, entropies, n_params, date="2026-11-23T21:00:00"):
    tasks = {t: {"matrix_entropy": e, "n_samples": 100} for t, e in entropies.items()}
    return {"results": tasks, "date": date,
            "config": {"model_args": f"pretrained=org/{name},dtype={dtype}", "model_name": f"org__{name}",
                       "dtype": dtype, "n_params": n_params},
            "higher_is_better": {"matrix_entropy": False}}


def _write(folder, name, result):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(result))
    return str(path)


def _cli(*argv, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), "src") if p)}
    return subprocess.run([sys.executable, "-m", "matrixeval", "compare", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _one_error(proc, code=2):
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("matrixeval: "), lines
    return lines[0]


def test_one_model_at_fp32_and_bf16_is_two_rows_with_distinct_ranks(tmp_path):
    # By hand, lower entropy is better. a: fp32 (0.5, 0.6) beats bf16 (0.55, 0.65); b is worst on both tasks.
    files = [_write(tmp_path / "a32", "results_1.json", _result("a", "float32", {"t1": 0.5, "t2": 0.6}, 1e8)),
             _write(tmp_path / "a16", "results_1.json", _result("a", "bfloat16", {"t1": 0.55, "t2": 0.65}, 1e8)),
             _write(tmp_path / "b", "results_1.json", _result("b", "float32", {"t1": 0.7, "t2": 0.8}, 2e8))]
    out = compare(files, rank="matrix_entropy", rank_by="mean_rank", output=None)
    assert [(r["model"], r["rank"]) for r in out["ranking"]] == [
        ("org__a (float32)", 1.0), ("org__a (bfloat16)", 2.0), ("org__b", 3.0)]
    assert identity_of(json.load(open(files[0]))) != identity_of(json.load(open(files[1])))


def test_a_rerun_of_one_model_is_not_counted_twice(tmp_path, capsys):
    # results/*/results_*.json with one model run twice: the older file is dropped and said to be.
    sizes = [1e8, 2e8, 4e8, 8e8]
    files = [_write(tmp_path / f"m{i}", "results_1.json",
                    _result(f"m{i}", "float32", {"t": 0.9 - 0.1 * i}, n)) for i, n in enumerate(sizes)]
    rerun = _result("m0", "float32", {"t": 0.95}, sizes[0], date="2026-11-24T09:00:00")
    rerun["config"]["model_args"] = "dtype=float32,pretrained=org/m0"  # argument order does not make a new model
    files.append(_write(tmp_path / "m0b", "results_2.json", rerun))
    proc = _cli(*files, "--rank", "matrix_entropy", "--fit", "powerlaw", "--output", str(tmp_path / "c"),
                cwd=os.getcwd())
    assert proc.returncode == 0, proc.stderr
    assert f"dropped {files[0]}: same model as {files[-1]}" in proc.stderr
    body = json.loads((tmp_path / "c.json").read_text())
    ranks = [r["rank"] for r in body["ranking"]]
    assert sorted(ranks) == [1.0, 2.0, 3.0, 4.0]  # no tied 1.5
    assert body["ranking"][-1] == {"rank": 4.0, "model": "org__m0", "average": 0.95, "t": 0.95}  # the newer value
    assert [f["n"] for f in body["fits"]] == [4]
    assert body["notes"][0] == f"dropped {files[0]}: same model as {files[-1]} (org__m0), which is newer"
    assert "ranked without intervals" in body["notes"][1]  # these files have no samples

    line = _one_error(_cli(*files, "--duplicates", "error", "--output", str(tmp_path / "d"), cwd=os.getcwd()))
    assert "same model (org__m0)" in line and files[0] in line and files[-1] in line
    assert not (tmp_path / "d.json").exists()

    kept = compare(files, rank="matrix_entropy", duplicates="keep-all", output=None)
    assert sorted(r["model"] for r in kept["ranking"])[:2] == ["org__m0 (float32) #1", "org__m0 (float32) #2"]


def test_label_of_prefers_the_swept_model_of_a_checkpoints_file():
    result = {"results": {}, "config": {"model_name": "random-init", "model_args": "pretrained=init",
                                        "sweep": {"model_args": "pretrained=org/swept", "model_name": "org__swept"}}}
    assert label_of(result) == "org__swept"
    assert "org/swept" in identity_of(result)
    assert label_of({"results": {}, "config": {"model_args": "pretrained=org/x,dtype=float32"}}) == "org__x"


@pytest.mark.parametrize("content, expected", [
    (b'{"results": {"t": {"matrix_entropy": 0.5}}, "config": {"model_name": "\xff\xfe"}}', "is not UTF-8 text"),
    (b'{"results": {"t": [0.5]}, "config": {}}', "results['t'] is a list, not an object"),
    (b'{"results": {"t": {"matrix_entropy": 0.5}}, "config": ["a"]}', '"config" is a list, not an object'),
])
def test_malformed_files_are_one_line_naming_the_file(tmp_path, content, expected):
    good = _write(tmp_path, "good.json", _result("g", "float32", {"t": 0.4}, 1e8))
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    line = _one_error(_cli(good, str(bad), "--output", str(tmp_path / "c"), cwd=os.getcwd()))
    assert str(bad) in line and expected in line, line


def test_bad_plot_paths_are_one_line_before_any_work(tmp_path):
    good = _write(tmp_path, "good.json", _result("g", "float32", {"t": 0.4}, 1e8))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        cases = [(str(a_file / "p.png"), "is a file, not a folder"),
                 (str(tmp_path / "p.jpgx"), "unknown image type '.jpgx'")]
        if not os.access(read_only, os.W_OK):  # root can write anywhere
            cases.append((str(read_only / "p.png"), "is not writable"))
        for plot, expected in cases:
            line = _one_error(_cli(good, "--plot", plot, "--output", str(tmp_path / "c"), cwd=os.getcwd()))
            assert expected in line, line
            assert not (tmp_path / "c.json").exists()  # checked before any work
    finally:
        read_only.chmod(0o755)


def test_a_model_retrained_in_place_is_another_identity(tiny_root, tiny_corpus, tmp_path):
    # Same folder, same arguments: only the weights file changed. The results config's model_fingerprint (the
    # files' sizes and mtimes) tells the two apart; an untouched folder gives the same fingerprint.
    import shutil

    from matrixeval import evaluate
    from tests.tiny_models import make_tiny_causal_lm

    folder = tmp_path / "model"
    shutil.copytree(make_tiny_causal_lm(tiny_root, "gpt2", seed=1), folder)
    run = dict(tasks=str(tiny_corpus), metrics="matrix_entropy", limit=3)
    first = evaluate(f"pretrained={folder}", output_path=tmp_path / "a", **run)
    again = evaluate(f"pretrained={folder}", output_path=tmp_path / "b", **run)
    assert first["config"]["model_fingerprint"] == again["config"]["model_fingerprint"] is not None
    for weights in folder.glob("*.safetensors"):
        shutil.copyfile(make_tiny_causal_lm(tiny_root, "gpt2", seed=2) / weights.name, weights)
        os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    retrained = evaluate(f"pretrained={folder}", output_path=tmp_path / "c", **run)
    assert retrained["config"]["model_fingerprint"] != first["config"]["model_fingerprint"]
    out = compare([first["results_path"], retrained["results_path"]], rank="matrix_entropy", output=None)
    assert len(out["ranking"]) == 2
    out = compare([first["results_path"], again["results_path"]], rank="matrix_entropy", output=None)
    assert len(out["ranking"]) == 1
