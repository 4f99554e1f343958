"""PII redaction: a table of real-looking positives and look-alike negatives, English and Chinese,
then the classes that used to leak: other separators, other scripts' digits, look-alike letters, invisible
characters."""

import time
from collections import Counter

import pytest

from damoxing.data.pii import cn_id_valid, find_pii, fold_text, luhn_valid, redact_pii

POSITIVES = [
    # e-mail
    ("Write to alice@example.com today.", "Write to [EMAIL] today."),
    ("Contact: john.smith+news@mail.co.uk", "Contact: [EMAIL]"),
    ("<a.b_c-d@sub.domain.org>", "<[EMAIL]>"),
    ("邮箱：zhangsan@163.com，欢迎来信", "邮箱：[EMAIL]，欢迎来信"),
    ("请联系wang.wei@qq.com。", "请联系[EMAIL]。"),
    # phones: international, North American, Chinese mobile
    ("Call +1 (415) 555-2671 now", "Call [PHONE] now"),
    ("UK office: +44 20 7946 0958.", "UK office: [PHONE]."),
    ("Tel +49-30-1234567", "Tel [PHONE]"),
    ("Phone (212) 555-0199 please", "Phone [PHONE] please"),
    ("手机：+86 138 0013 8000", "手机：[PHONE]"),
    ("我的手机号是13800138000，请回电", "我的手机号是[PHONE]，请回电"),
    ("电话 139-1234-5678 找李先生", "电话 [PHONE] 找李先生"),
    ("call 186 1234 5678 tonight", "call [PHONE] tonight"),
    ("联系方式15912345678", "联系方式[PHONE]"),
    ("+8613912345678", "[PHONE]"),
    # Chinese resident ID numbers (valid date and check digit)
    ("身份证号11010519491231002X", "身份证号[ID]"),
    ("ID 440304199001011233 on file", "ID [ID] on file"),
    ("身份证：310115198512034562。", "身份证：[ID]。"),
    ("证件号码510108199207153213", "证件号码[ID]"),
    ("leap day 11010120000229000x ok", "leap day [ID] ok"),
    # payment cards (Luhn-valid)
    ("Visa 4111111111111111 expires", "Visa [CARD] expires"),
    ("card: 5555 5555 5555 4444", "card: [CARD]"),
    ("Amex 3782 822463 10005.", "Amex [CARD]."),
    ("Discover 6011-1111-1111-1117", "Discover [CARD]"),
    ("银行卡号6200000000000005，请核对", "银行卡号[CARD]，请核对"),
    ("JCB 3530111333300000", "JCB [CARD]"),
    # IP addresses
    ("server at 192.168.1.1.", "server at [IP]."),
    ("from 8.8.8.8 and 255.255.255.0", "from [IP] and [IP]"),
    ("服务器地址10.0.0.254访问", "服务器地址[IP]访问"),
    ("IPv6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 here", "IPv6 [IP] here"),
    ("loopback ::1 and fe80::1ff:fe23:4567:890a", "loopback [IP] and [IP]"),
    ("mapped ::ffff:192.0.2.128 address", "mapped [IP] address"),
    ("prefix 2001:db8::", "prefix [IP]"),
    # several in one line
    ("Mail bob@corp.com or call +1 (415) 555-2671 from 10.1.2.3", "Mail [EMAIL] or call [PHONE] from [IP]"),
    # North American numbers with dashes or dots and no brackets
    ("Call 415-555-2671 today", "Call [PHONE] today"),
    ("Call 415.555.2671 today", "Call [PHONE] today"),
    ("toll free 1-800-555-0199.", "toll free [PHONE]."),
    ("dial 1.212.555.0147 now", "dial [PHONE] now"),
    # Chinese mobile numbers with dots or Unicode dashes (U+2011 non-breaking hyphen, U+2013 en dash)
    ("手机138.0013.8000请回电", "手机[PHONE]请回电"),
    ("电话 139\u20111234\u20115678", "电话 [PHONE]"),
    ("mobile 186\u20131234\u20135678 ok", "mobile [PHONE] ok"),
    ("+86 138\u20130013\u20138000", "[PHONE]"),
    # Chinese ID numbers in groups (6-8-4, 6-4-4-4; spaces or dashes)
    ("身份证号 110105 19491231 002X。", "身份证号 [ID]。"),
    ("ID 440304 1990 0101 1233 on file", "ID [ID] on file"),
    ("证件 510108-19920715-3213", "证件 [ID]"),
    ("身份证：310115\u00a019851203\u00a04562", "身份证：[ID]"),
    # cards grouped with dots
    ("Visa 4111.1111.1111.1111 expires", "Visa [CARD] expires"),
    ("Amex 3782.822463.10005", "Amex [CARD]"),
    ("卡号5555.5555.5555.4444。", "卡号[CARD]。"),
    # IPv4 with the ideographic or full-width full stop
    ("服务器192。168。1。1访问", "服务器[IP]访问"),
    ("地址10．0．0．254", "地址[IP]"),
    ("host 8。8。8。8.", "host [IP]."),
    # digits of other scripts: Arabic-Indic, Extended Arabic-Indic (Persian), Devanagari, mathematical bold
    ("رقم الهاتف ١٣٨٠٠١٣٨٠٠٠", "رقم الهاتف [PHONE]"),
    ("شماره ۱۳۸۰۰۱۳۸۰۰۰ است", "شماره [PHONE] است"),
    ("फ़ोन १३९१२३४५६७८ पर", "फ़ोन [PHONE] पर"),
    ("بطاقة ٤١١١١١١١١١١١١١١١", "بطاقة [CARD]"),
    ("IP ١٩٢.١٦٨.١.١", "IP [IP]"),
    ("+٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨", "[PHONE]"),
    ("tel 𝟏𝟑𝟖𝟎𝟎𝟏𝟑𝟖𝟎𝟎𝟎", "tel [PHONE]"),
    # e-mail wrapped in underscores, with Cyrillic or Greek look-alike letters, internationalised
    ("mail _alice@example.com_ now", "mail _[EMAIL]_ now"),
    ("bold __bob@corp.com__", "bold __[EMAIL]__"),
    ("write to \u0430lice@ex\u0430mple.com", "write to [EMAIL]"),
    ("\u0408\u041e\u041dN@\u0415\u0425\u0410\u041c\u0420L\u0415.\u0421\u041e\u041c", "[EMAIL]"),
    ("j\u03bfhn@ex\u03b1mple.org", "[EMAIL]"),
    ("邮箱：张三@例子.中国，欢迎", "邮箱：[EMAIL]，欢迎"),
    ("联系 王伟@公司.中国。", "联系 [EMAIL]。"),
    ("請寫信給 李四@example.com", "請寫信給 [EMAIL]"),
    ("zhangsan@163.com欢迎来信", "[EMAIL]欢迎来信"),
    ("Пишите: иван@почта.рф", "Пишите: [EMAIL]"),
    ("müller@bücher.de schreiben", "[EMAIL] schreiben"),
    ("punycode user@xn--fsqu00a.xn--fiqs8s ok", "punycode [EMAIL] ok"),
    ("mail संपर्क@उदाहरण.भारत now", "mail [EMAIL] now"),  # vowel signs are marks, not \w
    ("تواصل: محمد@مثال.مصر", "تواصل: [EMAIL]"),
    # invisible characters inside: redacted with the match; at its edges: left in place
    ("电话139\u034f1234\u034f5678", "电话[PHONE]"),
    ("phone 1380013\u31648000", "phone [PHONE]"),
    ("call 138\ufe0f0013\ufe0f8000", "call [PHONE]"),
    ("call 138\u28000013\u28008000", "call [PHONE]"),
    ("card 4111 1111\u180b 1111 1111", "card [CARD]"),
    ("a\u2800lice@exa\u00admple.com", "[EMAIL]"),
    ("电话\u200b13800138000\u200b。", "电话\u200b[PHONE]\u200b。"),
]

