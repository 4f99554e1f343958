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


def make_corpus(path):
    docs = ["Hello   world, mail me at alice@example.com", "Hello world, mail me at alice@example.com",
            "ok", "电话13800138000，卡号4111111111111111", "x" * 50, "Card 4111111111111112 is fake"]
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
    assert gzip.open(out, "rt").read() == "para one\npara two\n\nb\n\n"
    assert list(read_texts(out)) == ["para one\npara two", "b"]


def test_no_redact_and_no_dedup(tmp_path):
    out = tmp_path / "out.jsonl"
    summary = clean_corpus(make_corpus(tmp_path / "in.txt"), out, redact=False, dedup=False)
    assert summary["redactions"] == {} and summary["duplicates_removed"] == 0
    assert "alice@example.com" in out.read_text()


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


def test_cli_bad_input_message_without_traceback(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"body": "x"}\n')
    assert main(["data", "clean", str(src), str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "in.jsonl:1: no field 'text'" in err and "Traceback" not in err
    assert main(["data", "clean", str(src), str(tmp_path / "o.jsonl"), "--text-column", "body"]) == 0
