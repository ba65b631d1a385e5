import pytest

from matrixeval.errors import MatrixEvalError
from matrixeval.models import ModelArgs, default_model_path, parse_model_args


def test_empty_spec_selects_packaged_minilm():
    assert parse_model_args(None) == ModelArgs(pretrained=default_model_path())
    assert parse_model_args("") == parse_model_args("  ")
    assert parse_model_args(None).pretrained == default_model_path()


def test_default_model_path_is_a_model_directory():
    from pathlib import Path

    path = Path(default_model_path())
    assert (path / "config.json").is_file()
    assert (path / "model.safetensors").stat().st_size > 10_000_000  # real weights, not an LFS pointer


def test_lm_eval_style_string():
    args = parse_model_args(
        "pretrained=EleutherAI/pythia-70m, revision=step1000,dtype=bfloat16,trust_remote_code=True,"
        "device_map=auto,adapter=/tmp/lora"
    )
    assert args == ModelArgs(
        pretrained="EleutherAI/pythia-70m",
        revision="step1000",
        dtype="bfloat16",
        device_map="auto",
        trust_remote_code=True,
        adapter="/tmp/lora",
    )


def test_defaults_aliases_and_extra_keys():
    args = parse_model_args("pretrained=gpt2,torch_dtype=BF16,peft=ad,vision_module=vis.tower,projector_module=mm")
    assert (args.dtype, args.adapter, args.revision, args.trust_remote_code) == ("bfloat16", "ad", None, False)
    assert dict(args.extra) == {"vision_module": "vis.tower", "projector_module": "mm"}
    assert parse_model_args("pretrained=gpt2,dtype=fp16").dtype == "float16"
    assert parse_model_args("pretrained=gpt2").dtype == "auto"


def test_value_may_contain_equals_sign():
    assert parse_model_args("pretrained=gpt2,note=a=b").extra == {"note": "a=b"}


def test_mapping_spec():
    args = parse_model_args({"pretrained": "gpt2", "trust_remote_code": True, "revision": None, "layers_hint": 3})
    assert args == ModelArgs(pretrained="gpt2", trust_remote_code=True, extra={"layers_hint": "3"})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gpt2", "not key=value"),
        ("pretrained=gpt2,=x", "not key=value"),
        ("dtype=bfloat16", "no pretrained"),
        ("pretrainde=gpt2", "no pretrained"),
        ("pretrained=gpt2,dtype=int8", "unknown dtype 'int8'.*auto, float32, bfloat16, float16"),
        ("pretrained=gpt2,trust_remote_code=maybe", "not a boolean"),
        ("pretrained=gpt2,dtype=float32,torch_dtype=float16", "sets 'dtype' twice"),
        ("pretrained=gpt2,revision=", "empty value for 'revision'"),
        ("pretrained=", "empty value for 'pretrained'"),
    ],
)
def test_bad_specs_raise_one_line_errors(spec, message):
    with pytest.raises(MatrixEvalError, match=message) as info:
        parse_model_args(spec)
    assert "\n" not in str(info.value)
