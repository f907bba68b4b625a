"""Near-duplicates: what the detector holds as "the same message again", on the labelled set
and rule by rule, in English and Spanish."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dar.core.nearness import (
    DEFAULT_THRESHOLD,
    Earlier,
    cosine,
    digit_tokens,
    facts,
    first_duplicate,
    judge,
    normalize,
)
from dar.embedding import default_embedder, embed
from tests.conftest import DATA

PAIRS = [
    json.loads(line)
    for line in (DATA / "near_duplicates.jsonl").read_text("utf-8").split("\n")
    if line
]
SAME = (1.0, 0.0)  # one vector for both texts: only the rules can tell them apart


def test_the_labelled_set_is_large_balanced_and_mostly_hard() -> None:
    assert len(PAIRS) >= 300
    assert len({(p["a"], p["b"]) for p in PAIRS}) == len(PAIRS)
    by_lang = Counter(p["lang"] for p in PAIRS)
    assert set(by_lang) == {"en", "es"} and abs(by_lang["en"] - by_lang["es"]) <= 20
    assert {p["split"] for p in PAIRS} == {"dev", "test"}
    distinct = [p for p in PAIRS if p["label"] == "distinct"]
    assert all(p["hard"] for p in distinct)
    assert all(p["hard"] is None for p in PAIRS if p["label"] == "duplicate")
    assert sum(p["hard"] != "unrelated" for p in distinct) >= 0.9 * len(distinct)
    assert {"other_id", "other_amount", "other_date", "other_outcome", "negation"} <= {
        p["hard"] for p in distinct
    }


def test_the_default_detector_is_precise_on_the_labelled_set() -> None:
    """The figures the default threshold was chosen for: a wrong hold blocks a legitimate
    message, so precision is pinned; recall is what that precision leaves."""
    texts = sorted({p[side] for p in PAIRS for side in ("a", "b")})
    vectors = dict(zip(texts, embed(default_embedder(), texts), strict=True))
    said = [judge(p["a"], vectors[p["a"]], p["b"], vectors[p["b"]]).duplicate for p in PAIRS]
    real = [p["label"] == "duplicate" for p in PAIRS]
    true_pos = sum(s and r for s, r in zip(said, real, strict=True))
    precision, recall = true_pos / sum(said), true_pos / sum(real)
    assert precision >= 0.95, f"precision {precision:.3f}"
    assert recall >= 0.6, f"recall {recall:.3f}"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Your refund for ORD-1 was issued.", "Your refund for ORD-1 was denied."),
        (
            "Tu reembolso del pedido ORD-1 fue emitido.",
            "Tu reembolso del pedido ORD-1 fue denegado.",
        ),
        ("Your package arrives tomorrow.", "Your package is delayed until Monday."),
        ("Tu paquete llega mañana.", "Tu paquete se retrasa hasta el lunes."),
        ("Payment for INV-3 received.", "Payment for INV-3 not received."),
        ("Hemos recibido el pago de FAC-3.", "No hemos recibido el pago de FAC-3."),
        ("We couldn't ship ORD-9.", "We shipped ORD-9."),
        ("Invoice INV-9 is due 30 Sept.", "Invoice INV-9 is due 30 Oct."),
        ("La factura vence el viernes.", "La factura vence el lunes."),
        ("Your parcel comes tomorrow.", "Your parcel comes tomorrow morning."),
        ("Llega el martes.", "Llega el martes por la mañana."),
        ("Confirm your email address.", "Confirm your phone number."),
    ],
)
def test_texts_that_differ_in_outcome_date_negation_or_content_are_never_duplicates(
    a: str, b: str
) -> None:
    verdict = judge(a, SAME, b, SAME)
    assert not verdict.duplicate and verdict.similarity == 1.0
    assert verdict.why and "below" not in verdict.why


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Your refund for order ORD-1 was issued.", "We have issued the refund for #ORD-1 🎉"),
        ("Tu reembolso del pedido ORD-1 fue emitido.", "¡Hemos emitido el reembolso de ord-1!"),
        ("Rent of $1,250.00 is due on the 1st.", "Reminder: rent of $1,250 is due on the 1st"),
        (
            "El alquiler de 1.250,00 € vence el día 1.",
            "Recuerda: el alquiler de 1.250 € vence el 1",
        ),
        ("We couldn't process the refund.", "The refund could not be processed."),
        ("Llegará mañana por la mañana.", "Mañana por la mañana llegará."),
    ],
)
def test_rephrasings_with_the_same_facts_are_duplicates(a: str, b: str) -> None:
    assert judge(a, SAME, b, SAME).duplicate


def test_a_pair_below_the_threshold_is_distinct_and_says_so() -> None:
    verdict = judge("same words", (1.0, 0.0), "same words", (0.0, 1.0))
    assert not verdict.duplicate and verdict.similarity == 0.0
    assert f"{DEFAULT_THRESHOLD:.2f}" in verdict.why
    assert judge("same words", (1.0, 0.0), "same words", (0.7, 0.7), threshold=0.5).duplicate


ids = st.integers(min_value=0, max_value=10**9)


@given(ids, ids)
def test_another_id_is_never_a_duplicate_however_close(n: int, m: int) -> None:
    verdict = judge(f"refund ORD-{n}", SAME, f"refund ORD-{m}", SAME)
    assert verdict.duplicate == (n == m)
    assert judge(
        f"reembolso del pedido {n}", SAME, f"reembolso del pedido {m}", SAME
    ).duplicate == (n == m)


@given(ids, st.sampled_from(["ORD-{}", "#ORD-{}", "ord{}", "ORD_{}", "(ORD-{})", "ORD-{}!"]))
def test_the_spellings_of_one_id_are_one_token(n: int, spelling: str) -> None:
    assert digit_tokens(f"order {spelling.format(n)} shipped") == {f"ord-{n}"}


@given(st.integers(0, 99_999), st.integers(0, 99))
def test_an_amount_is_one_token_in_either_languages_notation(units: int, cents: int) -> None:
    english, spanish = f"{units:,}.{cents:02d}", f"{units:,}".replace(",", ".") + f",{cents:02d}"
    assert digit_tokens(f"${english}") == digit_tokens(f"{spanish} €")
    assert len(digit_tokens(f"${english}")) == 1


def test_digit_tokens_drop_zero_cents_leading_zeros_and_ordinals_but_not_a_space() -> None:
    assert digit_tokens("$45.00 at 10:00 on the 3rd, code 007") == {"45", "10", "3", "7"}
    assert digit_tokens("12.50") != digit_tokens("1250")
    assert digit_tokens("ORD 1") == {"1"} != digit_tokens("ORD-1")
    assert digit_tokens("9am") != digit_tokens("9pm")


def test_normalize_folds_case_accents_emoji_punctuation_and_contractions() -> None:
    assert normalize("¡Reembolso #ORD-1 EMITIDO! 🎉") == "reembolso ord-1 emitido"
    assert normalize("We couldn\u2019t") == normalize("We could not") == "we could not"


@given(st.text(max_size=60), st.text(max_size=60))
def test_the_verdict_is_symmetric(a: str, b: str) -> None:
    assert judge(a, SAME, b, SAME).duplicate == judge(b, SAME, a, SAME).duplicate


@pytest.mark.parametrize(
    ("text", "times", "outcomes", "negated"),
    [
        ("Your refund was denied", set(), {"refunded", "rejected"}, False),
        ("Tu reembolso fue rechazado", set(), {"refunded", "rejected"}, False),
        ("It did not arrive yesterday", {"yesterday"}, {"arrived"}, True),
        ("No llegó ayer", {"yesterday"}, {"arrived"}, True),
        ("Llega mañana por la tarde", {"tomorrow", "afternoon"}, {"arrived"}, False),
        ("Llegó tarde", set(), {"arrived", "delayed"}, False),
        ("You may pay now", set(), set(), False),
        ("Due on 1 May", {"may"}, set(), False),
    ],
)
def test_facts_read_outcomes_times_and_negation_in_both_languages(
    text: str, times: set[str], outcomes: set[str], negated: bool
) -> None:
    found = facts(text)
    assert (set(found.times), set(found.outcomes), found.negated) == (times, outcomes, negated)


def test_the_earlier_call_repeated_is_the_most_similar_and_the_reason_names_it() -> None:
    at = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.timezone.utc)
    earlier = [
        Earlier("ev-1", at, "Your refund for ORD-1 was issued.", (1.0, 0.2)),
        Earlier("ev-2", at, "Refund issued for ORD-1!", (1.0, 0.0)),
        Earlier("ev-3", at, "Your refund for ORD-2 was issued.", (1.0, 0.0)),
    ]
    found = first_duplicate("We issued the refund for ORD-1.", (1.0, 0.0), earlier)
    assert found is not None and found.earlier.event_id == "ev-2"
    reason = found.reason("$.message")
    for part in ("$.message", "ev-2", "2026-03-01T09:30:00", "Refund issued for ORD-1!", "1.00"):
        assert part in reason
    assert first_duplicate("Your refund for ORD-3 was issued.", (1.0, 0.0), earlier) is None


def test_cosine_is_zero_for_a_zero_vector_and_refuses_unequal_lengths() -> None:
    assert cosine((0.0, 0.0), (1.0, 0.0)) == 0.0
    assert cosine((1.0, 1.0), (2.0, 2.0)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        cosine((1.0,), (1.0, 0.0))
