"""Row and partition checks on generated text: rows that must pass, rows that must drop, and why."""

from __future__ import annotations

import time

import pytest

from dataset_assets.crawl.langid import language_probabilities
from dataset_assets.rephrase.checks import CheckConfig, SourceView, check_row, first_reason, numbers, safe_check_row
from dataset_assets.rephrase.echo import PromptEcho
from dataset_assets.rephrase.partition_checks import judge, output_formats, partition_measures, template_duplicates
from dataset_assets.rephrase.postfilters import Postfilter, postfilter_flags
from dataset_assets.rephrase.strategies import load_strategy
from tests.conftest import ROOT, distinct_english

SOURCE = (
    "The Hoover Dam was built between 1931 and 1936 on the Colorado River. It is 221 metres high and "
    "created Lake Mead, which supplies water to farms and cities in Nevada, Arizona and California. "
    "About 21,000 workers took part in its construction, and the dam still produces electricity for "
    "about 1.3 million people every year."
)
GOOD = (
    "The Hoover Dam stands on the Colorado River and was constructed from 1931 to 1936. Rising 221 "
    "metres, it holds back Lake Mead, a reservoir that provides water for agriculture and urban areas "
    "across Nevada, Arizona and California. Roughly 21,000 labourers worked on the project, and today "
    "its turbines generate power for around 1.3 million residents."
)
SUMMARY = load_strategy(ROOT / "prompts" / "summary.toml")
QA = load_strategy(ROOT / "prompts" / "qa.toml")


def echo_of(strategy) -> PromptEcho:
    return PromptEcho.from_messages([m.content for s in strategy.steps for m in s.messages])


def flags(text: str, source: str = SOURCE, strategy=SUMMARY, config: CheckConfig | None = None) -> list[str]:
    return check_row(
        text, SourceView.of(source, "en"), config or strategy.checks, echo_of(strategy), language_probabilities
    ).flags


def test_faithful_rewrite_passes_every_check():
    assert flags(GOOD) == []


@pytest.mark.parametrize(
    "text",
    [
        "The film will have a season ending plot, and the show will have a season ending plot. " * 5,
        "Aaron N. Taylor, University of Washington Law School, 2011\n\n" * 8,
        ("It was built on the Colorado River. " * 40),
    ],
)
def test_loops_and_stutter_are_repetition(text):
    assert "repetition" in flags(text)


def test_a_100000_character_loop_is_repetition_and_checked_quickly():
    loop = ("the dam the river the water " * 4000)[:100_000]
    start = time.monotonic()
    assert "repetition" in flags(loop)
    assert time.monotonic() - start < 5  # a loop is no reason for a check to stall the partition


def test_qa_labels_do_not_count_as_repetition():
    pairs = "\n".join(
        f"Question: {q}\nAnswer: {a}"
        for q, a in [
            ("When was the Hoover Dam built?", "Between 1931 and 1936, on the Colorado River."),
            ("How high is it?", "It rises 221 metres above its foundations."),
            ("Which lake did it create?", "Lake Mead, supplying Nevada, Arizona and California."),
            ("How many people built it?", "About 21,000 workers took part."),
        ]
    )
    assert flags(pairs, strategy=QA) == []


def test_verbatim_copy_of_the_source_is_copied_source_unless_the_strategy_opts_out():
    assert "copied_source" in flags(SOURCE)
    assert "copied_source" not in flags(SOURCE, config=CheckConfig(copied_source=False))


def test_invented_figures_are_unsupported_numbers_counted_per_row():
    invented = GOOD.replace("21,000", "45,000").replace("221", "245")
    scores = check_row(invented, SourceView.of(SOURCE, "en"), SUMMARY.checks, echo_of(SUMMARY))
    assert scores.unsupported_numbers == 2 and "unsupported_numbers" in scores.flags
    assert "unsupported_numbers" not in flags(invented, config=CheckConfig(max_unsupported_numbers=2))


def test_a_source_without_numbers_allows_none_to_be_invented():
    plain = distinct_english(3)
    plain_source = " ".join(w for w in plain.split() if not any(c.isdigit() for c in w))
    assert numbers(plain_source) == []
    assert "unsupported_numbers" not in flags(plain_source.split(".")[0] + ".", source=plain_source)
    made_up = "It was founded in 1857, rebuilt in 1923 and has 4,500 members."
    assert "unsupported_numbers" in flags(made_up, source=plain_source)


def test_enumerators_and_small_counts_are_not_facts():
    assert numbers("1. First point\n2. Second point\nThere are 3 reasons and 1,500 people.") == ["1500"]


def test_output_in_another_script_is_language():
    russian = (
        "Плотина Гувера была построена между 1931 и 1936 годами на реке Колорадо. Её высота 221 метр, "
        "она образовала озеро Мид, которое снабжает водой фермы и города в Неваде, Аризоне и Калифорнии."
    )
    assert "language" in flags(russian)


