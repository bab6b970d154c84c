"""`python train_loop.py --opening`: how the run's fitted prior opens an entity, chosen on
validation (the default) or fixed by the user."""
from __future__ import annotations

import json

import pytest

import train_loop
from tests.test_train import run_args, small_panx, tiny  # noqa: F401  (fixtures)
from training import fit_prior, loop
from training.transitions import WEIGHTS
from xlmr.weights import load_model


def test_opening_type_fixes_how_the_run_prior_opens_an_entity(tiny, small_panx, tmp_path):  # noqa: F811
    out = tmp_path / "typed"
    args = train_loop.build_parser().parse_args(run_args(tiny, small_panx, out, "--epochs", "1", "--opening", "type"))
    results = loop.train(train_loop.config_from(args))
    typed = json.loads((out / "config.json").read_text())["tag_transitions"]
    assert typed["open_by_type"] is True and load_model(out).config.tag_transitions["open_by_type"] is True
    assert typed["validation_f1"] == {}  # the plain rule was never tried
    assert results["transition_prior"]["open_by_type"] is True
    by_type = {float(w): v for w, v in typed["validation_f1_open_by_type"].items()}
    assert sorted(by_type) == sorted(WEIGHTS) and typed["weight"] == max(WEIGHTS, key=lambda w: (by_type[w], -w))
    # Fitted again with both rules on the same checkpoint, opening by type scores the same at
    # every weight, and the plain rule is now tried too.
    assert fit_prior.main([str(out), "--opening", "choose"]) == 0
    both = json.loads((out / "config.json").read_text())["tag_transitions"]
    assert {float(w): v for w, v in both["validation_f1_open_by_type"].items()} == pytest.approx(by_type)
    assert sorted(float(w) for w in both["validation_f1"]) == sorted(WEIGHTS)


def test_an_unknown_opening_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        train_loop.build_parser().parse_args(["--opening", "sideways"])
    assert "invalid choice" in capsys.readouterr().err
