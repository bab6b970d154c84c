"""Model configuration read from (and written back to) a Hugging Face `config.json`.

One dataclass covers the RoBERTa family (xlm-roberta, roberta) and the BERT family (bert, which
multilingual MiniLM / e5 checkpoints use): they share every module and differ only in where
position ids start and how many token types there are.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

ROBERTA_FAMILY = ("xlm-roberta", "roberta")
BERT_FAMILY = ("bert",)

# The format marker written into our own config.json, so a folder says which key layout it holds.
FORMAT = "xlmr-ner"


class ConfigError(ValueError):
    pass


@dataclass
class XLMRConfig:
    model_type: str = "xlm-roberta"
    vocab_size: int = 250002
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    classifier_dropout: float | None = None
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    pad_token_id: int = 1
    # The labels belong to the data (PAN-X's in loaders.panx, a user's file's in loaders.nerfiles) and
    # are saved with the checkpoint; without any, Hugging Face's two placeholders.
    id2label: dict[int, str] = field(default_factory=lambda: {0: "LABEL_0", 1: "LABEL_1"})
    # Whether fine-tuning put labels on pieces without '▁' (training text with Han/kana runs, or a
    # checkpoint trained when every sub-word could be labelled). If not, decoding trusts no B-/I-
    # split on such pieces (xlmr/decoding.py).
    glued_pieces_labelled: bool = False
    # The tag-transition prior "viterbi" decoding adds (xlmr.decoding.TransitionPrior as a dict:
    # start, follow, weight), fitted at the end of training; None: the IOB2 constraints alone.
    tag_transitions: dict | None = None
    # "crf": a linear-chain CRF's learnt start and transition scores on top of the linear head
    # (xlmr/crf.py), trained with the sentence's likelihood and decoding in their place.
    head: str = "linear"

    def __post_init__(self):
        if self.model_type not in ROBERTA_FAMILY + BERT_FAMILY:
            raise ConfigError(
                f"unknown model_type {self.model_type!r}; supported: "
                f"{', '.join(ROBERTA_FAMILY + BERT_FAMILY)}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        self.id2label = {int(k): v for k, v in self.id2label.items()}

    @property
    def position_offset(self) -> int:
        # fairseq's RoBERTa numbers positions from padding_idx + 1 so that padding keeps the
        # padding row; BERT numbers them from 0.
        return self.pad_token_id + 1 if self.model_type in ROBERTA_FAMILY else 0

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def label2id(self) -> dict[str, int]:
        return {v: k for k, v in self.id2label.items()}

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def head_dropout(self) -> float:
        # Hugging Face falls back to the hidden dropout when classifier_dropout is unset.
        return self.hidden_dropout_prob if self.classifier_dropout is None else self.classifier_dropout

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "XLMRConfig":
        if "model_type" not in d:
            raise ConfigError(f"{source}: no model_type")
        known = {f.name for f in fields(cls)}
        kwargs = {k: d[k] for k in known if k in d}
        try:
            return cls(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "XLMRConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no config.json at {path}")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(d, source=str(path))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["id2label"] = {str(k): v for k, v in self.id2label.items()}
        d["label2id"] = self.label2id
        return d
