"""The XLM-RoBERTa encoder and its token-classification head, one small module per idea.

Shapes: B batch, T sequence length, H hidden size, nh heads, hs head size (H = nh * hs),
F feed-forward size, C number of labels.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import XLMRConfig
from .crf import HEADS, LinearChainCRF, labelled_positions
from .decoding import IGNORE_INDEX, TagDecoder, TransitionPrior
from .dropout import Dropout, dropout
from .packing import RealTokens, jagged_attention


ACTIVATIONS = {
    "gelu": F.gelu,  # exact (erf) GELU, as BERT and XLM-R were trained
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


def position_ids_for(input_ids: torch.Tensor, config: XLMRConfig) -> torch.Tensor:
    """(B, T) positions: RoBERTa counts only real tokens from padding_idx + 1 and gives padding
    the padding index itself; BERT counts 0..T-1 whatever the padding."""
    if config.position_offset == 0:
        T = input_ids.shape[1]
        return torch.arange(T, device=input_ids.device).expand_as(input_ids)
    not_pad = input_ids.ne(config.pad_token_id).int()  # (B, T)
    return torch.cumsum(not_pad, dim=1) * not_pad + config.pad_token_id


class Embeddings(nn.Module):
    def __init__(self, config: XLMRConfig):
        super().__init__()
        self.config = config
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(
            config.max_position_embeddings, config.hidden_size,
            padding_idx=config.pad_token_id if config.position_offset else None,
        )
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        # Checked on the shape, not the values, so that no device sync is needed.
        longest = self.config.max_position_embeddings - self.config.position_offset
        if input_ids.shape[1] > longest:
            raise ValueError(f"sequence of {input_ids.shape[1]} tokens is longer than the model's {longest} positions")
        positions = position_ids_for(input_ids, self.config)  # (B, T)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)  # (B, T, H)
        return self.dropout(self.norm(x))


class QKVProjection(nn.Linear):
    """The fused (3H, H) Q, K, V projection of self-attention; its call returns Q, K and V, each
    shaped like x ((B, T, H) or (N, H)). A module that replaces it (int8, in the runtime package)
    returns the same three.

    Training and low-precision inference take one product of width 3H. fp32 inference on a
    CPU takes three products of width H on row slices (views) of the same weight, the
    products transformers runs: there both implementations are bound by fp32 matrix products
    at the library's peak, and the library measured the fused product 5% faster to 6% slower
    than the three, by shape (AMD EPYC with AVX-512, H 384 to 1024, 256 to 4096 tokens).
    Running the reference's products leaves no shape where ours loses on them.
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        H = self.out_features // 3
        w, b = self.weight, self.bias
        if (x.device.type == "cpu" and w.dtype == torch.float32 and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled("cpu")):
            return tuple(F.linear(x, w_i, b_i) for w_i, b_i in zip(w.split(H), b.split(H)))
        return super().forward(x).split(H, dim=-1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection (QKVProjection).

    `manual=True` spells the attention out (softmax(QK^T / sqrt(hs)) V) for study; the default
    calls PyTorch's fused scaled_dot_product_attention, which computes the same thing, except
    over sequences of up to `matmul_attention_up_to` tokens, which are spelled out too: some CPUs
    run bf16 attention faster so. It is 0 (never) unless the runtime's precision step sets it
    from its probe (runtime/precision.py). Given packed tokens and `jagged=True`, attention runs
    on them as they are (xlmr/packing.py), without padding them again.
    """

    def __init__(self, config: XLMRConfig, manual: bool = False):
        super().__init__()
        self.nh, self.hs = config.num_attention_heads, config.head_dim
        self.qkv = QKVProjection(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.attn_dropout = config.attention_probs_dropout_prob
        self.manual = manual
        self.matmul_attention_up_to = 0  # tokens; a plain int, so torch.compile reads a constant

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None, real: RealTokens | None = None,
                jagged: bool = False) -> torch.Tensor:
        # x: (B, T, H), or (N, H) when `real` says where those N tokens sit in (B, T);
        # key_mask: (B, 1, 1, T) bool, True where a key may be attended to, or None when every key may be
        q, k, v = self.qkv(x)  # 3 x (B, T, H) or 3 x (N, H)
        p = self.attn_dropout if self.training else 0.0
        if real is not None and jagged and not self.manual:
            return self.proj(jagged_attention(q, k, v, real, self.nh, p))  # (N, H)
        if real is not None:
            q, k, v = real.pad(q), real.pad(k), real.pad(v)  # 3 x (B, T, H)
        B, T, H = q.shape
        q, k, v = (t.view(B, T, self.nh, self.hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        # Training on a CPU spells attention out too: the fused kernel has no dropout there and
        # falls back to these same products, with dropout's slower draws (xlmr/dropout.py).
        if self.manual or T <= self.matmul_attention_up_to or (p > 0 and q.device.type == "cpu"):
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.hs)  # (B, nh, T, T)
            if key_mask is not None:
                scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
            weights = dropout(scores.softmax(dim=-1), p, self.training)
            y = weights @ v  # (B, nh, T, hs)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, T, H)  # re-assemble the heads side by side
        return self.proj(y if real is None else real.unpad(y))  # (B, T, H) or (N, H)


class FeedForward(nn.Module):
    def __init__(self, config: XLMRConfig):
        super().__init__()
        self.fc = nn.Linear(config.hidden_size, config.intermediate_size)
        self.proj = nn.Linear(config.intermediate_size, config.hidden_size)
        if config.hidden_act not in ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {config.hidden_act!r}; known: {sorted(ACTIVATIONS)}")
        self.act = ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))  # (B, T, H) -> (B, T, F) -> (B, T, H)


class EncoderLayer(nn.Module):
    """Post-LayerNorm transformer layer, as in BERT and XLM-R: the residual sum is normalised."""

    def __init__(self, config: XLMRConfig, manual_attention: bool = False):
        super().__init__()
        self.attn = SelfAttention(config, manual=manual_attention)
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None, real: RealTokens | None = None,
                jagged: bool = False) -> torch.Tensor:
        x = self.attn_norm(x + self.dropout(self.attn(x, key_mask, real, jagged)))
        return self.mlp_norm(x + self.dropout(self.mlp(x)))


class XLMRModel(nn.Module):
    """The encoder body: embeddings and a stack of layers (no pooler; NER does not use it)."""

    def __init__(self, config: XLMRConfig, manual_attention: bool = False):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config, manual_attention) for _ in range(config.num_hidden_layers))
        # Inference on padded batches runs on the real tokens alone (RealTokens); off for compiled
        # layers, whose graphs are kept to bucketed (B, T) shapes.
        self.skip_padding = True
        # Padding dropped in training too, and attention run on the packed tokens (jagged_attention):
        # how a model runs, so the runtime sets it (runtime/attention.py: on CUDA).
        self.varlen = False

    def set_manual_attention(self, manual: bool) -> None:
        for layer in self.layers:
            layer.attn.manual = manual

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, lengths=None) -> torch.Tensor:
        # input_ids, attention_mask: (B, T) -> last hidden states (B, T, H). `lengths` (B,), the
        # rows' real tokens as the host knows them, spares a GPU the wait of reading the mask.
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        # Under torch.compile nothing is read on the host: the mask is kept, and no branch depends on data.
        real = None if torch.compiler.is_compiling() else RealTokens(attention_mask, lengths)
        # Without padding attention needs no mask, and scaled_dot_product_attention takes its fastest kernel.
        key_mask = None if real is not None and real.all_real else attention_mask.bool()[:, None, None, :]
        # Packed for inference (skip_padding), and for training too with varlen; else training keeps
        # the padded shapes its figures were measured with.
        packed = key_mask is not None and real is not None and (
            self.varlen or (self.skip_padding and not torch.is_grad_enabled()))
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, H)
        if packed:
            x = real.unpad(x)  # (N, H)
        for layer in self.layers:
            x = layer(x, key_mask, real if packed else None, self.varlen)
        return real.pad(x) if packed else x  # (B, T, H)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """In fp32 over the tokens whose label is not -100: logits (B, T, C), labels (B, T) -> a
    scalar, or (B, T) with reduction="none" (0 at -100)."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,
                           reduction=reduction).view(labels.shape if reduction == "none" else ())


