"""Phone numbers in E.164: the dialer's leads and DNC lists, and the customer's number of every
call from or to a trunk (CDRs, webhooks, CRMs). One parser (``phonenumbers``) for all of them."""

from __future__ import annotations

import functools

import phonenumbers


class NumberError(ValueError):
    """A number that cannot be dialled, with why."""


def e164(raw: str, region: str | None = None) -> str:
    """The number in E.164 (``+74951234567``), from any way people write it; NumberError if
    it cannot be a number (``region``: the country of numbers written without a prefix)."""
    text = raw.strip()
    if not text:
        raise NumberError("no number")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise NumberError(f"not a phone number: {text!r} ({exc})") from None
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise NumberError(f"not a valid number: {text!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=64)
def region_of_country_code(country_code: str | None) -> str | None:
    """``"7"`` → ``"RU"`` (the main region of a calling code); None when there is none."""
    if not country_code or not country_code.lstrip("+").isdigit():
        return None
    region = phonenumbers.region_code_for_country_code(int(country_code.lstrip("+")))
    return None if region == "ZZ" else region


@functools.lru_cache(maxsize=4096)
def customer_e164(raw: str, country_code: str | None) -> str:
    """A trunk call's customer number in E.164, or "" when it is not a valid number (an anonymous
    caller, a short code). ``country_code``: the trunk's, for numbers in national form (8916…);
    without one only international forms (+7916…, 007916…) are understood."""
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    region = region_of_country_code(country_code)
    if region is None and not text.startswith("+"):
        return ""
    try:
        return e164(text, region)
    except NumberError:
        return ""


__all__ = ["NumberError", "customer_e164", "e164", "region_of_country_code"]
