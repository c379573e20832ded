"""The fields of POST /transactions: parsed here, described by openapi.py."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AMOUNT_MAX_LENGTH",
    "FieldError",
    "amount_pattern",
    "parse_amount",
    "parse_currency",
    "parse_idempotency_key",
]

# Longest digit string read as an amount: far past any MAX_AMOUNT (at most
# 10**15), and short enough that int() never works on a huge number.
AMOUNT_MAX_LENGTH = 18
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class FieldError(Exception):
    """A 422: ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_amount(value: Any, maximum: int) -> int:
    """A positive integer: a JSON number, or a string of ASCII digits.

    HTTPie's JSON mode sends ``amount=2000`` as the string "2000", and a form
    always does; booleans, decimals, exponents and NaN are refused.
    """
    if _blank(value):
        raise FieldError("amount", "Amount is blank")
    if type(value) is int:
        amount = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > AMOUNT_MAX_LENGTH:
            raise FieldError("amount", f"Amount must be at most {maximum}")
        amount = int(value)
    else:
        raise FieldError("amount", "Amount must be a whole number of minor units, e.g. 2000")
    if amount < 1:
        raise FieldError("amount", "Amount must be at least 1")
    if amount > maximum:
        raise FieldError("amount", f"Amount must be at most {maximum}")
    return amount


def parse_currency(value: Any) -> str:
    """Three upper-case ASCII letters, as the originals' ``^[A-Z]{3}$``."""
    if _blank(value):
        raise FieldError("currency", "Currency is blank")
    if not (isinstance(value, str) and len(value) == 3 and _UPPER.issuperset(value)):
        raise FieldError("currency", "Currency must be three upper-case letters, e.g. GBP")
    return value


def parse_idempotency_key(value: str | None) -> str | None:
    """None when absent; 1 to 200 visible ASCII characters otherwise."""
    if value is None:
        return None
    if not 1 <= len(value) <= 200 or not all("!" <= c <= "~" for c in value):
        raise FieldError(
            "Idempotency-Key",
            "Idempotency-Key must be 1 to 200 visible ASCII characters",
        )
    return value


def amount_pattern(maximum: int) -> str:
    """A regular expression for the digit strings from 1 to ``maximum``.

    Leading zeros are allowed, as parse_amount reads them; together with
    ``maxLength: AMOUNT_MAX_LENGTH`` it describes exactly the strings
    parse_amount accepts, which a plain digit count cannot (with a maximum
    of 100000000, "999999999" has nine digits and is still refused).
    """
    digits = str(maximum)
    # Numbers with fewer digits than the maximum, then, for each position,
    # those that share the maximum's leading digits and have a smaller one there.
    choices = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    for index, digit in enumerate(digits):
        lowest = 0 if index else 1
        if int(digit) > lowest:
            smaller = f"[{lowest}-{int(digit) - 1}]" if int(digit) - 1 > lowest else str(lowest)
            rest = len(digits) - index - 1
            choices.append(digits[:index] + smaller + (f"[0-9]{{{rest}}}" if rest else ""))
    choices.append(digits)
    return f"^0*(?:{'|'.join(choices)})$"
