"""Entity-level precision, recall and F1 with seqeval, from tag ids."""
from __future__ import annotations

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities


def tag_names(tag_ids: list[list[int]], id2label: dict[int, str]) -> list[list[str]]:
    """Tag-id sequences as seqeval's tag names."""
    return [[id2label[int(t)] for t in seq] for seq in tag_ids]


def entity_scores(y_true: list[list[str]], y_pred: list[list[str]], report: bool = False) -> dict:
    """seqeval's micro-averaged entity P/R/F1; with `report`, its per-type report as a dict and
    as text."""
    scores = {"f1": f1_score(y_true, y_pred), "precision": precision_score(y_true, y_pred),
              "recall": recall_score(y_true, y_pred)}
    if report:
        scores["report"] = classification_report(y_true, y_pred, output_dict=True)
        scores["report_text"] = classification_report(y_true, y_pred, digits=3)
    return scores


def f1_table(scores: dict[str, float], label: str = "F1") -> str:
    """One Markdown row of F1 per language, e.g. for the end of a training run."""
    langs = list(scores)
    head = "| " + " | ".join([label] + langs) + " |"
    sep = "|" + "---|" * (len(langs) + 1)
    row = "| test | " + " | ".join(f"{scores[lang]:.3f}" for lang in langs) + " |"
    return "\n".join([head, sep, row])


def count_entities(tag_sequences: list[list[str]]) -> int:
    """Entities as seqeval reads them (an I- without a B- opens one too)."""
    return sum(len(get_entities(seq)) for seq in tag_sequences)
