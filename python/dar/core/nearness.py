"""Whether a message says again what an earlier one said: the decision behind ``Similar``.

Closeness in an embedding space is necessary and far from sufficient. "Your refund for ORD-1
was issued" and "... was denied" share every id and sit close in any space, and holding the
second blocks the message the customer most needs; so do "refund ORD-1" and "refund ORD-2".
Two texts are near-duplicates only when all of these hold:

- their embeddings' cosine similarity is at least the threshold;
- the same set of tokens that carry digits (ids, amounts, dates, times, codes);
- the same time words (weekdays, months, today/tomorrow, hoy/mañana, ...);
- the same outcome words (issued, denied, delayed, emitido, rechazado, ...), compared as
  concepts so that "issued" and "we have issued" agree;
- both negated or neither ("not", "no", "never", "sin", "nunca", ...);
- they are not one sentence with one slot filled differently ("confirm your email" and
  "confirm your phone number"), which no threshold on a static embedding tells apart.

Every rule errs towards "distinct": a pair the rules cannot prove equal goes through, because
a wrong hold blocks a legitimate message while a missed duplicate only repeats one.
``DEFAULT_THRESHOLD`` is calibrated on tests/data/near_duplicates.jsonl (benches/
near_duplicates.py prints the figures). Pure code: texts and vectors in, a verdict out.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import operator
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DEFAULT_THRESHOLD = 0.60
"""The cosine similarity at and above which two texts whose facts agree are duplicates, for
the default embedder (`dar.embedding`): the lowest threshold at which the labelled set's dev
split keeps a precision of at least 0.97 (`benches/near_duplicates.py` chooses it). Another
embedder spreads its similarities differently: calibrate its threshold on the same set."""

# A token carrying digits: alphanumeric runs joined by -, /, ., :, , or _ with no space
# between ("ORD-1042", "#ORD-1", "12.50", "1.250,00", "10:30", "1Z999AA1").
_TOKEN = re.compile(r"[a-z0-9]+(?:[-_/.,:][a-z0-9]+)*")
_RUN = re.compile(r"[a-z]+|[0-9]+")
_ORDINAL = frozenset({"st", "nd", "rd", "th"})
_WORD = re.compile(r"[a-z]+")
_PARTS_OF_DAY = {"manana": "morning", "tarde": "afternoon"}

# Outcome concepts. A form ending in "*" is a prefix; any other form is a whole word, or a
# phrase of whole words. English and Spanish share one table: comparisons are within a pair.
_OUTCOMES: dict[str, tuple[str, ...]] = {
    "confirmed": ("confirm*",),
    "cancelled": ("cancel*", "anulad*", "anulam*"),
    "shipped": (
        "shipped",
        "ship",
        "ships",
        "dispatched",
        "sent",
        "send",
        "envi*",
        "mand*",
        "sali*",
        "saldr*",
        "salga*",
    ),
    "in_transit": (
        "on its way",
        "on the way",
        "out for delivery",
        "en camino",
        "de camino",
        "en reparto",
        "in transit",
    ),
    "arrived": ("arriv*", "deliver*", "receiv*", "lleg*", "entreg*", "recib*"),
    "delayed": ("delay*", "late", "later", "postpon*", "retras*", "demor*", "tard*"),
    "rescheduled": ("reschedul*", "reprogram*"),
    "scheduled": ("schedul*", "programad*", "programam*"),
    "pending": (
        "pending",
        "on hold",
        "under review",
        "waiting list",
        "pendiente*",
        "retenid*",
        "en revision",
        "lista de espera",
        "back-ordered",
        "backordered",
    ),
    "in_progress": (
        "process*",
        "proces*",
        "prepar*",
        "packed",
        "packing",
        "working on",
        "trabajando",
        "investigat*",
        "investigand*",
    ),
    "completed": ("complet*", "fulfil*"),
    "failed": ("fail*", "fall*", "bounced", "unsuccessful", "error*"),
    "succeeded": ("success*", "exito*", "correctamente"),
    "approved": ("approv*", "aprob*", "aprueb*", "accept*", "acept*", "granted"),
    "rejected": (
        "reject*",
        "rechaz*",
        "denied",
        "deny",
        "denies",
        "deneg*",
        "declin*",
        "refus*",
        "turned down",
    ),
    "issued": ("issued", "emit*"),
    "returned": ("return*", "devol*", "devuel*", "sent back"),
    "refunded": ("refund*", "reembols*", "money back"),
    "lost": ("lost", "perdid*", "extraviad*", "missing", "falta*"),
    "damaged": ("damag*", "danad*", "broken", "roto", "rota"),
    "out_of_stock": ("out of stock", "sold out", "agotad*"),
    "available": ("in stock", "available", "disponible*"),
    "resolved": ("resolv*", "resuelt*", "fixed", "fix", "solucion*", "arreglad*"),
    "escalated": ("escalat*", "escalad*"),
    "verified": ("verified", "verificad*", "verificam*"),
    "suspended": ("suspend*", "blocked", "locked", "bloquead*"),
    "upgraded": ("upgrad*", "mejorad*", "mejoram*"),
    "downgraded": ("downgrad*", "reducid*", "rebajad*"),
    "store_credit": ("store credit", "saldo en tienda", "saldo a favor"),
    "card": ("card", "tarjeta"),
}

_TIMES: dict[str, tuple[str, ...]] = {
    "today": ("today", "hoy"),
    "tomorrow": ("tomorrow", "manana"),
    "yesterday": ("yesterday", "ayer"),
    "tonight": ("tonight", "esta noche"),
    "morning": ("morning",),
    "afternoon": ("afternoon",),
    "evening": ("evening",),
    "next_week": ("next week", "proxima semana", "semana que viene", "semana proxima"),
    "this_week": ("this week", "esta semana"),
    "monday": ("monday", "lunes"),
    "tuesday": ("tuesday", "martes"),
    "wednesday": ("wednesday", "miercoles"),
    "thursday": ("thursday", "jueves"),
    "friday": ("friday", "viernes"),
    "saturday": ("saturday", "sabado"),
    "sunday": ("sunday", "domingo"),
    "january": ("january", "jan", "enero"),
    "february": ("february", "feb", "febrero"),
    "march": ("march", "mar", "marzo"),
    "april": ("april", "apr", "abril"),
    "may": ("may", "mayo"),
    "june": ("june", "jun", "junio"),
    "july": ("july", "jul", "julio"),
    "august": ("august", "aug", "agosto"),
    "september": ("september", "sept", "sep", "septiembre", "setiembre"),
    "october": ("october", "oct", "octubre"),
    "november": ("november", "nov", "noviembre"),
    "december": ("december", "dec", "diciembre"),
}

_NEGATIONS = frozenset(
    {"not", "no", "never", "nobody", "nothing", "none", "neither", "nor", "without",
     "nunca", "jamas", "nadie", "nada", "ningun", "ninguna", "ninguno", "tampoco", "sin", "ni"}
)  # fmt: skip
# Contractions spelled out, so that "couldn't" and "could not" negate alike.
_CONTRACTIONS = re.compile(r"n't\b|\bcannot\b")


@dataclass(frozen=True, slots=True)
class Facts:
    """What two texts must share exactly to say the same thing, whatever their wording."""

    digits: frozenset[str]
    times: frozenset[str]
    outcomes: frozenset[str]
    negated: bool


@dataclass(frozen=True, slots=True)
class Nearness:
    """The verdict on a pair: ``duplicate``, the embeddings' ``similarity``, and ``why`` in
    words (the first rule that tells the texts apart, or what they share)."""

    duplicate: bool
    similarity: float
    why: str


def normalize(text: str) -> str:
    """Case, accents, emoji and punctuation out of the way: lower case ASCII letters,
    digits, the joiners of tokens and single spaces. "¡Reembolso #ORD-1 emitido! 🎉" becomes
    "reembolso ord-1 emitido"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().replace("\u2019", "'"))
    plain = decomposed.encode("ascii", "ignore").decode("ascii")
    plain = _CONTRACTIONS.sub(_spelled_out, plain)
    kept = re.sub(r"[^a-z0-9\-_/.,:' ]+", " ", plain)
    kept = re.sub(r"'s\b|'", " ", kept)  # "yesterday's" is "yesterday"
    return " ".join(kept.split())


