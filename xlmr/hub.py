"""A checkpoint folder from the Hugging Face Hub: the repo's file list first, then only the files
a checkpoint needs (`weights.files_to_fetch` chooses them), into the local Hugging Face cache.

`HF_ENDPOINT`, `HF_HOME`, `HF_TOKEN` and `HF_HUB_OFFLINE` work as they do for `huggingface_hub`
itself. With the Hub unreachable, a copy an earlier run downloaded is used; every other failure
is one `CheckpointError` that names the repo and what to pass instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .keymap import CheckpointError

INSTEAD = "pass --model a local checkpoint folder (a Hugging Face folder, or one written by `python -m xlmr.convert`)"


def download_checkpoint(repo_id: str, choose: Callable[[list[str]], list[str]]) -> Path:
    """The cached folder of Hub model repo `repo_id` holding the files `choose` picks from the
    repo's file list (model_info's siblings), each downloaded once; `choose` raises
    CheckpointError when the repo has none that make a checkpoint."""
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError:
        raise CheckpointError(f"no model folder at {repo_id}, and huggingface_hub, which downloads one from the Hub, "
                              f"is not installed (pip install huggingface_hub); or {INSTEAD}") from None
    try:
        listed = [s.rfilename for s in HfApi().model_info(repo_id).siblings]
        return Path(snapshot_download(repo_id, allow_patterns=choose(listed)))
    except CheckpointError:
        raise
    except Exception as e:  # the library's own types, which differ between its versions: sorted below
        cached = _cached_snapshot(repo_id, choose) if _unreachable(e) else None
        if cached is not None:
            return cached
        raise CheckpointError(hub_problem(repo_id, e)) from None


def hub_problem(repo_id: str, e: Exception) -> str:
    """What went wrong on the Hub, said with the repo and what to pass instead."""
    from huggingface_hub import constants
    from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    where = f"the Hugging Face Hub ({constants.ENDPOINT})"
    reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if isinstance(e, GatedRepoError):  # before RepositoryNotFoundError, its base class
        return (f"{repo_id} is a gated model on {where}: accept its conditions on its page, then log in "
                f"(`hf auth login`) or set HF_TOKEN; or {INSTEAD}")
    if isinstance(e, (RepositoryNotFoundError, RevisionNotFoundError)):
        return (f"no model folder at {repo_id}, and no model {repo_id!r} on {where} (or it is private): "
                f"check the name, or {INSTEAD}")
    if _unreachable(e):
        return (f"no model folder at {repo_id}, and {where} could not be reached ({reason}), nor is {repo_id} "
                f"in the local Hugging Face cache: connect and retry, or {INSTEAD}")
    return f"no model folder at {repo_id}, and it could not be downloaded from {where} ({reason}); {INSTEAD}"


def _unreachable(e: Exception) -> bool:
    """No answer from the Hub (no network, a closed port, HF_HUB_OFFLINE, a timeout), as opposed
    to an answer that refuses (an unknown or gated repo, a server error: HfHubHTTPError) or a
    request never sent (an id the Hub's rules reject). By the exception's kind, whichever HTTP
    library the installed huggingface_hub uses (httpx's ConnectError and TimeoutException,
    requests' ConnectionError and Timeout, OfflineModeIsEnabled, a ConnectionError)."""
    from huggingface_hub.utils import HfHubHTTPError

    if isinstance(e, HfHubHTTPError):
        return False
    kinds = {c.__name__ for c in type(e).__mro__}
    return isinstance(e, (ConnectionError, TimeoutError)) or bool(
        kinds & {"ConnectError", "NetworkError", "TimeoutException", "Timeout", "ConnectionError"})


def _cached_snapshot(repo_id: str, choose: Callable[[list[str]], list[str]]) -> Path | None:
    """The folder an earlier download of `repo_id` left in the Hugging Face cache, when it holds
    a whole checkpoint."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo_id, "config.json")
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    try:
        choose([p.name for p in folder.iterdir()])
    except CheckpointError:
        return None
    return folder
