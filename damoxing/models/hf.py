"""Hugging Face <-> damoxing: config.json fields and plain weight-name maps (BERT, GPT-2, Llama).

Each map is a plain dict from a Hugging Face name to ours; "{}" stands for the block index. Loading
renames the checkpoint's keys with it, saving renames ours back. GPT-2's quirks (Conv1D weights stored
transposed, q|k|v fused into one `c_attn`) are undone in `_gpt2_unfuse` / `_gpt2_fuse`, so its map stays
plain too. Tied output weights are never stored, as transformers does it.
"""
from __future__ import annotations

import re

import torch

from ..errors import CheckpointError
from .decoder import DecoderConfig
from .encoder import EncoderConfig

# ------------------------------------------------------------------ weight maps (HF name -> ours)
BERT = {
    "embeddings.word_embeddings.weight": "embed.tokens.weight",
    "embeddings.position_embeddings.weight": "embed.positions.weight",
    "embeddings.token_type_embeddings.weight": "embed.segments.weight",
    "embeddings.LayerNorm.weight": "embed.norm.weight",
    "embeddings.LayerNorm.bias": "embed.norm.bias",
    "pooler.dense.weight": "pooler.weight",
    "pooler.dense.bias": "pooler.bias",
}
for _hf, _ours in (("attention.self.query", "attn.q"), ("attention.self.key", "attn.k"),
                   ("attention.self.value", "attn.v"), ("attention.output.dense", "attn.o"),
                   ("attention.output.LayerNorm", "norm1"), ("intermediate.dense", "mlp.fc1"),
                   ("output.dense", "mlp.fc2"), ("output.LayerNorm", "norm2")):
    for _p in ("weight", "bias"):
        BERT[f"encoder.layer.{{}}.{_hf}.{_p}"] = f"blocks.{{}}.{_ours}.{_p}"

BERT_MLM = {  # "{head}" is "head" (BertForMaskedLM) or "head.mlm" (BertForPreTraining)
    "cls.predictions.transform.dense.weight": "{head}.transform.weight",
    "cls.predictions.transform.dense.bias": "{head}.transform.bias",
    "cls.predictions.transform.LayerNorm.weight": "{head}.norm.weight",
    "cls.predictions.transform.LayerNorm.bias": "{head}.norm.bias",
    "cls.predictions.bias": "{head}.decoder.bias",
}
BERT_NSP = {"cls.seq_relationship.weight": "head.nsp.weight", "cls.seq_relationship.bias": "head.nsp.bias"}
CLASSIFIER = {"classifier.weight": "head.classifier.weight", "classifier.bias": "head.classifier.bias"}
SCORE = {"score.weight": "head.classifier.weight"}  # decoder sequence heads: no bias

GPT2 = {
    "wte.weight": "embed.weight",
    "wpe.weight": "positions.weight",
    "ln_f.weight": "norm.weight",
    "ln_f.bias": "norm.bias",
}
for _hf, _ours in (("ln_1", "norm1"), ("ln_2", "norm2"), ("attn.c_attn.q", "attn.q"), ("attn.c_attn.k", "attn.k"),
                   ("attn.c_attn.v", "attn.v"), ("attn.c_proj", "attn.o"), ("mlp.c_fc", "mlp.fc1"),
                   ("mlp.c_proj", "mlp.fc2")):
    for _p in ("weight", "bias"):
        GPT2[f"h.{{}}.{_hf}.{_p}"] = f"blocks.{{}}.{_ours}.{_p}"

LLAMA = {"embed_tokens.weight": "embed.weight", "norm.weight": "norm.weight"}
for _hf, _ours in (("self_attn.q_proj", "attn.q"), ("self_attn.k_proj", "attn.k"), ("self_attn.v_proj", "attn.v"),
                   ("self_attn.o_proj", "attn.o"), ("mlp.gate_proj", "mlp.gate"), ("mlp.up_proj", "mlp.up"),
                   ("mlp.down_proj", "mlp.down")):
    for _p in ("weight", "bias"):
        LLAMA[f"layers.{{}}.{_hf}.{_p}"] = f"blocks.{{}}.{_ours}.{_p}"
LLAMA["layers.{}.input_layernorm.weight"] = "blocks.{}.norm1.weight"
LLAMA["layers.{}.post_attention_layernorm.weight"] = "blocks.{}.norm2.weight"
LM_HEAD = {"lm_head.weight": "head.proj.weight"}

