"""A stand-in for the Hugging Face Hub on 127.0.0.1, for tests that take the path a user with
internet access takes: `HF_ENDPOINT` pointed at it, an empty cache, `huggingface_hub` and
`datasets` as installed.

It speaks the endpoints those libraries call (read from their source: `HfApi.model_info`,
`dataset_info`, `list_repo_tree`, `get_paths_info`, and `hf_hub_download`'s HEAD + GET on
`/resolve/`), with the headers they read: `X-Repo-Commit`, `ETag`, and for large (LFS) files
a 302 to a second, "CDN" port with `X-Linked-Etag`, `X-Linked-Size` and `Location`, as the Hub
answers. Errors carry the Hub's `X-Error-Code` (RepoNotFound, GatedRepo, EntryNotFound,
RevisionNotFound), which `huggingface_hub` turns into its exception types.

Every request is logged (`requests`), every file body served is counted in bytes per repo
file (`served`), and a request no handler knows is recorded in `unknown`: a test asserts it
stays empty, so a library version that calls something new fails loudly instead of passing by
luck.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
# What the Hub stores in LFS (its default .gitattributes): served through the "CDN" redirect.
LFS_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx", ".parquet", ".model", ".pt")


@dataclass
class Repo:
    kind: str  # "model" or "dataset"
    repo_id: str
    files: dict[str, bytes]
    gated: bool = False
    sha: str = field(init=False)

    def __post_init__(self):
        digest = hashlib.sha1()
        for path in sorted(self.files):
            digest.update(path.encode() + b"\0" + hashlib.sha1(self.files[path]).digest())
        self.sha = digest.hexdigest()  # a commit id: 40 hex digits, changes with any file

    def entry(self, path: str) -> dict:
        """A file's or folder's JSON in the tree and paths-info answers."""
        if path not in self.files:
            return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
        data = self.files[path]
        entry = {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": path}
        if is_lfs(path):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def folders(self) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in self.files for i in range(1, p.count("/") + 1)}


def closed_port_url() -> str:
    """An address on 127.0.0.1 where nothing listens: a Hub that cannot be reached."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


