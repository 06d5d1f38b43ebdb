"""Egress control: each detector, overlaps, bounded work, and the policy section that sets the rules.

No Docker here: ``screen`` is a pure function and the policy is data. The broker-level and full-run
tests are in tests/test_rpc.py and tests/test_rlm.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rlm_host.egress import MAX_SCREEN_CHARS, endpoint_label, refusal, screen
from rlm_host.errors import PolicyError
from rlm_host.policy import MAX_PATTERN_CHARS, Egress, load_policy, parse_policy, policies_dir

ALL = Egress(email="redact", iban="redact", card="redact")
VALID_IBANS = ["DE89370400440532013000", "GB82 WEST 1234 5698 7654 32", "fr1420041010050500013m02606",
               "NL91ABNA0417164300"]
BAD_IBANS = ["DE89370400440532013001", "GB83 WEST 1234 5698 7654 32", "XX89370400440532013000"]
VALID_CARDS = ["4111111111111111", "4111 1111 1111 1111", "5500-0000-0000-0004", "3782 822463 10005",
               "6011000990139424", "4000056655665556"]
BAD_CARDS = ["4111111111111112", "4111 1111 1111 1121", "1234567890123"]


def only(**actions: str) -> Egress:
    return Egress(**{"email": "off", "iban": "off", "card": "off", **actions})


def rules(*patterns: dict[str, str], **actions: str) -> Egress:
    return Egress.model_validate({**actions, "patterns": list(patterns)})


@pytest.mark.parametrize("address", ["jane.doe@example.com", "a+tag@mail.example.co.uk", "X_Y%z@sub-domain.io"])
def test_email_is_redacted(address: str) -> None:
    """An e-mail address becomes [EMAIL] and is counted; the words around it stay."""
    out = screen(f"Write to {address}, today.", only(email="redact"))
    assert out.text == "Write to [EMAIL], today." and out.counts == {"email": 1} and out.refused_by is None


def test_not_an_email_stays() -> None:
    """Text with an @ that is not an address (a handle, a bare domain) passes unchanged."""
    text = "ping @alice at example.com or user@localhost"
    assert screen(text, only(email="redact")).text == text


@pytest.mark.parametrize("number", VALID_IBANS)
def test_iban_with_a_valid_checksum_is_redacted(number: str) -> None:
    """An IBAN whose mod-97 checksum holds, in one piece, in groups or in lower case, becomes [IBAN]."""
    out = screen(f"Pay to {number} by Friday.", only(iban="redact"))
    assert out.text == "Pay to [IBAN] by Friday." and out.counts == {"iban": 1}


@pytest.mark.parametrize("number", BAD_IBANS)
def test_iban_with_a_bad_checksum_or_country_stays(number: str) -> None:
    """One digit off (the checksum fails) or an unknown country: not an IBAN, nothing changes."""
    text = f"Pay to {number} by Friday."
    assert screen(text, only(iban="redact")).text == text


def test_two_ibans_side_by_side_are_both_found() -> None:
    """A candidate that runs on into the next IBAN is cut at its valid end, so the next is still found."""
    out = screen("DE89 3704 0044 0532 0130 00 GB82 WEST 1234 5698 7654 32", only(iban="redact"))
    assert out.text == "[IBAN] [IBAN]" and out.counts == {"iban": 2}


@pytest.mark.parametrize("number", VALID_CARDS)
def test_luhn_valid_card_is_redacted(number: str) -> None:
    """A Luhn-valid card number, in one piece or in its printed groups, becomes [CARD]."""
    out = screen(f"card {number} exp 12/29", only(card="redact"))
    assert out.text == "card [CARD] exp 12/29" and out.counts == {"card": 1}


@pytest.mark.parametrize("number", BAD_CARDS)
def test_luhn_invalid_number_stays(number: str) -> None:
    """A number that fails Luhn is not a card number: it passes unchanged."""
    text = f"card {number} exp 12/29"
    assert screen(text, only(card="redact")).text == text


def test_card_inside_a_longer_number_stays_and_a_trailing_group_is_cut() -> None:
    """A valid card's digits inside a longer run of digits are not a card; a card then a year keeps the year."""
    long_run = "99" + "4111111111111111" + "99"
    assert screen(long_run, only(card="redact")).text == long_run
    assert screen("4111 1111 1111 1111 2029", only(card="redact")).text == "[CARD] 2029"


