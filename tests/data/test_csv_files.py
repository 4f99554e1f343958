"""Files as people have them: CSVs without a header (columns by position, data.header), byte-order marks."""

from __future__ import annotations

import gzip
import json

import pytest

from damoxing.config import from_dict
from damoxing.data.readers import read_records
from damoxing.errors import ConfigError, DataError
from damoxing.finetune.config import FinetuneDataConfig, load_finetune_config

# the shape of the public movie-review CSV: label 1 / -1 first, the sentence second, no header row
REVIEWS = '"1","the rock is destined to be a star"\n"-1","simplistic , silly and tedious ."\n"1","a gorgeous film"\n'
BOM = "\ufeff"


def write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return path


def test_headerless_csv_by_position(tmp_path):
    """Columns chosen by position read every row as data under header auto and false; the fields are the
    file's, with labels 1 and -1 as strings."""
    path = write(tmp_path / "reviews.csv", REVIEWS)
    expected = [
        {"text": "the rock is destined to be a star", "label": "1"},
        {"text": "simplistic , silly and tedious .", "label": "-1"},
        {"text": "a gorgeous film", "label": "1"},
    ]
    assert list(read_records(path, text_column=1, label_column=0)) == expected
    assert list(read_records(path, text_column=1, label_column=0, header="false")) == expected


def test_column_positions_in_a_file_with_a_header(tmp_path):
    """With a header, a position names the header's column; under auto a header holding the names is one."""
    path = write(tmp_path / "named.csv", "label,text\npos,good day\nneg,bad day\n")
    expected = [{"text": "good day", "label": "pos"}, {"text": "bad day", "label": "neg"}]
    assert list(read_records(path, text_column=1, label_column=0, header="true")) == expected
    assert list(read_records(path, text_column="text", label_column=0, header="auto")) == expected
    assert list(read_records(path, text_column="text", label_column="label")) == expected
    with pytest.raises(DataError, match=r"named\.csv:1: no column at position 2; the rows have 2 columns"):
        list(read_records(path, text_column=2, label_column=0))


def test_header_auto_stops_with_a_message_that_shows_the_first_row(tmp_path):
    """Column names that the first row lacks: the message names the file, shows the row and suggests
    data.header: false with positions (the longest field as the text)."""
    path = write(tmp_path / "reviews.csv", REVIEWS)
    with pytest.raises(DataError) as error:
        list(read_records(path, text_column="text", label_column="label"))
    message = str(error.value)
    assert message.startswith(f"{path}:1: no column 'text' in the first row ['1', 'the rock is destined to be a star']")
    assert "data.header: false" in message
    assert "--data.header=false --data.text_column=1 --data.label_column=0" in message
    with pytest.raises(DataError, match=r"data\.header is false, so the file has no column names and 'text'"):
        list(read_records(path, text_column="text", label_column=0, header="false"))


def test_header_and_column_positions_in_the_config():
    """data.header is checked (naming the key and the choices); --data.text_column=1 is the position 1."""
    cfg = load_finetune_config(
        {"data": {"train": ["README.md"]}}, ["--data.text_column=1", "--data.label_column=0", "data.header=false"]
    )
    assert cfg.data.text_column == 1 and cfg.data.label_column == 0 and cfg.data.header == "false"
    assert from_dict(FinetuneDataConfig, {"train": ["README.md"], "header": True}).header == "true"  # YAML true
    with pytest.raises(ConfigError, match=r"data\.header: 'yes' is not allowed; choose one of 'auto', 'true'"):
        from_dict(FinetuneDataConfig, {"train": ["README.md"], "header": "yes"})
    with pytest.raises(ConfigError, match=r"data\.text_column: a position counts from 0, got -1"):
        from_dict(FinetuneDataConfig, {"train": ["README.md"], "text_column": -1})


@pytest.mark.parametrize("gz", [False, True])
def test_byte_order_mark_is_dropped(tmp_path, gz):
    """A UTF-8 BOM before a quoted header, a JSON object or a text line is not part of the first field."""
    csv_text = BOM + '"text","label"\n"good day","pos"\n'
    jsonl_text = BOM + json.dumps({"text": "good day", "label": "pos"}) + "\n"
    txt_text = BOM + "good day\n"
    files = {}
    for name, text in (("a.csv", csv_text), ("a.jsonl", jsonl_text), ("a.txt", txt_text)):
        if gz:
            files[name] = tmp_path / f"{name}.gz"
            with gzip.open(files[name], "wt", encoding="utf-8") as f:
                f.write(text)
        else:
            files[name] = write(tmp_path / name, text)
    expected = [{"text": "good day", "label": "pos"}]
    assert list(read_records(files["a.csv"], label_column="label")) == expected
    assert list(read_records(files["a.jsonl"], label_column="label")) == expected
    assert list(read_records(files["a.txt"])) == [{"text": "good day"}]


def test_byte_order_mark_of_a_headerless_file(tmp_path):
    """Excel's "CSV UTF-8" writes a BOM; in a file without a header it would stick to the first label."""
    path = write(tmp_path / "reviews.csv", REVIEWS, encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert [r["label"] for r in read_records(path, text_column=1, label_column=0)] == ["1", "-1", "1"]
