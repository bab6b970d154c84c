"""The CRF head (`--head crf`): its likelihood against enumerating every tag sequence, the
gathering of labelled tokens, and a model that trains and decodes with it."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from tests.tiny import TAGS, run_args
from xlmr.config import XLMRConfig
from xlmr.crf import LinearChainCRF, labelled_positions
from xlmr.model import XLMRForTokenClassification
from xlmr.weights import CheckpointError, export_hf, load_model, save_model


def sequence_score(emissions, start, transitions, tags) -> float:
    """start[y0] + sum of emissions + sum of transitions, written out."""
    return float(start[tags[0]] + sum(emissions[t, y] for t, y in enumerate(tags))
                 + sum(transitions[a, b] for a, b in zip(tags, tags[1:])))


def test_crf_nll_matches_enumerating_every_sequence():
    g = torch.Generator().manual_seed(0)
    C = 4
    crf = LinearChainCRF(C)
    with torch.no_grad():
        crf.start.copy_(torch.randn(C, generator=g))
        crf.transitions.copy_(torch.randn(C, C, generator=g) * 2)
    lengths = [3, 1, 4, 0]
    N = max(lengths)
    emissions = torch.randn(len(lengths), N, C, generator=g) * 2
    tags = torch.randint(0, C, (len(lengths), N), generator=g)
    mask = torch.arange(N)[None, :] < torch.tensor(lengths)[:, None]
    nll = crf.nll(emissions, tags, mask).detach()
    for b, n in enumerate(lengths):
        if n == 0:
            assert float(nll[b]) == 0.0
            continue
        e, s, tr = emissions[b, :n], crf.start.detach(), crf.transitions.detach()
        log_z = math.log(sum(math.exp(sequence_score(e, s, tr, path)) for path in itertools.product(range(C), repeat=n)))
        expected = log_z - sequence_score(e, s, tr, tags[b, :n].tolist())
        assert abs(float(nll[b]) - expected) < 1e-4, (b, float(nll[b]), expected)


def test_labelled_positions_moves_each_sentences_labels_to_the_front():
    logits = torch.arange(2 * 5 * 2, dtype=torch.float).view(2, 5, 2)  # (B, T, C): token t of b scores 10b + 2t
    labels = torch.tensor([[-100, 1, -100, 0, -100], [-100, -100, -100, 1, -100]])
    emissions, tags, mask = labelled_positions(logits, labels)
    assert mask.tolist() == [[True, True], [True, False]]
    assert tags.tolist() == [[1, 0], [1, 0]]
    assert emissions[0].tolist() == [[2.0, 3.0], [6.0, 7.0]]  # tokens 1 and 3
    assert emissions[1, 0].tolist() == [16.0, 17.0]  # token 3


def test_a_crf_model_learns_transitions_decodes_with_them_and_is_saved(tmp_path):
    """Tokens carry no information about their tag (all the same id), so only the transitions
    can learn "B-PER is followed by I-PER": after training, decoding gives B-PER I-PER I-PER."""
    torch.manual_seed(0)
    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=50, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, head="crf")
    model = XLMRForTokenClassification(config)
    B, I = TAGS.index("B-PER"), TAGS.index("I-PER")
    ids = torch.full((8, 5), 7)
    ids[:, 0], ids[:, -1] = 0, 2  # <s> ... </s>
    labels = torch.tensor([[-100, B, I, I, -100]] * 8)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        _, loss = model(ids, torch.ones_like(ids), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.crf.transitions[B, I] > model.crf.transitions[B, B]
    with torch.no_grad():
        logits, _ = model(ids[:1], torch.ones_like(ids[:1]))
    scores = [logits[0, 1:4].log_softmax(-1)]
    assert model.decode(scores, "viterbi") == [[B, I, I]]
    # The per-token loss `eval.py errors` ranks by stays the cross-entropy of the logits.
    assert model.loss(logits, labels[:1], "none").shape == (1, 5)
    # Saved and loaded, the CRF comes back with its scores.
    save_model(model, tmp_path / "crf")
    loaded = load_model(tmp_path / "crf")
    assert loaded.config.head == "crf"
    torch.testing.assert_close(loaded.crf.transitions, model.crf.transitions)
    assert loaded.decode(scores, "viterbi") == [[B, I, I]]
    # transformers has no CRF: exporting would drop the transitions, so it is refused.
    with pytest.raises(CheckpointError, match="CRF head"):
        export_hf(loaded, tmp_path / "hf")
    assert not (tmp_path / "hf" / "model.safetensors").exists()


@pytest.mark.slow
def test_a_crf_run_trains_its_transitions_and_fits_no_prior(tiny, small_panx, tmp_path):
    import train_loop
    from training import loop

    out = tmp_path / "crf"
    loop.train(train_loop.config_from(train_loop.build_parser().parse_args(
        run_args(tiny, small_panx, out, "--epochs", "1", "--num-samples", "32", "--head", "crf"))))
    model = load_model(out)
    assert model.config.head == "crf" and model.config.tag_transitions is None  # the CRF's scores decode
    assert model.crf.transitions.abs().max() > 0  # they started at 0


def test_the_head_sets_its_own_learning_rate_and_the_loop_names_no_head():
    """The CRF's loss, decoding and learning rate live with it (xlmr/model.py, xlmr/crf.py): AdamW's
    groups read the module's own factor, and no code in training/ names the CRF (only the --head
    flag's choices, in config.py, come from xlmr.model.HEADS)."""
    import ast
    from pathlib import Path

    from training.config import TrainConfig
    from training.recipe import parameter_groups

    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=50, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32)
    model = XLMRForTokenClassification(config)
    assert len(parameter_groups(model, TrainConfig(lr=1e-3))) == 2  # the Trainer's: decay, no decay
    model.set_head("crf")
    groups = parameter_groups(model, TrainConfig(lr=1e-3))
    assert [len(g["params"]) for g in groups[2:]] == [2]
    assert groups[2]["params"][0] is model.crf.start and groups[2]["weight_decay"] == 0.0
    assert groups[2]["lr"] == pytest.approx(1e-3 * LinearChainCRF.lr_factor)
    model.set_head("linear")
    assert model.crf is None and model.config.head == "linear" and not model.learns_transitions
    for path in (Path(__file__).resolve().parents[1] / "training").glob("*.py"):
        if path.name == "config.py":
            continue  # the flag's help text
        tree = ast.parse(path.read_text())
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        names = [n.attr if isinstance(n, ast.Attribute) else n.id if isinstance(n, ast.Name) else n.value
                 for n in ast.walk(tree) if isinstance(n, (ast.Attribute, ast.Name))
                 or (isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings)]
        assert not [x for x in names if "crf" in x.lower()], path.name
