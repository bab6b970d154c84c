"""Shared fixtures. Real assets live in ../shared beside the repository: tests that need them
skip with the reason in a user's clone, and fail under CI=true, where they are always present."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PANX = SHARED / "data" / "panx"
PANX_XTREME = SHARED / "data" / "panx-xtreme"
SPM = SHARED / "models" / "xlm-roberta-tokenizer" / "sentencepiece.bpe.model"
TOKENIZER_JSON = SHARED / "models" / "xlm-roberta-tokenizer" / "tokenizer.json"
E5_BUILDER = SHARED / "models" / "multilingual-e5-small-q4" / "build_hf_checkpoint.py"


def require(path: Path) -> Path:
    if path.exists():
        return path
    reason = f"needs {path.relative_to(ROOT.parent)} (the shared assets beside the repository)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, which CI always has")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def panx_dir() -> Path:
    return require(PANX)


@pytest.fixture(scope="session")
def panx_xtreme_dir() -> Path:
    return require(PANX_XTREME)


@pytest.fixture(scope="session")
def spm_path() -> Path:
    return require(SPM)


@pytest.fixture(scope="session")
def tokenizer(spm_path):
    from xlmr.tokenizer import XLMRTokenizer

    return XLMRTokenizer(spm_path)


@pytest.fixture(scope="session")
def hf_fast_tokenizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(require(TOKENIZER_JSON)))


@pytest.fixture(scope="session")
def e5_hf_dir(tmp_path_factory) -> Path:
    """The real multilingual-e5-small weights as a Hugging Face folder, built once per session."""
    out = tmp_path_factory.mktemp("e5-hf")
    subprocess.run([sys.executable, str(require(E5_BUILDER)), str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def small_panx(panx_dir, tmp_path_factory) -> Path:
    """The first sentences of the real German files: 240 train, 64 dev, 64 test."""
    from tests.tiny import panx_head

    return panx_head(panx_dir, tmp_path_factory.mktemp("panx-small"))


@pytest.fixture(scope="module")
def tiny(spm_path, tmp_path_factory) -> Path:
    """tests.tiny.tiny_checkpoint: our tiny random model (dropout 0.1), once per module."""
    from tests.tiny import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("tiny"), spm_path)


@pytest.fixture(scope="session")
def hub_repos(panx_dir, spm_path, tmp_path_factory) -> dict[str, dict]:
    """The files of the stand-in Hub's repos (tests/hub_server.py build_repos), written once a
    session: a tiny pretrained XLM-R laid out as xlm-roberta-base, the same weights as
    pytorch_model.bin alone, and google/xtreme's PAN-X.de/fr/it/en as Parquet, whole and cut."""
    from tests.hub_server import build_repos

    return build_repos(panx_dir, spm_path, require(TOKENIZER_JSON), tmp_path_factory.mktemp("hub-repos"))


@pytest.fixture
def stand_in_hub(hub_repos):
    """A stand-in Hugging Face Hub on 127.0.0.1 (tests/hub_server.py), started for one test and
    holding the tiny model as `xlm-roberta-base` (the --model default) and as `tiny/bin-only`; a
    test adds the google/xtreme repo it needs (`hub.add("dataset", "google/xtreme", ...)`)."""
    from tests.hub_server import StandInHub

    with StandInHub() as hub:
        hub.add("model", "xlm-roberta-base", hub_repos["model"])
        hub.add("model", "tiny/bin-only", hub_repos["bin-only"])
        hub.add("model", "tiny/gated", hub_repos["model"], gated=True)
        yield hub


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: subprocesses, DDP and other process groups, the browser, whole "
                                       "training runs and exports run by transformers; `pytest -m slow`")
