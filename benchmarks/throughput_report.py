"""What `python -m benchmarks.throughput` writes: the device's peak, and its rows as Markdown, JSON and
a PNG of tokens/s against sequence length.

Columns, per cell:
- tok/s: real (non-padding) tokens per second of each implementation;
- ours/x: ours' tok/s over x's: above 1.0x ours is faster (and ours-int8/ort-int8 likewise). With several rounds, "(k/n)" after it
  says in how many of the n rounds ours' block beat x's block of the same round: blocks of one
  round run next to each other in time, so this count does not depend on a lucky block;
- TFLOP/s: model FLOPs per second (training.throughput.model_flops, the count the training
  log's MFU uses: per real token 2N + 4LHT for inference, 6N + 12LHT for a training step; N the
  parameters that multiply, without the embeddings; L layers, H hidden size, T the padded length);
- MFU: that over the device's peak for the precision: the measured peak (the best large matrix
  product in that dtype on this device; for fp32 on a CPU the best of PyTorch, oneDNN, numpy and
  ONNX Runtime, named in the header: benchmarks/gemm_peak.py) and, on GPUs with a known datasheet, the datasheet's;
- peak MB: the weights plus the most a step adds (activations, gradients, optimizer state).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from benchmarks.gemm_peak import SHAPES, measure
from benchmarks.provenance import write_result
from evaluation.plots import pyplot, save_figure
from runtime.precision import matmul_gflops

# Dense tensor-core TFLOP/s from the vendors' datasheets (fp32: without TF32).
DATASHEET_TFLOPS = {
    "H200": {"bf16": 989, "fp16": 989, "fp32": 67},
    "H100 NVL": {"bf16": 835, "fp16": 835, "fp32": 60},
    "H100 PCIe": {"bf16": 756, "fp16": 756, "fp32": 51},
    "H100 SXM": {"bf16": 989, "fp16": 989, "fp32": 67},
    "A100": {"bf16": 312, "fp16": 312, "fp32": 19.5},
}
DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def datasheet_name(gpu: str) -> str | None:
    if "H200" in gpu:
        return "H200"
    if "H100" in gpu:
        return "H100 PCIe" if "PCIe" in gpu else "H100 NVL" if "NVL" in gpu else "H100 SXM"
    return "A100" if "A100" in gpu else None


def machine(device: torch.device, precisions: list[str], quick: bool = False) -> dict:
    """The device's measured matmul peak per precision (TFLOP/s), which library's product set
    the fp32 one, and on a known GPU its datasheet's. `quick`: one small product, for a check
    that must take seconds (its MFU is not a figure to quote)."""
    n, repeats = (256, 2) if quick else (8192, 10) if device.type == "cuda" else (2048, 5)
    peaks = {p: matmul_gflops(DTYPE[p], n, repeats, device) / 1e3 for p in precisions}
    source = f"torch {n}x{n}" + (" (quick: not a peak)" if quick else "")
    if device.type == "cpu" and "fp32" in peaks and not quick:
        # fp32 on a CPU: the best product any library here reaches (PyTorch's own can trail
        # ONNX Runtime's MLAS by 30-60%), so MFU is not flattered by a slow reference.
        best = max(((r, f"{lib} {m}x{k}x{n_}") for m, k, n_ in SHAPES for lib, r in measure(m, k, n_).items()),
                   key=lambda x: x[0])
        if best[0] / 1e3 > peaks["fp32"]:
            peaks["fp32"], source = best[0] / 1e3, best[1]
    info = {"device": device.type, "peak_tflops": peaks, "peak_source": source}
    if device.type == "cuda":
        info["datasheet"] = datasheet_name(torch.cuda.get_device_name(device))
        info["datasheet_tflops"] = DATASHEET_TFLOPS.get(info["datasheet"])
    measured = ", ".join(f"{p} {t:.2f}" for p, t in peaks.items())
    info["summary"] = (f"Measured matmul peak, TFLOP/s: {measured} (fp32: {source})"
                       + (f"; datasheet row: {info['datasheet'] or 'none known'}" if device.type == "cuda" else ""))
    return info


def _fmt(x, spec=".0f") -> str:
    return "-" if x is None else format(x, spec)


def table(rows: list[dict], info: dict, impls: list[str]) -> list[str]:
    """One Markdown table for rows of one mode and precision."""
    others = [i for i in impls if i != "ours"]
    pairs = [("ours", i) for i in others] + ([("ours-int8", "ort-int8")] if {"ours-int8", "ort-int8"} <= set(impls) else [])
    sheet = info.get("datasheet_tflops")
    head = (["size", "cell", "B x T"] + [f"{i} tok/s" for i in impls]
            + [f"{a}/{b.removeprefix('hf-')}" for a, b in pairs]
            + ["ours TFLOP/s", "MFU"] + (["MFU (datasheet)"] if sheet else []) + [f"peak MB {i}" for i in impls])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    by_cell = defaultdict(dict)
    for r in rows:
        by_cell[(r["size"], r["cell"])][r["impl"]] = r
    for (size, cell), got in by_cell.items():
        ours, any_row = got.get("ours"), next(iter(got.values()))
        peak = info["peak_tflops"].get(any_row["precision"])
        cells = [size, cell, f"{any_row['batch']:.0f} x {any_row['seq']:.0f}"]
        cells += [_fmt(got[i]["tokens_per_s"]) if i in got else "-" for i in impls]
        cells += [ratio(got.get(a), got.get(b)) for a, b in pairs]
        cells += [_fmt(ours and ours["tflops"], ".3f"), _fmt(ours and peak and ours["tflops"] / peak, ".1%")]
        if sheet:
            cells.append(_fmt(ours and ours["tflops"] / sheet[any_row["precision"]], ".1%"))
        cells += [_fmt(got[i]["peak_mb"]) if i in got else "-" for i in impls]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def ratio(ours: dict | None, other: dict | None) -> str:
    """"1.02x (4/6)": best block over best block, and the rounds in which ours' block was faster."""
    if not ours or not other:
        return "-"
    x = ours["tokens_per_s"] / other["tokens_per_s"]
    text = f"{x:.2f}x" + (" (below 1)" if x < 1 else "")
    paired = list(zip(ours.get("blocks_tokens_per_s", []), other.get("blocks_tokens_per_s", [])))
    if len(paired) > 1:
        text += f" ({sum(a > b for a, b in paired)}/{len(paired)})"
    return text


