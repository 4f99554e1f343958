"""Readers: every format (plain and gzip), labels, and every bad-input case (message or count)."""

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from damoxing.data import LabelMap, bundled_path, load_labelled, read_records, read_texts
from damoxing.errors import DataError

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "data"


def write(path: Path, text: str | bytes, gz: bool = False) -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_text_modes(tmp_path, gz):
    path = write(tmp_path / "corpus.txt", "first doc\nline two\n\n\nsecond doc\n\nthird\n", gz)
    assert list(read_texts(path)) == ["first doc\nline two", "second doc", "third"]
    assert list(read_texts(path, text_mode="line")) == ["first doc", "line two", "second doc", "third"]
    assert list(read_texts(path, text_mode="file")) == ["first doc\nline two\n\n\nsecond doc\n\nthird"]


@pytest.mark.parametrize("gz", [False, True])
def test_jsonl_labelled(tmp_path, gz):
    lines = [{"review": "good", "stars": "pos"}, {"review": "bad", "stars": "neg"}, {"review": "fine", "stars": 1}]
    path = write(tmp_path / "r.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n", gz)
    records = list(read_records(path, text_column="review", label_column="stars"))
    assert records == [
        {"text": "good", "label": "pos"},
        {"text": "bad", "label": "neg"},
        {"text": "fine", "label": "1"},
    ]


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
@pytest.mark.parametrize("gz", [False, True])
def test_csv_tsv_columns_by_name(tmp_path, suffix, sep, gz):
    body = (
        sep.join(["id", "label", "sentence"])
        + "\n"
        + sep.join(["1", "b", '"multi\nline"'])
        + "\n"
        + sep.join(["2", "a", "plain"])
        + "\n"
    )
    path = write(tmp_path / f"t{suffix}", body, gz)
    records, label_map, summary = load_labelled(path, text_column="sentence")
    assert label_map.names == ["a", "b"]
    assert records == [{"text": "multi\nline", "label": 1}, {"text": "plain", "label": 0}]
    assert summary.records == 2


def test_text_pairs(tmp_path):
    path = write(tmp_path / "p.jsonl", json.dumps({"premise": "A", "hypothesis": "B", "label": "entail"}) + "\n")
    records = list(read_records(path, text_column="premise", text_pair_column="hypothesis", label_column="label"))
    assert records == [{"text_a": "A", "text_b": "B", "label": "entail"}]


@pytest.mark.parametrize("gz", [False, True])
def test_parquet_in_batches(tmp_path, gz):
    table = pa.table({"text": [f"doc {i}" for i in range(3000)], "label": [str(i % 3) for i in range(3000)]})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=500)
    if gz:
        path = write(tmp_path / "t.parquet", path.read_bytes(), gz=True)
    records = list(read_records(path, label_column="label"))
    assert len(records) == 3000 and records[2999] == {"text": "doc 2999", "label": "2"}


def test_class_folder(tmp_path):
    for label, texts in {"sport": ["goal", "match"], "tech": ["chip"]}.items():
        (tmp_path / label).mkdir()
        for i, text in enumerate(texts):
            write(tmp_path / label / f"{i}.txt", text + "\n\nmore", gz=(label == "tech"))
    records, label_map, _ = load_labelled(tmp_path)
    assert label_map.names == ["sport", "tech"]
    assert records == [
        {"text": "goal\n\nmore", "label": 0},
        {"text": "match\n\nmore", "label": 0},
        {"text": "chip\n\nmore", "label": 1},
    ]


def test_label_map_stable_and_saved(tmp_path):
    label_map = LabelMap.from_labels(["10", "2", "2", "1"])
    assert label_map.names == ["1", "2", "10"]
    assert LabelMap.from_labels(["pos", "neg"]) == LabelMap.from_labels(["neg", "pos", "neg"])
    label_map.save(tmp_path / "labels.json")
    assert LabelMap.load(tmp_path / "labels.json") == label_map
    assert label_map.encode(10) == 2 and label_map.decode(0) == "1"


def test_given_labels_encode_in_given_order(tmp_path):
    path = write(tmp_path / "x.csv", "text,label\na,pos\nb,neg\n")
    assert [r["label"] for r in read_records(path, label_column="label", labels=["pos", "neg"])] == [0, 1]


# --- bad input: one message naming file and line, or a count with skip_bad ---------------------------

