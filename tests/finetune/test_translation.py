"""The translation task end to end: a joint tokenizer, a tiny Transformer from scratch, BLEU by decoding,
`damoxing translate`, the fine-tuning methods, and bad parallel data named by file and line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from damoxing.data.parallel import read_parallel
from damoxing.errors import ConfigError, DataError
from damoxing.inference.seq2seq import translate_texts
from damoxing.recipes.finetune import finetune
from damoxing.recipes.translate import translate
from damoxing.tokenizer import Tokenizer

from .conftest import resumed_from_step_2

PAIRS = [
    ("In the beginning God created the heaven and the earth.", "Au commencement, Dieu créa les cieux et la terre."),
    ("And God said, Let there be light: and there was light.", "Dieu dit: Que la lumière soit! Et la lumière fut."),
    ("And God saw the light, that it was good.", "Dieu vit que la lumière était bonne."),
    ("Jesus wept.", "Jésus pleura."),
    ("Love your enemies.", "Aimez vos ennemis."),
    ("The truth shall make you free.", "La vérité vous affranchira."),
]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: faster, and the tests run beside others
    yield
    torch.set_num_threads(threads)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def config(data: Path, **finetune) -> dict:
    return {
        "model": {"preset": "transformer-small", "dim": 64, "layers": 2, "heads": 4, "mlp_dim": 128, "dropout": 0.0},
        "tokenizer": {"train": True, "kind": "unigram", "vocab_size": 200},
        "data": {
            "train": [str(data)],
            "valid": [str(data)],
            "source_column": "en",
            "target_column": "fr",
            "max_length": 64,
        },
        "finetune": {"task": "translation", "num_beams": 2, "max_new_tokens": 64, **finetune},
        "train": {
            "lr": 1e-3,
            "epochs": 600,
            "precision": "fp32",  # the same arithmetic on every CPU (auto picks bf16 where it is native)
            "batch_size": 6,
            "warmup_steps": 30,
            "schedule": "constant",
            "weight_decay": 0.0,
            "log_every": 100,
        },
    }


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("translation")
    data = write_jsonl(folder / "pairs.jsonl", [{"en": en, "fr": fr} for en, fr in PAIRS])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result = finetune(config(data), folder / "run", verbose=False)
    torch.set_num_threads(threads)
    return result, data


def test_a_tiny_transformer_overfits_a_handful_of_pairs_to_bleu_100(overfit):
    result, _ = overfit
    m = result.metrics
    assert m["bleu"] == pytest.approx(100.0) and m["chrf"] == pytest.approx(100.0)
    assert m["bleu_signature"].startswith("nrefs:1|") and "tok:13a" in m["bleu_signature"]
    assert len(m["samples"]) == len(PAIRS) and m["samples"][3]["hypothesis"] == "Jésus pleura."
    report = (result.out_dir / "eval" / "report.md").read_text(encoding="utf-8")
    assert "Sample translations" in report and "La vérité vous affranchira." in report
    tokenizer = json.loads((result.model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    pieces = {p for p, _ in tokenizer["model"]["vocab"]}
    assert {"é", "w"} <= pieces and "\n" not in pieces  # one vocabulary over both languages (only French has é)


def test_translate_texts_and_a_file_as_json_lines(overfit, tmp_path):
    result, data = overfit
    rows = list(translate(result.model_dir, texts=["Jesus wept.", "Love your enemies."], num_beams=4))
    assert [r["translation"] for r in rows] == ["Jésus pleura.", "Aimez vos ennemis."]
    texts = translate_texts(result.model.eval(), Tokenizer.load(result.model_dir), ["Love your enemies."])
    assert list(texts) == ["Aimez vos ennemis."]  # the Python helper
    out = subprocess.run(
        [sys.executable, "-m", "damoxing", "translate", str(result.model_dir), "--data", str(data), "--num-beams", "1"],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(Path(__file__).parents[2]), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["translation"] for r in lines] == [fr for _, fr in PAIRS]
    assert lines[0] == {"source": PAIRS[0][0], "translation": PAIRS[0][1]}


def test_head_method_on_a_tied_output_layer_says_what_to_do(overfit, tmp_path):
    _, data = overfit
    cfg = config(data, method="head")
    cfg["train"]["epochs"] = 1
    with pytest.raises(ConfigError, match="use lora or full"):
        finetune(cfg, tmp_path / "head", verbose=False)


def test_lora_trains_only_the_adapters(overfit, tmp_path):
    result, data = overfit
    cfg = config(data, method="lora", lora_targets=["q", "v"])
    cfg["model"] = {"path": str(result.model_dir)}
    del cfg["tokenizer"]
    cfg["train"]["epochs"] = 2
    lora = finetune(cfg, tmp_path / "lora", verbose=False)
    c = lora.model.config
    per_layer = 2 * 8 * (c.dim + c.dim)  # q and v: A (8 x dim) + B (dim x 8)
    blocks = 3 * c.layers  # encoder self-attention, decoder self- and cross-attention (layers == decoder layers)
    assert lora.trainable_parameters == blocks * per_layer
    assert (lora.out_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert lora.metrics["bleu"] > 50  # two epochs of zero-initialised adapters leave the model as it was


# ---------------------------------------------------------------------- bad parallel data
def test_mismatched_line_counts_name_the_longer_file_and_its_line(tmp_path):
    (tmp_path / "train.en").write_text("one\ntwo\nthree\n", encoding="utf-8")
    (tmp_path / "train.fr").write_text("un\ndeux\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.en:3: no matching line in .*train\.fr"):
        list(read_parallel([tmp_path / "train.en", tmp_path / "train.fr"]))


def test_an_empty_side_names_its_file_and_line(tmp_path):
    (tmp_path / "a.en").write_text("one\ntwo\n", encoding="utf-8")
    (tmp_path / "a.fr").write_text("un\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a\.fr:2: the target .* is empty"):
        list(read_parallel([tmp_path / "a.en", tmp_path / "a.fr"]))
    rows = write_jsonl(tmp_path / "p.jsonl", [{"en": "one", "fr": "un"}, {"en": "", "fr": "deux"}])
    with pytest.raises(DataError, match=r"p\.jsonl:2: the source \('en'\) is empty"):
        list(read_parallel(rows, "en", "fr"))
    assert [r["target"] for r in read_parallel(rows, "en", "fr", skip_bad=True)] == ["un"]


def test_a_missing_column_names_the_file_and_line(tmp_path):
    rows = write_jsonl(tmp_path / "p.jsonl", [{"en": "one", "fr": "un"}, {"en": "two", "de": "zwei"}])
    with pytest.raises(DataError, match=r"p\.jsonl:2: no field 'fr'"):
        list(read_parallel(rows, "en", "fr"))
    (tmp_path / "p.tsv").write_text("en\tde\none\teins\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p\.tsv:1: no column 'fr'"):
        list(read_parallel(tmp_path / "p.tsv", "en", "fr"))


def test_line_aligned_files_and_tables_give_the_same_records(tmp_path):
    (tmp_path / "b.en").write_text("".join(en + "\n" for en, _ in PAIRS), encoding="utf-8")
    (tmp_path / "b.fr").write_text("".join(fr + "\n" for _, fr in PAIRS), encoding="utf-8")
    table = write_jsonl(tmp_path / "b.jsonl", [{"source": en, "target": fr} for en, fr in PAIRS])
    assert list(read_parallel([tmp_path / "b.en", tmp_path / "b.fr"])) == list(read_parallel(table))
    with pytest.raises(DataError, match="come in pairs"):
        list(read_parallel([tmp_path / "b.en"]))


def test_resuming_a_translation_run_gives_the_same_weights(overfit, tmp_path):
    """Steps 3-4 after resuming from step 2 equal steps 3-4 of the run that never stopped (dropout on)."""
    from safetensors.torch import load_file

    result, data = overfit
    cfg = config(data, label_smoothing=0.1)
    cfg["model"]["dropout"] = 0.1
    cfg["tokenizer"] = {"path": str(result.model_dir)}
    cfg["data"]["group_by_length"] = True
    cfg["train"].update(epochs=0, max_steps=4, save_every=2, keep_last=5, batch_size=2)
    finetune(cfg, tmp_path / "straight", verbose=False)
    a = resumed_from_step_2(
        tmp_path / "straight", lambda run: finetune(cfg, run, overrides=["train.resume=auto"], verbose=False)
    )
    start = load_file(str(tmp_path / "straight" / "step-000002" / "model.safetensors"))
    assert any(not torch.equal(a[k], start[k]) for k in a)  # steps 3 and 4 did change the weights


def test_evaluate_a_translation_folder_with_and_without_finetune_json(overfit, tmp_path):
    import shutil

    from damoxing.recipes.evaluate import evaluate_model

    result, data = overfit
    metrics = evaluate_model(result.model_dir, data, tmp_path / "report")
    assert metrics["bleu"] == pytest.approx(100.0) and (tmp_path / "report" / "report.html").is_file()
    plain = tmp_path / "plain"  # a Hugging Face folder as transformers writes it: no finetune.json
    shutil.copytree(result.model_dir, plain, ignore=shutil.ignore_patterns("finetune.json"))
    metrics = evaluate_model(plain, data, columns={"source_column": "en", "target_column": "fr"})
    assert metrics["task"] == "translation" and metrics["sentences"] == len(PAIRS)


def test_stop_strings_end_the_translation_and_logprobs_are_refused(overfit):
    """As a decoder's text: the translation ends before the first stop string, none of which is kept."""
    from damoxing.inference.config import GenerationConfig
    from damoxing.io.checkpoint import load_model

    result, _ = overfit
    model, tokenizer = load_model(result.model_dir), Tokenizer.load(result.model_dir)
    sources = [en for en, _ in PAIRS]
    plain = GenerationConfig(max_new_tokens=64)
    full = list(translate_texts(model, tokenizer, sources, plain))
    assert full == [fr for _, fr in PAIRS]
    stops = ("lumière", "ennemis")
    cut = list(translate_texts(model, tokenizer, sources, GenerationConfig(max_new_tokens=64, stop_strings=stops)))
    expected = []
    for text in full:
        found = [i for i in (text.find(s) for s in stops) if i >= 0]
        expected.append(text[: min(found)].strip() if found else text)
    assert cut == expected
    assert cut[1] == "Dieu dit: Que la" and cut[4] == "Aimez vos" and cut[3] == "Jésus pleura."
    with pytest.raises(ConfigError, match=r"generation\.logprobs: 3, but encoder-decoder decoding"):
        list(translate_texts(model, tokenizer, sources, GenerationConfig(logprobs=3)))
