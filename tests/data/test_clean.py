"""`damoxing data clean`: normalisation, dedup, length filter, PII, summary, atomic output, CLI."""

import gzip
import json

import pytest

import damoxing.data.clean as clean_module
from damoxing.cli import main
from damoxing.data import clean_corpus, normalize_text, read_texts
from damoxing.errors import DataError


def test_normalize_text():
    assert normalize_text("ｆｕｌｌ\u3000width　１２３") == "full width 123"
    assert normalize_text("a\x00b\u200bc\x07d") == "abcd"
    assert normalize_text("  many   spaces\t\there \r\nline  \n\n\n\nnext  ") == "many spaces here\nline\n\nnext"
    assert normalize_text("a\n\n\nb", keep_paragraphs=False) == "a\nb"


@pytest.mark.parametrize(
    "text",
    [
        "\U0001f469\u200d\U0001f4bb coder",  # ZWJ emoji sequence
        "\U0001f468\u200d\U0001f469\u200d\U0001f467 family",
        "\U0001f3f3\ufe0f\u200d\U0001f308",  # selector and joiner in one sequence
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian ZWNJ
        "\u0915\u094d\u200d\u0937",  # ZWJ after a Devanagari virama
        "\u2764\ufe0f love",  # emoji variation selector
        "1\ufe0f\u20e3 #\ufe0f\u20e3",  # keycaps
        "\u845b\U000e0100\u57ce",  # ideographic variation sequence
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # flag of Scotland (tags)
        "\u1820\u180b\u1822",  # Mongolian free variation selector
        "\u2800\u2800\u2801\u2800\u2803",  # Braille with blank cells
        "\u0661\u0662\u0663 \u0967\u0968",  # Arabic-Indic and Devanagari digits
    ],
)
def test_normalize_text_keeps_characters_that_do_visible_work(text):
    assert normalize_text(text) == text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("138\ufe0f0013\ufe0f8000", "13800138000"),  # variation selectors between digits
        ("139\u034f1234\u034f5678", "13912345678"),  # combining grapheme joiner
        ("1380013\u31648000", "13800138000"),  # Hangul filler (NFKC makes it U+1160)
        ("call 138\u28000013\u28008000", "call 13800138000"),  # a Braille blank with no Braille around
        ("4111\u180b1111", "41111111"),  # a Mongolian selector after a digit
        ("a\u200db\u200cc", "abc"),  # joiners between ASCII letters
        ("\ufeffsoft\u00adhy\u200bphen\u2060", "softhyphen"),
        ("x\ufe0f\U0001f600\ufe0f\ufe0f", "x\U0001f600\ufe0f"),  # after ASCII, or a second selector
        ("e\u200b\u0301", "\u00e9"),  # composes once the zero-width space is gone
        ("\u2800\u2800 \u200b", ""),
    ],
)
def test_normalize_text_removes_invisible_characters(text, expected):
    assert normalize_text(text) == expected


def make_corpus(path):
    docs = [
        "Hello   world, mail me at alice@example.com",
        "Hello world, mail me at alice@example.com",
        "ok",
        "电话13800138000，卡号4111111111111111",
        "x" * 50,
        "Card 4111111111111112 is fake",
    ]
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def test_clean_corpus_summary_and_output(tmp_path):
    out = tmp_path / "out.jsonl"
    summary = clean_corpus(make_corpus(tmp_path / "in.txt"), out, min_length=3, max_length=40)
    assert summary["documents_in"] == 6 and summary["documents_out"] == 3
    assert summary["duplicates_removed"] == 1 and summary["too_short"] == 1 and summary["too_long"] == 1
    assert summary["redactions"] == {"CARD": 1, "EMAIL": 1, "PHONE": 1}
    texts = [json.loads(line)["text"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert texts == ["Hello world, mail me at [EMAIL]", "电话[PHONE],卡号[CARD]", "Card 4111111111111112 is fake"]


def test_clean_txt_gz_output_reads_back(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "para one\n\n\npara two"}) + "\n" + json.dumps({"text": "b"}) + "\n")
    out = tmp_path / "out.txt.gz"
    clean_corpus(src, out, redact=False)
    assert gzip.open(out, "rt").read() == "para one\npara two\n\nb\n\n"  # noqa: SIM115
    assert list(read_texts(out)) == ["para one\npara two", "b"]


