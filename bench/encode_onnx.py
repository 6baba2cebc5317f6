"""Encoding speed of the ONNX export and of bf16 against the runtimes users pick (issue 19).

Run (each row takes the bench lock exclusively on its own, so the pieces stay short; rows already
measured are kept, so a second call resumes):

    python bench/encode_onnx.py prepare --n 2000        # texts + model folders (not timed)
    python bench/encode_onnx.py run --n 2000            # every row, one process each
    python bench/encode_onnx.py report                  # bench/results/encode_onnx.md

Same texts for every row (bench/encode.py's ``load_texts``: XQuAD sentences in 12 languages +
DBpedia abstracts), all-MiniLM-L6-v2, 2 threads. Rows and where they run:

* main venv (this repository's ``.venv``): sentence-transformers torch fp32; embforge torch fp32
  and bf16 autocast; embforge ONNX fp32 and int8 (``embforge export``); the three heads in int8
  (the same MiniLM in the BGE-M3 layout, as bench/encode.py's FlagEmbedding row);
* ``.venv-ref`` (``make reference``: FlagEmbedding 1.4.2, transformers 4.57): FlagEmbedding
  ``BGEM3FlagModel`` fp32, three heads;
* the bench-only venv ``--peer-python`` (default /work/venvs/i19: optimum 2.1 + optimum-onnx,
  sentence-transformers 5.1.2, fastembed, on top of the main venv's packages through a .pth file;
  they pin transformers 4.57, so they cannot live in the main venv): sentence-transformers
  ``backend="onnx"`` fp32 and its own int8 export (``export_dynamic_quantized_onnx_model``,
  avx512_vnni), and fastembed on embforge's exported folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

LOCK = "/tmp/embforge-bench.lock"
MAIN_ROWS = [
    "gemm_peak",
    "st_fp32",
    "embforge_torch_fp32",
    "embforge_torch_bf16",
    "embforge_onnx_fp32",
    "embforge_onnx_int8",
    "embforge_m3_torch_fp32",
    "embforge_m3_onnx_int8",
]
REF_ROWS = ["flag_m3_fp32"]
PEER_ROWS = ["st_onnx_fp32", "st_onnx_int8", "fastembed_onnx_fp32"]
LABELS = {
    "st_fp32": "sentence-transformers torch (dense, fp32)",
    "st_onnx_fp32": 'sentence-transformers backend="onnx" (dense, fp32)',
    "st_onnx_int8": 'sentence-transformers backend="onnx", its int8 export (dense)',
    "fastembed_onnx_fp32": "fastembed on embforge's exported folder (dense, fp32)",
    "embforge_torch_fp32": "embforge torch (dense, fp32)",
    "embforge_torch_bf16": "embforge torch (dense, bf16 weights; dtype='bf16'/'auto' here)",
    "embforge_onnx_fp32": "embforge ONNX (dense, fp32)",
    "embforge_onnx_int8": "embforge ONNX (dense, int8)",
    "embforge_m3_torch_fp32": "embforge torch (3 heads, fp32)",
    "embforge_m3_onnx_int8": "embforge ONNX (3 heads, int8, one graph)",
    "flag_m3_fp32": "FlagEmbedding BGEM3FlagModel (3 heads, fp32; .venv-ref)",
}


def _args(ns: argparse.Namespace) -> dict:
    work = Path(ns.work)
    return {
        "texts": str(work / "texts.json"),
        "threads": ns.threads,
        "repeats": ns.repeats,
        "out_dir": str(work / "rows"),
        "model": str(work / "minilm"),
        "st_model": str(work / "st"),
        "onnx_model": str(work / "onnx-fp32"),
        "onnx_int8_model": str(work / "onnx-int8"),
        "m3_model": str(work / "m3"),
        "m3_onnx_int8_model": str(work / "m3-onnx-int8"),
    }


def prepare(ns: argparse.Namespace) -> None:
    """Texts and model folders (not timed; shared lock)."""
    from embforge.export import export_onnx
    from embforge.model.checkpoint import default_model_path
    from embforge.model.encoder import Encoder
    from encode import load_texts

    a, work = _args(ns), Path(ns.work)
    (work / "rows").mkdir(parents=True, exist_ok=True)
    Path(a["texts"]).write_text(json.dumps(load_texts(ns.n), ensure_ascii=False), encoding="utf-8")
    for d in ("minilm", "st"):
        if not (work / d).exists():
            shutil.copytree(default_model_path(), work / d)
    if not (work / "onnx-fp32").exists():
        export_onnx(a["model"], a["onnx_model"])
    if not (work / "onnx-int8").exists():
        export_onnx(a["model"], a["onnx_int8_model"], quantize="int8")
    if not (work / "m3").exists():  # the MiniLM in the BGE-M3 layout, as bench/encode.py builds it
        full = Encoder.from_pretrained(a["model"])
        full.config.pooling = "cls"
        full.save_pretrained(a["m3_model"], format="bge-m3")
        (work / "m3" / "embforge_encoder.json").unlink()
    if not (work / "m3-onnx-int8").exists():
        heads = ("dense", "sparse", "multivector")
        export_onnx(a["m3_model"], a["m3_onnx_int8_model"], quantize="int8", heads=heads)
    if not (work / "st" / "onnx" / "model_qint8_avx512_vnni.onnx").exists():  # ST's own export + int8
        code = (
            "import sys; from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model;"
            "m = SentenceTransformer(sys.argv[1], backend='onnx', device='cpu'); m.save_pretrained(sys.argv[1]);"
            "export_dynamic_quantized_onnx_model(m, 'avx512_vnni', sys.argv[1])"
        )
        subprocess.run([ns.peer_python, "-c", code, a["st_model"]], check=True)
    (work / "args.json").write_text(json.dumps(a, indent=1), encoding="utf-8")
    print(f"prepared {work}")


def high_priority(cmd: list[str]) -> list[str]:
    """``cmd`` at nice -10 in its OWN scheduler autogroup with autogroup nice -10.

    With ``kernel.sched_autogroup_enabled=1`` (this machine) CFS first shares the CPU between
    sessions (autogroups) and applies ``nice`` only inside one, so a plain ``nice -n -10`` bench gets
    one session's share (~50% measured here beside two nice-15 sessions). ``setsid`` starts a new
    autogroup and writing -10 to ``/proc/PID/autogroup`` weights it like a nice -10 process (root).
    """
    inner = 'echo -10 > /proc/$$/autogroup 2>/dev/null; exec nice -n -10 "$@"'
    return ["setsid", "-w", "sh", "-c", inner, "sh", *cmd]


def run(ns: argparse.Namespace) -> None:
    """Each row in its own process, under the exclusive bench lock (a piece per row)."""
    a, work = _args(ns), Path(ns.work)
    (work / "args.json").write_text(json.dumps(a, indent=1), encoding="utf-8")
    pythons = {r: sys.executable for r in MAIN_ROWS} | {r: ns.ref_python for r in REF_ROWS}
    pythons |= {r: ns.peer_python for r in PEER_ROWS}
    rows = ns.rows.split(",") if ns.rows else list(pythons)
    for row in rows:
        if (work / "rows" / f"{row}.json").exists() and not ns.again:
            continue
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        row_cmd = [pythons[row], str(HERE / "_encode_rows.py"), row, str(work / "args.json")]
        cmd = ["flock", "-x", LOCK, *high_priority(["timeout", "300", *row_cmd])]  # 5 min a piece
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            err = res.stderr.strip().splitlines()[-1:] or ["?"]
            (work / "rows" / f"{row}.error").write_text(res.stderr[-4000:], encoding="utf-8")
            print(f"{row}: FAILED ({err[0][:300]})", flush=True)
        else:
            print(res.stdout.strip().splitlines()[-1], flush=True)


def _cpu_info() -> tuple[str, str]:
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = next(
        (set(ln.split(":", 1)[1].split()) for ln in text.splitlines() if ln.startswith("flags")), set()
    )
    want = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
    return name, " ".join(f for f in want if f in flags)


#: measured with `pytest -m slow tests/unit/export/test_onnx_quality.py` and, per variant, the same nDCG on
#: the test split by the harness of the issue-19 session (numbers, not tuning: variants were chosen on dev).
GATE_NOTE = (
    "met since SmoothQuant became the default (embforge.export.smooth: Q/K/V and FFN-up inputs smoothed, "
    "alpha 0.5): xquad-de dense -0.0039, en +0.0031, es +0.0045; every head and the hybrid within 0.0045. "
    "Before it (per-token FFN down + heads alone): xquad-de dense -0.0108, the gate failed by 0.0008. "
    "SmoothQuant was chosen on dev-text fidelity (dense / token cosine 0.9954 / 0.9926 -> 0.9977 / 0.9968) "
    "and on sets neither choice saw (bench/results/int8_smooth_confirm.md: the nine XQuAD languages not "
    "bundled + DBpedia: mean |delta nDCG@10| hybrid 0.0044 -> 0.0020, closer on 9 of 10 sets, largest "
    "|delta| 0.0124 -> 0.0076) before the gate ran. Its cost: bench/results/int8_speed_ab.md (interleaved)."
)


NOTES = [
    "Notes (read before quoting these numbers):",
    "- Priority: the machine is shared (see the load column). Each row ran under the exclusive bench lock at "
    "nice -10 (in its own scheduler autogroup with autogroup nice -10, which matters only where "
    "`kernel.sched_autogroup_enabled=1`); the other jobs ran at nice 15. The CPU-use column (process CPU s / "
    "wall s, measured) says how clean each row is.",
    "- bf16 (torch): on a CPU `dtype='bf16'` (and `'auto'` on AVX512-BF16/AMX CPUs) runs a cached bf16 copy of "
    "the backbone's weights with fp32 heads (oneDNN bf16 kernels: AMX where the CPU has it, AVX512-BF16 "
    "otherwise; see the flags above), not autocast, which re-casts the weights "
    "at every matmul (embforge.model.precision.cast_backbone).",
    "- ONNX: the graph is traced with eager attention (embforge.export.onnx._eager_attention); ONNX Runtime "
    "fuses and quantizes that pattern. int8 = dynamic quantization, int8 weights per output channel; the FFN "
    "down-projections and the heads quantize their activations with one scale PER TOKEN "
    "(embforge.export.int8_rows, embforge.export.onnx.INT8_PER_ROW), the other MatMuls with ONNX Runtime's one "
    "scale per tensor; the inputs of Q/K/V and the FFN up projection are SmoothQuant-ed first "
    "(embforge.export.smooth). Per-variant fidelity, dev nDCG and speed: src/embforge/export/onnx.py's docstring and "
    "the int8 gate note below. Per-tensor weights and the offline transformer optimiser measured slower or "
    "worse (dense cosine min 0.75 on 400 of these texts).",
    "- int8 quality gate (tests/unit/export/test_onnx_quality.py, slow: nDCG@10 within 0.01 of torch fp32 per "
    "head and hybrid on the held-apart XQuAD test questions): " + GATE_NOTE,
    "- Cosines are to the embforge torch fp32 row of the same kind (dense: mean pooling, max 256 tokens; "
    "three heads: CLS pooling, max 512). fastembed truncates at min(model_max_length, max_length) of "
    "tokenizer_config.json; all-MiniLM-L6-v2 ships `max_length: 128` (max_seq_length is 256), so on the "
    "previous export fastembed cut the 140 of these 2,000 texts that are over 128 tokens (cosine down to 0.51; "
    "the other 1,860 matched). `embforge export` now writes the encoder's limit there (256): fastembed's "
    "vectors on those 140 texts then equal embforge's (max |diff| 8.9e-8).",
    "- MFU = model FLOPs / wall / the measured GEMM peak of the row's precision (int8 rows: ONNX Runtime "
    "MatMulInteger peak; attention, softmax, LayerNorm and tokenization are outside the GEMM peak).",
    "- No GPU was lent to this task: GPU rows (fp16/bf16 SDPA, varlen) are not measured.",
]


def _prec(key: str) -> str:
    return "int8" if "int8" in key else "bf16" if "bf16" in key else "fp32"


def _mfu(key: str, r: dict, peak: dict | None) -> str:
    """Model FLOPs / wall / the measured GEMM peak of the row's precision (int8: ONNX Runtime MatMulInteger)."""
    if peak is None:
        return "no peak row"
    flops = peak["flops"]["m3" if "m3" in key else "dense"]
    return f"{flops / r['wall_s'] / peak['peaks'][_prec(key)]:.1%}"


