"""Redact personal data: each match is replaced by a typed placeholder such as `[EMAIL]`.

Types: EMAIL (ASCII or internationalised: `josé@bücher.de`, `张三@例子.中国`), PHONE (international
`+CC ...`; North American `(415) 555-2671`, `415-555-2671`, `1.415.555.2671`; Chinese mobile 1[3-9]x xxxx xxxx,
run together or grouped by spaces, dots or dashes), ID (Chinese resident ID: 18 characters, a real date, a valid
ISO 7064 check digit; run together or grouped 6-8-4 or 6-4-4-4), CARD (13-19 digit payment card passing the Luhn
check; run together or grouped by spaces, dots or dashes), IP (IPv4, IPv6). Numbers that look similar but fail the
date, range or checksum test are left alone.

Matching runs on a folded copy of the text, one character for one character, except that invisible
characters are dropped:

- default-ignorable code points (zero-width spaces and joiners, variation selectors, U+034F, Hangul fillers,
  Mongolian selectors, bidi controls, tags, ...) and the Braille blank U+2800 are dropped, so they cannot split
  a number or an address;
- a digit of any script (Arabic-Indic, Devanagari, full-width, mathematical bold, circled, ...) becomes its
  ASCII digit (`unicodedata.digit`);
- hyphens and dashes (U+2010-U+2013, U+2212, ...) become `-`; the ideographic and full-width full stops become `.`; any
  space separator becomes a space;
- any other character whose NFKC form is one ASCII character becomes it (full-width letters, `＠`, bold letters);
- Cyrillic and Greek letters drawn like Latin letters become them (`_CONFUSABLES`).

The spans found there are mapped back and replaced in the original text, so text without personal data comes
back unchanged, byte for byte (ZWJ emoji, ZWNJ in Persian, Arabic-Indic numbers and all). Every pattern only
starts at the beginning of a run of the characters it consumes and never backtracks more than a bounded number of
characters per start, so matching is linear in the length of the text.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import unicodedata
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable

PLACEHOLDERS = {"EMAIL": "[EMAIL]", "PHONE": "[PHONE]", "ID": "[ID]", "CARD": "[CARD]", "IP": "[IP]"}

# Default_Ignorable_Code_Point, from Unicode's DerivedCoreProperties.txt (unchanged from Unicode 9 to 15.1).
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
BRAILLE_BLANK = "\u2800"
# What the folded copy drops: the default-ignorable code points and the Braille blank, which renders as nothing
# or as a blank but is a symbol, not a space, to Unicode.
INVISIBLE = re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in _DEFAULT_IGNORABLE) + BRAILLE_BLANK + "]")

# Hyphens, figure and en dashes, minus signs. Em dashes and bars stay: "——" is Chinese punctuation, which may
# sit right before a number.
_DASHES = "\u2010\u2011\u2012\u2013\u2212\ufe63\uff0d"
_FULL_STOPS = "\u3002\uff0e\uff61\u2024\ufe52"  # 。 ． ｡ ․ ﹒
# Cyrillic and Greek letters and the Latin letter each is drawn like, from Unicode's confusables.txt
# (https://www.unicode.org/Public/security/latest/confusables.txt, the "MA" entries whose target is one Latin
# letter; the capital I look-alikes, whose skeleton there is `l`, map to `I`). Letters that look like digits
# (З, б) are left out: folding them would turn words into numbers.
_CONFUSABLES = {
    # Cyrillic small: а е о р с у х ѕ і ј ԁ ԛ ԝ һ ү ѵ
    "\u0430": "a",
    "\u0435": "e",
    "\u043e": "o",
    "\u0440": "p",
    "\u0441": "c",
    "\u0443": "y",
    "\u0445": "x",
    "\u0455": "s",
    "\u0456": "i",
    "\u0458": "j",
    "\u0501": "d",
    "\u051b": "q",
    "\u051d": "w",
    "\u04bb": "h",
    "\u04af": "y",
    "\u0475": "v",
    # Cyrillic capital: А В Е К М Н О Р С Т У Х Ѕ І Ј Ү Ԝ
    "\u0410": "A",
    "\u0412": "B",
    "\u0415": "E",
    "\u041a": "K",
    "\u041c": "M",
    "\u041d": "H",
    "\u041e": "O",
    "\u0420": "P",
    "\u0421": "C",
    "\u0422": "T",
    "\u0423": "Y",
    "\u0425": "X",
    "\u0405": "S",
    "\u0406": "I",
    "\u0408": "J",
    "\u04ae": "Y",
    "\u051c": "W",
    # Greek capital: Α Β Ε Ζ Η Ι Κ Μ Ν Ο Ρ Τ Υ Χ
    "\u0391": "A",
    "\u0392": "B",
    "\u0395": "E",
    "\u0396": "Z",
    "\u0397": "H",
    "\u0399": "I",
    "\u039a": "K",
    "\u039c": "M",
    "\u039d": "N",
    "\u039f": "O",
    "\u03a1": "P",
    "\u03a4": "T",
    "\u03a5": "Y",
    "\u03a7": "X",
    # Greek small: α ι ν ο ρ υ
    "\u03b1": "a",
    "\u03b9": "i",
    "\u03bd": "v",
    "\u03bf": "o",
    "\u03c1": "p",
    "\u03c5": "u",
}


def _fold_char(char: str) -> str | None:
    """The character's stand-in in the matching copy; None drops it."""
    if char.isascii():
        return char
    if INVISIBLE.match(char):
        return None
    digit = unicodedata.digit(char, None)
    if digit is not None:
        return str(digit)
    if char in _DASHES:
        return "-"
    if char in _FULL_STOPS:
        return "."
    if char in _CONFUSABLES:
        return _CONFUSABLES[char]
    if unicodedata.category(char) == "Zs":
        return " "
    compat = unicodedata.normalize("NFKC", char)
    return compat if len(compat) == 1 and compat.isascii() else char


