"""A trained checkpoint against ONNX Runtime on real sentences: tokens/s and test F1, fp32 and int8.

    python -m benchmarks.ort_checkpoint --model runs/de --data-dir ../shared/data/panx \
        --sentences 512 --batch-size 32 --rounds 6 --f1-langs de fr it en --output-dir runs/ort-checkpoint

What a user choosing a CPU runtime compares, on the weights they trained (throughput.py uses
random weights, whose activations have none of the outlier channels that make int8 hard):
- ours fp32 as `eval.py --amp off` runs it and ours `--quantize int8` (runtime/quantize.py, calibrated on its own sentences),
  and, where `--amp auto` chooses bf16, ours at that precision (`ours-auto`, against ORT int8);
- ONNX Runtime on our ONNX export, fp32, and int8 from ONNX Runtime's `quantize_dynamic`
  (QInt8 weights, its defaults), all graph optimisations on, as many threads as torch.
Speed: the first `--sentences` German test sentences (<= 128 tokens), sorted by length, in
batches of `--batch-size`; `--rounds` rounds, the four in turn (reversed every other round);
per implementation the best round and, per pair, in how many rounds the first was faster.
F1: every implementation through the same evaluation (evaluation.predict; Viterbi decoding) on
the Swiss-mix test sets of `--f1-langs`.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from datasets import DatasetDict

from benchmarks.onnx_runtime import exported_sessions
from benchmarks.provenance import provenance, write_result
from evaluation.predict import evaluate
from loaders.align import encode_ner
from loaders.panx import panx_splits
from runtime.inference import ready_for_inference
from runtime.precision import autocast_for
from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import load_model


class OrtModel(torch.nn.Module):
    """An ONNX Runtime session with the surface evaluation.predict uses (forward, loss, decode)."""

    def __init__(self, session, ours):
        super().__init__()
        self.session, self.config, self._ours = session, ours.config, ours

    def forward(self, input_ids, attention_mask=None, *rest, **_):  # lengths: ONNX Runtime reads the mask
        feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.long().numpy()}
        return torch.from_numpy(self.session.run(["logits"], feed)[0]), None

    @property
    def encoder(self):  # evaluation asks whether its layers are compiled (they are not: ONNX Runtime runs them)
        return self._ours.encoder

    def loss(self, *args, **kwargs):
        return self._ours.loss(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self._ours.decode(*args, **kwargs)


class UnderAutocast(torch.nn.Module):
    """Our model at `--amp auto`'s precision, run as eval.py runs it: under autocast."""

    def __init__(self, model, dtype):
        super().__init__()
        self.model, self.dtype, self.config = model, dtype, model.config

    def forward(self, *args, **kwargs):
        with autocast_for(torch.device("cpu"), self.dtype):
            return self.model(*args, **kwargs)

    @property
    def encoder(self):
        return self.model.encoder

    def loss(self, *args, **kwargs):
        return self.model.loss(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.model.decode(*args, **kwargs)


def batches_of(model, tokenizer, data_dir, n: int, batch_size: int):
    blocks = (Path(data_dir) / "test-de.tsv").read_text(encoding="utf-8").split("\n\n")[:n]
    ids = sorted((tokenizer.encode_words([line.split("\t")[0] for line in b.splitlines()]).input_ids[:128]
                  for b in blocks if b.strip()), key=len)
    out = []
    for i in range(0, len(ids), batch_size):
        chunk = ids[i:i + batch_size]
        x = torch.full((len(chunk), max(map(len, chunk))), model.config.pad_token_id)
        for j, row in enumerate(chunk):
            x[j, :len(row)] = torch.tensor(row)
        out.append((x, x.ne(model.config.pad_token_id).long()))
    return out, sum(map(len, ids))


def speed(models: dict, batches, tokens: int, rounds: int) -> dict:
    names, per_round = list(models), {k: [] for k in models}
    for name in names:  # warm-up
        with torch.no_grad():
            models[name](*batches[0])
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            t0 = time.perf_counter()
            with torch.no_grad():
                for x, mask in batches:
                    models[name](x, mask)
            per_round[name].append(tokens / (time.perf_counter() - t0))
    return per_round


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--sentences", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--f1-langs", nargs="*", default=["de", "fr", "it", "en"], help="none: speed only")
    p.add_argument("--output-dir", type=Path, default=Path("runs/ort-checkpoint"))
    return p.parse_args(argv)


def test_f1(models: dict, tokenizer, data_dir: str, langs: list[str]) -> dict:
    """{implementation: {lang: test F1}}, every one through the same evaluation."""
    f1 = {}
    for lang in langs:
        test = encode_ner(DatasetDict({"t": panx_splits(lang, data_dir)["test"]}), tokenizer)["t"]
        for name, model in models.items():
            f1.setdefault(name, {})[lang] = evaluate(model, test, model.config.id2label, 64)["f1"]
        print(lang, {name: round(f[lang], 4) for name, f in f1.items()}, flush=True)
    return f1


def main(argv=None) -> int:
    args = parse_args(argv)
    record = provenance(__file__, sys.argv[1:] if argv is None else argv)
    tokenizer = XLMRTokenizer(Path(args.model) / "sentencepiece.bpe.model")
    fp32 = load_model(args.model).eval()
    int8 = ready_for_inference(copy.deepcopy(fp32), "cpu", "off", "int8", tokenizer)[0]
    auto, dtype, why = ready_for_inference(copy.deepcopy(fp32), "cpu", "auto", "off")
    print(f"--amp auto: {why}")
    sessions = exported_sessions(fp32, args.output_dir / "onnx", tokenizer_file=tokenizer.path)
    ours_fp32, _, fp32_why = ready_for_inference(copy.deepcopy(fp32), "cpu", "off", "off")  # eval.py --amp off
    print(f"--amp off: {fp32_why}")
    models = {"ours-fp32": ours_fp32, "ours-int8": int8, "ort-fp32": OrtModel(sessions["ort-fp32"], fp32),
              "ort-int8": OrtModel(sessions["ort-int8"], fp32)}
    pairs = [("ours-fp32", "ort-fp32"), ("ours-int8", "ort-int8")]
    if dtype is not None:  # --amp auto chose a low precision here: the row the docs recommend
        models["ours-auto"] = UnderAutocast(auto, dtype)
        pairs.append(("ours-auto", "ort-int8"))
    batches, tokens = batches_of(fp32, tokenizer, args.data_dir, args.sentences, args.batch_size)
    rounds = speed(models, batches, tokens, args.rounds)
    report = {"tokens": tokens, "batch_size": args.batch_size, "amp_off": fp32_why, "amp_auto": why, "tokens_per_s": rounds,
              "best": {k: max(v) for k, v in rounds.items()}}
    for a, b in pairs:
        wins = sum(x > y for x, y in zip(rounds[a], rounds[b]))
        report[f"{a}/{b}"] = {"best_ratio": max(rounds[a]) / max(rounds[b]), "rounds_won": f"{wins}/{args.rounds}"}
        print(f"{a} {max(rounds[a]):.0f} tok/s vs {b} {max(rounds[b]):.0f}: {max(rounds[a]) / max(rounds[b]):.2f}x, "
              f"faster in {wins}/{args.rounds} rounds", flush=True)
    report["f1"] = test_f1(models, tokenizer, args.data_dir, args.f1_langs)
    write_result(args.output_dir / "ort_checkpoint.json", report, record)
    print(f"wrote {args.output_dir / 'ort_checkpoint.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
