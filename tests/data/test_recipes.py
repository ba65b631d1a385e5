"""Each recipe's to_text / to_qa on one realistic record, in the hub layout (expected strings written by hand)."""

import pytest

from matrixeval.data import get_task, task_names
from matrixeval.data.fields import MissingField

DOLLY = {
    "instruction": "When did Virgin Australia start operating?",
    "context": "Virgin Australia commenced services on 31 August 2000 as Virgin Blue.",
    "response": "Virgin Australia commenced services on 31 August 2000.",
    "category": "closed_qa",
}
OPENBOOKQA_HUB = {
    "id": "7-980",
    "question_stem": "The sun is responsible for",
    "choices": {"text": ["puppies learning new tricks", "plants sprouting, blooming and wilting"],
                "label": ["A", "B"]},
    "answerKey": "B",
}
WINOGRANDE_HUB = {
    "sentence": "Sarah was a much better surgeon than Maria so _ always got the easier cases.",
    "option1": "Sarah", "option2": "Maria", "answer": "2",
}
PIQA_HUB = {"goal": "To clean a pan,", "sol1": "use soap and water.", "sol2": "use sand and oil.", "label": 0}
ORCA = {"id": "niv.1", "system_prompt": "You are a helpful assistant.", "question": "What is 2+2?", "response": "4"}
ORCA_NO_SYSTEM = {**ORCA, "system_prompt": ""}
ALPACA = {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"}
ALPACA_NO_INPUT = {"instruction": "Name a colour.", "input": "", "output": "Blue"}
WIZARD = {"instruction": "Explain recursion.", "output": "A function calling itself."}
ALPACA_EVAL = {"instruction": "How did US states get their names?", "output": "From many sources.",
               "generator": "text_davinci_003", "dataset": "helpful_base"}
ARENA = {"question_id": "q1", "category": "arena-hard-v0.1", "cluster": "c", "turns": [{"content": "Write a poem."}]}
HH = {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant: Fine, thanks.",
      "rejected": "\n\nHuman: Hi there\n\nAssistant: Go away."}
TEXT = {"id": "12", "url": "https://en.wikipedia.org/wiki/Anarchism", "title": "Anarchism",
        "text": "Anarchism is a political philosophy."}
POOL = {"text": "Example page text.", "meta": {"pile_set_name": "OpenWebText2"}}
WIKITEXT_PAGE = {"page": " = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre actor . "
                          "He had a guest @-@ starring role in 2000 .\n"}
PYDOC = {"topic": "assert", "paragraph": 3, "text": "Assert statements are a convenient way ..."}

CASES = [
    ("pydoc_topics", PYDOC, "Assert statements are a convenient way ...", None),
    ("dolly", DOLLY, DOLLY["context"], (DOLLY["instruction"], DOLLY["response"])),
    ("wikipedia", TEXT, "Anarchism is a political philosophy.", None),
    ("openwebtext2", POOL, "Example page text.", None),
    ("wikipedia_reference", TEXT, "Anarchism is a political philosophy.", None),
    ("openwebtext2_reference", POOL, "Example page text.", None),
    ("hh_rlhf", HH, HH["chosen"],
     ("\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant:", "Fine, thanks.")),
    ("openbookqa", OPENBOOKQA_HUB, "The sun is responsible for plants sprouting, blooming and wilting",
     ("The sun is responsible for", "plants sprouting, blooming and wilting")),
    ("winogrande", WINOGRANDE_HUB,
     "Sarah was a much better surgeon than Maria so Maria always got the easier cases.",
     ("Sarah was a much better surgeon than Maria so Maria", "always got the easier cases.")),
    ("piqa", PIQA_HUB, "To clean a pan, use soap and water.", ("To clean a pan,", "use soap and water.")),
    ("openorca", ORCA, "You are a helpful assistant.\nWhat is 2+2?\n4", ("What is 2+2?", "4")),
    ("openorca", ORCA_NO_SYSTEM, "What is 2+2?\n4", ("What is 2+2?", "4")),
    ("openorca_system", ORCA, "You are a helpful assistant.\nWhat is 2+2?\n4",
     ("You are a helpful assistant.\nWhat is 2+2?", "4")),
    ("openorca_system", ORCA_NO_SYSTEM, "What is 2+2?\n4", ("What is 2+2?", "4")),
    ("alpaca", ALPACA, "Translate to French.\nGood morning\nBonjour", ("Translate to French.\nGood morning", "Bonjour")),
    ("alpaca", ALPACA_NO_INPUT, "Name a colour.\nBlue", ("Name a colour.", "Blue")),
    ("wizard", WIZARD, "Explain recursion.\nA function calling itself.",
     ("Explain recursion.", "A function calling itself.")),
    ("alpaca_eval", ALPACA_EVAL, "How did US states get their names?\nFrom many sources.",
     ("How did US states get their names?", "From many sources.")),
    ("arena_hard", ARENA, "Write a poem.", None),
    ("arena_hard", {"prompt": "Write a song."}, "Write a song.", None),
    # lm-eval's detokeniser: " @-@ " joins, " , " and " . " lose their space, "\n " and " \n" lose theirs
    ("wikitext", WIKITEXT_PAGE, " = Robert Boulter =\n\nRobert Boulter is an English film, television and theatre "
     "actor. He had a guest-starring role in 2000 .\n", None),
]


def test_every_recipe_has_a_case():
    assert {name for name, *_ in CASES} == set(task_names())


@pytest.mark.parametrize(("name", "record", "text", "qa"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_to_text_and_to_qa(name, record, text, qa):
    recipe = get_task(name)
    assert recipe.to_text(record) == text
    if recipe.to_qa is not None:
        assert recipe.to_qa(record) == qa
    else:
        assert qa is None


def test_local_layouts():
    obqa_local = {"question_stem": "Gas can fill any container it is given, and liquid",
                  "choice_texts": ["is standard", "uses what it needs"], "answer_key": "D",
                  "answer_text": "uses what it needs"}
    expected = "Gas can fill any container it is given, and liquid uses what it needs"
    assert get_task("openbookqa").to_text(obqa_local) == expected
    wino_local = {"context_options": ["They ruin the bed, but the blanket", "They ruin the bed, but the bed"],
                  "continuation": "was fine.", "gold": 1}
    assert get_task("winogrande").to_text(wino_local) == "They ruin the bed, but the bed was fine."
    assert get_task("winogrande").to_qa(wino_local) == ("They ruin the bed, but the bed", "was fine.")


def test_records_a_recipe_cannot_use_give_none():
    assert get_task("dolly").to_text({**DOLLY, "context": ""}) is None
    assert get_task("winogrande").to_text({**WINOGRANDE_HUB, "answer": ""}) is None  # unlabeled test row
    assert get_task("piqa").to_text({**PIQA_HUB, "label": -1}) is None
    assert get_task("hh_rlhf").to_qa({"chosen": "no dialogue markers"}) is None


def test_missing_fields_are_named():
    with pytest.raises(MissingField) as info:
        get_task("piqa").to_text({"sol1": "a", "sol2": "b", "label": 0})
    assert info.value.field == "'goal'"
    with pytest.raises(MissingField) as info:
        get_task("arena_hard").to_text({"question_id": "x"})
    assert info.value.field == "'turns' or 'prompt'"
