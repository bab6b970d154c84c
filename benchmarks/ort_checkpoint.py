"""A trained checkpoint against ONNX Runtime on real sentences: tokens/s and test F1, fp32 and int8.

    python benchmarks/ort_checkpoint.py --model runs/de --data-dir ../shared/data/panx \
        --sentences 512 --batch-size 32 --rounds 6 --f1-langs de fr it en --output-dir runs/ort-checkpoint

What a user choosing a CPU runtime compares, on the weights they trained (throughput.py uses
random weights, whose activations have none of the outlier channels that make int8 hard):
- ours fp32 and ours `--quantize int8` (runtime/quantize.py, calibrated on its own sentences);
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
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from datasets import DatasetDict  # noqa: E402

from benchmarks.throughput_report import cpu_description  # noqa: E402
from evaluation.predict import evaluate  # noqa: E402
from loaders.align import encode_ner  # noqa: E402
from loaders.panx import panx_splits  # noqa: E402
from runtime.onnx_export import export_onnx  # noqa: E402
from runtime.inference import ready_for_inference  # noqa: E402
from xlmr.tokenizer import XLMRTokenizer  # noqa: E402
from xlmr.weights import load_model  # noqa: E402


class OrtModel(torch.nn.Module):
    """An ONNX Runtime session with the surface evaluation.predict uses (forward, loss, decode)."""

    def __init__(self, path: Path, ours):
        import onnxruntime as ort

        super().__init__()
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.config, self._ours = ours.config, ours

    def forward(self, input_ids, attention_mask=None, *rest):
        feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.long().numpy()}
        return torch.from_numpy(self.session.run(["logits"], feed)[0]), None

    def loss(self, *args, **kwargs):
        return self._ours.loss(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self._ours.decode(*args, **kwargs)


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--sentences", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--f1-langs", nargs="*", default=["de", "fr", "it", "en"])
    p.add_argument("--output-dir", type=Path, default=Path("runs/ort-checkpoint"))
    args = p.parse_args(argv)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    args.output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = XLMRTokenizer(Path(args.model) / "sentencepiece.bpe.model")
    fp32 = load_model(args.model).eval()
    int8 = ready_for_inference(copy.deepcopy(fp32), "cpu", "off", "int8", tokenizer)[0]
    onnx_fp32 = export_onnx(fp32, args.output_dir / "onnx", tokenizer_file=tokenizer.path)
    onnx_int8 = args.output_dir / "onnx" / "model-int8.onnx"
    quantize_dynamic(onnx_fp32, onnx_int8, weight_type=QuantType.QInt8)
    models = {"ours-fp32": fp32, "ours-int8": int8, "ort-fp32": OrtModel(onnx_fp32, fp32),
              "ort-int8": OrtModel(onnx_int8, fp32)}
    batches, tokens = batches_of(fp32, tokenizer, args.data_dir, args.sentences, args.batch_size)
    rounds = speed(models, batches, tokens, args.rounds)
    report = {"cpu": cpu_description(), "threads": torch.get_num_threads(), "tokens": tokens,
              "batch_size": args.batch_size, "tokens_per_s": rounds, "best": {k: max(v) for k, v in rounds.items()}}
    for a, b in (("ours-fp32", "ort-fp32"), ("ours-int8", "ort-int8")):
        wins = sum(x > y for x, y in zip(rounds[a], rounds[b]))
        report[f"{a}/{b}"] = {"best_ratio": max(rounds[a]) / max(rounds[b]), "rounds_won": f"{wins}/{args.rounds}"}
        print(f"{a} {max(rounds[a]):.0f} tok/s vs {b} {max(rounds[b]):.0f}: {max(rounds[a]) / max(rounds[b]):.2f}x, "
              f"faster in {wins}/{args.rounds} rounds", flush=True)
    report["f1"] = {}
    for lang in args.f1_langs:
        test = encode_ner(DatasetDict({"t": panx_splits(lang, args.data_dir)["test"]}), tokenizer)["t"]
        for name, model in models.items():
            report["f1"].setdefault(name, {})[lang] = evaluate(model, test, fp32.config.id2label, 64)["f1"]
        print(lang, {name: round(f[lang], 4) for name, f in report["f1"].items()}, flush=True)
    (args.output_dir / "ort_checkpoint.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output_dir / 'ort_checkpoint.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
