"""Egress control: what a sub-call prompt may carry when it leaves the host for the model provider.

Everything cell code passes to ``llm_query``, ``llm_query_batched`` and ``rlm_query`` is sent to the
sub-model's endpoint. The policy's ``egress`` section names detectors (e-mail addresses, IBANs, payment
card numbers, user-given regular expressions), each either redacted (replaced by a typed placeholder:
``[EMAIL]``, ``[IBAN]``, ``[CARD]``, ``[REDACTED:name]``) or refused (nothing is sent; the cell gets
an error). ``screen`` is a pure function of the prompt and the rules; the broker calls it before the
prompt leaves and records the kinds and counts, never the values.

Detection: IBANs are candidates by shape (in one piece or in groups of four), kept only when
python-stdnum validates them (ISO 7064 mod-97 and the country's BBAN format); card numbers are
13-19 digits (in one piece or in the printed groups: 4-4-4-4, Amex's 4-6-5), kept only when
Luhn-valid (python-stdnum's ``luhn``); e-mail addresses are one bounded pattern of our own.
Overlapping matches become one span, replaced whole. Built-in patterns have no nested repetition,
so they run in linear time. User patterns run under the ``regex`` module's timeout
(``USER_PATTERN_TIMEOUT_S`` for a whole prompt): Python's ``re`` cannot be stopped, so a pattern
that backtracks catastrophically would stall the broker; with ``regex`` it refuses that sub-call
instead. A prompt is screened only up to ``MAX_SCREEN_CHARS`` (the largest prompt any policy
allows); a longer one is refused.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from stdnum import iban, luhn

from .policy import Egress

MAX_SCREEN_CHARS = 10_000_000  # SubcallBudget.max_prompt_chars' upper bound
USER_PATTERN_TIMEOUT_S = 1.0
PLACEHOLDERS = {"email": "[EMAIL]", "iban": "[IBAN]", "card": "[CARD]"}

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}")
# A country code and two check digits, then 11-30 letters or digits, in one piece or in groups of four.
_IBAN = re.compile(r"\b[A-Za-z]{2}[0-9]{2}(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?)")
# 13-19 digits in one piece, or in groups (4-4-4-4[-1..4], Amex's 4-6-5) split by a space or a hyphen,
# not inside a longer run of digits.
_CARD = re.compile(r"(?<![0-9])(?:[0-9]{13,19}|[0-9]{4}(?:[ -][0-9]{4}){2,3}(?:[ -][0-9]{1,4})?"
                   r"|[0-9]{4}[ -][0-9]{6}[ -][0-9]{4,5})(?![0-9])")


@dataclass(frozen=True)
class Screened:
    """A prompt after screening: the text that may leave, what was found, and the refusing rule if any.

    ``counts`` maps a kind (``email``, ``iban``, ``card``, ``regex:<name>``) to how many were found;
    ``refused_by`` names the first refusing rule that matched (``size`` for a prompt too long to
    screen, ``regex:<name> timed out`` for a pattern that ran out of time), and then nothing is sent.
    """

    text: str
    counts: dict[str, int] = field(default_factory=dict)
    refused_by: str | None = None


@dataclass(frozen=True, order=True)
class _Hit:
    start: int
    end: int
    kind: str
    placeholder: str
    refuse: bool


class _TimedOut(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def screen(prompt: str, rules: Egress) -> Screened:
    """Apply the policy's egress rules to one prompt; pure (no I/O, no events)."""
    if not _active(rules):
        return Screened(prompt)
    if len(prompt) > MAX_SCREEN_CHARS:
        return Screened("", refused_by="size")
    try:
        found = list(_hits(prompt, rules))
    except _TimedOut as exc:
        return Screened("", refused_by=f"{exc.kind} timed out")
    chosen = _choose(found)
    refusing = next((hit.kind for hit in sorted(found) if hit.refuse), None)
    return Screened(_redact(prompt, chosen), dict(Counter(hit.kind for hit in chosen)), refusing)


def describe(counts: dict[str, int]) -> str:
    """``2 email, 1 iban`` for messages (kinds and counts only)."""
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "nothing"