BAD_CASES = {
    "malformed_json": ("x.jsonl", b'{"text": "ok"}\n{"text": oops}\n{"text": "ok2"}\n', {}, ":2: malformed JSON"),
    "missing_column": ("x.jsonl", b'{"text": "ok"}\n{"body": "no text"}\n{"text": "ok2"}\n', {}, ":2: no field 'text'"),
    "unknown_label": (
        "x.csv",
        b"text,label\nok,pos\nbad,maybe\nok2,neg\n",
        {"label_column": "label", "labels": ["neg", "pos"]},
        ":3: unknown label 'maybe'",
    ),
    "bad_utf8": ("x.txt", b"ok\n\nbad \xff byte\nsecond line\n\nok2\n", {}, ":3: byte 0xff"),
    "short_row": ("x.csv", b"text,label\nok,a\nlonely\nok2,b\n", {"label_column": "label"}, ":3: the row has 1 fields"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_stops_with_file_and_line(tmp_path, case):
    name, data, kwargs, message = BAD_CASES[case]
    path = write(tmp_path / name, data)
    with pytest.raises(DataError) as err:
        list(read_records(path, **kwargs))
    assert f"{path}{message}" in str(err.value)
    assert "skip_bad" in str(err.value)


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_skipped_and_counted(tmp_path, case):
    name, data, kwargs, _ = BAD_CASES[case]
    path = write(tmp_path / name, data)
    reader = read_records(path, skip_bad=True, **kwargs)
    records = list(reader)
    assert [r["text"] for r in records] == ["ok", "ok2"]
    reason = "missing_column" if case == "short_row" else case
    assert reader.summary.skipped == {reason: 1}
    assert reader.summary.as_dict()["skipped_total"] == 1


def test_bad_utf8_in_gzip_names_line(tmp_path):
    path = write(tmp_path / "x.jsonl", b'{"text": "a"}\n{"text": "caf\xe9"}\n', gz=True)
    with pytest.raises(DataError, match=r"x\.jsonl\.gz:2: byte 0xe9"):
        list(read_records(path))


def test_empty_file(tmp_path):
    empty = write(tmp_path / "empty.jsonl", b"")
    with pytest.raises(DataError, match=r"empty\.jsonl: the file is empty"):
        list(read_records(empty))
    full = write(tmp_path / "full.txt", "doc")
    reader = read_records([empty, full], skip_bad=True)
    assert list(reader) == [{"text": "doc"}] and reader.summary.skipped == {"empty_file": 1}


def test_empty_file_in_class_folder(tmp_path):
    (tmp_path / "a").mkdir()
    write(tmp_path / "a" / "1.txt", "text")
    write(tmp_path / "a" / "2.txt", "  \n")
    with pytest.raises(DataError, match=r"2\.txt: the file is empty"):
        load_labelled(tmp_path)
    records, _, summary = load_labelled(tmp_path, skip_bad=True)
    assert len(records) == 1 and summary.skipped == {"empty_file": 1}


def test_missing_csv_column_names_columns(tmp_path):
    path = write(tmp_path / "x.csv", "sentence,label\nhi,a\n")
    with pytest.raises(DataError, match=r"x\.csv:1: no column 'text' in the first row \['sentence', 'label'\]"):
        list(read_records(path, label_column="label"))
    with pytest.raises(
        DataError, match=r"x\.csv:1: no column 'text' in the header; columns are \['sentence', 'label'\]"
    ):
        list(read_records(path, label_column="label", header="true"))


def test_missing_parquet_column(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"body": ["a"]}), path)
    with pytest.raises(DataError, match="no column 'text'"):
        list(read_records(path))


def test_corrupt_gzip_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="not a readable gzip file"):
        list(read_records(write(tmp_path / "x.txt.gz", b"not gzip at all")))
    with pytest.raises(DataError, match="unknown file type '.docx'"):
        list(read_records(write(tmp_path / "x.docx", b"hi")))
    with pytest.raises(DataError, match="holds a JSON array"):
        list(read_records(write(tmp_path / "x.json", b'[{"text": "a"}]')))
    with pytest.raises(DataError, match="no such file"):
        read_records(tmp_path / "missing.txt")


def test_reader_fixture_assets():
    reader = read_records(ASSETS / "mixed.jsonl", label_column="label", skip_bad=True)
    records = list(reader)
    assert len(records) == 3
    assert reader.summary.skipped == {"malformed_json": 1, "bad_utf8": 1, "missing_value": 1}


def test_bundled_sets_read_cleanly():
    plays = read_records(bundled_path("shakespeare"), text_mode="file")
    assert len(list(plays)) == 10 and plays.summary.skipped == {}
    zh, zh_map, _ = load_labelled(bundled_path("zh_sentiment", "test"))
    assert zh_map.names == ["negative", "positive"] and len(zh) == 1200
    assert sum(r["label"] for r in zh) == 600
    bbc, bbc_map, _ = load_labelled([bundled_path("bbc_news", "train"), bundled_path("bbc_news", "test")])
    assert len(bbc) == 2225 and bbc_map.names == ["business", "entertainment", "politics", "sport", "tech"]


def test_folder_of_data_files_is_not_a_class_folder(tmp_path):
    (tmp_path / "part1").mkdir()
    write(tmp_path / "part1" / "a.jsonl", json.dumps({"text": "one"}) + "\n")
    write(tmp_path / "b.csv", "text\ntwo\n", gz=True)
    assert sorted(read_texts(tmp_path)) == ["one", "two"]


def test_prediction_input_keeps_a_record_per_row(tmp_path):
    """keep_blank: blank lines are records; error_records (with skip_bad): a bad record holds its place."""
    text = write(tmp_path / "t.txt", b"one\n\n  \ntwo\n")
    assert [r["text"] for r in read_records(text, text_mode="line", keep_blank=True)] == ["one", "", "", "two"]
    assert [r["text"] for r in read_records(text, text_mode="line")] == ["one", "two"]
    bad = write(tmp_path / "b.jsonl", b'{"text": "one"}\nnot json\n{"text": "\\ud800"}\n{"text": "two"}\n')
    reader = read_records(bad, skip_bad=True, error_records=True)
    records = list(reader)
    assert [r.get("error") for r in records] == [None, "malformed_json", "lone_surrogate", None]
    assert records[1]["where"] == f"{bad}:2" and records[2]["where"] == f"{bad}:3"
    assert reader.summary.skipped == {} and reader.summary.records == 4
    with pytest.raises(DataError, match=r"b\.jsonl:2: malformed JSON"):
        list(read_records(bad, error_records=True))