class _FoldTable(dict):
    """A `str.translate` table filled on first use of each code point."""

    def __missing__(self, code: int) -> str | None:
        self[code] = _fold_char(chr(code))
        return self[code]


_FOLD_TABLE = _FoldTable()


def fold_text(text: str) -> tuple[str, list[int]]:
    """The matching copy of `text` (see the module docstring) and the sorted indices of the characters it dropped.

    Every character not dropped becomes exactly one character, so folded index `i` is original index
    `i + (number of dropped indices at or before it)`.
    """
    if text.isascii():
        return text, []
    folded = text.translate(_FOLD_TABLE)
    dropped = [m.start() for m in INVISIBLE.finditer(text)]
    return folded, dropped


# Letters of Han, kana and bopomofo: scripts written without spaces, where the start of a word cannot be seen.
_HAN = (
    "\u3005-\u3007\u3021-\u3029\u3031-\u3035\u3038-\u303c\u3040-\u30fa\u30fc-\u30ff\u3100-\u312f"
    "\u31a0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
)


def _mark_ranges() -> str:
    """A character-class body of the combining marks in the Basic Multilingual Plane (Python's `\\w` leaves them
    out, so without them an address in Devanagari or Thai would break at every vowel sign)."""
    marks = [c for c in range(0x300, 0x10000) if unicodedata.category(chr(c))[0] == "M"]
    ranges, start = [], marks[0]
    for prev, code in zip(marks, marks[1:] + [-1]):
        if code != prev + 1:
            ranges.append(f"\\u{start:04x}-\\u{prev:04x}")
            start = code
    return "".join(ranges)


