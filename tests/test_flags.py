"""The command lines: the flags `train_loop.py` keeps, `--set name=value` for every setting
without one, and the arguments a configuration is reproduced from."""
from __future__ import annotations

import argparse

import pytest

import train_loop
from training import TrainConfig, command_line

REMOVED = ("--checkpoint", "--lr-decay", "--freeze-embeddings", "--label-all-subwords", "--opening")


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions if not isinstance(a, argparse._HelpAction) for s in a.option_strings}


def test_train_loop_keeps_the_user_flags_and_no_removed_one():
    flags = option_strings(train_loop.build_parser())
    assert len(flags) <= 27, sorted(flags)  # 25 kept flags, --teacher and --unlabeled-file (adaptation)
    for kept in ("--langs", "--model", "--data-dir", "--train-file", "--validation-file", "--test-file", "--amp",
                 "--decode", "--output-dir", "--resume", "--epochs", "--lr", "--batch-size", "--seed", "--device",
                 "--eval-langs", "--full-splits", "--num-samples", "--max-length", "--head", "--set", "--teacher",
                 "--unlabeled-file"):
        assert kept in flags
    assert not flags & set(REMOVED)


def test_set_reads_each_setting_by_its_type():
    args = train_loop.build_parser().parse_args(
        ["--lr", "1e-4", "--set", "warmup_ratio=0.1", "--set", "random_batches=true", "--set", "eval-batch-size=8",
         "--set", "peak_tflops=none", "--set", "unspaced=words", "--set", "compile=off"])
    cfg = train_loop.config_from(args)
    assert (cfg.lr, cfg.warmup_ratio, cfg.random_batches, cfg.eval_batch_size) == (1e-4, 0.1, True, 8)
    assert (cfg.peak_tflops, cfg.unspaced, cfg.compile) == (None, "words", "off")
    assert train_loop.config_from(train_loop.build_parser().parse_args([])) == TrainConfig()


@pytest.mark.parametrize("argv, message", [
    (["--set", "lr=1e-3"], "lr has a flag of its own: --lr"),
    (["--set", "checkpoint=average"], "checkpoint is no setting of a run"),
    (["--set", "warmup_ratio"], "expected NAME=VALUE"),
    (["--set", "random_batches=maybe"], "random_batches=maybe: not a bool"),
    (["--set", "warmup_ratio=a tenth"], "warmup_ratio=a tenth: not a float"),
    (["--set", "unspaced=chars"], "unspaced=chars: choose from runs, words"),
    (["--lr-decay", "0.9"], "unrecognized arguments: --lr-decay"),
])
def test_a_wrong_setting_or_a_removed_flag_is_refused_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit):
        train_loop.build_parser().parse_args(argv)
    assert message in capsys.readouterr().err


def test_command_line_gives_back_the_configuration():
    cfg = TrainConfig(langs=["de", "fr"], epochs=1, full_splits=True, head="crf", num_samples=64,
                      warmup_ratio=0.1, random_batches=True, transition_prior="off", peak_tflops=312.0)
    argv = command_line(cfg)
    assert "--set" in argv and "random_batches=true" in argv and "--full-splits" in argv
    assert train_loop.config_from(train_loop.build_parser().parse_args(argv)) == cfg
    assert command_line(TrainConfig()) == []


def test_eval_commands_keep_the_user_flags_within_70_in_all():
    import eval as ev

    sub = next(a for a in ev.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {name: option_strings(p) for name, p in sub.choices.items()}
    assert set(flags) == {"test", "errors", "tag", "experiments", "sweep", "serve"}
    assert sum(map(len, flags.values())) <= 70, {name: len(f) for name, f in flags.items()}
    for name, kept in flags.items():
        assert {"--model", "--amp", "--device"} <= kept, name
    assert {"--langs", "--data-dir", "--output"} <= flags["test"] and {"--input", "--output"} <= flags["tag"]
    assert all("--output-dir" in flags[name] for name in ("errors", "sweep", "experiments"))


def test_experiments_take_any_training_setting_their_plan_leaves_open(tmp_path):
    import eval as ev
    from experiments.crosslingual import Settings, experiment_plan, run_config

    args = ev.build_parser().parse_args(["experiments", "--model", "m", "--quick", "--set", "epochs=2",
                                         "--set", "decode=argmax", "--set", "full_splits=true"])
    settings = Settings(model="m", root=tmp_path, quick=True, extra=dict(args.settings))
    de = run_config(experiment_plan(["de"])[0], settings)
    assert (de.epochs, de.decode, de.full_splits, de.langs) == (2, "argmax", True, ["de"])  # epochs beats --quick
    quick = run_config(experiment_plan(["de"])[0], Settings(model="m", root=tmp_path, quick=True))
    assert quick.epochs == 1 and quick.decode == "viterbi"


def test_experiments_refuse_a_setting_their_plan_chooses(capsys):
    import eval as ev

    with pytest.raises(SystemExit):
        ev.build_parser().parse_args(["experiments", "--model", "m", "--set", "langs=fr"])
    assert "langs is chosen by the command" in capsys.readouterr().err
