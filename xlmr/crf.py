"""A linear-chain CRF over the words of a sentence (`--head crf`): learnt start and transition
scores, trained with the sentence's negative log-likelihood instead of each word's cross-entropy.

The score of a tag sequence y over n words is

    start[y_0] + sum_t emission[t, y_t] + sum_{t>0} transition[y_{t-1}, y_t],

and the loss is log Z - score(gold), Z summing exp(score) over every sequence (the forward
algorithm). Decoding is xlmr/decoding.py's Viterbi with these scores as its transition prior at
weight 1, so the IOB2 constraints still hold there. Training leaves the transitions free, as
pytorch-crf does: a user's gold sequence that breaks IOB2 costs a large loss, not an infinite one,
and the learnt scores make the forbidden moves dear anyway.

The emissions are the head's logits at the labelled positions (one per word, its first piece);
a log-softmax of them decodes the same, as it shifts every tag of a word alike.
"""
from __future__ import annotations

import torch
from torch import nn

from .decoding import IGNORE_INDEX, TransitionPrior

HEADS = ("linear", "crf")  # `--head`: a linear layer, or a linear layer with this CRF on top


def labelled_positions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The labelled tokens of each sentence, moved to the front in order: emissions (B, N, C),
    tags (B, N) (0 past the end) and mask (B, N), N the most labels any sentence has."""
    labelled = labels != IGNORE_INDEX  # (B, T)
    counts = labelled.sum(1)  # (B,)
    n = max(int(counts.max()), 1) if labels.numel() else 1
    order = torch.argsort((~labelled).to(torch.int8), dim=1, stable=True)[:, :n]  # (B, N) labelled first
    emissions = logits.gather(1, order[..., None].expand(-1, -1, logits.shape[-1]))  # (B, N, C)
    mask = torch.arange(n, device=labels.device)[None, :] < counts[:, None]  # (B, N)
    tags = torch.where(mask, labels.gather(1, order), 0)  # (B, N)
    return emissions, tags, mask


class LinearChainCRF(nn.Module):
    # The start and transition scores begin at 0 and need to travel a few nats; at the encoder's
    # 5e-5, Adam moves a weight at most ~0.04 over a 1,575-step run, so the optimizer gives them
    # this many times the learning rate, without weight decay (training/recipe.py reads it).
    lr_factor = 100

    def __init__(self, n_tags: int):
        super().__init__()
        self.start = nn.Parameter(torch.zeros(n_tags))  # (C,)
        self.transitions = nn.Parameter(torch.zeros(n_tags, n_tags))  # (C_prev, C_next)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """-log P(tags | emissions) per sentence (B,): emissions (B, N, C), tags and mask (B, N),
        each sentence's positions first; a sentence without any scores 0."""
        emissions = emissions.float()
        B, N, _ = emissions.shape
        live = mask.float()  # (B, N)
        rows = torch.arange(B, device=emissions.device)
        gold = self.start[tags[:, 0]] + emissions[rows, 0, tags[:, 0]]  # (B,)
        alpha = self.start + emissions[:, 0]  # (B, C): log-sum of every path ending in each tag
        for t in range(1, N):
            step = self.transitions[tags[:, t - 1], tags[:, t]] + emissions[rows, t, tags[:, t]]  # (B,)
            gold = gold + live[:, t] * step
            nxt = torch.logsumexp(alpha[:, :, None] + self.transitions + emissions[:, t, None, :], dim=1)  # (B, C)
            alpha = torch.where(mask[:, t, None], nxt, alpha)  # finished sentences keep theirs
        return (torch.logsumexp(alpha, -1) - gold) * live[:, 0]

    def prior(self) -> TransitionPrior:
        """The learnt scores as Viterbi's transition prior, at weight 1."""
        return TransitionPrior(self.start.detach().float().cpu().tolist(),
                               self.transitions.detach().float().cpu().tolist(), 1.0)