_MARKS = _mark_ranges()
_WORD = rf"(?:[^\W_{_HAN}]|[{_MARKS}])"  # a letter, digit or mark of a script written with spaces
# Chinese top-level domains (IANA root zone); any other top-level domain is a run of letters.
_HAN_TLDS = (
    "中文网",
    "我爱你",
    "新加坡",
    "中国",
    "中國",
    "公司",
    "网络",
    "網絡",
    "香港",
    "台湾",
    "台灣",
    "澳門",
    "集团",
    "在线",
    "商城",
    "网址",
    "网店",
    "网站",
    "信息",
    "移动",
    "手机",
    "游戏",
    "商标",
    "企业",
    "娱乐",
    "购物",
    "广东",
    "佛山",
    "时尚",
    "政务",
    "公益",
    "健康",
    "招聘",
)
# The local part is a run of letters and digits of a spaced script, which may sit right after a Chinese word and
# may be wrapped in underscores; or a run of Han characters, which extends back to the previous space or
# punctuation (`请联系张三@例子.中国` is redacted whole: where the name starts cannot be seen).
_LOCAL_SPACED = rf"(?<!{_WORD}|[_.%+-])_*(?P<spaced>{_WORD}(?:{_WORD}|[._%+-])*)"
_LOCAL_HAN = rf"(?<![{_HAN}0-9._%+-])(?P<han>[{_HAN}][{_HAN}0-9._%+-]*)"
_LABEL = rf"(?:{_WORD}(?:{_WORD}|-)*|[{_HAN}]+)"
_TLD = rf"(?:xn--[A-Za-z0-9-]+|(?:[^\W\d_{_HAN}]|[{_MARKS}]){{2,63}}|{'|'.join(_HAN_TLDS)})"
_EMAIL = re.compile(rf"(?:{_LOCAL_SPACED}|{_LOCAL_HAN})@(?:{_LABEL}\.)+{_TLD}(?!{_WORD}|[@-])")
_PHONE_INTL = re.compile(r"(?<![\w+])\+[1-9][0-9]*(?:[ .-]?\([0-9]{1,4}\)[ .-]?[0-9]+|[ .-][0-9]+)*(?![\w])", re.ASCII)
_PHONE_NANP = re.compile(r"(?<![\w(])\([2-9][0-9]{2}\)[ ]?[2-9][0-9]{2}[ .-][0-9]{4}(?![\w])", re.ASCII)
_PHONE_NANP_PLAIN = re.compile(
    r"(?<![\w.-])(?:1[ .-])?[2-9][0-9]{2}(?P<n>[.-])[2-9][0-9]{2}(?P=n)[0-9]{4}(?![\w]|[.-][0-9])", re.ASCII
)
_PHONE_CN = re.compile(
    r"(?<![\w+])1[3-9][0-9](?:[0-9]{8}|(?P<c>[ .-])[0-9]{4}(?P=c)[0-9]{4})(?![\w]|[.-][0-9])", re.ASCII
)
_CN_ID = re.compile(
    r"(?<![\w])[1-9][0-9]{5}(?:(?:18|19|20)[0-9]{2}[01][0-9][0-3][0-9][0-9]{3}"
    r"|(?P<i>[ -])(?:18|19|20)[0-9]{2}(?P=i)?[01][0-9][0-3][0-9](?P=i)[0-9]{3})[0-9Xx](?![\w]|-[0-9])",
    re.ASCII,
)
_CARD = re.compile(
    r"(?<![\w-])(?<![0-9]\.)(?:[0-9]{4}(?P<s>[ .-])[0-9]{4}(?P=s)[0-9]{4}(?P=s)[0-9]{4}(?:(?P=s)[0-9]{1,3})?"
    r"|[0-9]{4}(?P<a>[ .-])[0-9]{6}(?P=a)[0-9]{4,5}"
    r"|[0-9]{13,19})(?![\w-]|\.[0-9])",
    re.ASCII,
)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.[0-9])", re.ASCII)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![\w:])", re.ASCII
)

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
    ("ID", _CN_ID, lambda s: cn_id_valid(s.replace(" ", "").replace("-", ""))),
    ("CARD", _CARD, lambda s: 13 <= len(_digits(s)) <= 19 and luhn_valid(_digits(s))),
    ("IP", _IPV6, _ipv6_valid),
    ("IP", _IPV4, lambda s: True),
    ("PHONE", _PHONE_INTL, lambda s: 8 <= len(_digits(s)) <= 15),
    ("PHONE", _PHONE_NANP, lambda s: True),
    ("PHONE", _PHONE_NANP_PLAIN, lambda s: True),
    ("PHONE", _PHONE_CN, lambda s: True),
]


def _span(match: re.Match) -> tuple[int, int]:
    """The matched span; for an e-mail address without the underscores that may wrap its local part."""
    if match.re is _EMAIL:
        return match.start("spaced") if match.group("spaced") is not None else match.start("han"), match.end()
    return match.span()


def find_pii(text: str) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, type) spans of `text`, in order. Longer matches win; ties go to the stronger type.

    Matching runs on `fold_text(text)`; the spans are in the original text.
    """
    folded, dropped = fold_text(text)
    found = []
    for rank, (kind, pattern, check) in enumerate(_DETECTORS):
        for m in pattern.finditer(folded):
            start, end = _span(m)
            if check(folded[start:end]):
                found.append((start, end, rank, kind))
    found.sort(key=lambda f: (-(f[1] - f[0]), f[2], f[0]))
    taken = bytearray(len(folded))
    chosen: list[tuple[int, int, str]] = []
    for start, end, _, kind in found:
        if taken.find(1, start, end) == -1:
            taken[start:end] = b"\x01" * (end - start)
            chosen.append((start, end, kind))
    # Folded index i is original index i + (dropped indices at or before it); `shifted` counts those by bisection.
    shifted = [index - n for n, index in enumerate(dropped)]
    return sorted(
        (start + bisect_right(shifted, start), end - 1 + bisect_right(shifted, end - 1) + 1, kind)
        for start, end, kind in chosen
    )


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