class XLMRForTokenClassification(nn.Module):
    """Encoder + dropout + linear head: one score per label for every token."""

    def __init__(self, config: XLMRConfig, manual_attention: bool = False):
        super().__init__()
        self.config = config
        self.encoder = XLMRModel(config, manual_attention)
        self.dropout = Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.crf = LinearChainCRF(config.num_labels) if config.head == "crf" else None
        self._decoder, self._prior_source = None, None  # decode's TagDecoder and the prior it was built from
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # BERT's initialisation; it is what a new head gets when the checkpoint has none.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def reset_head(self) -> None:
        self._init_weights(self.classifier)
        self.crf = None
        self.set_head(self.config.head)  # a new CRF (zero scores) where the config has one

    def set_head(self, head: str) -> None:
        """`--head`: "crf" adds a CRF (zero scores) on the linear head where none is; "linear" takes it off."""
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose from {', '.join(HEADS)}")
        if head == "linear" or self.crf is None:
            self.crf = LinearChainCRF(self.config.num_labels).to(self.classifier.bias.device) if head == "crf" else None
        self.config.head = head

    @property
    def learns_transitions(self) -> bool:  # a CRF: its learnt transitions decode in a fitted prior's place
        return self.crf is not None

    def forward(self, input_ids, attention_mask=None, labels=None, token_type_ids=None, lengths=None):
        """Returns logits (B, T, C), and with labels (B, T) also the mean cross-entropy over the
        tokens whose label is not -100. `lengths`: see XLMRModel.forward."""
        hidden = self.encoder(input_ids, attention_mask, token_type_ids, lengths)  # (B, T, H)
        logits = self.classifier(self.dropout(hidden))  # (B, T, C)
        return logits, (None if labels is None else self.loss(logits, labels))

    # The one loss and the one decoding of the project: training, prediction, the sweep, the
    # tagger and the service all call these two.
    def loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """`cross_entropy` over the tokens whose label is not -100. With a CRF, "sum" and "mean" are
        its negative log-likelihood over the sentences (divided by the labelled tokens); "none" is
        the per-token cross-entropy, which `eval.py errors` ranks words by."""
        if self.crf is not None and reduction != "none":
            nll = self.crf.nll(*labelled_positions(logits.float(), labels)).sum()
            return nll if reduction == "sum" else nll / (labels != IGNORE_INDEX).sum().clamp(min=1)
        return cross_entropy(logits, labels, reduction)

    def decode(self, word_scores: list[torch.Tensor], method: str = "viterbi",
               glued: list[list[bool]] | None = None, prior: TransitionPrior | None = None) -> list[list[int]]:
        """Tag ids per sentence from each word's log-probabilities (n_words, C): constrained
        IOB2 Viterbi with the run's tag-transition prior (config.tag_transitions, a CRF head's
        learnt scores, or `prior` to try another), the constraints alone ("iob2"), or the book's
        per-word argmax (xlmr/decoding.py). `glued` marks the words whose piece has no '▁'
        (Encoding.word_glued)."""
        labels = [self.config.id2label[i] for i in range(len(self.config.id2label))]
        if prior is None and self.crf is not None:
            prior = self.crf.prior()  # the learnt scores, as they are now (they move during training)
        if prior is not None:
            decoder = TagDecoder(labels, prior)
        else:
            source = self.config.tag_transitions  # decoder built once per label list and prior, not per batch
            if self._decoder is None or self._decoder.labels != labels or self._prior_source is not source:
                self._decoder, self._prior_source = TagDecoder(labels, TransitionPrior.from_dict(source)), source
            decoder = self._decoder
        # A model trained with labels on glued pieces learnt their B-/I- split: nothing to make up for.
        return decoder(word_scores, method, None if self.config.glued_pieces_labelled else glued)