# Keys some checkpoints carry that hold no weights of ours (buffers, or tied copies of the embedding).
IGNORED = re.compile(r"(^|\.)(position_ids|masked_bias|rotary_emb\.inv_freq)$|^h\.\d+\.attn\.bias$"
                     r"|^cls\.predictions\.decoder\.(weight|bias)$")

# architecture -> (model_type, family, head kind, prefix of the base model's keys)
ARCHITECTURES = {
    "BertModel": ("bert", "encoder", "none", ""),
    "BertForPreTraining": ("bert", "encoder", "pretraining", "bert."),
    "BertForMaskedLM": ("bert", "encoder", "mlm", "bert."),
    "BertForSequenceClassification": ("bert", "encoder", "sequence", "bert."),
    "BertForTokenClassification": ("bert", "encoder", "token", "bert."),
    "GPT2Model": ("gpt2", "decoder", "none", ""),
    "GPT2LMHeadModel": ("gpt2", "decoder", "lm", "transformer."),
    "GPT2ForSequenceClassification": ("gpt2", "decoder", "sequence", "transformer."),
    "GPT2ForTokenClassification": ("gpt2", "decoder", "token", "transformer."),
    "LlamaModel": ("llama", "decoder", "none", ""),
    "LlamaForCausalLM": ("llama", "decoder", "lm", "model."),
    "LlamaForSequenceClassification": ("llama", "decoder", "sequence", "model."),
}
BASE_MAPS = {"bert": BERT, "gpt2": GPT2, "llama": LLAMA}
PREFIXES = {"bert": "bert.", "gpt2": "transformer.", "llama": "model."}
ACT_FROM_HF = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
               "silu": "silu", "swish": "silu"}
ACT_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def weight_map(model_type: str, head: str, prefix: str = "") -> dict[str, str]:
    """The full HF -> ours template map of one model type and head; `prefix` goes before base-model keys."""
    out = {prefix + k: v for k, v in BASE_MAPS[model_type].items()}
    if head in ("mlm", "pretraining"):
        out.update({k: v.format(head="head" if head == "mlm" else "head.mlm") for k, v in BERT_MLM.items()})
    if head == "pretraining":
        out.update(BERT_NSP)
    if head == "lm":
        out.update(LM_HEAD)
    if head == "token" or (head == "sequence" and model_type == "bert"):
        out.update(CLASSIFIER)
    elif head == "sequence":
        out.update(SCORE)
    return out


def _template(name: str) -> tuple[str, str | None]:
    """'blocks.3.attn.q.weight' -> ('blocks.{}.attn.q.weight', '3')."""
    m = re.search(r"\.(\d+)\.", name)
    return (f"{name[:m.start()]}.{{}}.{name[m.end():]}", m.group(1)) if m else (name, None)


def _rename(state: dict, mapping: dict[str, str]) -> tuple[dict, list[str]]:
    """Rename keys through a template map; returns (renamed, keys it had no entry for)."""
    out, unknown = {}, []
    for name, tensor in state.items():
        tmpl, i = _template(name)
        if tmpl in mapping:
            out[mapping[tmpl].replace("{}", i) if i is not None else mapping[tmpl]] = tensor
        else:
            unknown.append(name)
    return out, unknown


def _gpt2_unfuse(state: dict) -> dict:
    """GPT-2 Conv1D weights are (in, out): transpose them; split c_attn into c_attn.q/k/v."""
    out = {}
    for name, t in state.items():
        if re.search(r"\.(c_attn|c_proj|c_fc)\.weight$", name) and t.dim() == 2:
            t = t.t()
        if ".attn.c_attn." in name:
            for part, piece in zip("qkv", t.chunk(3, dim=0)):
                out[name.replace(".c_attn.", f".c_attn.{part}.")] = piece.contiguous()
        else:
            out[name] = t.contiguous()
    return out


def _gpt2_fuse(state: dict) -> dict:
    """Inverse of `_gpt2_unfuse`."""
    out = {}
    for name, t in state.items():
        if ".attn.c_attn.q." in name:
            parts = [state[name.replace(".c_attn.q.", f".c_attn.{p}.")] for p in "qkv"]
            t, name = torch.cat(parts, dim=0), name.replace(".c_attn.q.", ".c_attn.")
        elif ".attn.c_attn." in name:
            continue
        if re.search(r"\.(c_attn|c_proj|c_fc)\.weight$", name):
            t = t.t()
        out[name] = t.contiguous()
    return out


