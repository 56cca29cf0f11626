"""Normalising identifiers, so that the same person's email or phone written two ways is
one value: first Unicode NFKC (fullwidth letters and ``\\uff20`` are plain ASCII),
then email validated and lowercased (no DNS look-up), phone in E.164, card and external
ids trimmed and uppercased where that is safe.

NFKC cannot join look-alikes from other scripts (a Cyrillic ``o``, U+043E): such
a value stays a valid, different identifier, and ``skeleton`` gives the form the duplicate
finder compares, from Unicode's confusables table (``confusable_homoglyphs``)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import phonenumbers
from confusable_homoglyphs import confusables
from email_validator import EmailNotValidError, validate_email

# Bumped whenever normalisation changes what a value becomes: blind indexes carry it, so
# `flask security reencrypt` can tell which rows still hold an older index.
NORMALIZATION_VERSION = 1


class InvalidIdentifier(ValueError):
    pass


_CARD = re.compile(r"^[A-Z0-9]{4,32}\Z")
_EXTERNAL = re.compile(r"^[\x21-\x7e]{1,64}\Z")  # printable ASCII, no spaces


# Plain ASCII addresses that email-validator accepts unchanged (but for case): checked
# here in a microsecond instead of some tens; anything else goes to email-validator.
_PLAIN_EMAIL = re.compile(
    r"^(?=[^@]{1,64}@)(?=.{6,254}$)[a-z0-9](?:[a-z0-9_+-]|\.(?=[a-z0-9_+-]))*"
    r"@(?:(?![a-z0-9]{2}--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\Z")
_SPECIAL_USE_TLDS = {"arpa", "invalid", "local", "localhost", "onion", "test"}


def nfkc(value: str) -> str:
    """Unicode compatibility normalisation (plain ASCII is returned as it is)."""
    return value if value.isascii() else unicodedata.normalize("NFKC", value)


def normalize_email(value: str) -> str:
    value = nfkc(value)
    plain = value.strip().lower()
    if _PLAIN_EMAIL.match(plain) and plain.rsplit(".", 1)[1] not in _SPECIAL_USE_TLDS:
        return plain
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as e:
        raise InvalidIdentifier(str(e)) from None
    return result.normalized.lower()


def normalize_phone(value: str, region: str) -> str:
    try:
        number = phonenumbers.parse(nfkc(value), region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentifier("Not a phone number.") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentifier(
            f"Not a valid phone number (numbers without a country code are read as {region})."
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_card(value: str) -> str:
    card = re.sub(r"[\s-]", "", nfkc(value)).upper()
    if not _CARD.match(card):
        raise InvalidIdentifier("A card number is 4 to 32 letters or digits.")
    return card


def normalize_external(value: str) -> str:
    value = nfkc(value).strip()
    if not _EXTERNAL.match(value):
        raise InvalidIdentifier("An external id is 1 to 64 printable characters, no spaces.")
    return value


def normalize(kind: str, value: str, region: str = "US") -> str:
    """Normalise ``value`` as an identifier of ``kind``; raise InvalidIdentifier."""
    if kind == "email":
        return normalize_email(value)
    if kind == "phone":
        return normalize_phone(value, region)
    if kind == "card":
        return normalize_card(value)
    if kind in ("shop", "pos"):
        return normalize_external(value)
    raise InvalidIdentifier(f"Unknown identifier kind {kind!r}.")


@lru_cache(maxsize=4096)
def _look_alike(char: str) -> tuple[str, str] | None:
    """The Latin letter or common sign that ``char`` can be taken for, and ``char``'s
    Unicode name, from Unicode's confusables table; None if it looks like none."""
    found = confusables.is_confusable(char, preferred_aliases=["latin", "common"])
    for homoglyph in found or ():
        for candidate in homoglyph["homoglyphs"]:
            if candidate["c"].isascii():
                return candidate["c"].lower(), unicodedata.name(char, f"U+{ord(char):04X}")
    return None


def skeleton(value: str) -> str:
    """``value`` (already normalised) with each look-alike of a Latin letter written as
    that letter: two values with the same skeleton look the same to a person."""
    if value.isascii():
        return value
    return "".join(alike[0] if (alike := _look_alike(c)) else c for c in value)


def look_alikes(value: str) -> list[str]:
    """The names of the characters of ``value`` that only look like Latin letters."""
    return sorted({alike[1] for c in set(value) if not c.isascii()
                   and (alike := _look_alike(c))})


# Values many people share or that tills type when the customer gives none. They are
# never stored as identifiers, so they never match two people together. Add more with
# BLOCKED_IDENTIFIERS ("email:shop@example.com,phone:+15550000000"); stores' own phones
# are blocked too.
_JUNK_EMAIL_LOCAL = re.compile(
    r"^(no-?e?mail|none|null|nil|test|anonymous|unknown|n/?a|x+|a+|customer|kunde|client)\Z")
_JUNK_EMAILS = {"test@test.com", "a@a.com", "noemail@noemail.com", "none@none.com",
                "no@email.com", "email@email.com"}


def _junk_digits(digits: str) -> bool:
    return len(set(digits)) == 1 or digits in "01234567890" or digits in "98765432109"


def is_blocked(kind: str, value: str, extra: frozenset[str] = frozenset()) -> bool:
    """Whether a normalised identifier is a placeholder that must never match."""
    if f"{kind}:{value}" in extra:
        return True
    if kind == "email":
        local = value.split("@", 1)[0]
        return value in _JUNK_EMAILS or bool(_JUNK_EMAIL_LOCAL.match(local))
    if kind == "phone":  # a cheap look at the last digits, then the national number
        return _junk_digits(value[-7:]) and _junk_digits(
            str(phonenumbers.parse(value).national_number))
    if kind == "card":
        return _junk_digits(value)
    return False
