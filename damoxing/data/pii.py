"""Redact personal data: each match is replaced by a typed placeholder such as `[EMAIL]`.

Types: EMAIL, PHONE (international `+CC ...`, `(415) 555-2671`, Chinese mobile 1[3-9]x xxxx xxxx),
ID (Chinese resident ID: 18 digits, a real date, a valid ISO 7064 check digit), CARD (13-19 digit
payment card passing the Luhn check), IP (IPv4, IPv6). Numbers that look similar but fail the date,
range or checksum test are left alone. All patterns are ASCII (`re.ASCII`), so a match may sit right
next to Chinese characters, as in `电话13812345678。`.
"""
from __future__ import annotations

import datetime
import ipaddress
import re
from collections import Counter
from collections.abc import Callable

PLACEHOLDERS = {"EMAIL": "[EMAIL]", "PHONE": "[PHONE]", "ID": "[ID]", "CARD": "[CARD]", "IP": "[IP]"}

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![\w@])", re.ASCII)
_PHONE_INTL = re.compile(r"(?<![\w+])\+[1-9][0-9]{0,2}(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,6}(?![\w])", re.ASCII)
_PHONE_NANP = re.compile(r"(?<![\w(])\([2-9][0-9]{2}\)[ ]?[2-9][0-9]{2}[ .-][0-9]{4}(?![\w])", re.ASCII)
_PHONE_CN = re.compile(r"(?<![\w+])1[3-9][0-9](?:[0-9]{8}|-[0-9]{4}-[0-9]{4}| [0-9]{4} [0-9]{4})(?![\w])", re.ASCII)
_CN_ID = re.compile(r"(?<![\w])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}[01][0-9][0-3][0-9][0-9]{3}[0-9Xx](?![\w])", re.ASCII)
_CARD = re.compile(
    r"(?<![\w-])(?:[0-9]{4}(?P<s>[ -])[0-9]{4}(?P=s)[0-9]{4}(?P=s)[0-9]{4}(?:(?P=s)[0-9]{1,3})?"
    r"|[0-9]{4}(?P<a>[ -])[0-9]{6}(?P=a)[0-9]{4,5}"
    r"|[0-9]{13,19})(?![\w-])", re.ASCII)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.[0-9])", re.ASCII)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![\w:])", re.ASCII)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum used by payment cards."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def cn_id_valid(number: str) -> bool:
    """A Chinese resident ID: 18 characters, a real birth date, and the ISO 7064 MOD 11-2 check digit."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    check = "10X98765432"[sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS)) % 11]
    return number[17].upper() == check


def _digits(text: str) -> str:
    return re.sub(r"[^0-9]", "", text)


def _ipv6_valid(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return any(c.isdigit() for c in text) and text.count(":") >= 2


# (type, pattern, check on the matched text); earlier entries win when two matches overlap equally.
_DETECTORS: list[tuple[str, re.Pattern, Callable[[str], bool]]] = [
    ("EMAIL", _EMAIL, lambda s: True),
    ("ID", _CN_ID, cn_id_valid),
    ("CARD", _CARD, lambda s: 13 <= len(_digits(s)) <= 19 and luhn_valid(_digits(s))),
    ("IP", _IPV6, _ipv6_valid),
    ("IP", _IPV4, lambda s: True),
    ("PHONE", _PHONE_INTL, lambda s: 8 <= len(_digits(s)) <= 15),
    ("PHONE", _PHONE_NANP, lambda s: True),
    ("PHONE", _PHONE_CN, lambda s: True),
]


def find_pii(text: str) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, type) spans, in order. Longer matches win; ties go to the stronger type."""
    found = []
    for rank, (kind, pattern, check) in enumerate(_DETECTORS):
        for m in pattern.finditer(text):
            if check(m.group()):
                found.append((m.start(), m.end(), rank, kind))
    found.sort(key=lambda f: (-(f[1] - f[0]), f[2], f[0]))
    chosen: list[tuple[int, int, str]] = []
    for start, end, _, kind in found:
        if all(end <= s or start >= e for s, e, _ in chosen):
            chosen.append((start, end, kind))
    return sorted(chosen)


def redact_pii(text: str, counts: Counter | None = None) -> str:
    """Replace personal data by typed placeholders; if given, `counts[type]` is increased per redaction."""
    spans = find_pii(text)
    if not spans:
        return text
    parts, last = [], 0
    for start, end, kind in spans:
        parts += [text[last:start], PLACEHOLDERS[kind]]
        last = end
        if counts is not None:
            counts[kind] += 1
    parts.append(text[last:])
    return "".join(parts)
