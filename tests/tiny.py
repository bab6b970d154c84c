"""What several test modules share besides fixtures (those are in conftest.py): tiny random
models, in the reference library (saved as Hugging Face folders) and in ours, small slices of the
real PAN-X files, the command line of a short training run, and a call to the tagging service."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import torch

TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


def hf_config(model_type: str, vocab_size: int = 1000, dropout: float = 0.0, **overrides):
    from transformers import BertConfig, XLMRobertaConfig

    common = dict(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
        id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)},
    )
    common.update(overrides)
    if model_type == "xlm-roberta":
        return XLMRobertaConfig(max_position_embeddings=66, type_vocab_size=1, pad_token_id=1,
                                bos_token_id=0, eos_token_id=2, **common)
    return BertConfig(max_position_embeddings=64, type_vocab_size=2, pad_token_id=0, **common)


def hf_model(config, seed: int = 0, head: bool = True):
    from transformers import AutoModel, AutoModelForTokenClassification

    torch.manual_seed(seed)
    cls = AutoModelForTokenClassification if head else AutoModel
    model = cls.from_config(config, attn_implementation="eager")
    # Random LayerNorm and bias values too, so a swapped weight/bias cannot go unnoticed.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.normal_(0.0 if name.endswith("bias") else 1.0, 0.1)
    return model.eval()


def save_hf(model, folder: Path, tokenizer_file: Path | None = None) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer_file is not None:
        (folder / "sentencepiece.bpe.model").write_bytes(Path(tokenizer_file).read_bytes())
    return folder


def ragged_batch(vocab_size: int, pad_id: int, lengths=(9, 4, 13, 2), num_labels: int = 7, seed: int = 1):
    """input_ids, attention_mask and labels for a right-padded batch of the given lengths; labels
    are -100 on padding, on the first and last token and on a few others."""
    g = torch.Generator().manual_seed(seed)
    B, T = len(lengths), max(lengths)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(3, vocab_size, (n,), generator=g)
        ids[i, 0], ids[i, n - 1] = 0, 2
        mask[i, :n] = 1
        labels[i, 1:n - 1] = torch.randint(0, num_labels, (n - 2,), generator=g)
    labels[0, 3] = -100  # a later sub-word
    ids[ids == pad_id] = torch.where(mask.bool(), 5, pad_id)[ids == pad_id]  # no pad id inside sentences
    return ids, mask, labels


def panx_head(panx_dir: Path, out: Path, langs=("de",), sizes=(("train", 240), ("dev", 64), ("test", 64))) -> Path:
    """The first sentences of the real PAN-X files, written in the same layout into out."""
    for lang in langs:
        for split, n in sizes:
            text = (panx_dir / f"{split}-{lang}.tsv").read_text(encoding="utf-8")
            (out / f"{split}-{lang}.tsv").write_text("\n\n".join(text.split("\n\n")[:n]) + "\n", encoding="utf-8")
    return out


def hf_first_subword_tags(hf, tok, words: list[str]) -> list[str]:
    """transformers' tags for a sentence's words: each word takes the argmax of its first sub-word
    (the book's decoding, computed without our code)."""
    enc = tok(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        best = hf(**enc).logits[0].argmax(-1).tolist()
    first = {}
    for position, w in enumerate(enc.word_ids()):
        if w is not None and w not in first:
            first[w] = best[position]
    return [hf.config.id2label[first[w]] for w in range(len(words))]


def lookup_model(tag_of: dict[int, int], max_positions: int = 514, vocab_size: int = 250002,
                 untagged: float = 1.0):
    """A real XLMRForTokenClassification (no encoder layers) that scores each token by its id
    alone: an id in `tag_of` gets logit 5 for its tag and 0 for the others; any other id gets
    `untagged` for O and 0 for the others. Its config, loss and decoding are the real ones.

    Word embedding row i is the one-hot of i's tag (an extra dimension for "no tag"); the
    embedding LayerNorm turns one-hot e_j into s (e_j - 1/H), so a classifier with columns
    target_j / s and bias mean_j(target_j) returns target_j exactly."""
    from xlmr.config import XLMRConfig
    from xlmr.model import XLMRForTokenClassification

    C = len(TAGS)
    H = C + 1  # one dimension per tag, and one for tokens without a tag
    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=vocab_size, hidden_size=H, num_hidden_layers=0,
                        num_attention_heads=1, intermediate_size=1, max_position_embeddings=max_positions,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = XLMRForTokenClassification(config).eval()
    targets = torch.zeros(H, C)  # (one-hot j, the logits it must give)
    targets[:C] = 5.0 * torch.eye(C)
    targets[C, 0] = untagged
    emb = model.encoder.embeddings
    with torch.no_grad():
        emb.position.weight.zero_()
        emb.token_type.weight.zero_()
        emb.word.weight.zero_()
        emb.word.weight[:, C] = 1.0
        for token, tag in tag_of.items():
            emb.word.weight[token] = torch.nn.functional.one_hot(torch.tensor(tag), H).float()
        normed = emb.norm(torch.eye(H))  # (H, H): row j is s (e_j - 1/H)
        scale = normed[0, 0] - normed[0, 1]  # s
        model.classifier.weight.copy_(targets.t() / scale)  # (C, H)
        model.classifier.bias.copy_(targets.mean(0))
    return model


def tiny_checkpoint(folder: Path, spm_path: Path, labels: int = 7, dropout: float = 0.1) -> Path:
    """Our 2-layer, 32-wide random model on the real 250,002-piece vocabulary, saved with the
    tokenizer."""
    from xlmr.config import XLMRConfig
    from xlmr.model import XLMRForTokenClassification
    from xlmr.weights import save_model

    torch.manual_seed(0)
    id2label = dict(enumerate(TAGS)) if labels == len(TAGS) else {i: f"L{i}" for i in range(labels)}
    config = XLMRConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, id2label=id2label)
    save_model(XLMRForTokenClassification(config), folder, tokenizer_file=spm_path)
    return folder


def confident_checkpoint(folder: Path, spm_path: Path) -> Path:
    """The tiny random model with its head scaled up: confident, so fp32 noise between two
    implementations cannot flip a tag (for tests of plumbing, not of numerics)."""
    from xlmr.weights import load_model, save_model

    tiny_checkpoint(folder, spm_path, dropout=0.0)
    model = load_model(folder)
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
    save_model(model, folder, tokenizer_file=spm_path)
    return folder


SENTENCES = [
    "Jeff Dean ist ein Informatiker bei Google in Kalifornien",
    "Jeff Dean est informaticien chez Google en Californie",
    "Angela Merkel besuchte Paris und traf Emmanuel Macron",
    "Il Colosseo si trova a Roma in Italia",
    "Barack Obama was born in Hawaii and worked in Chicago",
    "Lionel Messi joue pour Inter Miami aux États-Unis",
]


def run_args(model, data, out, *extra) -> list[str]:
    """train_loop.py's arguments for a short German run on a small slice of PAN-X."""
    return ["--langs", "de", "--eval-langs", "de", "--model", str(model), "--data-dir", str(data), "--full-splits",
            "--output-dir", str(out), "--batch-size", "8", "--lr", "1e-3", "--seed", "3", "--no-progress", *extra]


def post(url: str, body, raw: bool = False) -> tuple[int, dict]:
    """(status, JSON answer) of POST /api/tag with `body` (JSON-encoded unless `raw` bytes)."""
    data = body if raw else json.dumps(body).encode()
    request = urllib.request.Request(url + "/api/tag", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