def test_user_regex_is_redacted_by_name() -> None:
    """A user pattern's matches become [REDACTED:name], counted as regex:name."""
    out = screen("staff EMP-123456 and EMP-654321, not EMP-12", rules({"name": "staff_id", "pattern": r"EMP-\d{6}"}))
    assert out.text == "staff [REDACTED:staff_id] and [REDACTED:staff_id], not EMP-12"
    assert out.counts == {"regex:staff_id": 2} and out.refused_by is None


def test_refuse_names_the_rule_and_counts_without_values() -> None:
    """A refusing rule that matches sets refused_by; the error names the rule and counts, never the value."""
    out = screen("mail jane@example.com, card 4111111111111111", rules(email="redact", card="refuse"))
    assert out.refused_by == "card" and out.counts == {"email": 1, "card": 1}
    message = str(refusal(out))
    assert "'card'" in message and "nothing was sent" in message
    assert "4111" not in message and "jane" not in message


def test_off_rules_change_nothing() -> None:
    """With every detector off the prompt is sent as it is."""
    text = "jane@example.com DE89370400440532013000 4111111111111111"
    assert screen(text, Egress()).text == text and screen(text, Egress()).counts == {}


def test_overlapping_matches_become_one_placeholder() -> None:
    """A user pattern overlapping an e-mail: one placeholder covers both, no part of either leaks."""
    out = screen("from jane.doe@example.com today", rules({"name": "surname", "pattern": "doe@ex"}, email="redact"))
    assert out.text == "from [EMAIL] today" and out.counts == {"email": 1}
    out = screen("ref 4111111111111111x9", rules({"name": "ref", "pattern": r"1111x9"}, card="redact"))
    assert "1111" not in out.text and "x9" not in out.text


def test_refusing_rule_wins_an_overlap() -> None:
    """A redacting pattern that overlaps a refused card cannot hide the card: the call is refused."""
    out = screen("no 4111111111111111", rules({"name": "digits", "pattern": r"\d{20}|4111\d+"}, card="refuse"))
    assert out.refused_by == "card" and "4111" not in out.text


def test_every_pattern_kind_at_once() -> None:
    """E-mail, IBAN, card and a user pattern in one prompt are each replaced by their own placeholder."""
    text = "jane@example.com paid from DE89 3704 0044 0532 0130 00 with 4111 1111 1111 1111 for EMP-123456."
    out = screen(text, rules({"name": "staff", "pattern": r"EMP-\d{6}"}, email="redact", iban="redact", card="redact"))
    assert out.text == "[EMAIL] paid from [IBAN] with [CARD] for [REDACTED:staff]."
    assert out.counts == {"email": 1, "iban": 1, "card": 1, "regex:staff": 1}


