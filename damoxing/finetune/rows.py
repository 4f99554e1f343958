"""Full fine-tuning trains the token-embedding rows of the tokens in the training data, the only ones that move.

A token that no training example holds never gets a gradient, and embedding tables take no weight decay
(training/optim.py), so AdamW leaves its row exactly as it was: its moments stay zero and its update is zero.
Yet a plain nn.Embedding computes the whole table's gradient every step, and the gradient norm and the
optimiser read all of it. For MiniLM (30,522 x 384) on the bundled headlines (about 4,000 distinct tokens) that
dense pass was a sixth of a fine-tuning step. `train_seen_rows` swaps each untied token embedding for
`SeenRows`, which keeps the seen rows as its Parameter and the rest as a frozen buffer. The training it gives is
the same AdamW over the same values; only the zeros are not computed. Tied tables (a decoder whose output layer
reads them) get a gradient in every row and stay as they are.

The swap is invisible to checkpoints: `SeenRows` saves and loads the whole table under the embedding's own key
(`...tokens.weight`), and `merge_seen_rows` puts plain nn.Embedding modules back after training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.swap import swap_modules

WORTH_IT = 0.5  # swap only when the seen rows are at most this fraction of the table


class SeenRows(nn.Module):
    """An nn.Embedding whose rows `rows` train (the Parameter `trained`) and whose other rows stay frozen."""

    no_weight_decay = True  # an embedding table, as nn.Embedding is for training/optim.py

    def __init__(self, embedding: nn.Embedding, rows: torch.Tensor):
        super().__init__()
        if embedding.max_norm is not None or embedding.sparse:
            raise ValueError("SeenRows takes a plain embedding (no max_norm, not sparse)")
        weight = embedding.weight.detach()
        rows = torch.unique(rows.to(torch.long).cpu()).to(weight.device)  # sorted, each once
        self.num_embeddings, self.embedding_dim = weight.shape
        self.register_buffer("frozen", weight, persistent=False)  # (V, C); its rows in `rows` are not read
        self.register_buffer("rows", rows, persistent=False)  # (U,)
        slot = torch.full((self.num_embeddings,), -1, dtype=torch.long, device=weight.device)
        slot[rows] = torch.arange(len(rows), device=weight.device)
        self.register_buffer("slot", slot, persistent=False)  # (V,): the row's place in `trained`, or -1
        self.trained = nn.Parameter(weight[rows].clone())  # (U, C)
        pad = embedding.padding_idx
        self.trained_pad = int(slot[pad]) if pad is not None and int(slot[pad]) >= 0 else None
        self.padding_idx = pad

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        slot = self.slot[ids]  # (B, T)
        out = F.embedding(slot.clamp(min=0), self.trained, padding_idx=self.trained_pad)  # (B, T, C)
        unseen = slot < 0
        if bool(unseen.any()):  # evaluation text may hold tokens the training data does not
            out = torch.where(unseen.unsqueeze(-1), F.embedding(ids, self.frozen), out)
        return out

    def merged(self) -> torch.Tensor:
        """The whole table: the frozen rows with the trained ones written in (V, C)."""
        return self.frozen.index_copy(0, self.rows, self.trained.detach())

    @property
    def weight(self) -> torch.Tensor:
        return self.merged()

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        destination[prefix + "weight"] = self.merged()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors):
        key = prefix + "weight"
        if key not in state_dict:
            missing_keys.append(key)
            return
        weight = state_dict[key]
        if tuple(weight.shape) != tuple(self.frozen.shape):
            errors.append(f"size mismatch for {key}: {list(weight.shape)} against {list(self.frozen.shape)}")
            return
        with torch.no_grad():
            self.frozen.copy_(weight)
            self.trained.copy_(weight.to(self.frozen.device)[self.rows])

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, training {len(self.rows)} rows"


def _tied(model: nn.Module) -> set[int]:
    """ids of parameters held by more than one module."""
    count: dict[int, int] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            count[id(p)] = count.get(id(p), 0) + 1
    return {i for i, n in count.items() if n > 1}


def train_seen_rows(model: nn.Module, token_ids: torch.Tensor, names: tuple[str, ...] = ("tokens",)) -> list[str]:
    """Swap each untied nn.Embedding whose name ends in one of `names` for SeenRows over `token_ids` (every id
    in the training data), where the seen rows are at most WORTH_IT of the table. Returns the swapped names."""
    tied = _tied(model)
    rows = torch.unique(token_ids.to(torch.long).flatten())

    def select(name: str, m: nn.Module) -> bool:
        return (
            type(m) is nn.Embedding
            and name.rpartition(".")[2] in names
            and id(m.weight) not in tied
            and m.weight.requires_grad
            and len(rows) <= WORTH_IT * m.num_embeddings
            and (len(rows) == 0 or int(rows.max()) < m.num_embeddings)
        )

    return swap_modules(model, select, lambda _, m: SeenRows(m, rows))


def merge_seen_rows(model: nn.Module) -> list[str]:
    """Put a plain nn.Embedding (the merged table, trainable) back in place of each SeenRows."""

    def plain(_, m: SeenRows) -> nn.Embedding:
        e = nn.Embedding(m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx, device=m.frozen.device)
        with torch.no_grad():
            e.weight.copy_(m.merged())
        return e.to(m.frozen.dtype)

    return swap_modules(model, lambda _, m: isinstance(m, SeenRows), plain)