def state_from_hf(state: dict, arch: str) -> tuple[dict, list[str]]:
    """HF state dict -> ours. The base model's keys may come with their prefix (`bert.`) or without.

    Returns (our state, HF keys that map to nothing and are not known buffers).
    """
    model_type, _, head, _ = ARCHITECTURES[arch]
    prefix = PREFIXES[model_type]
    state = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v
             for k, v in state.items()}  # names of the original TensorFlow BERT checkpoints
    state = {k.removeprefix(prefix): v for k, v in state.items()}
    if model_type == "gpt2":
        state = _gpt2_unfuse(state)
    ours, unknown = _rename(state, weight_map(model_type, head))
    return ours, [k for k in unknown if not IGNORED.search(k)]


def hf_name(our_name: str, arch: str) -> str:
    """The HF key an internal name is stored under (for error messages)."""
    model_type, _, head, prefix = ARCHITECTURES[arch]
    inverse = {v: k for k, v in weight_map(model_type, head, prefix).items()}
    tmpl, i = _template(our_name)
    name = inverse.get(tmpl, our_name)
    name = name.replace("{}", i) if i is not None else name
    part = re.search(r"\.c_attn\.([qkv])\.", name)
    return re.sub(r"\.c_attn\.[qkv]\.", ".c_attn.", name) + (f" ({part.group(1)} part)" if part else "")


def state_to_hf(state: dict, arch: str) -> dict:
    """Our state dict (tied copies already removed) -> HF names and layouts."""
    model_type, _, head, prefix = ARCHITECTURES[arch]
    inverse = {v: k for k, v in weight_map(model_type, head, prefix).items()}
    out, unknown = _rename(state, inverse)
    if unknown:
        raise CheckpointError(f"cannot save as {arch}: no Hugging Face name for {', '.join(unknown[:5])}")
    return _gpt2_fuse(out) if ARCHITECTURES[arch][0] == "gpt2" else out


# ------------------------------------------------------------------ config.json <-> our configs
def _first(value):
    return value[0] if isinstance(value, list) and value else value


def _labels(cfg: dict) -> tuple[int, list[str] | None]:
    id2label = cfg.get("id2label")
    if isinstance(id2label, dict) and id2label:
        names = [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(len(id2label))]
        return len(names), names
    return int(cfg.get("num_labels", 2)), None


def architecture_of(cfg: dict, source) -> str:
    """The supported architecture config.json names (its `architectures`, else its `model_type`)."""
    archs = cfg.get("architectures") or []
    for arch in archs:
        if arch in ARCHITECTURES:
            return arch
    if not archs:
        base = {"bert": "BertModel", "gpt2": "GPT2Model", "llama": "LlamaModel"}.get(cfg.get("model_type"))
        if base:
            return base
    named = ", ".join(archs) or f"model_type {cfg.get('model_type')!r}"
    raise CheckpointError(f"{source}: unsupported architecture {named}; damoxing reads "
                          f"{', '.join(ARCHITECTURES)}")


def _unsupported(source, key, value, why: str):
    raise CheckpointError(f"{source}: {key} = {value!r} is not supported ({why})")


