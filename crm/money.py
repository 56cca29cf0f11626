"""Money: integer minor units plus an ISO 4217 currency; decimal strings at the API edge.
Floats never take part."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from babel.numbers import get_currency_precision

from crm.errors import Invalid

MAX_MINOR = 10**12  # no single amount above this (10 billion units of a 2-decimal currency)
AMOUNT = re.compile(r"^[0-9]{1,13}(\.[0-9]{1,4})?\Z")  # ASCII digits only


class InvalidAmount(ValueError):
    pass


def exponent(currency: str) -> int:
    """Digits after the decimal point: 2 for EUR, 0 for JPY, 3 for KWD."""
    return get_currency_precision(currency)


def to_minor(amount: str, currency: str) -> int:
    """ "12.30" EUR -> 1230. More decimals than the currency has is an error."""
    if not isinstance(amount, str) or not AMOUNT.match(amount):
        raise InvalidAmount("An amount is a decimal string such as \"12.30\".")
    places = exponent(currency)
    _, _, fraction = amount.partition(".")
    if len(fraction.rstrip("0")) > places:
        raise InvalidAmount(f"{currency} amounts have at most {places} decimals.")
    minor = int(Decimal(amount).scaleb(places))
    if minor > MAX_MINOR:
        raise InvalidAmount("That amount is larger than any this service takes.")
    return minor


def to_signed_minor(amount: str, currency: str) -> int:
    """ "-2.50" EUR -> -250; otherwise as ``to_minor``."""
    if isinstance(amount, str) and amount.startswith("-"):
        return -to_minor(amount[1:], currency)
    return to_minor(amount, currency)


def to_amount(minor: int, currency: str) -> str:
    """1230 EUR -> "12.30"."""
    places = exponent(currency)
    return f"{Decimal(minor).scaleb(-places):.{places}f}"


def amounts_to_minor(data: dict[str, Any], currency: str, *names: str) -> dict[str, Any]:
    """A copy of ``data`` with the named decimal-string amounts in minor units; an
    Invalid error names every bad one."""

    data = dict(data)
    errors = {}
    for name in names:
        if data.get(name) is not None:
            try:
                data[name] = to_minor(data[name], currency)
            except InvalidAmount as e:
                errors[name] = [str(e)]
    if errors:
        raise Invalid("Some amounts are not valid: see errors.", errors=errors)
    return data