def endpoint_label(base_url: str) -> str:
    """The endpoint as the audit log names it: scheme, host, port and path; never a user, password or query."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _active(rules: Egress) -> bool:
    return bool(rules.patterns) or any(action != "off" for action in (rules.email, rules.iban, rules.card))


def _hits(text: str, rules: Egress) -> Iterator[_Hit]:
    """Every match of every active rule, overlapping ones included (``_choose`` settles overlaps)."""
    builtin: list[tuple[str, str, Callable[[str], Iterator[tuple[int, int]]]]] = [
        ("email", rules.email, _emails), ("iban", rules.iban, _ibans), ("card", rules.card, _cards)]
    for kind, action, find in builtin:
        if action != "off":
            for start, end in find(text):
                yield _Hit(start, end, kind, PLACEHOLDERS[kind], action == "refuse")
    for rule in rules.patterns:
        kind = f"regex:{rule.name}"
        for start, end in _user_matches(rule.compiled, text, kind):
            yield _Hit(start, end, kind, f"[REDACTED:{rule.name}]", rule.action == "refuse")


def _emails(text: str) -> Iterator[tuple[int, int]]:
    for match in _EMAIL.finditer(text):
        yield match.span()


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    yield from _validated(_IBAN, text, iban.is_valid, min_chars=15)


def _cards(text: str) -> Iterator[tuple[int, int]]:
    yield from _validated(_CARD, text, lambda digits: len(digits) <= 19 and luhn.is_valid(digits), min_chars=13)


def _validated(pattern: re.Pattern[str], text: str, valid: Callable[[str], bool],
               min_chars: int) -> Iterator[tuple[int, int]]:
    """Spans of ``pattern``'s candidates that ``valid`` accepts, each cut to its longest valid prefix
    ending before a separator (a candidate may run on into the next word or group of digits); after
    a miss the search goes on one character later, so a number right after a non-number is found."""
    pos = 0
    while (match := pattern.search(text, pos)) is not None:
        end = _longest_valid(match.group(), valid, min_chars)
        if end is None:
            pos = match.start() + 1
            continue
        yield match.start(), match.start() + end
        pos = match.start() + end


def _longest_valid(candidate: str, valid: Callable[[str], bool], min_chars: int) -> int | None:
    """The length of the longest prefix of ``candidate`` that is valid once its separators are removed."""
    cuts = [i for i, char in enumerate(candidate) if char in " -"] + [len(candidate)]
    for cut in reversed(cuts):
        compact = re.sub(r"[ -]", "", candidate[:cut])
        if len(compact) >= min_chars and valid(compact):
            return cut
    return None


def _user_matches(compiled: object, text: str, kind: str) -> Iterator[tuple[int, int]]:
    """Non-empty matches of a user pattern, all within one timeout for the whole prompt."""
    try:
        spans = [m.span() for m in compiled.finditer(text, timeout=USER_PATTERN_TIMEOUT_S)]  # type: ignore[attr-defined]
    except TimeoutError:
        raise _TimedOut(kind) from None
    yield from ((start, end) for start, end in spans if end > start)


def _choose(hits: list[_Hit]) -> list[_Hit]:
    """Settle overlaps: hits that overlap form one span, replaced whole by one placeholder (a refusing
    rule's first, then the longest hit's, then the earliest's), so no part of any match gets through."""
    out: list[_Hit] = []
    group: list[_Hit] = []
    for hit in sorted(hits):
        if group and hit.start >= max(h.end for h in group):
            out.append(_one(group))
            group = []
        group.append(hit)
    return out + ([_one(group)] if group else [])


def _one(group: list[_Hit]) -> _Hit:
    best = min(group, key=lambda h: (not h.refuse, -(h.end - h.start), h.start))
    return _Hit(group[0].start, max(h.end for h in group), best.kind, best.placeholder,
                any(h.refuse for h in group))


def _redact(text: str, hits: list[_Hit]) -> str:
    parts, pos = [], 0
    for hit in hits:
        parts += [text[pos:hit.start], hit.placeholder]
        pos = hit.end
    return "".join([*parts, text[pos:]])


class PromptRefused(Exception):
    """A sub-call the egress rules refuse; the message (kinds and counts, never values) is shown to the cell."""


def refusal(screened: Screened) -> PromptRefused:
    """The error for a refused prompt, worded by why."""
    rule = screened.refused_by or ""
    if rule == "size":
        return PromptRefused(f"the prompt is over {MAX_SCREEN_CHARS:,} characters, too long to screen; "
                             "nothing was sent; send a smaller piece")
    if rule.endswith(" timed out"):
        return PromptRefused(f"the policy's egress pattern '{rule.removesuffix(' timed out')}' ran out of time on "
                             "this prompt; nothing was sent; send a smaller piece")
    return PromptRefused(f"the policy's egress rule '{rule}' matched this prompt ({describe(screened.counts)} "
                         "after redaction); nothing was sent to the model; leave that data out of the prompt")
