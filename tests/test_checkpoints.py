"""Conversion of real weights, the export round trip, and damaged checkpoints."""
from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from tiny import hf_config, hf_model, ragged_batch, save_hf
from xlmr.convert import convert
from xlmr.weights import CheckpointError, export_hf, load_model

SENTENCES = [
    "Jeff Dean ist ein Informatiker bei Google in Kalifornien.",
    "Jeff Dean est informaticien chez Google en Californie.",
    "Jeff Dean è un informatico di Google in California.",
    "Jack Sparrow loves New York!",
]


def test_real_e5_hidden_states_match_transformers(e5_hf_dir, tmp_path, tokenizer):
    from transformers import AutoModel

    convert(e5_hf_dir, tmp_path / "ours")
    ours = load_model(tmp_path / "ours").eval()
    ref = AutoModel.from_pretrained(e5_hf_dir).eval()
    encoded = [tokenizer.encode(s) for s in SENTENCES]
    T = max(map(len, encoded))
    ids = torch.tensor([e + [1] * (T - len(e)) for e in encoded])
    mask = (ids != 1).long()
    with torch.no_grad():
        hidden = ours.encoder(ids, mask)
        expected = ref(input_ids=ids, attention_mask=mask).last_hidden_state
    diff = (hidden - expected)[mask.bool()].abs().max().item()
    assert diff <= 1e-4, diff


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert"])
def test_export_round_trip(tmp_path, model_type):
    from transformers import AutoModelForTokenClassification

    save_hf(hf_model(hf_config(model_type)), tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "ours")
    ours = load_model(tmp_path / "ours").eval()
    export_hf(ours, tmp_path / "back")
    back = AutoModelForTokenClassification.from_pretrained(tmp_path / "back").eval()
    assert back.config.id2label == ours.config.id2label
    ids, mask, _ = ragged_batch(1000, 0 if model_type == "bert" else 1)
    with torch.no_grad():
        expected, _ = ours(ids, mask)
        got = back(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()])


def test_checkpoint_without_head_gets_a_new_one(tmp_path):
    save_hf(hf_model(hf_config("xlm-roberta"), head=False), tmp_path / "hf")
    with pytest.warns(UserWarning, match="new 7-label head"):
        model = load_model(tmp_path / "hf", id2label={i: t for i, t in enumerate("ABCDEFG")})
    std = model.classifier.weight.std().item()
    assert 0.01 < std < 0.03 and torch.all(model.classifier.bias == 0)


def test_a_headless_encoder_converts_without_a_head(tmp_path):
    """The head of a fine-tuning run comes from its --seed, not from the random state at conversion."""
    save_hf(hf_model(hf_config("xlm-roberta"), head=False), tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "ours")
    assert not any(k.startswith("classifier.") for k in load_file(tmp_path / "ours" / "model.safetensors"))
    heads = []
    for _ in range(2):
        torch.manual_seed(42)
        with pytest.warns(UserWarning, match="new 7-label head"):
            heads.append(load_model(tmp_path / "ours", id2label=dict(enumerate("ABCDEFG"))).classifier.weight)
    assert torch.equal(*heads)
    convert(tmp_path / "hf", tmp_path / "with-head", labels=list("ABC"))
    assert load_file(tmp_path / "with-head" / "model.safetensors")["classifier.weight"].shape[0] == 3


@pytest.fixture
def hf_folder(tmp_path):
    return save_hf(hf_model(hf_config("xlm-roberta")), tmp_path / "hf")


def test_truncated_safetensors(hf_folder):
    file = hf_folder / "model.safetensors"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated"):
        load_model(hf_folder)


def test_wrong_shape_names_the_key(hf_folder):
    file = hf_folder / "model.safetensors"
    tensors = load_file(file)
    tensors["roberta.encoder.layer.1.intermediate.dense.weight"] = torch.zeros(36, 32)
    save_file(tensors, file)
    with pytest.raises(CheckpointError, match=r"encoder\.layers\.1\.mlp\.fc\.weight: checkpoint \(36, 32\), model \(37, 32\)"):
        load_model(hf_folder)


