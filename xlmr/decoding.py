"""From per-word label scores to a tag sequence: constrained IOB2 Viterbi, or the book's argmax.

Taking each word's argmax can emit I-LOC after O or after B-PER, a sequence no annotator writes;
seqeval then opens a new entity there. Viterbi instead finds the sequence with the highest total
log-probability among those IOB2 allows:

    start -> I-X,   O -> I-X,   B-X -> I-Y,   I-X -> I-Y   (X != Y)   are forbidden;

everything else costs nothing. The label list decides which tag is which, so any IOB2 label set
works; a label without a B-/I- prefix is treated like O.

A word's scores are those of the sub-word that carries its label. When a run of Han or kana
characters is tokenised as one string, one piece can hold several words (see
`XLMRTokenizer.encode_words_batch`): the first of them takes the piece's tag and the others its
I- form (`xlmr.alignment.spread_to_words`).

Such pieces carry no '▁' ("glued" pieces): 北京 after 我在, ン after ジョ in ジョン. Fine-tuning on
spaced text labels only pieces that start with '▁', so on a glued piece the model's choice of
type is informed but its choice between B- and I- is not: it says B-PER at both ジョ and ン.
Viterbi therefore scores *continuing* an entity through a glued piece with the probability of
either form, log(P(B-X) + P(I-X)), and *opening* one with P(B-X) alone. Measured on the German
model's zh and ja test subsets: zh .370 -> .430, ja .222 -> .368 (docs/zero-shot.md).

"viterbi" also adds a tag-transition prior: weight x log P(tag | previous tag), counted over the
run's training tags. Opening an entity after O costs ~3 nats there and continuing one ~0.5, so
a weak entity word on its own is less often called an entity. The weight is chosen on the run's
validation set (training/transitions.py): 0.4-0.5 for the German recipe, whose German validation
F1 rises .854 -> .860; zero-shot, the 39-language mean rises too (docs/zero-shot.md). A
checkpoint without a prior decodes "viterbi" as "iob2", the constraints alone.

An entity is opened with P(B-X) alone. Opening it "by type", log(P(B-X) + P(I-X)), lost on the
German and English validation sets and was removed (docs/training.md, "Measured and removed");
a checkpoint whose prior asks for it decodes with the plain rule and says so.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

DECODINGS = ("viterbi", "iob2", "argmax")  # viterbi: IOB2 + the run's tag-transition prior; iob2: IOB2 alone
IGNORE_INDEX = -100  # the label of tokens that are not scored: later sub-words, <s>, </s>, padding
FORBIDDEN = -1e4  # added to a forbidden transition's score: finite, so a row of them stays comparable


def _parts(tag: str) -> tuple[str, str | None]:
    prefix, _, kind = tag.partition("-")
    return (prefix, kind) if prefix in ("B", "I") and kind else ("O", None)


def inside_ids(labels: list[str]) -> list[int]:
    """For each tag id, the id of its I- form (B-PER -> I-PER); O and I- tags map to themselves,
    and so does a B- tag whose I- form is not in the list."""
    index = {t: i for i, t in enumerate(labels)}
    return [index.get("I-" + _parts(t)[1], i) if _parts(t)[0] == "B" else i for i, t in enumerate(labels)]


@dataclass
class TransitionPrior:
    """log P(first tag) (C,) and log P(tag | previous tag) (C, C) counted over a run's training
    sentences (add-0.5 smoothing), and the weight they get against the word scores, chosen on
    the run's validation set (training/transitions.py). Stored in config.json."""
    start: list[float]
    follow: list[list[float]]
    weight: float = 0.0

    @classmethod
    def count(cls, tag_sequences, n_tags: int, weight: float = 0.0) -> "TransitionPrior":
        starts, pairs = torch.full((n_tags,), 0.5), torch.full((n_tags, n_tags), 0.5)
        for tags in tag_sequences:
            if len(tags):
                starts[tags[0]] += 1
                for a, b in zip(tags, tags[1:]):
                    pairs[a, b] += 1
        return cls((starts / starts.sum()).log().tolist(), (pairs / pairs.sum(1, keepdim=True)).log().tolist(), weight)

    @classmethod
    def from_dict(cls, d: dict | None) -> "TransitionPrior | None":
        """The prior of a config.json. One fitted when entities could be opened by type
        ("open_by_type": true) decodes with the plain rule, and a warning says so."""
        if not d:
            return None
        if d.get("open_by_type"):
            warnings.warn(f"config.json: tag_transitions.open_by_type is true, but opening an entity by type was "
                          f"removed: decoding with the plain opening at the prior's weight {d['weight']}, which was "
                          f"chosen for the other rule. `python -m training.fit_prior MODEL` refits the weight; "
                          f"`--decode iob2` decodes without the prior", stacklevel=2)
        return cls(d["start"], d["follow"], float(d["weight"]))


