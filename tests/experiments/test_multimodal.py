"""`matrixeval experiment multimodal` on a tiny random LLaVA: every H checked against states computed here."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

from matrixeval import matrix_entropy  # noqa: E402
from matrixeval.errors import MatrixEvalError  # noqa: E402
from matrixeval.experiments.multimodal import (  # noqa: E402
    DEFAULT_INSTRUCTION, LEVELS, Sample, load_samples, measure_sample, multimodal, parse_rotations, rotate_image)
from matrixeval.models import parse_model_args  # noqa: E402
from matrixeval.models.vision import build_prompts, capture, content_mask, load_vision_language_model  # noqa: E402
from tests.conftest import shared_file  # noqa: E402
from tests.tiny_llava import LLAVA_CHAT_TEMPLATE, NUM_IMAGE_TOKENS, make_images, make_tiny_llava  # noqa: E402
from tests.tiny_models import TINY_TEXTS  # noqa: E402

ATOL = 1e-6


@pytest.fixture(scope="module")
def llava_path(tiny_root):
    return make_tiny_llava(tiny_root)


@pytest.fixture(scope="module")
def vlm(llava_path):
    return load_vision_language_model(parse_model_args(f"pretrained={llava_path}"), "cpu")


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    make_images(folder, ["a.png", "b.png", "c.png"])
    return folder


@pytest.fixture(scope="module")
def samples(image_dir):
    return [Sample(i, image_dir / f"{'abc'[i]}.png", TINY_TEXTS[i], TINY_TEXTS[i + 3]) for i in range(3)]


@pytest.fixture(scope="module")
def data_file(image_dir):
    path = image_dir.parent / "tiny.jsonl"
    with open(path, "w") as f:
        for i in range(3):
            f.write(json.dumps({"image": f"{'abc'[i]}.png", "instruction": TINY_TEXTS[i],
                                "response": TINY_TEXTS[i + 3]}) + "\n")
    return path


def rot90_clockwise(image, degrees):
    """The image turned `degrees` clockwise by torch.rot90 on its pixel array (k < 0 turns clockwise)."""
    import numpy as np
    from PIL import Image

    pixels = torch.from_numpy(np.asarray(image).copy())
    return Image.fromarray(torch.rot90(pixels, k=-(degrees // 90), dims=(0, 1)).numpy())


def direct(vlm, sample, *, rotate=0, reverse=False, include_template=True):
    """H1..H5 (/ log d) from the LLaVA parts called here: tower → layer −2 without CLS → projector → LLM.

    With include_template every position of the prompt is in H4/H5 (the behaviour before the template was
    left out); without it, the positions of the instruction's and response's own tokens (tokenised alone
    here), plus the image tokens in H5."""
    from PIL import Image

    model, processor = vlm.model.model, vlm.processor
    image = Image.open(sample.image).convert("RGB")
    if rotate:
        image = rot90_clockwise(image, rotate)
    pixels = processor.image_processor(image, return_tensors="pt")["pixel_values"]
    image_id = vlm.model.config.image_token_id
    with torch.no_grad():
        features = model.vision_tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        projected = model.multi_modal_projector(features)
        fed = projected.flip(1) if reverse else projected

        def llm(text):
            ids = processor.tokenizer(text.replace("<image>", "<image>" * NUM_IMAGE_TOKENS), return_tensors="pt")
            ids = ids["input_ids"]
            embeds = model.get_input_embeddings()(ids)
            if (ids == image_id).any():
                embeds[ids == image_id] = fed[0]
            return ids[0], model.language_model(inputs_embeds=embeds).last_hidden_state[0]

        i, r = sample.instruction, sample.response
        ids3, h3 = llm("<image>")
        ids4, h4 = llm(f"USER: {i} ASSISTANT: {r}")
        ids5, h5 = llm(f"USER: <image>\n{i} ASSISTANT: {r}")
    if include_template:
        m4, m5 = torch.ones(len(ids4), dtype=torch.bool), torch.ones(len(ids5), dtype=torch.bool)
    else:
        m4, m5 = content_positions(vlm, ids4, i, r), content_positions(vlm, ids5, i, r) | (ids5 == image_id)
    values = {"H1": matrix_entropy(features[0]), "H2": matrix_entropy(projected[0]),
              "H3": matrix_entropy(h3[ids3 == image_id]), "H4": matrix_entropy(h4[m4]), "H5": matrix_entropy(h5[m5])}
    return {k: float(v) for k, v in values.items()}, {"H3": int((ids3 == image_id).sum()), "H4": int(m4.sum()),
                                                       "H5": int(m5.sum())}


def content_positions(vlm, ids, instruction, response):
    """Where the instruction's and the response's own tokens (each tokenised alone, no specials) sit in `ids`:
    the instruction's first run after the template, then the response's after it."""
    tok = vlm.processor.tokenizer
    mask = torch.zeros(len(ids), dtype=torch.bool)
    at = 0
    for piece in (instruction, response):
        own = tok(piece, add_special_tokens=False)["input_ids"]
        at = next(j for j in range(at, len(ids) - len(own) + 1) if ids[j:j + len(own)].tolist() == own)
        mask[at:at + len(own)] = True
        at += len(own)
    return mask


def values(measured):
    return {level: float(m.matrix_entropy[0]) for level, m in measured.items()}


@pytest.mark.parametrize("include_template", [False, True])
def test_each_level_equals_the_metric_core_on_the_states_computed_directly(vlm, samples, include_template):
    """include_template=True is the behaviour before H4/H5 left the template out: every prompt position."""
    assert vlm.module_names == {"vision": "model.vision_tower", "projector": "model.multi_modal_projector",
                                "language": "model.language_model"}
    for sample in samples:
        measured = measure_sample(vlm, sample, include_template=include_template)
        expected, n_tokens = direct(vlm, sample, include_template=include_template)
        assert values(measured) == pytest.approx(expected, abs=ATOL)
        assert {level: int(measured[level].n_tokens[0]) for level in ("H3", "H4", "H5")} == n_tokens
        assert n_tokens["H3"] == NUM_IMAGE_TOKENS
        assert [measured[level].hidden_size for level in LEVELS] == [32, 48, 48, 48, 48]


def test_image_positions_are_exactly_the_image_tokens(vlm, samples):
    prompts = build_prompts(vlm, samples[0].instruction, samples[0].response)
    from PIL import Image

    alone = capture(vlm, prompts.image_only, Image.open(samples[0].image).convert("RGB"))
    assert alone.image_mask[0].tolist() == [False] + [True] * NUM_IMAGE_TOKENS  # BOS, then the image
    both = capture(vlm, prompts.image_text, Image.open(samples[0].image).convert("RGB"))
    assert int(both.image_mask.sum()) == NUM_IMAGE_TOKENS and both.attention_mask.all()
    assert alone.projector_input.shape == (1, NUM_IMAGE_TOKENS, 32)  # CLS dropped
    text = capture(vlm, prompts.text_only)
    assert text.projector_input is None and not text.image_mask.any()


def test_h4_matrix_holds_exactly_the_instruction_and_response_tokens(vlm, samples):
    i, r = samples[0].instruction, samples[0].response
    tok = vlm.processor.tokenizer
    own = tok(i, add_special_tokens=False)["input_ids"] + tok(r, add_special_tokens=False)["input_ids"]
    for processor_template in (None, LLAVA_CHAT_TEMPLATE):
        processor = copy.copy(vlm.processor)
        processor.chat_template = processor_template
        model = dataclasses.replace(vlm, processor=processor)
        prompts = build_prompts(model, i, r)
        text = capture(model, prompts.text_only, offsets=True)
        mask = content_mask(model, prompts.text_only, text, (i, r))
        assert text.input_ids[mask].tolist() == own
        assert text.input_ids[0, 0] == tok.bos_token_id and not mask[0, 0]  # BOS is context only
        from PIL import Image

        both = capture(model, prompts.image_text, Image.open(samples[0].image).convert("RGB"), offsets=True)
        assert both.input_ids[content_mask(model, prompts.image_text, both, (i, r))].tolist() == own
        measured = measure_sample(model, samples[0])
        assert int(measured["H4"].n_tokens[0]) == len(own)
        assert int(measured["H5"].n_tokens[0]) == len(own) + NUM_IMAGE_TOKENS


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_is_clockwise_like_torch_rot90(image_dir, degrees):
    import numpy as np
    from PIL import Image

    image = Image.open(image_dir / "a.png").convert("RGB")
    turned = rotate_image(image, degrees)
    assert np.array_equal(np.asarray(turned), np.asarray(rot90_clockwise(image, degrees)))
    assert turned.size == (image.size if degrees == 180 else image.size[::-1])
    corner = np.asarray(image)[-1, 0]  # bottom-left goes to top-left under a clockwise quarter turn
    assert degrees != 90 or np.array_equal(np.asarray(turned)[0, 0], corner)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotate_changes_the_image_levels_and_leaves_text_only_identical(vlm, samples, degrees):
    for sample in samples[:2]:
        base = values(measure_sample(vlm, sample))
        rotated = values(measure_sample(vlm, sample, operation=f"rotate{degrees}"))
        assert rotated["H2"] != pytest.approx(base["H2"], abs=1e-4)
        assert rotated["H4"] == base["H4"]
        assert rotated == pytest.approx(direct(vlm, sample, rotate=degrees, include_template=False)[0], abs=ATOL)


def test_rotations_parse_in_order_once_each_and_refuse_other_angles():
    assert parse_rotations(None) == [] and parse_rotations(False) == []
    assert parse_rotations("90,180") == [90, 180]
    assert parse_rotations(["270", "90,270"]) == [270, 90]
    assert parse_rotations(180) == [180]
    for bad in ("45", "90,x", True, "", [0]):
        with pytest.raises(MatrixEvalError, match="90, 180 or 270"):
            parse_rotations(bad)


def test_reverse_after_connector_keeps_h1_h2_and_changes_what_the_llm_sees(vlm, samples):
    for sample in samples:
        base = values(measure_sample(vlm, sample))
        reversed_ = values(measure_sample(vlm, sample, operation="reverse_after_connector"))
        assert (reversed_["H1"], reversed_["H2"], reversed_["H4"]) == (base["H1"], base["H2"], base["H4"])
        assert reversed_["H3"] != pytest.approx(base["H3"], abs=1e-4)
        assert reversed_["H5"] != pytest.approx(base["H5"], abs=1e-4)
        assert reversed_ == pytest.approx(direct(vlm, sample, reverse=True, include_template=False)[0], abs=ATOL)


def test_named_modules_give_the_same_states_as_the_llava_defaults(vlm, llava_path, samples):
    spec = f"pretrained={llava_path},vision_module=model.vision_tower,projector_module=model.multi_modal_projector"
    named = load_vision_language_model(parse_model_args(spec), "cpu")
    assert named.module_names == vlm.module_names
    assert values(measure_sample(named, samples[1])) == values(measure_sample(vlm, samples[1]))


def test_bad_module_names_say_what_exists(llava_path):
    with pytest.raises(MatrixEvalError, match=r"projector_module='model.multi_modal_projektor'.*did you mean "
                                              r"'model.multi_modal_projector'"):
        load_vision_language_model(parse_model_args(
            f"pretrained={llava_path},projector_module=model.multi_modal_projektor"), "cpu")
    with pytest.raises(MatrixEvalError, match="unknown model_args key.*projecter_module.*valid extra keys"):
        load_vision_language_model(parse_model_args(f"pretrained={llava_path},projecter_module=x"), "cpu")


def test_a_vision_module_that_never_runs_is_reported(vlm, samples):
    wrong = dataclasses.replace(vlm, vision=torch.nn.Identity(), module_names={**vlm.module_names, "vision": "idle"})
    with pytest.raises(MatrixEvalError, match="vision module 'idle' .* did not run on an image input"):
        measure_sample(wrong, samples[0])


def test_chat_template_prompts(vlm, samples):
    processor = copy.copy(vlm.processor)
    processor.chat_template = LLAVA_CHAT_TEMPLATE
    templated = dataclasses.replace(vlm, processor=processor)
    i, r = samples[0].instruction, samples[0].response
    prompts = build_prompts(templated, i, r)
    assert (prompts.image_only, prompts.text_only, prompts.image_text) == (
        "USER: <image>\n", f"USER: {i} ASSISTANT: {r} ", f"USER: <image>\n{i} ASSISTANT: {r} ")
    measured = measure_sample(templated, samples[0])
    assert int(measured["H3"].n_tokens[0]) == NUM_IMAGE_TOKENS
    assert float(measured["H1"].matrix_entropy[0]) == values(measure_sample(vlm, samples[0]))["H1"]


def test_records_flat_shared_style_and_llava_conversations(tmp_path, image_dir):
    flat = tmp_path / "flat.jsonl"
    flat.write_text(json.dumps({"image": "a.png", "instruction": "q1", "response": "a1"}) + "\n"
                    + json.dumps({"image": "b.png", "instruction": "q2", "output": "a2"}) + "\n")
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps([{"id": "x", "image": "c.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "Noise."},
        {"from": "human", "value": "More?"}, {"from": "gpt", "value": "No."}]}]))
    got, skipped = load_samples(flat, "flat", image_root=image_dir)
    assert [(s.image.name, s.instruction, s.response) for s in got] == [("a.png", "q1", "a1"), ("b.png", "q2", "a2")]
    got, _ = load_samples(conv, "conv", image_root=image_dir)
    assert [(s.image.name, s.instruction, s.response) for s in got] == [("c.png", "What is this?", "Noise.")]
    assert skipped == {}


def test_missing_image_names_the_file_and_image_root(tmp_path, image_dir):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"image": "nope.png", "instruction": "q", "response": "a"}) + "\n"
                    + json.dumps({"image": "a.png", "instruction": "q", "response": "a"}) + "\n")
    with pytest.raises(MatrixEvalError, match=r"d.jsonl:1: image file .*nope.png' not found .*--image_root"):
        load_samples(data, "d", image_root=image_dir)
    got, skipped = load_samples(data, "d", image_root=image_dir, on_error="skip")
    assert len(got) == 1 and skipped == {"missing_image": 1}


def test_shared_llava_records_parse_and_measure(tmp_path, llava_path):
    path = shared_file("llava/coco2014_val_gpt4_qa_30x3.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()[:5]]
    make_images(tmp_path / "val2014", sorted({r["image"] for r in records}))
    got, skipped = load_samples(path, "coco", image_root=tmp_path / "val2014", limit=5)
    assert [(s.image.name, s.instruction, s.response) for s in got] == [
        (r["image"], r["instruction"], r["output"]) for r in records]
    out = multimodal(f"pretrained={llava_path}", f"coco={path}", image_root=tmp_path / "val2014", limit=5,
                     device="cpu", output_path=None)
    assert out["results"]["coco/base"]["n_samples"] == 5


def test_cli_writes_json_markdown_csv_and_resumes(tmp_path, llava_path, data_file, image_dir, capsys):
    from matrixeval.cli import main

    argv = ["experiment", "multimodal", "--model_args", f"pretrained={llava_path},dtype=float32",
            "--tasks", f"tiny={data_file}", "--image_root", str(image_dir), "--rotate", "90,180",
            "--reverse_after_connector", "--limit", "3", "--output_path", str(tmp_path), "--device", "cpu"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    table = captured.out
    assert "| task" in table and "image_text_alignment" in table and "reverse_after_connector" in table
    [path] = list(tmp_path.glob("*/multimodal_*.json"))
    out = json.loads(path.read_text())
    assert {"results", "config", "versions", "date", "total_evaluation_time_seconds"} <= set(out)
    assert list(out["results"]) == ["tiny/base", "tiny/rotate90", "tiny/rotate180", "tiny/reverse_after_connector"]
    assert out["config"]["include_template"] is False and out["config"]["instruction"] == DEFAULT_INSTRUCTION
    for entry in out["results"].values():
        h = [entry[level] for level in LEVELS]
        assert entry["image_reduction"] == pytest.approx(h[0] - h[1])
        assert entry["image_text_alignment"] == pytest.approx(min(h[2:]) / max(h[2:]))
        assert 0 < entry["image_text_alignment"] <= 1 and entry["n_samples"] == 3
    with open(path.with_suffix(".csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["operation"] for r in rows] == ["base", "rotate90", "rotate180", "reverse_after_connector"]
    assert float(rows[0]["H1"]) == out["results"]["tiny/base"]["H1"]
    markdown = path.with_suffix(".md").read_text()
    assert "image_reduction" in markdown
    # 3 samples: every row carries few_samples, in the JSON, under the Markdown table and once each on stderr
    for key, entry in out["results"].items():
        assert [w["code"] for w in entry["warnings"]] == ["few_samples"]
        assert f"**{key}** `few_samples`: only 3 valid samples (threshold 30)" in markdown
    assert captured.err.count("[few_samples] only 3 valid samples") == 4
    assert "`few_samples`" in table  # under the table on stdout too

    quiet = main(argv + ["--caveat", "min_samples=3", "--rotate", "270"])  # met: no warning
    assert quiet == 0
    newest = max(tmp_path.glob("*/multimodal_*.json"), key=lambda p: p.stat().st_mtime_ns)
    assert all(e["warnings"] == [] for e in json.loads(newest.read_text())["results"].values())
    newest.unlink()

    assert main(argv) == 0  # the same call again reads every sample from the store
    [second] = [p for p in tmp_path.glob("*/multimodal_*.json") if p != path]
    again = json.loads(second.read_text())["results"]
    assert all(e["n_resumed"] == 3 for e in again.values())
    assert {k: e["H5"] for k, e in again.items()} == {k: e["H5"] for k, e in out["results"].items()}
    assert not math.isnan(again["tiny/base"]["image_text_alignment"])


def test_include_template_gives_the_whole_prompt_numbers_through_the_cli(tmp_path, llava_path, data_file, image_dir,
                                                                        samples, vlm):
    from matrixeval.cli import main

    argv = ["experiment", "multimodal", "--model_args", f"pretrained={llava_path}", "--tasks", f"tiny={data_file}",
            "--image_root", str(image_dir), "--include_template", "--output_path", str(tmp_path), "--device", "cpu"]
    assert main(argv) == 0
    entry = json.loads(next(tmp_path.glob("*/multimodal_*.json")).read_text())["results"]["tiny/base"]
    for level in ("H4", "H5"):
        expected = sum(direct(vlm, s, include_template=True)[0][level] for s in samples) / 3
        assert entry[level] == pytest.approx(expected, abs=ATOL)


def test_cli_refuses_options_it_cannot_honour(tmp_path, llava_path, data_file, image_dir, capsys):
    from matrixeval.cli import main

    base = ["experiment", "multimodal", "--model_args", f"pretrained={llava_path}", "--image_root", str(image_dir),
            "--output_path", str(tmp_path), "--device", "cpu"]
    with pytest.raises(SystemExit) as exit_:  # run's text flags are not offered at all
        main([*base, "--tasks", f"t={data_file}", "--layers", "all"])
    assert exit_.value.code == 2 and "unrecognized arguments: --layers" in capsys.readouterr().err
    assert main(base) == 2
    assert "--tasks NAME=FILE.jsonl" in capsys.readouterr().err
    assert main(["experiment", "multimodal", "--tasks", f"t={data_file}"]) == 2
    assert "needs a vision-language model: --model_args" in capsys.readouterr().err
    assert main([*base, "--tasks", f"t={data_file}", "--rotate", "45"]) == 2
    assert "90, 180 or 270" in capsys.readouterr().err


def test_help_states_the_real_defaults(capsys):
    from matrixeval.cli import main

    with pytest.raises(SystemExit):
        main(["experiment", "multimodal", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "MiniLM" not in text and "pydoc_topics" not in text
    for phrase in ("required: a vision-language model", "--include_template", "(default: none)", "clockwise",
                   "equivalent to reversing the patch token in ViT", DEFAULT_INSTRUCTION, "Output columns"):
        assert phrase in text, phrase


def test_cc_sbu_align_in_its_native_form(tmp_path, llava_path):
    folder = tmp_path / "cc_sbu_align"
    make_images(folder / "image", ["2.jpg", "3.jpg"])
    (folder / "filter_cap.json").write_text(json.dumps({"annotations": [
        {"image_id": "2", "caption": TINY_TEXTS[4]}, {"image_id": "3", "caption": TINY_TEXTS[5]}]}))
    got, skipped = load_samples(folder / "filter_cap.json", "cc")
    assert [(s.image, s.instruction, s.response) for s in got] == [
        (folder / "image" / "2.jpg", DEFAULT_INSTRUCTION, TINY_TEXTS[4]),
        (folder / "image" / "3.jpg", DEFAULT_INSTRUCTION, TINY_TEXTS[5])] and skipped == {}
    got, _ = load_samples(folder / "filter_cap.json", "cc", instruction=TINY_TEXTS[0], image_root=folder / "image")
    assert {s.instruction for s in got} == {TINY_TEXTS[0]}
    out = multimodal(f"pretrained={llava_path}", f"cc={folder / 'filter_cap.json'}", instruction=TINY_TEXTS[0],
                     device="cpu", output_path=None)
    assert out["results"]["cc/base"]["n_samples"] == 2 and out["config"]["instruction"] == TINY_TEXTS[0]


def test_unreadable_images_fail_or_are_skipped_and_counted(tmp_path, image_dir, llava_path):
    (tmp_path / "text.png").write_text("not an image")  # PIL cannot identify it: found when loading
    png = (image_dir / "b.png").read_bytes()
    (tmp_path / "torn.png").write_bytes(png[: len(png) // 2])  # a valid header, torn data: found when decoding
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"image": str(p), "instruction": TINY_TEXTS[0], "response": TINY_TEXTS[1]})
                            + "\n" for p in (image_dir / "a.png", tmp_path / "text.png", tmp_path / "torn.png",
                                             image_dir / "c.png")))
    with pytest.raises(MatrixEvalError, match=r"d.jsonl:2: image file .*text.png' cannot be read"):
        load_samples(data, "d")
    got, skipped = load_samples(data, "d", on_error="skip")
    assert [s.image.name for s in got] == ["a.png", "torn.png", "c.png"] and skipped == {"unreadable_image": 1}
    out = multimodal(f"pretrained={llava_path}", f"d={data}", on_error="skip", device="cpu", output_path=None)
    entry = out["results"]["d/base"]
    assert entry["n_samples"] == 2 and entry["n_skipped"] == 2
    assert entry["skipped_on_load"] == {"unreadable_image": 1}
    assert entry["skipped_while_measuring"] == {"unreadable_image": 1}


@pytest.mark.slow
def test_cli_subprocess_on_error_skip_counts_an_unreadable_image(tmp_path, image_dir, llava_path, capsys):
    """Issue 13's row, as a user types it: without --on_error skip one line names the file and exit 2; with it
    the run (a real `python -m matrixeval` process) finishes, skips the image and counts it."""
    import subprocess
    import sys

    from matrixeval.cli import main

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a PNG signature, no image
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"image": name, "instruction": TINY_TEXTS[0], "response": TINY_TEXTS[1]})
                            + "\n" for name in (str(image_dir / "a.png"), "broken.png", str(image_dir / "b.png"))))
    argv = ["experiment", "multimodal", "--model_args", f"pretrained={llava_path}", "--tasks", f"d={data}",
            "--device", "cpu", "--output_path", str(tmp_path / "out")]
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("matrixeval: error: ") and "broken.png' cannot be read" in lines[0]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "matrixeval", *argv, "--on_error", "skip"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| d " in done.stdout and "| base " in done.stdout
    entry = json.loads(next((tmp_path / "out").rglob("multimodal_*.json")).read_text())["results"]["d/base"]
    assert entry["n_samples"] == 2 and entry["n_skipped"] == 1 and entry["skipped_on_load"] == {"unreadable_image": 1}


def test_an_output_path_that_is_a_file_or_torchrun_is_one_line_before_loading(tmp_path, data_file, image_dir, capsys,
                                                                               monkeypatch):
    """issue 16: `--output_path` a file: a traceback after measuring; `multimodal` under torchrun: both ranks did
    all the work and wrote two result files. Now one line each, before any model loads (the model path does not
    even exist, so loading it would be another error)."""
    from matrixeval.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["experiment", "multimodal", "--model_args", f"pretrained={tmp_path / 'no-such-model'}", "--tasks",
            f"tiny={data_file}", "--image_root", str(image_dir), "--device", "cpu", "--output_path"]
    assert main([*argv, str(blocker)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"matrixeval: error: output_path '{blocker}' is a file; give a folder (it is created if missing)"]
    assert main([*argv, str(blocker / "sub")]) == 2
    assert f"output_path '{blocker / 'sub'}' cannot be created: '{blocker}' is a file" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main([*argv, str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "matrixeval: error: multimodal measures in one process and does not shard across ranks; run it without "
        "torchrun"]
    assert blocker.read_text() == "x" and not (tmp_path / "out").exists()
