"""Packed CLM through the real decoder: a token's hidden state and loss do not depend on its neighbours."""

import pytest
import torch

from damoxing.data import PackedCLMCollator, pack_documents

decoder = pytest.importorskip("damoxing.models.decoder", reason="damoxing.models.decoder is not written yet")

EOS = 1
DOCUMENTS = [[5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16, 17, 18], [19, 20]]


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token loss with HF's shift: position t predicts labels[t + 1]; -100 gives 0."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none", ignore_index=-100
    )


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_packed_equals_alone(position):
    torch.manual_seed(0)
    config = decoder.DecoderConfig(
        vocab_size=32, dim=32, layers=2, heads=4, mlp_dim=64, max_positions=64, position=position
    )
    model = decoder.Decoder(config).double().eval()
    blocks = list(pack_documents(DOCUMENTS, block_size=sum(len(d) + 1 for d in DOCUMENTS), eos_id=EOS))
    packed = PackedCLMCollator()(blocks)
    with torch.no_grad():
        hidden = model.forward_features(
            packed["input_ids"], position_ids=packed["position_ids"], document_ids=packed["document_ids"]
        )
        losses = token_losses(
            model(packed["input_ids"], position_ids=packed["position_ids"], document_ids=packed["document_ids"]),
            packed["labels"],
        )
        start = 0
        for document in DOCUMENTS:
            n = len(document) + 1
            alone = torch.tensor([document + [EOS]])
            h_alone = model.forward_features(alone)
            l_alone = token_losses(model(alone), torch.cat([torch.tensor([[-100]]), alone[:, 1:]], dim=1))
            # float64: only summation order differs, <= n * eps * sum|terms| per sum (n <= 64) through 2 layers:
            # ~1e-13; 1e-10 leaves room and stays far below float32 rounding (1e-7; allclose's rtol 1e-5 hid it)
            torch.testing.assert_close(hidden[0, start : start + n], h_alone[0], rtol=0, atol=1e-10)
            torch.testing.assert_close(losses[0, start : start + n - 1], l_alone[0], rtol=0, atol=1e-10)
            start += n