def allowed_transitions(labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(start (C,), transition (C, C)) booleans: which tags may open a sentence, and which tag
    (column) may follow which (row), under IOB2."""
    parts = [_parts(t) for t in labels]
    start = torch.tensor([p != "I" for p, _ in parts])
    follows = torch.tensor([[q != "I" or (p in ("B", "I") and k == m) for q, m in parts] for p, k in parts])
    return start, follows


class TagDecoder:
    """Decodes word scores into tag ids for one label list. `prior` (a TransitionPrior, from
    the run's training tags) adds weight x log P(tag | previous tag) to each step of "viterbi";
    "iob2" is the constraints alone."""

    def __init__(self, labels: list[str], prior=None):
        self.labels = list(labels)
        start, follows = allowed_transitions(self.labels)
        self.start_penalty = torch.where(start, 0.0, FORBIDDEN)  # (C,)
        self.transition_penalty = torch.where(follows, 0.0, FORBIDDEN)  # (C_prev, C_next)
        self.prior = prior
        if prior is not None and prior.weight:
            if len(prior.start) != len(self.labels):
                raise ValueError(f"the transition prior has {len(prior.start)} tags, the labels {len(self.labels)}")
            self.prior_start = prior.weight * torch.tensor(prior.start)  # (C,)
            self.prior_follow = prior.weight * torch.tensor(prior.follow)  # (C_prev, C_next)
        else:
            self.prior_start, self.prior_follow = torch.zeros(len(self.labels)), torch.zeros(len(self.labels), len(self.labels))
        self.inside = inside_ids(self.labels)
        pairs = [(b, i) for b, i in enumerate(self.inside) if i != b]  # (B-X, I-X) ids
        self.begin_ids, self.inside_of_begin = [b for b, _ in pairs], [i for _, i in pairs]

    def __call__(self, scores: list[torch.Tensor], method: str = "viterbi",
                 glued: list[list[bool]] | None = None) -> list[list[int]]:
        """Tag ids for each sentence from its word scores (n_words, C), log-probabilities for
        Viterbi (argmax only compares them). `glued` marks, per sentence, the words whose scores
        come from a piece without '▁' (Encoding.word_glued); Viterbi alone uses it."""
        if method == "argmax":
            return [s.argmax(-1).tolist() for s in scores]
        if method not in DECODINGS:
            raise ValueError(f"unknown decoding {method!r}; choose from {', '.join(DECODINGS)}")
        return self.viterbi(scores, glued, with_prior=method == "viterbi")

    def emissions(self, x: torch.Tensor, glued: list[list[bool]] | None = None) -> torch.Tensor:
        """(B, N, C) scores as Viterbi adds them, from the padded word scores `x`: on a glued
        word, I-X scores log(P(B-X) + P(I-X)) (see the module's docstring)."""
        if glued is not None and self.begin_ids and any(any(g) for g in glued):
            mask = torch.zeros(x.shape[:2], dtype=torch.bool)  # (B, N)
            for b, g in enumerate(glued):
                mask[b, : len(g)] = torch.tensor(g, dtype=torch.bool)
            either = torch.logaddexp(x[..., self.begin_ids], x[..., self.inside_of_begin])  # (B, N, types)
            x = x.clone()  # the caller's scores stay as they are
            x[..., self.inside_of_begin] = torch.where(mask[..., None], either, x[..., self.inside_of_begin])
        return x

    def padded(self, scores: list[torch.Tensor]) -> torch.Tensor:
        """(B, N, C) word scores, zeros past each sentence's end (never read)."""
        x = torch.zeros(len(scores), max(len(s) for s in scores), len(self.labels))
        for b, s in enumerate(scores):
            x[b, : len(s)] = s.float()
        return x

    def viterbi(self, scores: list[torch.Tensor], glued: list[list[bool]] | None = None,
                with_prior: bool = True) -> list[list[int]]:
        """The best allowed path of every sentence, all sentences of the batch stepped together."""
        lengths = torch.tensor([len(s) for s in scores])
        if not len(scores) or int(lengths.max()) == 0:
            return [[] for _ in scores]
        if glued is not None and [len(g) for g in glued] != lengths.tolist():
            raise ValueError("glued must mark each sentence's words, as many as its scores")
        N = int(lengths.max())
        x = self.emissions(self.padded(scores), glued)  # (B, N, C)
        start, transition = self.start_penalty, self.transition_penalty
        if with_prior:
            start, transition = start + self.prior_start, transition + self.prior_follow
        best = x[:, 0] + start  # (B, C): best score of a path ending in each tag
        back = []
        for t in range(1, N):
            step = best[:, :, None] + transition  # (B, C_prev, C_next)
            step, came_from = step.max(dim=1)  # (B, C) over previous tags
            back.append(came_from)
            best = torch.where((t < lengths)[:, None], step + x[:, t], best)  # finished sentences keep theirs
        tags = torch.zeros(len(scores), N, dtype=torch.long)
        current = best.argmax(-1)  # (B,)
        for t in range(N - 1, -1, -1):
            live = t < lengths  # this position belongs to the sentence
            tags[:, t] = torch.where(live, current, tags[:, t])
            if t > 0:
                current = torch.where(live, back[t - 1].gather(1, current[:, None]).squeeze(1), current)
        return [tags[b, : int(n)].tolist() for b, n in enumerate(lengths)]