def test_missing_layer_names_the_keys(hf_folder):
    file = hf_folder / "model.safetensors"
    tensors = {k: v for k, v in load_file(file).items() if ".layer.1.output." not in k}
    save_file(tensors, file)
    with pytest.raises(CheckpointError, match=r"missing keys.*encoder\.layers\.1\.mlp\.proj\.weight"):
        load_model(hf_folder)


def test_unknown_model_type_names_the_file(hf_folder):
    config = json.loads((hf_folder / "config.json").read_text())
    config["model_type"] = "gpt2"
    (hf_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json: unknown model_type 'gpt2'"):
        load_model(hf_folder)


def test_head_with_other_label_count(hf_folder):
    with pytest.raises(CheckpointError, match="head has 7 labels but the data has 3"):
        load_model(hf_folder, id2label={0: "O", 1: "B-X", 2: "I-X"})


def test_missing_folder_and_unreachable_hub(tmp_path):
    with pytest.raises(CheckpointError, match="no model folder"):
        load_model(tmp_path / "nowhere" / "model")


def test_a_folder_without_config_is_not_a_checkpoint(tmp_path):
    from training.prepare import prepare_model_folder

    for load in (load_model, prepare_model_folder):
        with pytest.raises(CheckpointError, match="no config.json; is this a checkpoint folder"):
            load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        prepare_model_folder(tmp_path)


def test_converted_weights_go_to_the_checkout_or_a_user_folder(tmp_path, monkeypatch):
    """Never into an installed package's own folder: $XLMR_NER_HOME, else the clone's weights/,
    else the user's cache."""
    from training import prepare

    monkeypatch.delenv(prepare.HOME_ENV, raising=False)
    assert prepare.weights_home() == prepare.CHECKOUT / "weights"  # this clone has pyproject.toml and weights/
    monkeypatch.setenv(prepare.HOME_ENV, str(tmp_path / "home"))
    assert prepare.weights_home() == tmp_path / "home" / "weights"
    monkeypatch.delenv(prepare.HOME_ENV)
    installed = tmp_path / "site-packages"  # what a non-editable install looks like: no pyproject.toml
    installed.mkdir()
    monkeypatch.setattr(prepare, "CHECKOUT", installed)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert prepare.weights_home() == tmp_path / "cache" / "xlmr-ner" / "weights"


def test_an_interrupted_write_leaves_the_old_file(tmp_path):
    from xlmr.atomic import write_atomic, write_text_atomic

    target = tmp_path / "results.json"
    write_text_atomic(target, "old")

    def dies_half_way(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, dies_half_way)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind


# ---------------------------------------------------------------------------------------------
# Weights that do not match their config.json, refused with the key named by every entry point

MISMATCHES = {
    # case: (what is done to the tiny checkpoint's tensors, the refusal expected)
    "wrong shape": (lambda t: t.update({"encoder.layers.1.mlp.fc.weight": torch.zeros(63, 32)}),
                    r"wrong shapes \['encoder\.layers\.1\.mlp\.fc\.weight: checkpoint \(63, 32\), model \(64, 32\)'\]"),
    "missing tensor": (lambda t: t.pop("classifier.bias"), r"missing keys \['classifier\.bias'\]"),
    "other label count": (lambda t: t.update({k: t[k][:5].clone() for k in ("classifier.weight", "classifier.bias")}),
                          r"config\.json: id2label has 7 labels but classifier\.weight has 5 rows"),
}


def mismatched(case: str, folder, spm_path):
    """The tiny checkpoint (7 labels, 64-wide feed-forward) with its weights changed as `case` says."""
    from tests.tiny import tiny_checkpoint

    tiny_checkpoint(folder, spm_path)
    tensors = load_file(folder / "model.safetensors")
    MISMATCHES[case][0](tensors)
    save_file(tensors, folder / "model.safetensors")
    return folder


@pytest.fixture(scope="module")
def resumable_run(tiny, small_panx, tmp_path_factory):
    """A finished short run with its training state kept (last/), to resume."""
    import train_loop
    from tests.tiny import run_args

    out = tmp_path_factory.mktemp("run")
    assert train_loop.main(run_args(tiny, small_panx, out, "--epochs", "1", "--num-samples", "16", "--keep-last")) == 0
    return out


@pytest.mark.parametrize("case", MISMATCHES)
def test_mismatched_weights_are_refused_with_the_key_named(case, spm_path, small_panx, resumable_run, tmp_path, capsys):
    import eval as eval_cli
    import train_loop
    from serving.server import build_service
    from tests.tiny import run_args

    bad, expected = mismatched(case, tmp_path / "bad", spm_path), MISMATCHES[case][1]
    with pytest.raises(CheckpointError, match=expected):
        load_model(bad)
    entry_points = {
        "training from it": lambda: train_loop.main(run_args(bad, small_panx, tmp_path / "run", "--epochs", "1")),
        "resuming with it": lambda: train_loop.main(run_args(bad, small_panx, resumable_run, "--epochs", "1",
                                                             "--resume", str(resumable_run))),
        "eval.py": lambda: eval_cli.main(["test", "--model", str(bad), "--langs", "de", "--data-dir", str(small_panx),
                                          "--full-splits"]),
    }
    for name, run in entry_points.items():
        capsys.readouterr()
        assert run() == 1, name
        err = capsys.readouterr().err
        assert re.search(expected, err) and "Traceback" not in err, (name, err[-500:])
    with pytest.raises(CheckpointError, match=expected):  # the service's loading function
        build_service(bad, amp="off")
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_checkpoint_of_another_size_names_its_first_keys_and_counts_the_rest(spm_path, tmp_path):
    from tests.tiny import tiny_checkpoint

    folder = tiny_checkpoint(tmp_path / "tiny", spm_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"hidden_size": 48}))
    # Every tensor with a dimension of the width (32, or 3 x 32 for the fused QKV) is wrong for a
    # 48-wide model: counted on the file.
    wrong = sum(32 in t.shape or 96 in t.shape for t in load_file(folder / "model.safetensors").values())
    with pytest.raises(CheckpointError, match=rf"wrong shapes \[.*\] and {wrong - 8} more$"):
        load_model(folder)