def config_from_hf(cfg: dict, source, keys=()) -> tuple[object, str, list[str] | None]:
    """config.json dict -> (EncoderConfig | DecoderConfig, architecture, label names or None).

    `keys` are the checkpoint's weight names: BERT's pooler is kept when the file has one.
    """
    arch = architecture_of(cfg, source)
    model_type, family, head, _ = ARCHITECTURES[arch]
    num_labels, names = _labels(cfg)
    act = cfg.get("hidden_act", cfg.get("activation_function", "gelu"))
    if act not in ACT_FROM_HF:
        _unsupported(source, "hidden_act", act, f"known: {', '.join(ACT_FROM_HF)}")
    common = dict(head=head, num_labels=num_labels)
    try:
        if model_type == "bert":
            if cfg.get("position_embedding_type", "absolute") != "absolute":
                _unsupported(source, "position_embedding_type", cfg["position_embedding_type"], "only 'absolute'")
            pooler = head in ("pretraining", "sequence") or any(k.endswith("pooler.dense.weight") for k in keys)
            drop = cfg.get("hidden_dropout_prob", 0.1)
            config = EncoderConfig(
                vocab_size=cfg["vocab_size"], dim=cfg["hidden_size"], layers=cfg["num_hidden_layers"],
                heads=cfg["num_attention_heads"], mlp_dim=cfg["intermediate_size"],
                max_positions=cfg.get("max_position_embeddings", 512), type_vocab_size=cfg.get("type_vocab_size", 2),
                activation=ACT_FROM_HF[act], norm_eps=cfg.get("layer_norm_eps", 1e-12), dropout=drop,
                attention_dropout=cfg.get("attention_probs_dropout_prob", 0.1), pad_id=cfg.get("pad_token_id") or 0,
                pooler=pooler, pooling="pooler" if pooler else "cls", init_std=cfg.get("initializer_range", 0.02),
                classifier_dropout=cfg.get("classifier_dropout") if cfg.get("classifier_dropout") is not None else drop,
                **common)
        elif model_type == "gpt2":
            for key, ok in (("scale_attn_by_inverse_layer_idx", False), ("scale_attn_weights", True),
                            ("add_cross_attention", False), ("reorder_and_upcast_attn", False)):
                if cfg.get(key, ok) != ok:
                    _unsupported(source, key, cfg[key], f"damoxing's GPT-2 needs {ok}")
            config = DecoderConfig(
                vocab_size=cfg["vocab_size"], dim=cfg["n_embd"], layers=cfg["n_layer"], heads=cfg["n_head"],
                mlp_dim=cfg.get("n_inner") or 4 * cfg["n_embd"], max_positions=cfg.get("n_positions", 1024),
                norm_eps=cfg.get("layer_norm_epsilon", 1e-5), activation=ACT_FROM_HF[act],
                tie_embeddings=cfg.get("tie_word_embeddings", True), dropout=cfg.get("resid_pdrop", 0.1),
                attention_dropout=cfg.get("attn_pdrop", 0.1), bos_id=_first(cfg.get("bos_token_id")),
                eos_id=_first(cfg.get("eos_token_id")), pad_id=_first(cfg.get("pad_token_id")),
                classifier_dropout=cfg.get("summary_first_dropout", 0.1) if head == "token" else 0.0,
                init_std=cfg.get("initializer_range", 0.02), **common)
        else:  # llama
            rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
            if rope.get("rope_type", rope.get("type", "default")) != "default":
                _unsupported(source, "rope_parameters.rope_type", rope.get("rope_type", rope.get("type")),
                             "only plain RoPE")
            if ACT_FROM_HF[act] != "silu":
                _unsupported(source, "hidden_act", act, "Llama's SwiGLU uses silu")
            heads, dim = cfg["num_attention_heads"], cfg["hidden_size"]
            kv = cfg.get("num_key_value_heads") or heads
            head_dim = cfg.get("head_dim") or dim // heads
            config = DecoderConfig(
                vocab_size=cfg["vocab_size"], dim=dim, layers=cfg["num_hidden_layers"], heads=heads,
                kv_heads=kv if kv != heads else None, head_dim=head_dim if head_dim * heads != dim else None,
                mlp_dim=cfg["intermediate_size"], max_positions=cfg.get("max_position_embeddings", 2048),
                position="rope", rope_base=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
                norm="rmsnorm", norm_eps=cfg.get("rms_norm_eps", 1e-6), mlp="swiglu", activation="silu",
                attention_bias=cfg.get("attention_bias", False), mlp_bias=cfg.get("mlp_bias", False),
                tie_embeddings=cfg.get("tie_word_embeddings", False), dropout=0.0,
                attention_dropout=cfg.get("attention_dropout", 0.0), bos_id=_first(cfg.get("bos_token_id")),
                eos_id=_first(cfg.get("eos_token_id")), pad_id=_first(cfg.get("pad_token_id")),
                init_std=cfg.get("initializer_range", 0.02), **common)
    except KeyError as e:
        raise CheckpointError(f"{source}: missing field {e.args[0]!r} needed for {arch}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: invalid value for {arch} ({e})") from None
    return config, arch, names


def _no_save(why: str):
    raise CheckpointError(f"cannot save in the Hugging Face layout: {why}")