def _spelled_out(match: re.Match[str]) -> str:
    return " not" if match.group() == "n't" else "can not"


def digit_tokens(text: str) -> frozenset[str]:
    """The tokens of ``text`` that carry a digit, in a canonical form: letter and digit runs
    joined by "-", leading zeros and ordinal suffixes dropped, and a trailing all-zero run
    after digits dropped (cents or minutes: "45.00" is "45", "10:00" is "10").

    So "ORD-1", "#ORD-1", "order ord1" and "ORD_1" all give "ord-1", and "1,250.00" and
    "1.250,00" both give "1-250". A space splits a token: "ORD 1" gives "1", which differs
    from "ord-1", and the pair is judged distinct (the safe side)."""
    found: set[str] = set()
    for token in _TOKEN.findall(normalize(text)):
        if any(c.isdigit() for c in token):
            found.add(_canonical(token))
    return frozenset(found)


def _canonical(token: str) -> str:
    runs = [r.lstrip("0") or "0" if r.isdigit() else r for r in _RUN.findall(token)]
    if len(runs) > 1 and runs[-1] in _ORDINAL and runs[-2].isdigit():
        runs.pop()
    if len(runs) > 1 and runs[-1] == "0" and runs[-2].isdigit():
        runs.pop()
    return "-".join(runs)