class StandInHub:
    """`with StandInHub() as hub:` ... `hub.url` is the value for HF_ENDPOINT."""

    def __init__(self):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.served: Counter = Counter()  # (repo id, path) -> body bytes sent
        self.unknown: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._servers = []

    def add(self, kind: str, repo_id: str, files: dict[str, bytes | Path], gated: bool = False) -> Repo:
        data = {path: f.read_bytes() if isinstance(f, Path) else f for path, f in files.items()}
        repo = self.repos[(kind, repo_id)] = Repo(kind, repo_id, data, gated)
        return repo

    def start(self) -> "StandInHub":
        hub, cdn = (ThreadingHTTPServer(("127.0.0.1", 0), handler_for(self, role)) for role in ("hub", "cdn"))
        for server in (hub, cdn):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers = [hub, cdn]
        # Another port is another origin: huggingface_hub treats it as a CDN (no auth header, no
        # following the redirect on HEAD), as it treats the Hub's real LFS storage.
        self.url, self.cdn_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in (hub, cdn))
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def env(self, home: Path, endpoint: str | None = None) -> dict[str, str]:
        """The environment of a process whose Hub is this stand-in (or `endpoint`) and whose caches
        start empty under `home`: HF_ENDPOINT and HF_HOME set; HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE,
        which huggingface_hub also reads), tokens, every other HF_* variable and PANX_DATA_DIR
        removed; converted weights under `home` too."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HF_", "HUGGING")) and k not in ("PANX_DATA_DIR", "TRANSFORMERS_OFFLINE")}
        return env | {"HF_ENDPOINT": endpoint or self.url, "HF_HOME": str(home), "XLMR_NER_HOME": str(home / "xlmr"),
                      "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}

    def bytes_served(self, repo_id: str) -> dict[str, int]:
        """path -> body bytes sent, for one repo's files that were downloaded."""
        return {path: n for (rid, path), n in self.served.items() if rid == repo_id and n}

    # -----------------------------------------------------------------------------------------
    def _log(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def _count(self, repo: Repo, path: str, n: int) -> None:
        with self._lock:
            self.served[(repo.repo_id, path)] += n

    def _find(self, kind: str, rest: str, markers: tuple[str, ...]) -> tuple[Repo | None, str, str]:
        """(repo, the marker found, what follows it) for "<repo id><marker><rest>"; the repo id
        may hold a slash, so it is the part before the first marker. An id not held gives None."""
        for marker in markers:
            if marker in rest:
                repo_id, tail = rest.split(marker, 1)
                return self.repos.get((kind, repo_id)), marker, tail
        return self.repos.get((kind, rest)), "", ""


def handler_for(hub: StandInHub, role: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the Hub; every answer has a Content-Length

        def log_message(self, *args):  # quiet: the hub keeps its own log
            pass

        def do_HEAD(self):
            self._route("HEAD")

        def do_GET(self):
            self._route("GET")

        def do_POST(self):
            self._route("POST")

        # -------------------------------------------------------------------------------------
        def _route(self, method: str) -> None:
            url = urlsplit(self.path)
            path, query = unquote(url.path), parse_qs(url.query)
            hub._log(method, self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
            if role == "cdn":
                return self._cdn(method, path)
            if path == "/api/agent-harnesses":  # huggingface_hub's user-agent registry, fetched once a day
                return self._json({"standardEnvVars": [], "harnesses": {}})
            if m := re.fullmatch(r"/api/(models|datasets)/(.+)", path):
                return self._api(method, m[1][:-1], m[2], query, body)
            if m := re.fullmatch(r"/(datasets/)?(.+?)/resolve/(.+)", path):
                return self._resolve(method, "dataset" if m[1] else "model", m[2], m[3])
            self._unknown(method)

        def _unknown(self, method: str) -> None:
            with hub._lock:
                hub.unknown.append((method, self.path))
            self._send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Error-Message": "not in the stand-in hub"})

        def _api(self, method: str, kind: str, rest: str, query: dict, body: bytes) -> None:
            repo, marker, tail = hub._find(kind, rest, ("/revision/", "/tree/", "/paths-info/"))
            if repo is None:
                return self._repo_not_found()
            revision, _, inner = tail.partition("/") if marker != "/revision/" else (tail, "", "")
            if marker and revision not in ("main", repo.sha):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if method == "GET" and marker in ("", "/revision/"):
                return self._json(info(repo, blobs=query.get("blobs") == ["true"]))
            if method == "GET" and marker == "/tree/":
                recursive = query.get("recursive", ["false"])[0].lower() == "true"
                folder = inner.strip("/")
                if folder and folder not in repo.folders():
                    return self._error(404, "EntryNotFound", f"{folder} does not exist on {revision}")
                return self._json(tree(repo, folder, recursive))
            if method == "POST" and marker == "/paths-info/":
                paths = parse_qs(body.decode()).get("paths", [])
                return self._json([repo.entry(p) for p in paths if p in repo.files or p in repo.folders()])
            self._unknown(method)

        def _resolve(self, method: str, kind: str, repo_id: str, rest: str) -> None:
            repo = hub.repos.get((kind, repo_id))
            if repo is None:
                return self._repo_not_found()
            revision, _, path = rest.partition("/")
            if revision not in ("main", repo.sha):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            commit = {"X-Repo-Commit": repo.sha}
            if repo.gated:
                return self._error(401, "GatedRepo", f"Access to {kind} {repo_id} is restricted. You must have "
                                   "access to it and be authenticated to access it. Please log in.", commit)
            if path not in repo.files:
                return self._error(404, "EntryNotFound", "Entry not found", commit)
            data = repo.files[path]
            if is_lfs(path):  # the Hub answers with a redirect to its storage, the file's facts in headers
                sha256 = hashlib.sha256(data).hexdigest()
                return self._send(302, b"", {**commit, "ETag": f'"{git_blob_id(data)}"', "X-Linked-Etag": f'"{sha256}"',
                                             "X-Linked-Size": str(len(data)),
                                             "Location": f"{hub.cdn_url}/{kind}/{repo_id}/{sha256}/{path}"})
            self._file(method, repo, path, {**commit, "ETag": f'"{git_blob_id(data)}"'})

        def _cdn(self, method: str, path: str) -> None:
            m = re.fullmatch(r"/(model|dataset)/(.+)/([0-9a-f]{64})/(.+)", path)
            repo = hub.repos.get((m[1], m[2])) if m else None
            if repo is None or m[4] not in repo.files or hashlib.sha256(repo.files[m[4]]).hexdigest() != m[3]:
                return self._unknown(method)
            self._file(method, repo, m[4], {"ETag": f'"{m[3]}"'})

        def _file(self, method: str, repo: Repo, path: str, headers: dict) -> None:
            data, status = repo.files[path], 200
            if m := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "")):
                start, end = int(m[1]), int(m[2]) if m[2] else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{min(end, len(data) - 1)}/{len(data)}"
                data, status = data[start:end + 1], 206
            headers["Accept-Ranges"] = "bytes"
            self._send(status, data, headers)
            if method == "GET":
                hub._count(repo, path, len(data))

        def _repo_not_found(self) -> None:
            # The Hub answers an unknown (or private) repo with 401 and this code, not a 404.
            self._error(401, "RepoNotFound", "Repository not found")

        def _error(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
            self._send(status, json.dumps({"error": message}).encode(),
                       {**(headers or {}), "X-Error-Code": code, "X-Error-Message": message,
                        "Content-Type": "application/json"})

        def _json(self, value) -> None:
            self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

        def _send(self, status: int, body: bytes, headers: dict) -> None:
            """The answer; to a HEAD, its headers alone (Content-Length still the body's)."""
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


def info(repo: Repo, blobs: bool = False) -> dict:
    """model_info / dataset_info: the fields huggingface_hub's ModelInfo and DatasetInfo read."""
    siblings = []
    for path in sorted(repo.files):
        sibling = {"rfilename": path}
        if blobs:
            e = repo.entry(path)
            sibling |= {"size": e["size"], "blobId": e["oid"]}
            if "lfs" in e:
                sibling["lfs"] = {"size": e["size"], "sha256": e["lfs"]["oid"], "pointerSize": 134}
        siblings.append(sibling)
    return {"_id": repo.sha[:24], "id": repo.repo_id, "sha": repo.sha, "private": False,
            "gated": "manual" if repo.gated else False, "disabled": False, "downloads": 0, "likes": 0,
            "tags": [], "lastModified": "2024-01-01T00:00:00.000Z", "createdAt": "2020-01-01T00:00:00.000Z",
            "siblings": siblings, **({"modelId": repo.repo_id} if repo.kind == "model" else {})}


def tree(repo: Repo, folder: str, recursive: bool) -> list[dict]:
    """list_repo_tree: the entries under `folder` (all of them, or its direct children)."""
    prefix = folder + "/" if folder else ""
    names = sorted(repo.folders() | set(repo.files))
    under = [n for n in names if n.startswith(prefix)]
    if not recursive:
        under = [n for n in under if "/" not in n[len(prefix):]]
    return [repo.entry(n) for n in under]


# ---------------------------------------------------------------------------------------------
# The repos it holds, in the layouts the Hub has them

PANX_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")  # google/xtreme's ClassLabel order
XTREME_SPLITS = {"train": "train", "validation": "dev", "test": "test"}  # the repo's split -> the file's


def read_tsv(path: Path, first: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
    """(tokens, tags) of a PAN-X file in XTREME's layout (or of its `first` sentences), read here
    with nothing of the project's: `token<TAB>tag` lines, a blank line between sentences."""
    tokens, tags = [], []
    for block in path.read_text(encoding="utf-8").split("\n\n")[:first]:
        lines = [line.split("\t") for line in block.splitlines() if line.strip()]
        if lines:
            tokens.append([t for t, _ in lines])
            tags.append([g for _, g in lines])
    return tokens, tags


def xtreme_files(panx_dir: Path, out: Path, langs=("de", "fr", "it", "en"), first: int | None = None,
                 tags=PANX_TAGS) -> dict:
    """google/xtreme as the Hub stores it since its conversion to Parquet: one folder per config,
    `PAN-X.<lang>/{train,validation,test}-00000-of-00001.parquet`, and a README whose YAML names
    each config's files (`configs`) and features (`dataset_info`), as in the Hub's card. With
    `first`, each split holds only its first sentences (for a short training run); `tags` is
    the ClassLabel's order (another one makes a repo this project must refuse)."""
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=list(tags))),
                         "langs": Sequence(Value("string"))})
    files, configs, infos = {}, [], []
    for lang in langs:
        config, splits = f"PAN-X.{lang}", []
        for split, stem in XTREME_SPLITS.items():
            tokens, sentence_tags = read_tsv(panx_dir / f"{stem}-{lang}.tsv", first)
            rows = {"tokens": tokens, "ner_tags": [[tags.index(t) for t in s] for s in sentence_tags],
                    "langs": [[lang] * len(s) for s in tokens]}
            path = out / config / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            table = Dataset.from_dict(rows, features=features)
            table.to_parquet(path)
            files[f"{config}/{path.name}"] = path
            splits.append((split, table.data.nbytes, len(tokens)))
        configs.append(f"- config_name: {config}\n  data_files:\n" + "".join(
            f"  - split: {split}\n    path: {config}/{split}-*\n" for split, _, _ in splits))
        infos.append(f"- config_name: {config}\n  features:\n  - name: tokens\n    sequence: string\n"
                     "  - name: ner_tags\n    sequence:\n      class_label:\n        names:\n"
                     + "".join(f"          '{i}': {t}\n" for i, t in enumerate(tags))
                     + "  - name: langs\n    sequence: string\n  splits:\n"
                     + "".join(f"  - name: {split}\n    num_bytes: {size}\n    num_examples: {n}\n"
                               for split, size, n in splits))
    card = ("---\npretty_name: XTREME\nconfigs:\n" + "".join(configs) + "dataset_info:\n" + "".join(infos)
            + "---\n\n# Dataset Card for XTREME\n")
    files["README.md"] = card.encode()
    files[".gitattributes"] = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    return files


