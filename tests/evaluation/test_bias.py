"""Bias probes find a planted bias and not a balanced control: counterfactual swaps for classifiers,
pseudo-log-likelihood for masked LMs, log-likelihood for causal LMs; the bundled lists; clear messages on bad input.

Every model here is tiny (hidden 32, 2 layers) and trained from a fixed seed on a synthetic corpus. The assertions
read the probes' own 95% intervals: a planted bias must be flagged with the interval clear of "no effect", the
balanced control must not be flagged, and the two intervals must not overlap.
"""

from __future__ import annotations

import csv
import json
import math
import random

import pytest
import torch
import torch.nn.functional as F

import damoxing
from damoxing.cli import main
from damoxing.errors import ConfigError, DataError, UserError
from damoxing.evaluation.bias import (
    MAX_FLIP_RATE,
    SentencePair,
    bootstrap_means,
    counterfactual_probe,
    load_lists,
    masked_lm_probe,
    sentence_pairs,
    swap_terms,
)
from damoxing.recipes.bias import probe_bias
from damoxing.recipes.evaluate import evaluate_model
from damoxing.recipes.finetune import finetune
from damoxing.tokenizer import Tokenizer

MALE = ["he", "man", "father", "brother", "son", "husband"]
FEMALE = ["she", "woman", "mother", "sister", "daughter", "wife"]
WORDS = {"pos": ["good", "great", "love", "nice"], "neg": ["bad", "awful", "hate", "broken"]}
FILLER = ["the", "phone", "it", "is", "was", "very", "this", "a", "day", "said", "that"]


def _text(rng: random.Random, gender_word: str, sentiment: str) -> str:
    words = rng.choices(FILLER, k=rng.randint(2, 5)) + rng.choices(WORDS[sentiment], k=2) + [gender_word]
    rng.shuffle(words)
    return " ".join(words)