def test_a_checkpoint_without_a_head_is_no_tagger(spm_path, small_panx, tmp_path):
    """A pretrained encoder starts a training run (a new head is drawn), but eval.py and the service
    refuse it: a new head would tag at random."""
    import eval as eval_cli
    from serving.server import build_service

    save_hf(hf_model(hf_config("xlm-roberta", vocab_size=250002), head=False), tmp_path / "hf", spm_path)
    convert(tmp_path / "hf", tmp_path / "encoder")
    with pytest.warns(UserWarning, match="new 7-label head"):
        load_model(tmp_path / "encoder", id2label=dict(enumerate("ABCDEFG")))
    with pytest.raises(CheckpointError, match=r"no token-classification head \(classifier\.weight and classifier\.bias"):
        build_service(tmp_path / "encoder", amp="off")
    assert eval_cli.main(["test", "--model", str(tmp_path / "encoder"), "--langs", "de", "--data-dir", str(small_panx),
                          "--full-splits"]) == 1


def test_resuming_a_run_whose_saved_weights_do_not_match_is_refused(tiny, small_panx, resumable_run, tmp_path, capsys):
    import shutil

    import train_loop
    from tests.tiny import run_args

    run = tmp_path / "run"
    shutil.copytree(resumable_run, run)
    tensors = load_file(run / "last" / "model.safetensors")
    tensors["encoder.layers.1.mlp.fc.weight"] = torch.zeros(63, 32)
    save_file(tensors, run / "last" / "model.safetensors")
    assert train_loop.main(run_args(tiny, small_panx, run, "--epochs", "1", "--resume", str(run))) == 1
    assert "encoder.layers.1.mlp.fc.weight: checkpoint (63, 32), model (64, 32)" in capsys.readouterr().err