def architecture_for(config) -> str:
    """The HF architecture our config is saved as (raises CheckpointError when none fits)."""
    c, head = config, config.head
    if isinstance(c, EncoderConfig):
        if c.position != "learned" or not c.type_vocab_size:
            _no_save("BERT needs position: learned and type_vocab_size > 0")
        if head in ("pretraining", "sequence") and c.pooling != "pooler":
            _no_save(f"BERT's {head} head reads the pooler; this model uses pooling: {c.pooling}")
        return {"none": "BertModel", "pretraining": "BertForPreTraining", "mlm": "BertForMaskedLM",
                "sequence": "BertForSequenceClassification", "token": "BertForTokenClassification"}[head]
    if (c.position, c.norm, c.mlp) == ("learned", "layernorm", "gelu"):
        if not (c.attention_bias and c.mlp_bias) or (c.kv_heads or c.heads) != c.heads or \
                (c.head_dim or c.dim // c.heads) * c.heads != c.dim:
            _no_save("GPT-2 needs biases, kv_heads == heads and head_dim == dim / heads")
        if head == "sequence" and c.pooling != "last":
            _no_save("GPT-2 sequence classification reads the last token (pooling: last)")
        return {"none": "GPT2Model", "lm": "GPT2LMHeadModel", "sequence": "GPT2ForSequenceClassification",
                "token": "GPT2ForTokenClassification"}[head]
    if (c.position, c.norm, c.mlp) == ("rope", "rmsnorm", "swiglu"):
        if head not in ("none", "lm", "sequence") or (head == "sequence" and c.pooling != "last"):
            _no_save(f"Llama has no {head} head with pooling {c.pooling}")
        return {"none": "LlamaModel", "lm": "LlamaForCausalLM", "sequence": "LlamaForSequenceClassification"}[head]
    return _no_save(f"no architecture has position {c.position}, norm {c.norm} and mlp {c.mlp} "
                    "(GPT-2: learned/layernorm/gelu; Llama: rope/rmsnorm/swiglu)")


def config_to_hf(config, labels: list[str] | None = None, dtype: torch.dtype = torch.float32) -> dict:
    """Our config -> config.json dict that transformers' AutoConfig reads."""
    c, arch = config, architecture_for(config)
    model_type = ARCHITECTURES[arch][0]
    out = {"architectures": [arch], "model_type": model_type, "vocab_size": c.vocab_size,
           "initializer_range": c.init_std, "dtype": str(dtype).removeprefix("torch.")}
    if model_type == "bert":
        out.update(hidden_size=c.dim, num_hidden_layers=c.layers, num_attention_heads=c.heads,
                   intermediate_size=c.mlp_dim, hidden_act=ACT_TO_HF[c.activation], hidden_dropout_prob=c.dropout,
                   attention_probs_dropout_prob=c.attention_dropout, max_position_embeddings=c.max_positions,
                   type_vocab_size=c.type_vocab_size, layer_norm_eps=c.norm_eps, pad_token_id=c.pad_id,
                   position_embedding_type="absolute", classifier_dropout=c.classifier_dropout)
    elif model_type == "gpt2":
        out.update(n_embd=c.dim, n_layer=c.layers, n_head=c.heads, n_inner=c.mlp_dim, n_positions=c.max_positions,
                   activation_function=ACT_TO_HF[c.activation], layer_norm_epsilon=c.norm_eps,
                   resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.attention_dropout,
                   tie_word_embeddings=c.tie_embeddings, bos_token_id=c.bos_id, eos_token_id=c.eos_id,
                   pad_token_id=c.pad_id)
    else:
        out.update(hidden_size=c.dim, num_hidden_layers=c.layers, num_attention_heads=c.heads,
                   num_key_value_heads=c.kv_heads or c.heads, head_dim=c.head_dim or c.dim // c.heads,
                   intermediate_size=c.mlp_dim, hidden_act="silu", max_position_embeddings=c.max_positions,
                   rms_norm_eps=c.norm_eps, rope_theta=c.rope_base,
                   rope_parameters={"rope_type": "default", "rope_theta": c.rope_base},
                   attention_bias=c.attention_bias, mlp_bias=c.mlp_bias, attention_dropout=c.attention_dropout,
                   tie_word_embeddings=c.tie_embeddings, bos_token_id=c.bos_id, eos_token_id=c.eos_id,
                   pad_token_id=c.pad_id)
    if c.head in ("sequence", "token"):
        names = labels if labels and len(labels) == c.num_labels else [f"LABEL_{i}" for i in range(c.num_labels)]
        out["id2label"] = {str(i): n for i, n in enumerate(names)}
        out["label2id"] = {n: i for i, n in enumerate(names)}
    return out