def test_no_redact_and_no_dedup(tmp_path):
    out = tmp_path / "out.jsonl"
    summary = clean_corpus(make_corpus(tmp_path / "in.txt"), out, redact=False, dedup=False)
    assert summary["redactions"] == {} and summary["duplicates_removed"] == 0
    assert "alice@example.com" in out.read_text()


def test_dedup_on_text_before_redaction_with_labels(tmp_path):
    rows = [
        ("Contact alice@example.com now", "pos"),
        ("Contact bob@example.org now", "neg"),
        ("Contact  alice@example.com now", "pos"),
        ("Contact alice@example.com now", "neg"),
        ("", "pos"),
        ("\u200b \u2800\ufe0f", "neg"),
        ("Contact carol@example.net now", "neg"),
        ("fine", "neg"),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    summary = clean_corpus(src, out, label_column="label", min_length=0)
    assert summary["blank"] == 2 and summary["too_short"] == 0
    assert summary["duplicates_removed"] == 1 and summary["duplicates_by_label"] == {"pos": 1}
    assert summary["identical_after_redaction"] == 2  # rows 4 and 7 read the same as row 2 once redacted
    assert summary["documents_in"] == 8 and summary["documents_out"] == 5 and summary["redactions"] == {"EMAIL": 4}
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["text"], r["label"]) for r in records] == [
        ("Contact [EMAIL] now", "pos"),
        ("Contact [EMAIL] now", "neg"),
        ("Contact [EMAIL] now", "neg"),
        ("Contact [EMAIL] now", "neg"),
        ("fine", "neg"),
    ]


def test_invisible_character_cannot_hide_a_phone_number(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text(
        "call 139\u034f1234\u034f5678 or 186\u20131234\u20135678\n\n\U0001f469\u200d\U0001f4bb \u0661\u0662\u0663\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    summary = clean_corpus(src, out)
    assert summary["redactions"] == {"PHONE": 2}
    texts = [json.loads(line)["text"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert texts == ["call [PHONE] or [PHONE]", "\U0001f469\u200d\U0001f4bb \u0661\u0662\u0663"]


def test_interrupted_run_leaves_no_partial_output(tmp_path, monkeypatch):
    src = make_corpus(tmp_path / "in.txt")
    out = tmp_path / "out.jsonl"
    out.write_text("previous output\n")
    calls = []

    def exploding(text, counts=None):
        calls.append(text)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return text

    monkeypatch.setattr(clean_module, "redact_pii", exploding)
    with pytest.raises(KeyboardInterrupt):
        clean_corpus(src, out)
    assert out.read_text() == "previous output\n"
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.jsonl"]  # no temp file left


def test_bad_records_counted_in_summary(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"text": "fine text"}\n{broken\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"in\.jsonl:2: malformed JSON"):
        clean_corpus(src, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
    summary = clean_corpus(src, tmp_path / "out.jsonl", skip_bad=True)
    assert summary["records_skipped"] == {"bad_utf8": 1, "malformed_json": 1}
    assert summary["documents_out"] == 1


def test_cli_prints_summary(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert main(["data", "clean", str(make_corpus(tmp_path / "in.txt")), str(out), "--min-length", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["documents_out"] == 4 and summary["redactions"]["EMAIL"] == 1
    assert summary["blank"] == 0 and summary["duplicates_by_label"] == {}


def test_cli_bad_input_message_without_traceback(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"body": "x"}\n')
    assert main(["data", "clean", str(src), str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "in.jsonl:1: no field 'text'" in err and "Traceback" not in err
    assert main(["data", "clean", str(src), str(tmp_path / "o.jsonl"), "--text-column", "body"]) == 0


def test_blank_lines_and_rows_are_counted(tmp_path):
    """Plain text read line by line, and CSV rows of blank fields: every dropped blank row is counted."""
    lines = tmp_path / "lines.txt"
    lines.write_text("first doc\n\nsecond doc\n  \t \nthird doc\n\n", encoding="utf-8")
    summary = clean_corpus(lines, tmp_path / "out.txt", text_mode="line")
    assert summary["documents_in"] == 6 and summary["blank"] == 3 and summary["documents_out"] == 3
    table = tmp_path / "rows.csv"
    table.write_text("text,label\nfirst,a\n , \n\nsecond,b\n,a\n", encoding="utf-8")
    summary = clean_corpus(table, tmp_path / "out.jsonl", label_column="label")
    assert summary["blank"] == 2 and summary["documents_out"] == 2  # the empty line is no row
