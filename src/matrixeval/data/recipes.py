"""The built-in task recipes: one entry per data set (adding a data set = adding an entry)."""

from __future__ import annotations

from . import fields as f
from .builtin import pydoc_topic_records
from .registry import TaskRecipe, register_task
from .wikitext import wikitext_page, wikitext_text

__all__ = ["DEFAULT_TASK", "RECIPES"]

DEFAULT_TASK = "pydoc_topics"

RECIPES = (
    TaskRecipe(
        name="pydoc_topics",
        description="Python's built-in help topics, paragraphs of 40+ words (offline, the default task)",
        fields=("topic", "paragraph", "text"),
        to_text=f.field_text("text"),
        builtin=pydoc_topic_records,
    ),
    TaskRecipe(
        name="dolly",
        description="Databricks Dolly 15k reference contexts (records without a context are dropped)",
        fields=("context", "instruction", "response"),
        to_text=f.dolly_text,
        to_qa=f.dolly_qa,
        hf_path="databricks/databricks-dolly-15k",
    ),
    TaskRecipe(
        name="wikipedia",
        description="English Wikipedia articles (20231101), seeded random sample of 10,000",
        fields=("text",),
        to_text=f.field_text("text"),
        hf_path="wikimedia/wikipedia",
        hf_name="20231101.en",
        sample_size=10_000,
    ),
    TaskRecipe(
        name="openwebtext2",
        description="OpenWebText2 web pages, seeded random sample of 10,000",
        fields=("text",),
        to_text=f.field_text("text"),
        hf_path="segyges/OpenWebText2",
        sample_size=10_000,
    ),
    # The papers' reference code (waltonfuture/Diff-eRank utils/entropy_dataset.py, MLGroupJLU/MatrixNuclearNorm
    # code/compute_entropy_time.py): random.seed(123); random.sample(range(len(split)), 10000) over the split.
    TaskRecipe(
        name="wikipedia_reference",
        description="Wikipedia as the papers' code: HF wikipedia 20220301.en, random.seed(123) sample of 10,000",
        fields=("text",),
        to_text=f.field_text("text"),
        hf_path="wikipedia",
        hf_name="20220301.en",
        sample_size=10_000,
        sample_seed=123,
    ),
    TaskRecipe(
        name="openwebtext2_reference",
        description="OpenWebText2 as the papers' code: pile_openwebtext2 validation, random.seed(123) sample of 10,000",
        fields=("text",),
        to_text=f.field_text("text"),
        hf_path="suolyer/pile_openwebtext2",
        split="validation",
        sample_size=10_000,
        sample_seed=123,
    ),
    TaskRecipe(
        name="hh_rlhf",
        description="Anthropic HH-RLHF test dialogues, the chosen response",
        fields=("chosen",),
        to_text=f.field_text("chosen"),
        to_qa=f.hh_rlhf_qa,
        hf_path="Anthropic/hh-rlhf",
        split="test",
    ),
    TaskRecipe(
        name="openbookqa",
        description="OpenBookQA validation: question stem + correct answer",
        fields=("question_stem", "choices", "answerKey", "answer_text"),
        to_text=f.from_qa(f.openbookqa_qa, " "),
        to_qa=f.openbookqa_qa,
        hf_path="allenai/openbookqa",
        hf_name="main",
        split="validation",
    ),
    TaskRecipe(
        name="winogrande",
        description="WinoGrande XL validation: sentence with the blank filled by the correct option",
        fields=("sentence", "option1", "option2", "answer", "context_options", "continuation", "gold"),
        to_text=f.winogrande_text,
        to_qa=f.winogrande_qa,
        hf_path="allenai/winogrande",
        hf_name="winogrande_xl",
        split="validation",
    ),
    TaskRecipe(
        name="piqa",
        description="PIQA validation: goal + correct solution",
        fields=("goal", "sol1", "sol2", "label"),
        to_text=f.from_qa(f.piqa_qa, " "),
        to_qa=f.piqa_qa,
        hf_path="ybisk/piqa",
        split="validation",
    ),
    TaskRecipe(
        name="openorca",
        description="OpenOrca: system prompt, question and response joined by newlines (QA: question, response)",
        fields=("system_prompt", "question", "response"),
        to_text=f.from_qa(f.openorca_system_qa, "\n"),
        to_qa=f.openorca_qa,
        hf_path="Open-Orca/OpenOrca",
    ),
    TaskRecipe(
        name="openorca_system",
        description="OpenOrca as openorca, but its QA's question starts with the record's own system prompt",
        fields=("system_prompt", "question", "response"),
        to_text=f.from_qa(f.openorca_system_qa, "\n"),
        to_qa=f.openorca_system_qa,
        hf_path="Open-Orca/OpenOrca",
    ),
    TaskRecipe(
        name="alpaca",
        description="Stanford Alpaca: instruction, input and output joined by newlines",
        fields=("instruction", "input", "output"),
        to_text=f.from_qa(f.alpaca_qa, "\n"),
        to_qa=f.alpaca_qa,
        hf_path="tatsu-lab/alpaca",
    ),
    TaskRecipe(
        name="wizard",
        description="WizardLM evol-instruct 70k: instruction and output joined by a newline",
        fields=("instruction", "output"),
        to_text=f.from_qa(f.wizard_qa, "\n"),
        to_qa=f.wizard_qa,
        hf_path="WizardLMTeam/WizardLM_evol_instruct_70k",
    ),
    TaskRecipe(
        name="alpaca_eval",
        description="AlpacaEval set: instruction and reference output joined by a newline",
        fields=("instruction", "output"),
        to_text=f.from_qa(f.alpaca_eval_qa, "\n"),
        to_qa=f.alpaca_eval_qa,
        hf_path="tatsu-lab/alpaca_eval",
        hf_name="alpaca_eval",
        split="eval",
    ),
    TaskRecipe(
        name="arena_hard",
        description="Arena-Hard-Auto v0.1 questions (first turn)",
        fields=("turns", "prompt"),
        to_text=f.arena_hard_text,
        hf_path="lmarena-ai/arena-hard-auto-v0.1",
    ),
    # lm-eval 0.4.13's wikitext task (tasks/wikitext/wikitext.yaml): whole articles, detokenised, every token scored
    # in rolling windows; words and bytes counted on the page before detokenisation, as its process_results does.
    TaskRecipe(
        name="wikitext",
        description="WikiText-2 raw test articles, lm-eval's detokeniser, rolling perplexity (as lm-eval's wikitext)",
        fields=("page",),
        to_text=wikitext_text,
        hf_path="EleutherAI/wikitext_document_level",
        hf_name="wikitext-2-raw-v1",
        split="test",
        rolling=True,
        count_text=wikitext_page,
    ),
)

for _recipe in RECIPES:
    register_task(_recipe)