def model_files(hf_folder: Path, tokenizer_json: Path) -> dict[str, Path | bytes]:
    """A model repo as xlm-roberta-base's on the Hub: the weights twice (model.safetensors and
    pytorch_model.bin, which transformers wrote from the same model), TensorFlow and Flax weights,
    an onnx/ folder, the tokenizer files. Only the names matter for the formats nothing here reads:
    tf_model.h5, flax_model.msgpack and onnx/model.onnx hold placeholder bytes."""
    files = {p.name: p for p in hf_folder.iterdir() if p.is_file()}
    placeholder = b"\0" * 4096
    files |= {"tokenizer.json": tokenizer_json, "tf_model.h5": placeholder, "flax_model.msgpack": placeholder,
              "README.md": b"---\nlicense: mit\n---\n# a tiny stand-in\n",
              ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
    for name in ("config.json", "sentencepiece.bpe.model", "tokenizer.json"):
        files[f"onnx/{name}"] = files[name]
    files["onnx/model.onnx"] = placeholder
    return files


def pretrained_folder(out: Path, spm_path: Path) -> Path:
    """A tiny pretrained XLM-R as transformers writes it (XLMRobertaForMaskedLM, as xlm-roberta-base
    is: an encoder and a masked-LM head, no token-classification head), on the real vocabulary:
    config.json, model.safetensors, pytorch_model.bin (the same weights, pickled), the tokenizer."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    config = XLMRobertaConfig(vocab_size=250002, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                              bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    torch.manual_seed(0)
    model = XLMRobertaForMaskedLM(config)
    model.save_pretrained(out)
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    (out / "sentencepiece.bpe.model").write_bytes(spm_path.read_bytes())
    return out


def build_repos(panx_dir: Path, spm_path: Path, tokenizer_json: Path, out: Path) -> dict[str, dict]:
    """The stand-in's repos by role: "model" (laid out as xlm-roberta-base), "bin-only" (the same
    weights as pytorch_model.bin alone), "xtreme" (PAN-X.de/fr/it/en whole) and "xtreme-head"
    (the first 400 sentences of each split)."""
    model = model_files(pretrained_folder(out / "model", spm_path), tokenizer_json)
    return {"model": model,
            "bin-only": {k: v for k, v in model.items() if k != "model.safetensors"},
            "xtreme": xtreme_files(panx_dir, out / "xtreme"),
            "xtreme-head": xtreme_files(panx_dir, out / "xtreme-head", first=400)}