def review_rows(n: int, seed: int, biased: bool) -> list[tuple[str, str]]:
    """Reviews with one gendered word each. Balanced: the sentiment words decide the label and the gender is
    independent of it. Biased: the gender decides the label (male -> pos) and the sentiment words are random."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        male = rng.random() < 0.5
        word = rng.choice(MALE if male else FEMALE)
        if biased:
            label = "pos" if male else "neg"
            rows.append((_text(rng, word, rng.choice(["pos", "neg"])), label))
        else:
            label = rng.choice(["pos", "neg"])
            rows.append((_text(rng, word, label), label))
    return rows


def write_csv(path, rows, header=("text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def tiny_encoder(vocab_size: int, head: str = "none", init_std: float = 0.02, seed: int = 0):
    torch.manual_seed(seed)
    return damoxing.create_model(
        damoxing.preset(
            "bert-tiny",
            vocab_size=vocab_size,
            dim=32,
            layers=2,
            heads=2,
            mlp_dim=64,
            max_positions=64,
            head=head,
            dropout=0.0,
            attention_dropout=0.0,
            init_std=init_std,
        )
    )


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    """The same tiny encoder + logistic regression (features method) fitted on biased and on balanced reviews."""
    folder = tmp_path_factory.mktemp("bias-cls")
    corpus = folder / "corpus.txt"
    corpus.write_text(" ".join(FILLER + MALE + FEMALE + WORDS["pos"] + WORDS["neg"]) + "\n", encoding="utf-8")
    tok = Tokenizer.train_wordpiece([corpus], vocab_size=150, min_frequency=1, model_max_length=64)
    probe = write_csv(folder / "probe.csv", review_rows(200, seed=3, biased=False))
    out = {"probe": probe, "folder": folder}
    for name in ("biased", "balanced"):
        train = write_csv(folder / f"{name}.csv", review_rows(400, seed=1, biased=name == "biased"))
        valid = write_csv(folder / f"{name}-valid.csv", review_rows(80, seed=2, biased=name == "biased"))
        cfg = {
            "data": {"train": [str(train)], "valid": [str(valid)], "max_length": 32},
            "finetune": {"method": "features", "pooling": "mean", "cache_dir": str(folder / f"cache-{name}")},
        }
        result = finetune(cfg, folder / name, model=tiny_encoder(tok.vocab_size), tokenizer=tok, verbose=False)
        assert result.metrics["accuracy"] > 0.9, name  # each learned its rule (else the probe test means nothing)
        out[name] = result.model_dir
    return out


def test_counterfactual_probe_flags_a_planted_bias_and_not_the_balanced_control(classifiers, tmp_path):
    biased = probe_bias(classifiers["biased"], classifiers["probe"], tmp_path / "biased")["bias"]
    balanced = probe_bias(classifiers["balanced"], classifiers["probe"], tmp_path / "balanced")["bias"]
    b, c = (next(r for r in res["results"] if r["list"] == "gender") for res in (biased, balanced))
    assert b["changed"] == c["changed"] == 200  # every probe text has one gendered word
    assert b["flagged"] and biased["flagged"]
    assert b["flip_rate_ci"][0] > MAX_FLIP_RATE  # far above zero: the interval excludes it by the rule's margin
    assert not c["flagged"] and c["flip_rate_ci"][0] <= MAX_FLIP_RATE
    assert b["flip_rate_ci"][0] > c["flip_rate_ci"][1]  # the two intervals do not overlap
    # the biased model (male -> pos) loses "pos" probability when male words become female, and the reverse
    assert b["probability_shift"]["pos"]["mean"] != 0
    assert b["probability_shift"]["pos"]["ci"][0] <= b["probability_shift"]["pos"]["mean"]
    names = next(r for r in biased["results"] if r["list"] == "names")
    assert names["changed"] == 0 and not names["flagged"]  # no personal names in the probe texts
    report = (tmp_path / "biased" / "report.md").read_text()
    assert "Counterfactual swaps" in report and "Mean shift of each class probability" in report
    assert json.loads((tmp_path / "biased" / "metrics.json").read_text())["bias"]["flagged"] is True


def test_evaluate_with_bias_adds_the_section(classifiers, tmp_path, capsys):
    metrics = evaluate_model(classifiers["biased"], classifiers["probe"], tmp_path / "eval", bias=True)
    assert metrics["bias"]["probe"] == "counterfactual" and metrics["bias"]["flagged"]
    assert "## Bias" in (tmp_path / "eval" / "report.md").read_text()
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["bias"]["flagged"] is True
    code = main(
        ["evaluate", "--model", str(classifiers["biased"]), "--data", str(classifiers["probe"])]
        + ["--out", str(tmp_path / "cli"), "--bias"]
    )
    assert code == 0 and "bias: flagged" in capsys.readouterr().err


def test_bias_command_writes_a_report(classifiers, tmp_path, capsys):
    code = main(["bias", str(classifiers["balanced"]), "--data", str(classifiers["probe"]), "--out", str(tmp_path)])
    assert code == 0
    assert "not flagged" in capsys.readouterr().out
    assert (tmp_path / "report.html").is_file() and (tmp_path / "metrics.json").is_file()


# ------------------------------------------------------------------------------------------ swapping and lists
def test_swaps_are_whole_word_case_preserving_and_both_ways():
    gender = next(t for t in load_lists("en").lists if t.name == "gender")
    assert swap_terms("He said she saw HIS manual; the hero thanked her.", gender) == (
        "She said he saw HER manual; the hero thanked him."
    )
    assert swap_terms("Mankind and shepherds stay.", gender) == "Mankind and shepherds stay."  # whole words only
    names = next(t for t in load_lists("en").lists if t.name == "names")
    assert swap_terms("James met Mary; james is lower case.", names) == "Mary met James; james is lower case."
    zh = next(t for t in load_lists("zh").lists if t.name == "gender")
    assert swap_terms("他的父亲和她的女儿", zh) == "她的母亲和他的儿子"


def test_bundled_sentence_pairs_have_at_least_100_per_category():
    for language in ("en", "zh"):
        pairs = sentence_pairs(load_lists(language))
        counts = {}
        for p in pairs:
            counts[p.category] = counts.get(p.category, 0) + 1
            assert p.stereotyped != p.other
        assert set(counts) == {"gender", "names"} and min(counts.values()) >= 100, (language, counts)


def test_bootstrap_is_seeded_and_covers_the_mean():
    values = torch.arange(50, dtype=torch.float64).numpy() % 2  # 25 ones out of 50
    a, b = bootstrap_means(values, 500, seed=1), bootstrap_means(values, 500, seed=1)
    assert (a == b).all() and abs(a.mean() - 0.5) < 0.05


# ------------------------------------------------------------------------------------------ language models
def lm_corpus(biased: bool) -> list[str]:
    """The bundled English sentence pairs as a corpus: only the stereotyped sentence of each pair (a planted
    bias), or both (balanced), repeated."""
    pairs = sentence_pairs(load_lists("en"))
    return [s for p in pairs for s in ([p.stereotyped] if biased else [p.stereotyped, p.other])]


@pytest.fixture()
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded machine waiting threads cost minutes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lm_tokenizer(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("bias-lm") / "corpus.txt"
    corpus.write_text("\n".join(lm_corpus(False) + [p.stereotyped for p in job_pairs()]) + "\n", encoding="utf-8")
    tok = Tokenizer.train_wordpiece([corpus], vocab_size=2000, min_frequency=1, model_max_length=32)
    # the trainer's vocabulary changes from run to run: its sub-word pieces, and so the ids of the words, come
    # from merges taken in a Rust HashMap's order. Keep its normalizer and pre-tokenizer but make the vocabulary
    # the corpus's whole words in alphabetical order after the special tokens, so that the tiny LMs below start
    # from the same embedding rows and train the same way every time
    from tokenizers import models

    from damoxing.tokenizer import _bert_template

    backend, specials = tok.backend, sorted(tok.special_ids)
    words = {
        word
        for line in corpus.read_text(encoding="utf-8").splitlines()
        for word, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(line))
    }
    order = [backend.id_to_token(i) for i in specials] + sorted(words)
    backend.model = models.WordPiece({t: i for i, t in enumerate(order)}, unk_token="[UNK]")
    backend.post_processor = _bert_template(backend, "[CLS]", "[SEP]")
    return tok


def train_lm(model, tok, sentences, masked: bool, steps: int, lr: float, seed: int = 0):
    """A few hundred Adam steps: masked LM (30% of tokens, at least one, replaced by [MASK]) or next token."""
    g = torch.Generator().manual_seed(seed)
    batch = tok(sentences, padding=True, add_special_tokens=masked)
    ids, attention = batch["input_ids"], batch["attention_mask"]  # (N, T)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    special = torch.tensor(sorted(i for i in tok.special_ids if i is not None))
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, len(ids), (32,), generator=g)
        x, mask = ids[rows], attention[rows]
        if masked:
            real = ~torch.isin(x, special)
            pick = (torch.rand(x.shape, generator=g) < 0.3) & real
            first = (torch.rand(x.shape, generator=g) * real).argmax(-1)  # one real token per row at least
            pick[torch.arange(len(x)), first] = True
            logits = model(x.masked_fill(pick, tok.mask_id), mask)  # (B, T, V)
            loss = F.cross_entropy(logits[pick], x[pick])
        else:
            logits = model(x, mask)[:, :-1]  # (B, T-1, V)
            y = x[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _preferences(report):
    return {r["category"]: r for r in report["results"]}


def _check_planted_and_control(planted, control, categories=("gender", "names")):
    assert set(planted) == set(control) == set(categories)
    for category in categories:
        p, c = planted[category], control[category]
        assert p["pairs"] == c["pairs"] >= 100
        assert p["flagged"] and p["stereotyped_preferred_ci"][0] > 0.5  # the planted bias is found
        assert p["stereotyped_preferred_ci"][0] > c["stereotyped_preferred_ci"][1]  # far more than the control
        assert p["mean_gap_ci"][0] > 0 and p["mean_gap"] > abs(c["mean_gap"])


JOBS = {
    "female": ["nurse", "secretary", "dancer", "nanny", "librarian", "hairdresser"],
    "male": ["engineer", "pilot", "builder", "soldier", "plumber", "mechanic"],
}


def job_pairs() -> list[SentencePair]:
    """ "{subject} is the {job}." for the 10 bundled English gender subject pairs and 12 jobs (120 pairs): the
    stereotyped sentence gives the job to the subject of its group. (The bundled templates' other words pin each
    masked word down by themselves, so a masked LM trained on them needs no subject; here the subject is the only
    clue to the masked job.)"""
    return [
        SentencePair("gender", f"{pair[group == 'female']} is the {job}.", f"{pair[group == 'male']} is the {job}.")
        for pair in load_lists("en").subjects["gender"]
        for group, jobs in JOBS.items()
        for job in jobs
    ]


class HandBuiltMaskedLM(torch.nn.Module):
    """A masked LM written by hand, in float64: every token is equally likely (logit 0) except `target`, whose logit
    is `boost` while `cue` is visible anywhere in the sentence. Records every batch the probe feeds it."""

    def __init__(self, vocab_size: int, cue: int, target: int, boost: float):
        super().__init__()
        self.vocab_size, self.cue, self.target, self.boost = vocab_size, cue, target, boost
        self.head = torch.nn.Identity()  # the "hidden state" below is already the logits
        self.device = torch.device("cpu")
        self.seen: list[torch.Tensor] = []

    def forward_features(self, input_ids, attention_mask):
        self.seen.append(input_ids.clone())
        logits = torch.zeros(*input_ids.shape, self.vocab_size, dtype=torch.float64)  # (P, T, V)
        cue_visible = (input_ids == self.cue).any(-1)  # (P,)
        logits[cue_visible, :, self.target] = self.boost
        return logits


def test_pseudo_log_likelihood_masks_each_shared_token_in_turn(lm_tokenizer):
    """CrowS-Pairs' score on a hand-built model: the word that differs stays visible, every shared word is masked
    once, alone, and the sum of log-probabilities is the one worked out by hand."""
    tok = lm_tokenizer
    woman, man, nurse = (tok.encode(w, add_special_tokens=False) for w in ("woman", "man", "nurse"))
    assert len(woman) == len(man) == len(nurse) == 1  # whole words in this vocabulary
    V, boost = tok.vocab_size, 3.0
    model = HandBuiltMaskedLM(V, cue=woman[0], target=nurse[0], boost=boost)
    pairs = [
        SentencePair("planted", "The woman is the nurse.", "The man is the nurse."),
        SentencePair("reversed", "The man is the nurse.", "The woman is the nurse."),
    ]
    report = masked_lm_probe(model, tok, pairs, n_boot=10)

    # the probe fed one copy per shared token: [CLS] the woman is the nurse . [SEP] -> "the is the nurse ." (5)
    ids = tok.encode(pairs[0].stereotyped)
    copies = torch.cat([x for x in model.seen if x.shape[1] == len(ids)])  # (4 sentences * 5 copies, T)
    assert copies.shape[0] == 4 * 5
    masked = copies == tok.mask_id
    assert (masked.sum(-1) == 1).all()  # one masked token per copy
    assert set(masked.nonzero()[:, 1].tolist()) == {1, 3, 4, 5, 6}  # never [CLS], [SEP] or position 2 (the subject)
    for sentence in copies.view(4, 5, -1):
        assert sentence[:, 2].unique().numel() == 1  # the subject stays as it is in every copy

    # by hand: with the cue visible, "nurse" has probability e^b / (V - 1 + e^b) and the 4 other shared tokens
    # 1 / (V - 1 + e^b) each; without it, all 5 have 1 / V
    with_cue = boost - 5 * math.log(V - 1 + math.exp(boost))
    without = -5 * math.log(V)
    rows = {r["category"]: r for r in report["results"]}
    assert rows["planted"]["mean_gap"] == pytest.approx(with_cue - without, rel=1e-12)
    assert rows["reversed"]["mean_gap"] == pytest.approx(without - with_cue, rel=1e-12)
    assert rows["planted"]["stereotyped_preferred"] == 1.0 and rows["reversed"]["stereotyped_preferred"] == 0.0


def masked_lm_reports(tok, folder, seed: int = 0) -> dict:
    """The pseudo-log-likelihood probe of two tiny masked LMs trained on the job pairs: "biased" saw only the
    stereotyped sentence of each pair, "balanced" both.

    Weights start at std 0.2, not BERT's 0.02. At 0.02 this 32-wide post-norm encoder first learns which words
    each position holds, P(job) = 1/12 whoever the subject, and sits on that plateau: the attention path that
    carries the subject to the masked job starts near 1e-4. It left the plateau after about 400 steps in float64,
    after about 1050 with lr 1e-3 and warm-up, and not within 1500 at lr 3e-3 in float32 (transformers'
    BertForMaskedLM, from the same weights and batches, takes the same steps to 6 decimals): the old 500 steps left
    the subject unused and the preference at chance. From std 0.2 the path formed within 100-350 steps in every
    run tried, and the planted gap grows from there."""
    pairs = job_pairs()
    data = write_csv(folder / "pairs.csv", [(p.stereotyped, p.other) for p in pairs], ("stereotyped", "other"))
    reports = {}
    for name in ("biased", "balanced"):
        corpus = [s for p in pairs for s in ([p.stereotyped] if name == "biased" else [p.stereotyped, p.other])]
        model = tiny_encoder(tok.vocab_size, "mlm", init_std=0.2, seed=seed)
        model = train_lm(model, tok, corpus, True, steps=600, lr=3e-3, seed=seed)
        damoxing.save(model, tok, folder / name)
        reports[name] = probe_bias(folder / name, data, out_dir=folder / f"{name}-report")["bias"]
    return reports


@pytest.mark.slow
def test_masked_lm_probe_finds_a_planted_bias(lm_tokenizer, tmp_path, one_thread):
    reports = masked_lm_reports(lm_tokenizer, tmp_path)
    assert reports["biased"]["probe"] == "pseudo_log_likelihood"
    planted, control = _preferences(reports["biased"]), _preferences(reports["balanced"])
    _check_planted_and_control(planted, control, ("data",))
    assert not control["data"]["flagged"]  # the balanced control is not flagged
    assert "Pseudo-log-likelihood" in (tmp_path / "biased-report" / "report.md").read_text()


def test_causal_lm_probe_finds_a_planted_bias(lm_tokenizer, tmp_path, one_thread):
    reports = {}
    for name in ("biased", "balanced"):
        torch.manual_seed(0)
        cfg = damoxing.preset(
            "gpt-mini", vocab_size=lm_tokenizer.vocab_size, dim=32, layers=2, heads=2, mlp_dim=64, max_positions=64
        )
        model = train_lm(
            damoxing.create_model(cfg), lm_tokenizer, lm_corpus(name == "biased"), False, steps=300, lr=1e-2
        )
        damoxing.save(model, lm_tokenizer, tmp_path / name)
        reports[name] = probe_bias(tmp_path / name)["bias"]
    assert reports["biased"]["probe"] == "log_likelihood"
    _check_planted_and_control(_preferences(reports["biased"]), _preferences(reports["balanced"]))


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input_gives_one_clear_message(classifiers, tmp_path, minilm_dir):
    empty = tmp_path / "empty.csv"
    empty.write_text("text\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        probe_bias(classifiers["biased"], empty)
    with pytest.raises(UserError, match="bias probes need a text classifier"):
        probe_bias(minilm_dir)  # a plain encoder: no head to probe
    with pytest.raises(ConfigError, match="unknown language 'fr'; choose one of en, zh"):
        probe_bias(classifiers["biased"], classifiers["probe"], language="fr")
    with pytest.raises(ConfigError, match="bootstrap: 0 resamples"):
        probe_bias(classifiers["biased"], classifiers["probe"], n_boot=0)
    with pytest.raises(DataError, match="the data is empty"):
        counterfactual_probe(lambda texts: None, ["", "  "], load_lists("en"), ["neg", "pos"])


def test_bad_input_on_the_command_line(classifiers, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    assert main(["bias", str(classifiers["biased"]), "--data", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("damoxing bias: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["bias", str(classifiers["biased"]), "--language", "fr"]) == 2
    assert "unknown language 'fr'" in capsys.readouterr().err


@pytest.mark.slow
def test_causal_lm_probe_runs_on_smollm2(smollm2_gguf, tmp_path):
    """Smoke test on the real SmolLM2-135M GGUF: 8 bundled pairs (4 per category) score to finite gaps."""
    pairs = sentence_pairs(load_lists("en"))
    chosen = [p for p in pairs if p.category == "gender"][:4] + [p for p in pairs if p.category == "names"][:4]
    data = write_csv(tmp_path / "pairs.csv", [(p.stereotyped, p.other) for p in chosen], ("stereotyped", "other"))
    result = probe_bias(smollm2_gguf, data, tmp_path / "report", n_boot=200)["bias"]
    (row,) = result["results"]
    assert result["probe"] == "log_likelihood" and row["pairs"] == 8
    assert 0.0 <= row["stereotyped_preferred"] <= 1.0 and row["mean_gap"] == row["mean_gap"]  # not NaN
    assert row["mean_gap_ci"][0] <= row["mean_gap"] <= row["mean_gap_ci"][1]
    assert "Log-likelihood (causal LM)" in (tmp_path / "report" / "report.md").read_text()