def test_token_noise_that_lid_calls_english_is_language():
    # Random-weight model output: English-looking tokens without the words that hold prose together.
    noise = (
        "profession vectors beautyppard hash Savannah cathmeaning interviewed juvenile item dungeon intel "
        "genome inside miraculous decentralized interrogation engineering Resonoptim Drill harvesting alleged"
    )
    assert language_probabilities(noise).get("en", 0) > 0.5  # lid.176 alone would keep it
    assert "language" in flags(noise)
    assert "language" not in flags(noise, config=CheckConfig(min_function_word_ratio=0))


@pytest.mark.parametrize(
    "text",
    [
        "Document:\n" + GOOD,
        GOOD + "\n\nHere's a rewritten version of the passage with minor tweaks: it reads better now.",
        "The text conveys a vivid description of a dam. " + GOOD,
        GOOD + " Summarise the document below in one to three paragraphs.",
    ],
)
def test_labels_instructions_and_preambles_anywhere_are_prompt_echo(text):
    assert "prompt_echo" in flags(text)


def test_a_source_that_speaks_of_the_text_may_be_rewritten_saying_so():
    source = "Scholars still argue about the text of the treaty, which was signed in 1648. " * 3
    assert "prompt_echo" not in flags("Scholars keep debating the text of the treaty signed in 1648.", source=source)


def test_empty_and_punctuation_only_outputs_are_empty():
    for text in ("", "   \n ", "!!! ... ??? --"):
        found, _ = postfilter_flags(text, "stop", 60, 100, Postfilter())
        assert first_reason(found) == "empty"


def test_flags_hold_every_failed_check_and_drop_reason_the_first():
    looping_invented = "In 1999 the dam held 9,999 tonnes. " * 10 + "In 2004 it held 7,777 tonnes."
    found = flags(looping_invented)
    assert {"repetition", "unsupported_numbers"} <= set(found)
    assert first_reason(found) == "repetition"


def test_a_check_that_raises_drops_only_that_row_with_check_error():
    class Exploding(dict):
        def get(self, *_):
            raise RuntimeError("boom")

    scores = safe_check_row(GOOD, SourceView.of(SOURCE, "en"), SUMMARY.checks, echo_of(SUMMARY), lambda _: Exploding())
    assert scores.flags == ["check_error"] and scores.error.startswith("check_error: RuntimeError: boom")


# --- partition check -----------------------------------------------------------------------------


def qa_output(topic: str, n: int) -> str:
    """Q/A text on one topic: the labels and question stems are shared by every output."""
    text = distinct_english(n)
    sentences = [s.strip() for s in text.split(" . ") if len(s.split()) > 5][:3]
    return "\n".join(f"Question: What do we learn about {topic}?\nAnswer: {s}." for s in sentences)


def test_outputs_sharing_only_a_template_are_not_duplicates():
    rows = [(f"r{i:02d}", f"s{i}", qa_output(f"topic {i}", i)) for i in range(12)]
    assert template_duplicates(rows, CheckConfig()) == {}


def test_planted_near_duplicates_of_different_sources_are_found_and_keep_the_smallest_id():
    rows = [(f"r{i:02d}", f"s{i}", qa_output(f"topic {i}", i)) for i in range(12)]
    base = distinct_english(40)
    rows += [("r50", "s50", base), ("r51", "s51", base.replace(" the ", " a ", 2)), ("r52", "s52", base + " Thanks.")]
    assert template_duplicates(rows, CheckConfig()) == {"r51": "r50", "r52": "r50"}


def test_pieces_of_the_same_source_are_never_duplicates_of_each_other():
    text = distinct_english(7)
    assert template_duplicates([("a", "same", text), ("b", "same", text)], CheckConfig()) == {}


def test_a_partition_of_one_row_has_no_duplicates():
    assert template_duplicates([("a", "s", distinct_english(1))], CheckConfig()) == {}


def test_a_partition_where_every_row_is_identical_keeps_one():
    text = distinct_english(5)
    rows = [(f"r{i}", f"s{i}", text) for i in range(10)]
    assert template_duplicates(rows, CheckConfig()) == {f"r{i}": "r0" for i in range(1, 10)}


def test_partition_measures_and_checks():
    rows = [
        {
            "text": distinct_english(i),
            "kept": i < 6,
            "drop_reason": None if i < 6 else "repetition",
            "flags": [] if i < 6 else ["repetition"],
            "compression_ratio": 0.5,
            "source_word_share": 0.4,
            "numbers": 2,
            "unsupported_numbers": 1 if i == 0 else 0,
        }
        for i in range(10)
    ]
    rows.append({"text": "Question: Why?\nAnswer: Because.\n", "kept": True, "drop_reason": None, "flags": []})
    m = partition_measures(rows)
    assert m["rows"] == 11 and m["kept"] == 7 and m["drops"] == {"repetition": 4}
    assert m["repetition_share"] == round(4 / 11, 4) and m["unsupported_number_rate"] == 0.05
    assert 0 < m["distinct_4"] <= 1 and m["formats"]["qa_pairs"] == round(1 / 7, 4)
    verdict = judge(m, CheckConfig())
    assert verdict["repetition_share"]["severity"] == "warn" and verdict["kept_share"]["severity"] == "ok"
    assert judge(m, CheckConfig(error_repetition_share=0.3))["repetition_share"]["severity"] == "error"
    assert judge({**m, "rows": 3}, CheckConfig(error_repetition_share=0.3))["repetition_share"]["severity"] == "ok"