def _patterns(table: dict[str, tuple[str, ...]]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """One pattern per concept of ``table``, matching whole words ("x*": words starting x)."""

    def spelled(form: str) -> str:
        return re.escape(form[:-1]) + "[a-z]*" if form.endswith("*") else re.escape(form)

    return tuple(
        (concept, re.compile(r"\b(?:" + "|".join(map(spelled, forms)) + r")\b"))
        for concept, forms in table.items()
    )


_OUTCOME_PATTERNS = _patterns(_OUTCOMES)
_TIME_PATTERNS = _patterns(_TIMES)


def _concepts(
    words: Sequence[str], patterns: tuple[tuple[str, re.Pattern[str]], ...]
) -> frozenset[str]:
    """The concepts that ``words`` (a normalized text split) name."""
    text = " ".join(words)
    return frozenset(concept for concept, pattern in patterns if pattern.search(text))


@functools.lru_cache(maxsize=4096)  # the same earlier texts are compared call after call
def facts(text: str) -> Facts:
    """The facts of ``text`` that `judge` compares exactly."""
    words = _words(text)
    times = _concepts(words, _TIME_PATTERNS)
    if "may" in times and "mayo" not in words and not _may_is_a_month(text):
        times -= {"may"}  # "you may" is no date
    return Facts(
        digits=digit_tokens(text),
        times=times,
        outcomes=_concepts(words, _OUTCOME_PATTERNS),
        negated=any(word in _NEGATIONS for word in words),
    )


def _words(text: str) -> list[str]:
    """The words of ``text``, with "la/esta mañana" a morning (bare "mañana" is tomorrow)
    and "la/esta tarde" an afternoon (bare "tarde" is late)."""
    words = _WORD.findall(normalize(text).replace("-", ""))
    for i in range(1, len(words)):
        if words[i - 1] in ("la", "esta") and words[i] in _PARTS_OF_DAY:
            words[i] = _PARTS_OF_DAY[words[i]]
    return words


def _may_is_a_month(text: str) -> bool:
    return re.search(r"\d\s*(?:of\s+)?may\b|\bmay\s*\d", normalize(text)) is not None


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """The cosine similarity of two vectors of one length; 0.0 when either is all zeros."""
    if len(a) != len(b):
        raise ValueError(f"vectors of {len(a)} and {len(b)} numbers have no cosine")
    dot = sum(map(operator.mul, a, b))
    norm = math.sqrt(sum(map(operator.mul, a, a)) * sum(map(operator.mul, b, b)))
    return dot / norm if norm else 0.0


def judge(
    a: str,
    a_vector: Sequence[float],
    b: str,
    b_vector: Sequence[float],
    threshold: float | None = None,
) -> Nearness:
    """Whether ``b`` says again what ``a`` said (the rule is symmetric)."""
    limit = DEFAULT_THRESHOLD if threshold is None else threshold
    similarity = cosine(a_vector, b_vector)
    if similarity < limit:
        return Nearness(False, similarity, f"similarity {similarity:.2f} is below {limit:.2f}")
    difference = differ(facts(a), facts(b)) or swapped(a, b)
    if difference:
        return Nearness(False, similarity, difference)
    return Nearness(True, similarity, "the same meaning, ids, dates and outcome")


@dataclass(frozen=True, slots=True)
class Earlier:
    """An earlier call of the same tool, as ``Similar`` compares with it: its event, when it
    was made, the field's text and the vector stored with the call."""

    event_id: str
    at: dt.datetime
    text: str
    vector: Sequence[float]


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The earlier call that a new text repeats, and the verdict on the pair."""

    earlier: Earlier
    nearness: Nearness

    def reason(self, field: str) -> str:
        """Why the call is held, in words an agent can act on."""
        at = self.earlier.at.isoformat(timespec="seconds")
        return (
            f"{field} repeats what the call of event {self.earlier.event_id} already sent at "
            f"{at}: {self.earlier.text!r} (similarity {self.nearness.similarity:.2f}, with "
            "the same ids, numbers, dates and outcome). Do not send it again; a message with a "
            "different id, amount, date or outcome is never held as a repeat."
        )


def first_duplicate(
    text: str,
    vector: Sequence[float],
    earlier: Iterable[Earlier],
    threshold: float | None = None,
) -> Duplicate | None:
    """The earlier call that ``text`` repeats, the most similar when several do; else None."""
    best: Duplicate | None = None
    for call in earlier:
        nearness = judge(call.text, call.vector, text, vector, threshold)
        if nearness.duplicate and (best is None or nearness.similarity > best.nearness.similarity):
            best = Duplicate(call, nearness)
    return best


def differ(a: Facts, b: Facts) -> str:
    """The first fact that tells ``a`` from ``b``, in words; "" when they agree."""
    if a.digits != b.digits:
        return f"different ids or numbers: {_listed(a.digits ^ b.digits)}"
    if a.times != b.times:
        return f"different dates or times: {_listed(a.times ^ b.times)}"
    if a.outcomes != b.outcomes:
        return f"a different outcome: {_listed(a.outcomes ^ b.outcomes)}"
    if a.negated != b.negated:
        return "one is negated and the other is not"
    return ""


def swapped(a: str, b: str) -> str:
    """What each text has in the other's place when ``a`` and ``b`` are one sentence with
    one slot filled differently ("confirm your email" / "confirm your phone number"): a
    template sent for another thing, however close the vectors; "" otherwise. The slot is
    what is left between the words both start and end with, and its two fillings share no
    word. A rephrasing moves and changes words in more than one place, so this rarely holds
    a true duplicate apart."""
    a_words, b_words = _WORD.findall(normalize(a)), _WORD.findall(normalize(b))
    start = 0
    while start < min(len(a_words), len(b_words)) and a_words[start] == b_words[start]:
        start += 1
    end = 0
    while end < min(len(a_words), len(b_words)) - start and a_words[-1 - end] == b_words[-1 - end]:
        end += 1
    a_slot, b_slot = a_words[start : len(a_words) - end], b_words[start : len(b_words) - end]
    if not a_slot or not b_slot or set(a_slot) & set(b_slot):
        return ""
    return f"one sentence with {' '.join(a_slot)!r} in one and {' '.join(b_slot)!r} in the other"


def _listed(items: frozenset[str]) -> str:
    return ", ".join(sorted(items))
