"""Encoders: /v1/embeddings from MiniLM through the openai client; /v1/classify on a fine-tuned classifier."""

from __future__ import annotations

import pytest
import torch

import damoxing
from damoxing.io.finetuned import save_finetuned
from damoxing.tokenizer import Tokenizer

from .conftest import http, running_server

openai = pytest.importorskip("openai")
TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome.", "你好，世界"]


def mean_pooled(model, tokenizer, texts):
    """damoxing's own mean pooling over real tokens, normalised (as sentence-transformers computes it)."""
    batch = tokenizer(texts)
    with torch.no_grad():
        hidden = model.double().forward_features(
            batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        )  # (N, T, C)
    pooled = damoxing.layers.heads.pool(hidden, batch["attention_mask"], "mean")
    return torch.nn.functional.normalize(pooled, dim=-1)


def test_minilm_embeddings_equal_damoxings_mean_pooling(minilm_dir):
    from damoxing.serve.app import ServeOptions

    expected = mean_pooled(damoxing.load(minilm_dir), damoxing.load_tokenizer(minilm_dir), TEXTS)
    with running_server(ServeOptions(str(minilm_dir), model_name="minilm")) as (url, _):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        for encoding_format in ("float", "base64"):  # the client asks for base64 unless told otherwise
            kw = {"encoding_format": "float"} if encoding_format == "float" else {}
            answer = client.embeddings.create(model="minilm", input=TEXTS, **kw)
            got = torch.tensor([d.embedding for d in answer.data], dtype=torch.float64)
            assert got.shape == (4, 384) and answer.usage.prompt_tokens > 0
            cosine = torch.nn.functional.cosine_similarity(got, expected, dim=-1)
            assert (cosine > 1 - 1e-5).all(), cosine
        # the model cannot chat: a clear 400 naming the model
        status, _, body = http(f"{url}/v1/completions", {"model": "minilm", "prompt": "Hi"})
        assert status == 400 and body["error"]["param"] == "model"


def test_classify_returns_labels_with_probabilities(tmp_path):
    from damoxing.serve.app import ServeOptions

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("good bad phone day great awful the a is\n", encoding="utf-8")
    tok = Tokenizer.train_wordpiece([corpus], vocab_size=60, min_frequency=1, model_max_length=32)
    torch.manual_seed(0)
    model = damoxing.create_model(
        damoxing.preset(
            "bert-tiny",
            vocab_size=tok.vocab_size,
            dim=32,
            layers=1,
            heads=2,
            mlp_dim=64,
            max_positions=32,
            head="sequence",
            num_labels=2,
        )
    )
    model.labels = ["neg", "pos"]
    folder = save_finetuned(model, tok, tmp_path / "model", {"task": "classification", "max_length": 32})
    with running_server(ServeOptions(str(folder), model_name="clf")) as (url, _):
        status, _, body = http(f"{url}/v1/classify", {"model": "clf", "input": ["good phone", "awful day"]})
        assert status == 200, body
        rows = body["data"]
        assert [r["index"] for r in rows] == [0, 1]
        for row in rows:
            assert row["label"] in ("neg", "pos") and 0.5 <= row["probability"] <= 1
        capabilities = http(f"{url}/v1/models")[2]["data"][0]["capabilities"]
        assert capabilities["classify"] and not capabilities["generate"]