NEGATIVES = [
    # e-mail look-alikes
    "Follow @example on social media",
    "user@localhost is not routable",
    "the price is 5@10 dollars",
    "name@domain (no top-level domain)",
    "邮件地址写成 zhang at 163 dot com",
    # phone look-alikes
    "+5 points for effort",
    "The year +2023 was good",
    "order 12345678901 shipped",  # 11 digits but not a mobile prefix
    "号码1380013800少一位",  # 10 digits
    "编号138001380001多一位",  # 12 digits
    "score 1-0 and 2-1",
    "ISBN 978-7-111-54742-6",
    "pages 120-135, 2019-2021",
    # ID look-alikes (bad check digit or impossible date)
    "身份证号110105194912310021",  # wrong check digit
    "ID 440304199013011233 on file",  # month 13
    "编号110101200102290008",  # 2001-02-29 does not exist
    "serial 123456789012345678",
    # card look-alikes (fail Luhn)
    "Visa 4111111111111112 expires",
    "card: 5555 5555 5555 4445",
    "tracking 1234567890123456",
    "订单号6222020200112233445",
    "account 1234 5678 9012 3456",
    "timestamp 1699999999999",
    # IP look-alikes
    "version 1.2.3 released",
    "version 1.2.3.4.5 released",
    "999.1.1.1 is not an address",
    "256.256.256.256",
    "meeting at 12:30:45",
    "std::vector<int> and Foo::Bar",
    "ratio 3:4:5 holds",
    "section 1.2.3.a of the contract",
    "温度是36.5度，时间是10:30",
    "价格￥1,234.56元",
    "版本号v2.0.1已发布",
    # North American look-alikes: exchange starting with 1, SSN shape, too many digits, longer chains
    "part 212-155-0199 in stock",
    "SSN-like 123-45-6789",
    "ticket 415-555-26710",
    "range 800-555-0199-3",
    "ISBN 0-306-40615-2",
    # Chinese mobile look-alikes with dots and Unicode dashes
    "138.0013.80001",
    "版本 10.1234.5678",
    "128-1234-5678",
    "138\u20130013\u2013800",
    "ISBN 978\u20117\u2011111\u201154742\u20116",
    # grouped ID look-alikes: bad check digit, month 13, mixed separators
    "身份证号 110105 19491231 0021",
    "440304 19901301 1233",
    "110105 19491231-002X",
    # dotted card look-alikes (fail Luhn)
    "5555.5555.5555.4445",
    "ref 1234.5678.9012.3456",
    # ideographic full stops that are not addresses
    "版本1。2。3发布",
    "256。1。1。1",
    "第1。2。3。4。5条",
    # other scripts' numbers that are not personal data: years, counts, times, a card failing Luhn, dates
    "سنة ٢٠٢٣",
    "संख्या १२३४५",
    "٤١١١١١١١١١١١١١١٢",
    "٣:٤٥ مساءً",
    "१२:३० बजे",
    "می\u200cخواهم ۱۴۰۲",
    "تاريخ ٢٠٢٤-٠٥-٠٦",
    # e-mail look-alikes: no top-level domain, mentions, decorators
    "user＠localhost",
    "张三@例子",
    "Иван@почта",
    "@用户 你好",
    "转发@张三:好",
    "snake_case@decorator",
    "नमस्ते@दुनिया",
    # legitimate invisible characters and look-alikes with Unicode punctuation
    "\U0001f469\u200d\U0001f4bb coder since 2019",
    "\U0001f3f3\ufe0f\u200d\U0001f308 v2.0.1",
    "\u2764\ufe0f 1.2.3",
    "1\ufe0f\u20e32\ufe0f\u20e3",
    "12\u200d34",
    "会议 10:30\u200b开始",
    "the 2019\u20132021 season",
    "pages 120\u2013135",
    "价格１２３４．５６元",
]


