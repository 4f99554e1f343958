"""PII redaction: a table of real-looking positives and look-alike negatives, English and Chinese."""
from collections import Counter

import pytest

from damoxing.data.pii import cn_id_valid, luhn_valid, redact_pii

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
    ("Mail bob@corp.com or call +1 (415) 555-2671 from 10.1.2.3",
     "Mail [EMAIL] or call [PHONE] from [IP]"),
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
    "order 12345678901 shipped",            # 11 digits but not a mobile prefix
    "号码1380013800少一位",                   # 10 digits
    "编号138001380001多一位",                 # 12 digits
    "score 1-0 and 2-1",
    "ISBN 978-7-111-54742-6",
    "pages 120-135, 2019-2021",
    # ID look-alikes (bad check digit or impossible date)
    "身份证号110105194912310021",            # wrong check digit
    "ID 440304199013011233 on file",       # month 13
    "编号110101200102290008",                # 2001-02-29 does not exist
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
]


@pytest.mark.parametrize("text, expected", POSITIVES)
def test_positive_is_redacted(text, expected):
    assert redact_pii(text) == expected


@pytest.mark.parametrize("text", NEGATIVES)
def test_lookalike_is_left_alone(text):
    assert redact_pii(text) == text


def test_table_is_large_enough():
    assert len(POSITIVES) >= 30 and len(NEGATIVES) >= 30


def test_counts_by_type():
    counts = Counter()
    redact_pii("a@b.com c@d.org 13800138000 4111111111111111 1.2.3.4 11010519491231002X", counts)
    assert counts == Counter({"EMAIL": 2, "PHONE": 1, "CARD": 1, "IP": 1, "ID": 1})


def test_checksums():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert cn_id_valid("11010519491231002X") and not cn_id_valid("110105194912310021")
