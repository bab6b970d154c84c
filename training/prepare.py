"""Set-up before the first step: processes and device, the output folder, the model folder and
the encoded data. Everything that can fail does so here, before anything slow."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from datasets import DatasetDict

from loaders.align import encode_ner
from loaders.conll import NerDataError
from loaders.data import ner_data
from xlmr.convert import convert
from runtime.devices import process_device
from runtime.precision import Precision, decide
from xlmr.weights import checkpoint_config, is_ours, resolve_folder

from .adaptation import AdaptationData
from .config import RunError, TrainConfig
from .state import resumable_state

HOME_ENV = "XLMR_NER_HOME"
CHECKOUT = Path(__file__).resolve().parents[1]


def weights_home() -> Path:
    """Where Hugging Face folders are converted to once, then reused: $XLMR_NER_HOME/weights when
    set; else the checkout's weights/ when running from a clone; else a user cache folder, never
    the installed package's own folder (site-packages may be read-only or shared)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser() / "weights"
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "weights").is_dir():
        return CHECKOUT / "weights"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "xlmr-ner" / "weights"


def setup_distributed(device_arg: str | None) -> tuple[int, int, torch.device]:
    """(rank, world size, device); under torchrun the process group is started here, after the
    process has taken its own GPU (cuda:LOCAL_RANK): NCCL binds a process to the current GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = process_device(device_arg)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), world, device
    return 0, 1, device


def check_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise RunError(f"cannot write to output folder {path}: {e.strerror or e}") from None


def prepare_model_folder(src: str) -> Path:
    """Our checkpoint folder as is; a Hugging Face folder or hub id is converted into
    `weights_home()` once."""
    folder = resolve_folder(src)
    if is_ours(checkpoint_config(folder)):
        return folder
    target = weights_home() / folder.name
    if not (target / "model.safetensors").is_file():
        print(f"converting {folder} -> {target}")
        convert(folder, target)
    return target


def data_source(cfg: TrainConfig):
    """The run's sentences (loaders/data.py): --train-file and its companions, else PAN-X; with
    --teacher, the teacher's tags on --unlabeled-file (training/adaptation.py)."""
    if cfg.teacher:
        return AdaptationData(cfg)
    return ner_data(cfg.langs, cfg.eval_langs, cfg.data_dir, cfg.full_splits, cfg.train_file, cfg.validation_file,
                    cfg.test_file)


def check_data_flags(cfg: TrainConfig) -> None:
    """The data flags checked before anything is loaded."""
    try:
        data_source(cfg).check(training=True)
    except (NerDataError, FileNotFoundError) as e:
        raise RunError(str(e)) from None


def load_data(cfg: TrainConfig, tokenizer):
    """(train, validation, {name: test set}, label list), encoded. The source gives the labels:
    PAN-X's seven, or those of the training file."""
    source = data_source(cfg)
    labels = source.labels()
    data = encode_ner(source.training(), tokenizer, cfg.max_length, cfg.unspaced)
    train, validation = data["train"], data["validation"]
    if source.normalised:
        print(f"{cfg.train_file}: {source.normalised} tags read as IOB2 (from IOB1 or BIOES)")
    tests = {name: encode_ner(DatasetDict({"test": load()}), tokenizer, cfg.max_length, cfg.unspaced)["test"]
             for name, load in source.evaluation(labels).items()}
    if cfg.num_samples is not None:
        if not 0 < cfg.num_samples <= len(train):
            raise RunError(f"--num-samples {cfg.num_samples} is outside 1..{len(train)}")
        keep = np.random.default_rng(cfg.seed).permutation(len(train))[: cfg.num_samples]
        train = train.select(np.sort(keep))
    return train, validation, tests, labels


def decide_precision(cfg: TrainConfig, device: torch.device, world: int) -> Precision:
    """The run's precision, decided once (runtime.precision.decide) and recorded in its state.
    `--amp auto` times matrix products on CPUs, and a busy machine can time them differently
    from one call to the next, so a resumed run takes the decision its state recorded, and under
    DDP rank 0 decides and every rank takes its decision."""
    saved = resumable_state(Path(cfg.resume)) if cfg.resume else None
    recorded = json.loads((saved / "state.json").read_text()).get("precision") if saved else None
    decision = decide(cfg.amp, device, recorded) if world == 1 or dist.get_rank() == 0 else None
    if world > 1:
        shared = [decision]
        dist.broadcast_object_list(shared, src=0)
        decision = shared[0]
    return decision


def keeps_embedding_rows(device: torch.device, world: int) -> tuple[bool, str]:
    """(keep the word embedding's gradient and AdamW work to the rows a step touches?, why):
    training/embedding_grad.py and training/row_adamw.py, on one CPU process. Their reason is the
    CPU's: a dense 250k-row gradient is a fresh allocation whose pages the kernel zeroes every
    step. A GPU's caching allocator reuses that memory, and PyTorch's fused AdamW walks every row
    in one kernel at memory bandwidth (xlm-roberta-base's 192M embedding values: ~3 GB a step),
    while the row bookkeeping (unique(), boolean indexing) waits for the device each step. Under
    DDP the reducer expects dense gradients."""
    if world > 1:
        return False, "dense embedding gradient and fused AdamW: DDP reduces dense gradients"
    if torch.device(device).type != "cpu":
        return False, f"dense embedding gradient and fused AdamW: on {torch.device(device).type}"
    return True, "row-sparse embedding gradient and RowAdamW: on one CPU process"