@pytest.mark.parametrize("text, expected", POSITIVES)
def test_positive_is_redacted(text, expected):
    assert redact_pii(text) == expected


@pytest.mark.parametrize("text", NEGATIVES)
def test_lookalike_is_left_alone(text):
    assert redact_pii(text) == text


def test_table_is_large_enough():
    assert len(POSITIVES) >= 80 and len(NEGATIVES) >= 75


def test_counts_by_type():
    counts = Counter()
    redact_pii("a@b.com c@d.org 13800138000 4111111111111111 1.2.3.4 11010519491231002X", counts)
    assert counts == Counter({"EMAIL": 2, "PHONE": 1, "CARD": 1, "IP": 1, "ID": 1})


def test_checksums():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert cn_id_valid("11010519491231002X") and not cn_id_valid("110105194912310021")


def test_fold_text_maps_back_to_the_original():
    text = "a\u200b\u200bб١\u0430\u2011\u3002ｂ\u2800"
    folded, dropped = fold_text(text)
    assert folded == "aб1a-.b" and dropped == [1, 2, 9]
    assert fold_text("plain ascii") == ("plain ascii", [])
    spans = find_pii("\u200bx 138\u200b0013\u200b8000\u200b")
    assert spans == [(3, 16, "PHONE")]  # the invisible characters inside go with it, not the ones around


def test_a_megabyte_redacts_in_linear_time():
    """A megabyte of real text takes about half a second on one core; the bound allows for a shared machine.
    Then runs built to make a backtracking pattern quadratic (minutes at this size if one were)."""
    unit = (
        "Mail bob@corp.com or call +1 (415) 555-2671 from 10.1.2.3. 身份证号11010519491231002X，"
        "电话138\u200b0013\u200b8000。رقم ١٣٨٠٠١٣٨٠٠٠ \U0001f469\u200d\U0001f4bb "
        "version 1.2.3, 2019\u20132021.\n"
    )
    copies = (1 << 20) // len(unit.encode())
    counts = Counter()
    start = time.perf_counter()
    redacted = redact_pii(unit * copies, counts)
    assert time.perf_counter() - start < 5
    assert counts == Counter({"EMAIL": copies, "PHONE": 3 * copies, "IP": copies, "ID": copies})
    assert redacted.count("[PHONE]") == 3 * copies
    n = 1 << 16
    start = time.perf_counter()
    for run in (
        "a_" * n,
        "1" * 2 * n,
        "+1 2" * n,
        "a@b" + ".c" * n,
        "张1" * n,
        "1:" * n,
        "1-" * n,
        "a@" * n,
        "1." * n,
        "a.a@" * n,
    ):
        assert redact_pii(run) == run
    assert time.perf_counter() - start < 5