def _peak_line(peak: dict | None) -> str:
    if peak is None:
        return "GEMM peak: not measured (row gemm_peak missing)."
    p, f = peak["peaks"], peak["flops"]
    return (
        f"Measured GEMM peak in the same run ({peak['gemm_n']}^3 matmul, same threads): fp32 {p['fp32'] / 1e9:.0f}, "
        f"bf16 {p['bf16'] / 1e9:.0f} GFLOP/s (torch), int8 {p['int8'] / 1e9:.0f} GOP/s (ONNX Runtime MatMulInteger). "
        f"Model FLOPs: dense {f['dense'] / 1e12:.2f} TFLOP, three heads (max 512) {f['m3'] / 1e12:.2f} TFLOP "
        "(2 x non-embedding params per token + attention; bench/encode.py's model_flops)."
    )


def report(ns: argparse.Namespace) -> None:
    work = Path(ns.work)
    rows = {p.stem: json.loads(p.read_text()) for p in sorted((work / "rows").glob("*.json"))}
    peak = rows.pop("gemm_peak", None)
    errors = {p.stem: p.read_text().strip().splitlines()[-1][:200] for p in (work / "rows").glob("*.error")}
    refs = {  # dense rows compare to embforge torch fp32 (mean pooling), three-head rows to its 3-head run (CLS)
        g: np.load(work / "rows" / f"{k}.npy") if k in rows else None
        for g, k in (("dense", "embforge_torch_fp32"), ("m3", "embforge_m3_torch_fp32"))
    }
    name, flags = _cpu_info()
    n = next(iter(rows.values()))["n"] if rows else 0
    lines = [
        "# Encoding speed: ONNX export, int8, bf16 vs the runtimes users pick (bench/encode_onnx.py)",
        "",
        f"Commands: `python bench/encode_onnx.py prepare --n {ns.n}`, `python bench/encode_onnx.py run --n {ns.n} "
        f"--threads {ns.threads} --repeats {ns.repeats}` (each row: `flock -x {LOCK}`, own process at nice -10 in "
        "its own scheduler autogroup with autogroup nice -10: see `high_priority`), "
        "`python bench/encode_onnx.py report`.",
        "",
        f"{n} real texts (XQuAD sentences in 12 languages + DBpedia abstracts), all-MiniLM-L6-v2, "
        f"{ns.threads} threads, best of {ns.repeats}. CPU `{name}`, flags (measured, /proc/cpuinfo): `{flags}`. "
        "Load average (1 min) before/after each row and the row's own CPU use (process CPU s / wall s) "
        "are measured in the row's process. Peers: see the module docstring for the venv of each row.",
        "",
        _peak_line(peak),
        "",
        "| row | precision | texts | wall s | texts/s | CPU s | CPU use | load before/after | MFU (peak of its precision) | dense cos to embforge torch fp32 of its kind (min / mean) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for key, label in LABELS.items():
        if key not in rows:
            lines.append(f"| {label} | | | | | | | | | not run: {errors.get(key, 'not measured')} |")
            continue
        r = rows[key]
        cos = ""
        vec = np.load(work / "rows" / f"{key}.npy")
        ref = refs["m3" if "m3" in key else "dense"]
        if ref is not None and vec.shape == ref.shape:
            c = (vec * ref).sum(1) / np.linalg.norm(vec, axis=1) / np.linalg.norm(ref, axis=1)
            cos = f"{c.min():.4f} / {c.mean():.4f}"
        lines.append(
            f"| {label} | {r['precision']} | {r['n']} | {r['wall_s']:.2f} | {r['n'] / r['wall_s']:.1f} | "
            f"{r['cpu_s']:.1f} | {r['cpu_s'] / r['wall_s']:.2f} | {r['load_before']:.1f} / {r['load_after']:.1f} | "
            f"{_mfu(key, r, peak)} | {cos} |"
        )
    t = {k: v["wall_s"] for k, v in rows.items()}

    def ratio(a: str, b: str) -> str:
        return f"{t[a] / t[b]:.2f}" if a in t and b in t else "skipped"

    results = {
        "onnx_int8_vs_st": ratio("st_fp32", "embforge_onnx_int8"),
        "onnx_int8_vs_st_int8": ratio("st_onnx_int8", "embforge_onnx_int8"),
        "m3_int8_vs_flag": ratio("flag_m3_fp32", "embforge_m3_onnx_int8"),
        "bf16_vs_st": ratio("st_fp32", "embforge_torch_bf16")
        if "amx_bf16" in flags or "avx512_bf16" in flags
        else "skipped",
        "onnx_fp32_vs_st": ratio("st_fp32", "embforge_onnx_fp32"),
        "onnx_fp32_vs_st_onnx": ratio("st_onnx_fp32", "embforge_onnx_fp32"),
    }
    targets = {"onnx_int8_vs_st": 3.0, "onnx_int8_vs_st_int8": 1.2, "m3_int8_vs_flag": 3.0, "bf16_vs_st": 3.0}
    lines += ["", "| ratio (wall time) | value | target | met |", "| --- | ---: | ---: | --- |"]
    for k, v in results.items():
        tgt = targets.get(k)
        met = "" if tgt is None or v == "skipped" else ("yes" if float(v) >= tgt else "no")
        lines.append(f"| {k} | {v} | {'>= ' + str(tgt) + 'x' if tgt else ''} | {met} |")
    lines += ["", *NOTES, "", "RESULT " + " ".join(f"{k}={v}" for k, v in results.items() if k in targets)]
    out = HERE / "results" / "encode_onnx.md"
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")  # atomic: a reader never sees half a table
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["prepare", "run", "report"])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--rows", default="", help="comma-separated rows (default: all not yet measured)")
    ap.add_argument("--again", action="store_true", help="re-measure rows already measured")
    ap.add_argument("--work", default="/tmp/embforge-bench-onnx")
    ref = ROOT / ".venv-ref" / "bin" / "python"  # `make reference`; a worktree shares the main checkout's
    ref = ref if ref.exists() else Path("/work/main/.venv-ref/bin/python")
    ap.add_argument("--ref-python", default=str(ref))
    ap.add_argument("--peer-python", default="/work/venvs/i19/bin/python")
    ns = ap.parse_args()
    {"prepare": prepare, "run": run, "report": report}[ns.step](ns)


if __name__ == "__main__":
    main()
