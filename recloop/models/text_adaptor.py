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
"""

from __future__ import annotations

import torch
from torch import nn


class MoEAdaptor(nn.Module):
    """``forward(text (n, d_text)) -> (n, d)``: UniSRec's whitened mixture of experts."""

    def __init__(self, text_dim: int, dim: int, n_experts: int = 8, dropout: float = 0.2):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(n_experts, text_dim))  # b_k, (k, d_text)
        self.experts = nn.Parameter(torch.empty(n_experts, text_dim, dim))  # W_k, (k, d_text, d)
        self.gate = nn.Linear(text_dim, n_experts, bias=False)  # W_g
        nn.init.normal_(self.experts, std=0.02)
        nn.init.normal_(self.gate.weight, std=0.02)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        x = self.dropout(text)  # (n, d_text)
        gates = torch.softmax(self.gate(x), dim=-1)  # (n, k)
        k, t, d = self.experts.shape
        projected = (x @ self.experts.transpose(0, 1).reshape(t, k * d)).view(-1, k, d)  # x W_k, (n, k, d)
        shift = torch.einsum("kt,ktd->kd", self.bias, self.experts)  # b_k W_k, (k, d)
        return (gates[..., None] * (projected - shift)).sum(1)  # sum_k g_k (x - b_k) W_k, (n, d)
