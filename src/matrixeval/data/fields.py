"""Pure functions from a source record to text, or to (question, answer), one family per data set.

Every function accepts both the Hugging Face layout and the local-copy layout where the two differ
(e.g. openbookqa's `answerKey` + `choices` vs `answer_text`). They raise `MissingField` when a
needed field is absent and return None when the record is not usable (e.g. an unlabeled test row).
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = [
    "MissingField",
    "get",
    "get_path",
    "field_text",
    "from_qa",
    "dolly_text",
    "dolly_qa",
    "hh_rlhf_qa",
    "openbookqa_qa",
    "winogrande_qa",
    "winogrande_text",
    "piqa_qa",
    "openorca_qa",
    "openorca_system_qa",
    "alpaca_qa",
    "wizard_qa",
    "alpaca_eval_qa",
    "arena_hard_text",
]

Record = Mapping[str, Any]
QA = tuple[str, str]


class MissingField(LookupError):
    """A record lacks a field the recipe needs; `field` names it (alternatives joined by ' or ')."""

    def __init__(self, field: str):
        super().__init__(field)
        self.field = field


def get(record: Record, *names: str) -> Any:
    """The value of the first of `names` present in `record`; MissingField if none is."""
    for name in names:
        if name in record:
            return record[name]
    raise MissingField(" or ".join(repr(n) for n in names))


def get_path(record: Record, path: str) -> Any:
    """The value at a field path: ``"a"``, or dotted ``"choices.0.turns.0.content"`` where an integer part
    indexes a list. A key that is itself the whole path (a field named "a.b") wins. MissingField says where
    the path stops."""
    if path in record:
        return record[path]
    value: Any = record
    parts = path.split(".")
    for depth, part in enumerate(parts):
        at = ".".join(parts[:depth]) or "the record"
        if isinstance(value, Mapping):
            if part not in value:
                keys = ", ".join(map(str, value)) or "none"
                raise MissingField(f"path {path!r} (no field {part!r} in {at}; it has: {keys})")
            value = value[part]
        elif isinstance(value, (list, tuple)):
            if not part.lstrip("-").isdigit() or not -len(value) <= int(part) < len(value):
                raise MissingField(f"path {path!r} ({at} is a list of {len(value)}; {part!r} is no index in it)")
            value = value[int(part)]
        else:
            raise MissingField(f"path {path!r} ({at} is a {type(value).__name__}, not an object or a list)")
    return value


def field_text(name: str):
    """A to_text that reads one field as it is."""

    def to_text(record: Record) -> str | None:
        return get(record, name)

    to_text.__name__ = f"field_text_{name}"
    return to_text


def from_qa(to_qa, sep: str):
    """A to_text that joins question and answer with `sep` (None when `to_qa` gives None)."""

    def to_text(record: Record) -> str | None:
        qa = to_qa(record)
        return None if qa is None else sep.join(p for p in qa if p)

    to_text.__name__ = f"{to_qa.__name__}_text"
    return to_text


# dolly: the text is the reference context; records without one are not usable.
def dolly_text(record: Record) -> str | None:
    return get(record, "context") or None


def dolly_qa(record: Record) -> QA:
    return get(record, "instruction"), get(record, "response")


# hh-rlhf: a dialogue; the question is everything up to the last "Assistant:", the answer is the rest.
_ASSISTANT = "\n\nAssistant:"


def hh_rlhf_qa(record: Record) -> QA | None:
    chosen = get(record, "chosen")
    cut = chosen.rfind(_ASSISTANT)
    if cut < 0:
        return None
    cut += len(_ASSISTANT)
    return chosen[:cut], chosen[cut:].strip()


# openbookqa: local copy has `answer_text`; the hub has `choices{text,label}` and `answerKey`.
def openbookqa_qa(record: Record) -> QA:
    stem = get(record, "question_stem")
    if "answer_text" in record:
        return stem, record["answer_text"]
    choices, key = get(record, "choices"), get(record, "answerKey", "answer_key")
    return stem, choices["text"][list(choices["label"]).index(key)]



# winogrande: hub rows have `sentence` with a "_" blank, `option1/2`, `answer` "1"/"2" ("" if unlabeled);
# llm-foundry rows have `context_options` (sentence cut after each filled option), `continuation`, `gold`.
def _winogrande_option(record: Record) -> str | None:
    answer = str(get(record, "answer")).strip()
    if answer not in ("1", "2"):
        return None
    return get(record, f"option{answer}")


def winogrande_qa(record: Record) -> QA | None:
    if "context_options" in record:
        return get(record, "context_options")[int(get(record, "gold"))], get(record, "continuation")
    sentence, option = get(record, "sentence"), _winogrande_option(record)
    if option is None:
        return None
    cut = sentence.index("_")
    return sentence[:cut] + option, sentence[cut + 1 :].strip()


def winogrande_text(record: Record) -> str | None:
    if "context_options" in record:
        return from_qa(winogrande_qa, " ")(record)
    sentence, option = get(record, "sentence"), _winogrande_option(record)
    return None if option is None else sentence.replace("_", option, 1)


# piqa: goal plus the correct solution (label 0 = sol1, 1 = sol2; -1 = unlabeled test row).
def piqa_qa(record: Record) -> QA | None:
    label = int(get(record, "label"))
    if label not in (0, 1):
        return None
    return get(record, "goal"), get(record, f"sol{label + 1}")



def _nonempty_join(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


# openorca: the question alone (the prompt experiment adds prompts of its own); the record's system prompt is
# kept apart, and openorca_system_qa puts it back in front of the question.
def openorca_qa(record: Record) -> QA:
    return get(record, "question"), get(record, "response")


def openorca_system_qa(record: Record) -> QA:
    return _nonempty_join(get(record, "system_prompt"), get(record, "question")), get(record, "response")


def alpaca_qa(record: Record) -> QA:
    return _nonempty_join(get(record, "instruction"), get(record, "input")), get(record, "output")


def wizard_qa(record: Record) -> QA:
    return get(record, "instruction"), get(record, "output")


def alpaca_eval_qa(record: Record) -> QA:
    return get(record, "instruction"), get(record, "output")



# arena-hard: the question is the first turn's content (some copies carry a flat `prompt`).
def arena_hard_text(record: Record) -> str:
    if "turns" in record:
        return record["turns"][0]["content"]
    return get(record, "turns", "prompt")
