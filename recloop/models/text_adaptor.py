"""From frozen language-model item embeddings to a sequence model's item space.

Follows UniSRec: Y. Hou, S. Mu, W. X. Zhao, Y. Li, B. Ding and J.-R. Wen, "Towards
Universal Sequence Representation Learning for Recommender Systems", KDD 2022, section
3.1 ("Universal Textual Item Representation"):

* **parametric whitening** per expert, ``PW_k(x) = (x - b_k) W_k`` with a learned bias
  ``b_k`` (``d_text``) and projection ``W_k`` (``d_text x d``): a learned version of
  BERT-whitening that moves the anisotropic sentence embeddings into a space the
  recommender can use, unlike a fixed (pre-computed) whitening it can be fine-tuned and
  transferred;
* a **mixture of experts** over ``n_experts`` whitenings, ``v = sum_k g_k PW_k(x)`` with
  gates ``g = softmax(x W_g)``, so that text from different domains can use different
  experts (UniSRec: 8 experts).

Departures: UniSRec adds Gaussian noise to the gate logits during training (noisy top-k
style); this adaptor uses dropout on the text input instead (``dropout``, UniSRec's own
adaptor dropout is 0.2) and no gate noise. The text embeddings themselves are frozen.

One adaptor serves every model that reads item text (SASRec's item table in
:mod:`recloop.models.sequential`, the two-tower's item tower): ``ITEM_REPRESENTATIONS``
names the choices they share. With ``n_experts = 1`` and no dropout the adaptor is an
affine map ``t W - b W``, a plain linear projection with a bias.
"""

from __future__ import annotations

import torch
from torch import nn

#: How a model represents an item: its learned id embedding, its frozen text through the
#: adaptor (no per-item parameter), or the sum of both.
ITEM_REPRESENTATIONS = ("id", "text", "fused")


class MoEAdaptor(nn.Module):
    """``forward(text (..., d_text)) -> (..., d)``: UniSRec's whitened mixture of experts
    (any leading dimensions: the two-tower's DP-SGD loss passes ``(B, T, d_text)``)."""

    def __init__(self, text_dim: int, dim: int, n_experts: int = 8, dropout: float = 0.2):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(n_experts, text_dim))  # b_k, (k, d_text)
        self.experts = nn.Parameter(torch.empty(n_experts, text_dim, dim))  # W_k, (k, d_text, d)
        self.gate = nn.Linear(text_dim, n_experts, bias=False)  # W_g
        nn.init.normal_(self.experts, std=0.02)
        nn.init.normal_(self.gate.weight, std=0.02)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        x = self.dropout(text)  # (..., d_text)
        gates = torch.softmax(self.gate(x), dim=-1)  # (..., k)
        k, t, d = self.experts.shape
        projected = (x @ self.experts.transpose(0, 1).reshape(t, k * d)).view(*x.shape[:-1], k, d)  # x W_k
        shift = torch.einsum("kt,ktd->kd", self.bias, self.experts)  # b_k W_k, (k, d)
        return (gates[..., None] * (projected - shift)).sum(-2)  # sum_k g_k (x - b_k) W_k, (..., d)
