"""`damoxing evaluate` and `damoxing predict`: metrics and reports, clear messages on bad input, streaming."""

from __future__ import annotations

import csv
import json
import math
import random
import tracemalloc

import pytest
import torch

import damoxing
from damoxing.cli import main
from damoxing.inference.predict import predict_records
from damoxing.io.finetuned import load_finetuned
from damoxing.recipes.evaluate import evaluate_model, input_records, predict
from damoxing.recipes.finetune import finetune
from damoxing.tasks import get_task
from damoxing.tasks.base import SORT_WINDOW
from damoxing.tokenizer import Tokenizer

WORDS = {"pos": ["good", "great", "love", "nice"], "neg": ["bad", "awful", "hate", "broken"]}
FILLER = ["the", "phone", "it", "is", "was", "very", "this", "a", "day"]


def rows(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(FILLER, k=rng.randint(2, 6)) + rng.choices(WORDS[label], k=2)
        rng.shuffle(words)
        out.append((" ".join(words), label))
    return out


def write_csv(path, data, header=("text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(data)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny encoder fine-tuned with the features method (no training loop: fast), and its data."""
    folder = tmp_path_factory.mktemp("cmd")
    corpus = folder / "corpus.txt"
    corpus.write_text(" ".join(FILLER + WORDS["pos"] + WORDS["neg"]) + "\n", encoding="utf-8")
    tok = Tokenizer.train_wordpiece([corpus], vocab_size=120, min_frequency=1, model_max_length=64)
    torch.manual_seed(0)
    model = damoxing.create_model(
        damoxing.preset("bert-tiny", vocab_size=tok.vocab_size, dim=32, layers=2, heads=2, mlp_dim=64, max_positions=64)
    )
    train, valid = write_csv(folder / "train.csv", rows(200, 1)), write_csv(folder / "valid.csv", rows(80, 2))
    cfg = {
        "data": {"train": [str(train)], "valid": [str(valid)], "max_length": 32},
        "finetune": {"method": "features", "pooling": "mean", "cache_dir": str(folder / "cache")},
    }
    result = finetune(cfg, folder / "run", model=model, tokenizer=tok, verbose=False)
    return {"model": result.model_dir, "valid": valid, "folder": folder, "result": result}


def test_evaluate_writes_metrics_and_a_report(trained, tmp_path):
    metrics = evaluate_model(trained["model"], trained["valid"], tmp_path / "report")
    assert metrics["n"] == 80 and metrics["accuracy"] > 0.8
    assert metrics["accuracy"] == trained["result"].metrics["accuracy"]  # the same count of right answers out of 80
    for key in ("precision_macro", "recall_weighted", "f1_micro", "ece", "confusion_matrix", "per_class", "loss"):
        assert key in metrics
    assert [row["class"] for row in metrics["per_class"]] == ["neg", "pos"]
    for name in ("metrics.json", "report.md", "report.html", "confusion_matrix.png", "calibration.png"):
        assert (tmp_path / "report" / name).is_file(), name
    assert "Most confident mistakes" in (tmp_path / "report" / "report.md").read_text()


def test_evaluate_cli_json(trained, capsys):
    assert main(["evaluate", "--model", str(trained["model"]), "--data", str(trained["valid"]), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n"] == 80 and "f1_macro" in printed
    assert (trained["model"].parent / "eval-valid" / "report.html").is_file()  # default report folder


def test_bad_row_names_file_and_line(trained, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\ngood phone,pos\nbad day,neg,extra\n", encoding="utf-8")
    for argv in (
        ["evaluate", "--model", str(trained["model"]), "--data", str(bad)],
        ["predict", "--model", str(trained["model"]), "--data", str(bad)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{bad}:3" in err and "3 fields but the header has 2" in err and "Traceback" not in err


def test_unseen_label_is_a_clear_error(trained, tmp_path, capsys):
    data = write_csv(tmp_path / "unseen.csv", [("good phone", "pos"), ("meh", "neutral")])
    assert main(["evaluate", "--model", str(trained["model"]), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{data}:3" in err and "unknown label 'neutral'" in err and "['neg', 'pos']" in err


@pytest.mark.parametrize("content", ["", "text,label\n"])
def test_empty_file_is_a_clear_error(trained, tmp_path, capsys, content):
    empty = tmp_path / "empty.csv"
    empty.write_text(content, encoding="utf-8")
    for argv in (
        ["evaluate", "--model", str(trained["model"]), "--data", str(empty)],
        ["predict", "--model", str(trained["model"]), "--data", str(empty)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert str(empty) in err and "empty" in err


def test_missing_file_and_missing_column(trained, tmp_path, capsys):
    assert main(["evaluate", "--model", str(trained["model"]), "--data", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    data = write_csv(tmp_path / "cols.csv", [("good", "pos")], header=("review", "label"))
    assert main(["evaluate", "--model", str(trained["model"]), "--data", str(data)]) == 2
    assert "no column 'text'" in capsys.readouterr().err


def test_predict_texts_prints_labels_with_probabilities(trained, capsys):
    assert main(["predict", "--model", str(trained["model"]), "great love it", "awful broken phone"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["pos", "neg"]
    assert all(0.5 <= float(line.split("\t")[1]) <= 1.0 for line in lines)


def test_predict_file_writes_jsonl(trained, tmp_path):
    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(trained["model"]), "--data", str(trained["valid"]), "-o", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 80
    assert set(lines[0]) == {"text", "label", "probability", "probabilities"}
    # 2 probabilities rounded to 6 decimals (<= 5e-7 each) from a float32 softmax (<= ~4 eps32 off 1 in sum)
    assert abs(sum(lines[0]["probabilities"].values()) - 1) <= 2 * 5e-7 + 4 * torch.finfo(torch.float32).eps


def test_predict_is_lazy(trained):
    """Predictions come out while the input is still being read: one window of records in (sorted by length
    into batches), one window out."""
    loaded = load_finetuned(trained["model"])
    pulled = 0

    def source():
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield {"text": f"good phone {i}"}

    model, tokenizer, meta = loaded
    task = get_task(meta["task"])
    stream = predict_records(model, tokenizer, task, source(), meta["labels"], meta["max_length"], batch_size=32)
    next(stream)
    assert pulled <= SORT_WINDOW + 1 < 10_000
    assert next(iter(input_records(task, meta, data=trained["valid"])))["text"]


def test_predict_10k_lines_streams_with_flat_memory(trained, tmp_path):
    """Peak Python memory for 10k lines is about that for 1k lines: nothing accumulates per line."""
    loaded = load_finetuned(trained["model"])
    peaks = {}
    for n in (1_000, 10_000):
        path = tmp_path / f"lines{n}.txt"
        rng = random.Random(n)
        path.write_text("".join(" ".join(rng.choices(FILLER + WORDS["pos"], k=8)) + "\n" for _ in range(n)))
        out = tmp_path / f"out{n}.jsonl"
        tracemalloc.start()
        with open(out, "w", encoding="utf-8") as f:
            from damoxing.inference.predict import write_jsonl

            count = write_jsonl(predict(None, data=path, batch_size=256, loaded=loaded), f)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == n
    assert peaks[10_000] < 1.5 * peaks[1_000] + 256 * 1024, peaks


def test_evaluate_rejects_a_model_without_a_task_head(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("good bad phone\n")
    tok = Tokenizer.train_wordpiece([corpus], vocab_size=60, min_frequency=1)
    model = damoxing.create_model(
        damoxing.preset("bert-tiny", vocab_size=tok.vocab_size, dim=32, layers=1, heads=2, mlp_dim=64)
    )
    damoxing.save(model, tok, tmp_path / "plain")
    data = write_csv(tmp_path / "d.csv", [("good", "pos")])
    assert main(["evaluate", "--model", str(tmp_path / "plain"), "--data", str(data)]) == 2
    assert "fine-tune it first" in capsys.readouterr().err


def test_evaluate_language_model_reports_loss_and_perplexity(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the phone is good\n\nthe day was bad\n")
    tok = Tokenizer.train_wordpiece([corpus], vocab_size=60, min_frequency=1)
    torch.manual_seed(0)
    model = damoxing.create_model(
        damoxing.preset("gpt-mini", vocab_size=tok.vocab_size, dim=32, layers=1, heads=2, mlp_dim=64, max_positions=64)
    )
    damoxing.save(model, tok, tmp_path / "lm")
    assert main(["evaluate", "--model", str(tmp_path / "lm"), "--data", str(corpus), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["task"] == "language_model" and metrics["tokens"] > 0
    assert metrics["perplexity"] == math.exp(metrics["loss"])  # exactly: JSON keeps every bit of a float
    assert 1 < metrics["perplexity"] < 2 * tok.vocab_size  # a random model: about the vocabulary size


# ---------------------------------------------------------------- nothing is dropped without a count
def test_predict_gives_one_row_per_input_line(trained, tmp_path, capsys):
    """7 lines in, 7 rows out, in order: the blank ones say `error: empty`, and the summary counts them."""
    texts = tmp_path / "seven.txt"
    texts.write_text("good phone\n\nbad day\n   \ngreat love\n\nawful broken\n", encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(trained["model"]), "--data", str(texts), "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("error") for r in rows] == [None, "empty", None, "empty", None, "empty", None]
    assert [r["text"] for r in rows] == ["good phone", "", "bad day", "", "great love", "", "awful broken"]
    assert [r["label"] for r in rows if "label" in r] == ["pos", "neg", "pos", "neg"]
    err = capsys.readouterr().err
    assert f"wrote {out}: 7 rows: 4 predictions, 3 errors (empty: 3)" in err
    assert main(["predict", "--model", str(trained["model"]), "great love", ""]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1] == "error: empty\t"
    assert "2 rows: 1 prediction, 1 error (empty: 1)" in captured.err


def test_predict_skip_bad_keeps_a_row_for_each_bad_record(trained, tmp_path, capsys):
    data = tmp_path / "mixed.csv"
    data.write_text('text,label\ngood phone,pos\nbad day,neg,extra\n"",neg\ngreat love,pos\n', encoding="utf-8")
    empty = tmp_path / "folder"
    empty.mkdir()
    (empty / "a.csv").write_text(data.read_text(), encoding="utf-8")
    (empty / "b.csv").write_text("text,label\n", encoding="utf-8")
    assert main(["predict", "--model", str(trained["model"]), "--data", str(data), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r.get("error") for r in rows] == [None, "malformed_row", "empty", None]
    assert rows[1]["where"] == f"{data}:3" and "3 fields" in rows[1]["message"]
    assert "4 rows: 2 predictions, 2 errors (empty: 1, malformed_row: 1)" in captured.err
    assert main(["predict", "--model", str(trained["model"]), "--data", str(empty), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 4  # the empty file has no rows: the summary counts it
    assert "skipped 1 file (empty_file: 1)" in captured.err


def test_evaluate_skip_bad_counts_in_summary_metrics_and_report(trained, tmp_path, capsys):
    data = write_csv(tmp_path / "mixed.csv", [("good phone", "pos"), ("meh", "neutral"), ("bad day", "neg")])
    with open(data, "a", encoding="utf-8") as f:
        f.write("awful,neg,extra\n")
    out = tmp_path / "report"
    assert (
        main(["evaluate", "--model", str(trained["model"]), "--data", str(data), "--out", str(out), "--skip-bad"]) == 0
    )
    err = capsys.readouterr().err
    assert "skipped 2 bad records (malformed_row: 1, unknown_label: 1)" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["skipped_total"] == 2
    assert metrics["records_skipped"] == {"malformed_row": 1, "unknown_label": 1}
    assert any(f"{data}:3" in example for example in metrics["skipped_examples"])
    report = (out / "report.md").read_text()
    assert "## Skipped records" in report and "| unknown_label | 1 |" in report and "| malformed_row | 1 |" in report


# ---------------------------------------------------------------- files as people have them
def test_predict_empty_text_rows_keep_their_id_and_kept_columns(trained, tmp_path, capsys):
    """An empty or blank text is an error row, counted; the `id` column and the --keep-columns (by name or by
    position) open every row, and a kept `label` is written as `input_label` beside the predicted one."""
    data = tmp_path / "shop.csv"
    data.write_text(
        "id,date,text,label\n7,2024-01-01,good phone,pos\n8,2024-01-02,,neg\n9,2024-01-03,   ,neg\n"
        "10,2024-01-04,bad day,neg\n",
        encoding="utf-8",
    )
    model = str(trained["model"])
    assert main(["predict", "--model", model, "--data", str(data), "--keep-columns", "date,label"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["id"] for r in rows] == ["7", "8", "9", "10"]
    assert [r["date"] for r in rows] == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    assert [r["input_label"] for r in rows] == ["pos", "neg", "neg", "neg"]
    assert [r.get("error") for r in rows] == [None, "empty", "empty", None]
    assert [r.get("label") for r in rows] == ["pos", None, None, "neg"]
    assert list(rows[1]) == ["id", "date", "input_label", "text", "error"]
    assert "4 rows: 2 predictions, 2 errors (empty: 2)" in captured.err
    assert main(["predict", "--model", model, "--data", str(data), "--keep-columns", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["date"]) for r in rows][1] == ("8", "2024-01-02") and "input_label" not in rows[0]
    assert main(["predict", "--model", model, "--data", str(data), "--keep-columns", "place"]) == 2
    assert f"{data}:1: no column 'place' in the header" in capsys.readouterr().err


def test_predict_and_evaluate_a_headerless_file_by_position(trained, tmp_path, capsys):
    """--text-column 1 (a position) with --header false, or auto: every row is data, the first one too."""
    data = tmp_path / "reviews.csv"
    data.write_text('"neg",""\n"pos","good phone love"\n"neg","bad day awful"\n', encoding="utf-8")
    model = str(trained["model"])
    for header in (["--header", "false"], []):
        assert main(["predict", "--model", model, "--data", str(data), "--text-column", "1", *header]) == 0
        captured = capsys.readouterr()
        rows = [json.loads(line) for line in captured.out.splitlines()]
        assert [(r["text"], r.get("error"), r.get("label")) for r in rows] == [
            ("", "empty", None),
            ("good phone love", None, "pos"),
            ("bad day awful", None, "neg"),
        ]
        assert "3 rows: 2 predictions, 1 error (empty: 1)" in captured.err
    args = ["evaluate", "--model", model, "--data", str(data), "--text-column", "1", "--label-column", "0"]
    assert main([*args, "--json", "--skip-bad", "--out", str(tmp_path / "report")]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 3  # the empty text is scored too: evaluate reads every row
    assert main(["predict", "--model", model, "--data", str(data)]) == 2  # the model's column is named "text"
    assert "--header false --text-column N" in capsys.readouterr().err


def test_predict_carries_an_id_field_of_json_lines_and_parquet(trained, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "a.jsonl"
    data.write_text('{"id": 3, "text": "good phone"}\n{"id": 4, "text": ""}\n', encoding="utf-8")
    rows = list(predict(trained["model"], data=data))
    assert [(r["id"], r.get("error")) for r in rows] == [(3, None), (4, "empty")]
    table = pa.table({"id": [3, 4], "when": ["mon", "tue"], "text": ["good phone", ""]})
    pq.write_table(table, tmp_path / "a.parquet")
    rows = list(predict(trained["model"], data=tmp_path / "a.parquet", keep_columns=[1]))
    assert [(r["id"], r["when"], r.get("error")) for r in rows] == [(3, "mon", None), (4, "tue", "empty")]


def test_probability_and_probabilities_share_one_rounding(trained):
    """The top probability is the rounded entry of `probabilities` for the predicted label, bit for bit."""
    from damoxing.tasks.base import PROBABILITY_DIGITS

    rows = list(predict(trained["model"], texts=["good phone", "bad day", "the day was very broken", "love it"]))
    for row in rows:
        assert row["probability"] == row["probabilities"][row["label"]]
        assert row["probability"] == round(row["probability"], PROBABILITY_DIGITS)
        assert max(row["probabilities"].values()) == row["probability"]