def markdown(info: dict, rows: list[dict], args: dict) -> str:
    """The tables, under the title and the peak (write_result puts the provenance above them)."""
    impls = list(args["impls"])
    lines = ["# Encoder throughput: ours against transformers", "", info["summary"], ""]
    for mode in args["modes"]:
        for precision in info["peak_tflops"]:
            chosen = [r for r in rows if r["mode"] == mode and r["precision"] == precision]
            if chosen:
                lines += [f"## {mode}, {precision}", ""] + table(chosen, info, impls) + [""]
    ratios = [(o["tokens_per_s"] / r["tokens_per_s"], r) for o in rows if o["impl"] == "ours"
              for r in rows if r["impl"].startswith("hf") and all(r[k] == o[k] for k in ("size", "mode", "precision", "cell"))]
    if ratios:
        low, where = min(ratios, key=lambda x: x[0])
        lines.append(f"ours >= transformers in {sum(x >= 1 for x, _ in ratios)} of {len(ratios)} comparisons; "
                     f"lowest {low:.2f}x ({where['size']} {where['mode']} {where['precision']} {where['cell']} "
                     f"against {where['impl']}).")
    return "\n".join(lines) + "\n"


def plot(path: Path, rows: list[dict]) -> bool:
    """tokens/s against sequence length, one panel per size, mode and precision; a line per
    implementation and batch size (grid cells only)."""
    grid = [r for r in rows if r["cell"][0].isdigit()]  # "8x128", not "panx-de"
    panels = sorted({(r["size"], r["mode"], r["precision"]) for r in grid})
    plt = pyplot() if panels else None
    if plt is None:
        return False
    cols = min(3, len(panels))
    fig, axes = plt.subplots(-(-len(panels) // cols), cols, figsize=(5 * cols, 3.6 * -(-len(panels) // cols)),
                             squeeze=False)
    styles = {"ours": "C0", "hf-sdpa": "C1", "hf-eager": "C2", "ours-compiled": "C3", "ours-int8": "C4",
              "ort-fp32": "C5", "ort-int8": "C6", "ours-varlen": "C7"}
    for ax, (size, mode, precision) in zip(axes.flat, panels):
        mine = [r for r in grid if (r["size"], r["mode"], r["precision"]) == (size, mode, precision)]
        for k, batch in enumerate(sorted({r["batch"] for r in mine})):
            for impl in styles:
                pts = sorted((r["seq"], r["tokens_per_s"]) for r in mine if r["impl"] == impl and r["batch"] == batch)
                if pts:
                    ax.plot(*zip(*pts), marker="o", color=styles[impl], linestyle=["-", "--", ":"][k % 3],
                            label=f"{impl}, batch {batch:.0f}")
        ax.set_title(f"{size}, {mode}, {precision}", fontsize=10)
        ax.set_xlabel("sequence length")
        ax.set_ylabel("tokens/s")
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=6, ncol=2)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    save_figure(plt, fig, path)
    return True


def write_reports(out: Path, record: dict, info: dict, rows: list[dict], args: dict, png: bool = True) -> None:
    """throughput.json and .md (each with the run's provenance) and throughput.png in `out`."""
    args = {k: (str(v) if isinstance(v, Path) else v) for k, v in args.items()}
    write_result(out / "throughput.json", {"machine": info, "args": args, "rows": rows}, record,
                 markdown(info, rows, args))
    if png:
        plot(out / "throughput.png", rows)


if __name__ == "__main__":
    # python -m benchmarks.throughput_report runs/throughput/throughput.json: the Markdown and the
    # PNG written again from a run's JSON, in its folder, with the provenance it recorded.
    import json
    import sys

    saved = json.loads(Path(sys.argv[1]).read_text())
    write_reports(Path(sys.argv[1]).parent, saved["provenance"], saved["machine"], saved["rows"], saved["args"])