def test_output_formats():
    assert output_formats("Question: a?\nAnswer: b.\nQuestion: c?\nAnswer: d.") == ["qa_pairs"]
    assert output_formats("Student: hi\nTeacher: hello\nStudent: why?") == ["dialogue"]
    assert output_formats("| a | b |\n|---|---|\n| 1 | 2 |") == ["table"]
    assert output_formats("- one\n- two\n") == ["list"]
    assert output_formats("Plain prose only.") == ["prose"]


# --- real outputs of the default generator -----------------------------------------------------


def real_outputs() -> list[dict]:
    import json

    return json.loads((ROOT / "tests" / "fixtures" / "smollm2_outputs.json").read_text())


def c4_text(url: str) -> str:
    import gzip
    import json

    from tests.conftest import CRAWL

    with gzip.open(CRAWL / "c4-en-sample-1000.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            if doc["url"] == url:
                return doc["text"]
    raise KeyError(url)


@pytest.mark.parametrize("case", real_outputs(), ids=lambda c: f"{c['strategy']}-{'-'.join(c['flags']) or 'kept'}")
def test_real_smollm2_outputs_get_the_verdict_they_got_in_generation(case):
    """Outputs the default generator wrote for C4 documents (tests/fixtures/make_smollm2_outputs.py):
    loops, talk about "the document", invented figures must drop; its clean rewrites must pass."""
    strategies = load_strategies_once()
    strategy = strategies[case["strategy"]]
    assert flags(case["output"], source=c4_text(case["source_url"]), strategy=strategy) == case["flags"]


def load_strategies_once():
    from dataset_assets.rephrase.strategies import load_strategies

    return load_strategies(ROOT / "prompts")


def test_the_fixture_has_drops_of_every_kind_and_clean_rows():
    seen = {f for c in real_outputs() for f in c["flags"]}
    assert {"prompt_echo", "repetition", "unsupported_numbers"} <= seen
    assert sum(not c["flags"] for c in real_outputs()) >= 4


# --- a generator that collapses into one template ------------------------------------------------------------


def collapsed(word: str) -> str:
    """The paragraph a collapsed generator writes for every document, one topic word changed."""
    return (
        f"This article explains the main facts about {word}. It covers the background, the people involved and "
        "the outcome, and it closes with what happened next and why it still matters to readers today."
    )


def qa_strategy_template() -> frozenset:
    from dataset_assets.rephrase.partition_checks import prompt_grams
    from dataset_assets.rephrase.strategies import load_strategies

    qa = load_strategies(ROOT / "prompts")["qa"]
    return frozenset(prompt_grams(m.content for step in qa.steps for m in step.messages))


@pytest.mark.parametrize("share, severity", [(0.2, "warn"), (0.5, "error"), (0.9, "error")])
def test_a_collapse_into_one_template_is_caught_however_much_of_the_partition_it_fills(share, severity):
    rows_total = 100
    collapsed_n = int(share * rows_total)
    rows = [(f"c{i:03d}", f"src-c{i}", collapsed(f"topic{i}")) for i in range(collapsed_n)]  # one word varies
    rows += [(f"n{i:03d}", f"src-n{i}", qa_output(f"topic {i}", i)) for i in range(rows_total - collapsed_n)]
    found = template_duplicates(rows, CheckConfig(), qa_strategy_template())
    redundant = collapsed_n - 1  # one of them is kept
    flagged = [k for k in found if k.startswith("c")]
    assert len(flagged) >= 0.9 * redundant, (len(flagged), redundant)
    assert not [k for k in found if k.startswith("n")]  # the real Q/A rows around them are untouched
    measures = {
        "rows": rows_total,
        "kept_share": 1.0,
        "repetition_share": 0.0,
        "template_duplicate_share": len(found) / rows_total,
    }
    assert judge(measures, CheckConfig())["template_duplicate_share"]["severity"] == severity


def test_the_strategys_own_phrases_stay_template_when_most_outputs_repeat_them():
    """Outputs that repeat a phrase of the prompt itself (a worked example's stem) are not alike for it."""
    from dataset_assets.rephrase.partition_checks import prompt_grams

    stem = "Here are five questions a careful reader might ask about this subject"
    template = frozenset(prompt_grams([f"Write questions. {stem}:\n{{document}}"]))
    rows = [(f"r{i:02d}", f"s{i}", f"{stem}. " + distinct_english(i)[:120]) for i in range(12)]
    assert template_duplicates(rows, CheckConfig(), template) == {}
