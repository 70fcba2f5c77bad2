"""Post-filters: preamble stripping, pair counting and every drop reason in its order."""

from __future__ import annotations

import pytest

from dataset_assets.rephrase.postfilters import Postfilter, apply_postfilter, count_pairs, strip_preambles
from dataset_assets.rephrase.strategies import load_strategies
from tests.conftest import ENGLISH, ROOT

BODY = ENGLISH
QA = (
    "Question: Where does the river flow?\nAnswer: Through the old town.\n\n"
    "Question: What was the bridge built with?\nAnswer: Local granite."
)


@pytest.mark.parametrize(
    "raw",
    [
        f"Sure! Here is the rewritten text:\n\n{BODY}",
        f"Here's a rewritten version of the text:\n{BODY}",
        f"Certainly, here is a summary of the passage.\n{BODY}",
        f"Sure!\nHere is the table you asked for:\n\n---\n\n{BODY}",
        f"**Here is the rephrased passage:**\n{BODY}",
        f"Okay.\n\n{BODY}\n\nI hope this helps!",
        f"{BODY}\n\nLet me know if you would like any changes.\n",
        f"Of course: below is the rewrite.\n{BODY}\n\nIf you have any more questions, feel free to ask.\nI hope this "
        "helps.",
    ],
)
def test_stock_preambles_and_signoffs_are_stripped(raw):
    assert strip_preambles(raw) == BODY


@pytest.mark.parametrize(
    "content",
    [
        "Here is the town hall, built in 1820.\nIt stands on the square.",
        "Sure-footed goats climb the cliffs above the river.",
        "Great Britain is an island.",
        "Question: Are you sure?\nAnswer: Certainly.",
        BODY + "\nI hope the bridge survives, the author wrote in 1990, and many readers agreed with the sentiment "
        "expressed in the letter that followed." * 2,
    ],
)
def test_content_that_looks_like_a_preamble_is_kept(content):
    assert strip_preambles(content) == content


def test_pairs_count_question_then_answer_in_common_markups():
    assert count_pairs(QA) == 2
    assert count_pairs("**Question:** a?\n**Answer:** b\n### Question 2: c?\nAnswer 2: d") == 2
    assert count_pairs("Question: a?\nQuestion: b?\nAnswer: c\nAnswer: d") == 1
    assert count_pairs("Answer: before\nQuestion: no answer") == 0
    assert count_pairs("The Question: of taste\nAnswer: none") == 0  # labels must open the line


def run(text, finish="stop", completion=200, inputs=300, **rules):
    return apply_postfilter(text, finish, completion, inputs, Postfilter(**rules))


def test_kept_output_comes_back_cleaned():
    assert run(f"Sure, here is the rewrite:\n{BODY}") == (True, None, BODY)


@pytest.mark.parametrize(
    "kwargs,reason",
    [
        (dict(text=BODY, finish="length", drop_truncated=True), "truncated"),
        (dict(text="Sure! Here is the rewritten text:\n\n", completion=10), "empty"),
        (dict(text="   \n", completion=0, min_tokens=0), "empty"),
        (dict(text=BODY, completion=49), "too_short"),
        (dict(text=BODY, completion=901, inputs=300), "too_long"),
        (dict(text=BODY, require=(r"(?m)^Question:",)), "missing_structure"),
        (
            dict(text=QA.split("\n\n")[0], require=(r"(?m)^Question:", r"(?m)^Answer:"), min_pairs=2),
            "missing_structure",
        ),
    ],
)
def test_each_drop_reason(kwargs, reason):
    kept, got, _ = run(**kwargs)
    assert (kept, got) == (False, reason)


def test_checks_run_in_order_truncated_empty_short_long_structure():
    everything_wrong = dict(finish="length", completion=10, inputs=1, require=("x",), drop_truncated=True)
    assert run("", **everything_wrong)[1] == "truncated"
    assert run("", **{**everything_wrong, "drop_truncated": False})[1] == "empty"
    assert run("y", **{**everything_wrong, "drop_truncated": False})[1] == "too_short"
    assert run("y", completion=60, inputs=1, require=("x",))[1] == "too_long"


def test_switches_that_disable_checks():
    assert run(BODY, finish="length")[0]  # drop_truncated defaults to false
    assert run(BODY, completion=5000, inputs=10, max_length_ratio=0)[0]
    assert run(BODY, completion=5000, inputs=0)[0]  # no input size known: no ratio check
    assert run(BODY, completion=3, min_tokens=0)[0]
    raw = f"Sure! Here is the text:\n{BODY}"
    assert run(raw, strip_preambles=False) == (True, None, raw)


def test_dropped_rows_still_get_their_cleaned_text():
    assert run(f"Sure! Here it is:\n{BODY}", completion=3) == (False, "too_short", BODY)


def test_real_qa_rules_keep_pairs_and_drop_prose():
    rules = load_strategies(ROOT / "prompts")["qa"].postfilter
    assert apply_postfilter(f"Here are the questions:\n{QA}", "stop", 80, 300, rules) == (True, None, QA)
    assert apply_postfilter("**Question:** a?\n**Answer:** b\n**Question:** c?\n**Answer:** d", "stop", 80, 300, rules)[
        0
    ]
    assert apply_postfilter(BODY, "stop", 80, 300, rules)[:2] == (False, "missing_structure")


@pytest.mark.parametrize(
    "name,good",
    [
        ("table", "Caption.\n\n| Item | Value |\n|---|---|\n| bridge | granite |\n"),
        ("math", "Problem 1: How many?\nSolution: Two.\n"),
        ("tutorial", "How to cross\n\n1. Walk to the bridge.\n2. Cross it.\n"),
        ("conversation", "Student: What is it?\nTeacher: A bridge.\n"),
        ("knowledge_list", "Bridges\n- The bridge is granite.\n- The river floods.\n"),
    ],
)
def test_real_structured_strategies_accept_their_format_and_reject_prose(name, good):
    rules = load_strategies(ROOT / "prompts")[name].postfilter
    assert apply_postfilter(good, "stop", 80, 300, rules)[:2] == (True, None)
    assert apply_postfilter(BODY, "stop", 80, 300, rules)[:2] == (False, "missing_structure")