def test_huge_prompt_is_screened_to_the_cap_and_refused_past_it() -> None:
    """Up to MAX_SCREEN_CHARS everything is screened (an address at the very end is found); beyond, refused."""
    tail = " jane@example.com"
    out = screen("x " * ((MAX_SCREEN_CHARS - len(tail)) // 2) + tail, ALL)
    assert out.text.endswith(" [EMAIL]") and out.counts == {"email": 1}
    over = screen("x" * (MAX_SCREEN_CHARS + 1), ALL)
    assert over.refused_by == "size" and over.text == "" and "too long" in str(refusal(over))


def test_catastrophic_user_pattern_times_out_and_refuses() -> None:
    """A pattern that backtracks exponentially stops at its timeout and refuses the call (never hangs)."""
    out = screen("a" * 5000 + "!", rules({"name": "words", "pattern": r"(\w+\s?)+$"}))
    assert out.refused_by == "regex:words timed out" and out.text == ""
    assert "ran out of time" in str(refusal(out))


def test_many_numbers_are_each_checked() -> None:
    """Thousands of candidates in one prompt (a table of numbers) are each decided, none skipped."""
    text = " ".join(["4111111111111111", "4111111111111112"] * 2000)
    out = screen(text, only(card="redact"))
    assert out.counts == {"card": 2000} and out.text.count("4111111111111112") == 2000


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:secret@api.example.com:8443/v1?key=abc#x", "https://api.example.com:8443/v1"),
    ("http://127.0.0.1:5000/v1", "http://127.0.0.1:5000/v1"),
    ("https://[::1]:9/v1/", "https://[::1]:9/v1/"),
])
def test_endpoint_label_has_no_credentials(url: str, shown: str) -> None:
    """The endpoint the log names keeps scheme, host, port and path; never a user, password or query."""
    assert endpoint_label(url) == shown


# -- the policy section --------------------------------------------------------------------------

def standard_raw() -> dict:
    return yaml.safe_load((policies_dir() / "standard.yaml").read_text())


def parsed(**egress: object) -> object:
    return parse_policy({**standard_raw(), "egress": egress}, base_dir=policies_dir())


def test_packaged_policies_screen_by_default() -> None:
    """standard redacts e-mail, IBAN and card numbers; strict redacts e-mail and refuses IBANs and cards."""
    standard, strict = load_policy("standard").egress, load_policy("strict").egress
    assert (standard.email, standard.iban, standard.card) == ("redact", "redact", "redact")
    assert (strict.email, strict.iban, strict.card) == ("redact", "refuse", "refuse")


def test_a_policy_without_egress_loads_with_its_old_digest() -> None:
    """An old policy file (no egress section) loads with nothing screened, and its digest is unchanged."""
    raw = standard_raw()
    del raw["egress"]
    old = parse_policy(raw, base_dir=policies_dir())
    empty = parse_policy({**raw, "egress": {}}, base_dir=policies_dir())
    assert old.egress == Egress() and old.sha256 == empty.sha256 != load_policy("standard").sha256


@pytest.mark.parametrize(("egress", "needle"), [
    ({"emial": "redact"}, "unknown key 'egress.emial' (did you mean 'egress.email'?)"),
    ({"card": "mask"}, "'egress.card'"),
    ({"patterns": [{"name": "x", "pattern": "a", "colour": 1}]}, "unknown key 'egress.patterns.0.colour'"),
    ({"patterns": [{"name": "x", "pattern": "(unclosed"}]}, "not a regular expression"),
    ({"patterns": [{"name": "x", "pattern": "a" * (MAX_PATTERN_CHARS + 1)}]}, "at most 256 characters"),
    ({"patterns": [{"name": "x", "pattern": "a*"}]}, "matches the empty string"),
    ({"patterns": [{"name": "Bad Name", "pattern": "a"}]}, "'egress.patterns.0.name'"),
    ({"patterns": [{"name": "x", "pattern": "a"}, {"name": "x", "pattern": "b"}]}, "'x' is used twice"),
])
def test_bad_egress_sections_are_refused_by_name(egress: dict, needle: str) -> None:
    """Typos, unknown actions, bad or unbounded patterns and duplicate names: one line naming the key."""
    with pytest.raises(PolicyError) as caught:
        parsed(**egress)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_user_pattern_is_compiled_once_at_load(tmp_path: Path) -> None:
    """A policy file's pattern is compiled when it loads and used as compiled; its rules change the digest."""
    raw = {**standard_raw(), "egress": {"patterns": [{"name": "staff", "pattern": "EMP-[0-9]{6}",
                                                      "action": "refuse"}]}}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw))
    policy = load_policy(path)
    assert policy.egress.patterns[0].compiled.pattern == "EMP-[0-9]{6}"
    assert screen("EMP-000001", policy.egress).refused_by == "regex:staff"
    assert policy.sha256 != load_policy("standard").sha256
