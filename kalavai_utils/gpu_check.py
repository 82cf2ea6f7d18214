"""The prepared GPU check (`scripts/gpu_check.sh`; docs/gpu-and-hub-scales.md, "The prepared GPU check").

One call on a lent GPU machine, within a fixed budget (`BUDGET_S`, Python start-up included):
the `410m` configuration's training step at the one-GPU default (`benchmark`), fused inference
(`benchmark-inference`), then `synthetic-25m`'s data and notebooks 00-03 at its first seed. Each
part is a subprocess under its own time cap, so one slow part cannot eat the others' time; the
notebooks, whose length is least known, come last and get what is left. One JSON names the device
and holds every part's status and seconds, the measurements and what the notebooks finished.

Stages (each a `gpu-check` command):

- `prepare` (here, with PyPI): the wheels of the notebook stack (papermill, ipykernel, nbconvert
  and what they need beyond the GPU machine's image) for that machine's Python, at the versions of
  constraints-cpu.txt, into `.whl/`; then a check that what travels to the machine (the working
  tree and `.whl/`) stays within the device tool's 64 MiB. A second call finds every wheel: no
  download.
- `data`: a scale's tokenizer and chunked corpora (notebook 00's and 01's data). On the GPU
  machine it is the run's first synthetic part: the data's cache key holds the Python version
  (corpora.corpus_version: the code domain is the interpreter's own standard library), so data
  made here (Python 3.11) would be rebuilt there (3.12); synthetic-25m's chunk files alone come
  near the 64 MiB, leaving no room for the wheels.
- `plan`: the time plan, each part's cap beside an estimate from the committed H100 measurements.
- `install` (a part of `run`): the wheels into a folder put on the parts' PYTHONPATH.
- `run`: the parts in order, then the JSON (`results/gpu-check/gpu-check-<device>.json`, copied to $OUT
  where that is set). `--dry` runs the same parts at scale `smoke` on a CPU (the test of the
  plumbing). A part finished by an earlier run of the same runs folder is not run again, and the
  notebooks resume from their cached steps, so a second run on the same machine goes on where
  the first stopped.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import KalavaiError
from .scales import ONE_GPU_BATCH, get_scale
from .storage import atomic_write_json, read_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
SCHEMA = "kalavai.gpu-check/1"
TRAVEL_LIMIT_MIB = 64  # the device tool's limit on the working tree plus carried paths
BUDGET_S = 480  # the 8 minutes of an H100, from the script's start (--dry: the same plan)
REPORT_RESERVE_S = 15  # kept for writing the JSON after the last part
KILL_GRACE_S = 15  # after SIGTERM, before SIGKILL

# The parts' scales and sizes. The notebooks run the main result (notebooks.MAIN_RESULT) at the
# scale's first seed: three seeds cannot fit (see `plan`).
BIG, SYNTHETIC = "410m", "synthetic-25m"
BENCH_STEPS = 30  # benchmark's default: the first 10 are warm-up
GEN_LENGTHS = (64,)  # generation's new tokens: 256 and 1,024 took about 4 minutes more on the H100
INFERENCE_EXPERTS = 3
# caps in seconds; the notebooks get the rest of the budget
CAPS = {"install": 45, "benchmark": 90, "inference": 90, "data": 120}

# The notebook stack that the GPU machine's image lacks (it holds torch, transformers, accelerate,
# peft, pandas, scipy, statsmodels, matplotlib and seaborn): papermill, nbformat, nbclient,
# nbconvert and ipykernel with the dependencies they add. Versions come from constraints-cpu.txt.
WHEELS = tuple(
    """
    asttokens beautifulsoup4 bleach comm debugpy defusedxml entrypoints executing fastjsonschema
    ipykernel ipython ipython_pygments_lexers jedi jsonschema jsonschema-specifications jupyter_client
    jupyter_core jupyterlab_pygments matplotlib-inline mistune nbclient nbconvert nbformat nest-asyncio2
    pandocfilters papermill parso pexpect platformdirs prompt_toolkit ptyprocess pure_eval pyzmq
    referencing rpds-py soupsieve stack-data tenacity tornado traitlets wcwidth webencodings
    """.split()
)
NOTEBOOK_STACK = ("papermill", "nbconvert", "ipykernel", "nbclient", "zmq")  # what the notebooks part imports
# the GPU machine's wheel platforms (any manylinux that its glibc runs)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _ints(values) -> str:
    return ",".join(str(x) for x in values)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _mib(n_bytes: int) -> float:
    return round(n_bytes / 2**20, 2)


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) if Path(folder).exists() else 0


# ---------------------------------------------------------------- prepare: the wheels


def target_python() -> str:
    """The GPU machine's Python (e.g. 3.12.3), as its committed measurement recorded it."""
    return read_json(RESULTS / BIG / "benchmark_h100.json")["versions"]["python"]


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def constraint_pins(path: Path = ROOT / "constraints-cpu.txt") -> dict[str, str]:
    pins = {}
    for line in Path(path).read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[_norm(name)] = version.strip()
    return pins


def wheel_specs(pins: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(name, version) of every wheel to carry, the version from constraints-cpu.txt."""
    pins = constraint_pins() if pins is None else pins
    unpinned = [n for n in WHEELS if _norm(n) not in pins]
    if unpinned:
        raise KalavaiError(f"no version in constraints-cpu.txt for {', '.join(unpinned)} (gpu_check.WHEELS)")
    return [(n, pins[_norm(n)]) for n in WHEELS]


def wheel_file(folder: Path, name: str, version: str) -> Path | None:
    """The wheel of name==version in `folder`, if there (wheel file names escape the name with '_')."""
    want = (_norm(name), version)
    for path in sorted(Path(folder).glob("*.whl")):
        parts = path.name.split("-")
        if len(parts) >= 5 and (_norm(parts[0]), parts[1]) == want:
            return path
    return None


def travel_bytes(extra: list[Path]) -> int:
    """What the device tool sends: tracked files and untracked ones git does not ignore, plus `extra`."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise KalavaiError(f"cannot list the working tree with git ({e})") from None
    files = {ROOT / p for p in listed.decode().split("\0") if p}
    total = sum(p.stat().st_size for p in files if p.is_file() and not p.is_symlink())
    return total + sum(_tree_bytes(folder) for folder in extra)


def prepare(wheels: Path, download: bool = True) -> dict:
    """The wheels in `wheels` (downloaded where missing), other versions of them removed, and the travel size checked."""
    began = time.perf_counter()
    wheels = Path(wheels)
    wheels.mkdir(parents=True, exist_ok=True)
    specs = wheel_specs()
    pinned = {_norm(n): v for n, v in specs}
    for path in wheels.glob("*.whl"):  # two versions of one package stop the whole install
        name, version = (path.name.split("-") + [""])[:2]
        if _norm(name) in pinned and version != pinned[_norm(name)]:
            path.unlink()
    missing = [f"{n}=={v}" for n, v in specs if wheel_file(wheels, n, v) is None]
    if missing and not download:
        raise KalavaiError(f"{len(missing)} wheels missing from {wheels}: {', '.join(missing[:3])}...")
    if missing:
        python = target_python()
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
        cmd += ["--python-version", python, "--implementation", "cp", "--abi", "cp" + _minor(python).replace(".", "")]
        cmd += [a for p in PLATFORMS for a in ("--platform", p)] + ["-d", str(wheels), *missing]
        print(f"[gpu-check] downloading {len(missing)} wheels for Python {python} into {wheels}", flush=True)
        if subprocess.run(cmd).returncode != 0:
            raise KalavaiError(f"pip could not download the wheels for Python {python} (its error is above)")
        still = [f"{n}=={v}" for n, v in specs if wheel_file(wheels, n, v) is None]
        if still:
            raise KalavaiError(f"pip left {len(still)} wheels missing: {', '.join(still)}")
    travel = travel_bytes([wheels])
    record = {
        "wheels": len(specs),
        "downloaded": len(missing),
        "cache_hit": not missing,
        "wheels_mib": _mib(_tree_bytes(wheels)),
        "travel_mib": _mib(travel),
        "travel_limit_mib": TRAVEL_LIMIT_MIB,
        "seconds": round(time.perf_counter() - began, 2),
    }
    if travel > TRAVEL_LIMIT_MIB * 2**20:
        raise KalavaiError(
            f"what travels to the GPU machine (working tree and {wheels.name}/) is {record['travel_mib']} MiB, "
            f"over the device tool's {TRAVEL_LIMIT_MIB} MiB"
        )
    print(
        f"[gpu-check] {len(specs)} wheels in {wheels} ({'all there' if not missing else f'{len(missing)} downloaded'}, "
        f"{record['wheels_mib']} MiB); the working tree and wheels: {record['travel_mib']} MiB of "
        f"{TRAVEL_LIMIT_MIB}; carry: {wheels.name}",
        flush=True,
    )
    return record


# ---------------------------------------------------------------- install (on the GPU machine)


def stack_importable(env: dict | None = None) -> bool:
    code = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *NOTEBOOK_STACK], env=env).returncode == 0


def site_env(site: Path, env: dict) -> dict:
    """PYTHONPATH and JUPYTER_PATH with the installed wheels: their packages, and their data files
    (nbconvert's templates, which the notebook runner's HTML report needs)."""

    def join(name, path):
        return os.pathsep.join(filter(None, [env.get(name), str(path)]))

    return {"PYTHONPATH": join("PYTHONPATH", site), "JUPYTER_PATH": join("JUPYTER_PATH", site / "share" / "jupyter")}


def install(wheels: Path, site: Path) -> dict:
    """The wheels into `site` (pip --target), for the parts' PYTHONPATH; nothing where the stack is importable."""
    if stack_importable():
        print("[gpu-check] the notebook stack is already importable: nothing to install", flush=True)
        return {"installed": 0}
    running, target = ".".join(map(str, sys.version_info[:2])), _minor(target_python())
    if running != target:
        raise KalavaiError(f"the wheels are for Python {target}, this is {running}: prepare them for it")
    files = []
    for name, version in wheel_specs():
        path = wheel_file(wheels, name, version)
        if path is None:
            raise KalavaiError(f"no wheel of {name}=={version} in {wheels}: run `scripts/gpu_check.sh prepare` first")
        files.append(str(path))
    stamp = Path(site) / ".kalavai-wheels"
    if stamp.exists() and stamp.read_text() == "\n".join(files):
        print(f"[gpu-check] {len(files)} wheels already in {site}", flush=True)
        return {"installed": 0, "site": str(site)}
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir"]
    quiet = {**os.environ, "PIP_ROOT_USER_ACTION": "ignore"}  # the GPU machine runs commands as root
    if subprocess.run([*cmd, "--upgrade", "--target", str(site), *files], env=quiet).returncode != 0:
        raise KalavaiError(f"pip could not install the wheels of {wheels} into {site} (its error is above)")
    if not stack_importable({**os.environ, **site_env(Path(site), os.environ)}):
        raise KalavaiError(f"installed into {site}, but {', '.join(NOTEBOOK_STACK)} do not all import")
    stamp.write_text("\n".join(files))
    print(f"[gpu-check] installed {len(files)} wheels into {site}", flush=True)
    return {"installed": len(files), "site": str(site)}


# ---------------------------------------------------------------- data


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file's content hash: a rerun that rewrites a manifest unchanged still counts as a cache hit."""
    from .storage import sha256_file

    return {str(p): sha256_file(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def data_record_path(runs_root: Path, scale_name: str) -> Path:
    return Path(runs_root) / f"data-{scale_name}.json"


def prepare_data(scale_name: str, runs_root: Path) -> dict:
    """A scale's tokenizer, contributors' corpora and pretraining corpus (the project's step caches: a rerun reads them)."""
    from .corpora import corpus_version
    from .notebooks import cpu_name
    from .protocol import pipeline

    scale = get_scale(scale_name)
    if scale.is_hub:
        raise KalavaiError(f"scale {scale.name} reads the Hub's data: `python -m kalavai_utils fetch` prepares it")
    runs = pipeline.run_dir(scale, runs_root)
    folder = runs / "data"
    before = _snapshot(folder)
    began = time.perf_counter()
    pipeline.prepare_corpus(scale, runs)  # the tokenizer first
    tokenizer_and_corpora = time.perf_counter() - began
    pipeline.prepare_pretrain_corpus(scale, runs)
    seconds = time.perf_counter() - began
    record = {
        "scale": scale.name,
        "folder": str(folder),
        "seconds": round(seconds, 2),
        "tokenizer_and_corpora_seconds": round(tokenizer_and_corpora, 2),
        "mib": _mib(_tree_bytes(folder)),
        "cache_hit": bool(before) and _snapshot(folder) == before,
        "generator": corpus_version(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "date": _now(),
    }
    atomic_write_json(data_record_path(runs_root, scale.name), record)
    print(
        f"[gpu-check] data of {scale.name}: {record['mib']} MiB in {record['seconds']} s "
        f"({'cached' if record['cache_hit'] else 'built'}) in {folder}",
        flush=True,
    )
    return record


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Part:
    name: str
    args: tuple[str, ...]  # after `python -m kalavai_utils`
    cap_s: float | None  # None: what is left of the budget
    what: str


def parts(dry: bool, runs_root: Path, wheels: Path, site: Path) -> list[Part]:
    from .notebooks import MAIN_RESULT

    big, synthetic = ("smoke", "smoke") if dry else (BIG, SYNTHETIC)
    seed = str(get_scale(synthetic).seeds[0])
    root = str(runs_root)
    inference = ["--n-experts", str(INFERENCE_EXPERTS), "--gen-lengths", _ints(GEN_LENGTHS)]
    if dry:  # the smallest sweep that still runs every variant and generation
        inference = [*inference[:2], "--freeze-layers", "1", "--batch-sizes", "1", "--gen-lengths", "4"]
        inference += ["--repeats", "1", "--min-seconds", "0"]
    steps = "2" if dry else str(BENCH_STEPS)
    notebooks = ["--only", ",".join(MAIN_RESULT), "--seeds", seed, "--runs-root", root]
    return [
        Part(
            "install",
            ("gpu-check", "install", "--wheels", str(wheels), "--site", str(site)),
            CAPS["install"],
            f"the notebook stack from {Path(wheels).name}/ (pip --target), unless already importable",
        ),
        Part(
            "benchmark",
            ("benchmark", "--scale", big, "--steps", steps, "--out", f"{root}/benchmark.json"),
            CAPS["benchmark"],
            f"training at {big}'s default batch shape: tokens/s and fraction of the measured bf16 matmul peak",
        ),
        Part(
            "inference",
            ("benchmark-inference", "--scale", big, *inference, "--out", f"{root}/inference.json"),
            CAPS["inference"],
            f"fused inference at {big}: dense, batched, top-k against one model; cached generation",
        ),
        Part(
            "data",
            ("gpu-check", "data", "--scale", synthetic, "--runs-root", root),
            CAPS["data"],
            f"{synthetic}'s tokenizer and chunked corpora, on the machine's CPU",
        ),
        Part(
            "notebooks",
            ("run-notebooks", "--scale", synthetic, *notebooks),
            None,
            f"{synthetic}'s notebooks {', '.join(MAIN_RESULT)} at seed {seed}",
        ),
    ]


def estimates() -> dict[str, dict]:
    """What the committed H100 measurements (results/410m, results/synthetic-25m) say each part takes.

    Per part: `seconds` (and `seconds_high` where two measured rates bound it), what they cover
    (`covers`: never the whole part, whose start-up and model builds no file timed) and `source`.
    """
    import inspect

    from .experiments.inference import generation_repeats, run_benchmark
    from .protocol.cooperative import ABLATION_ROUTERS, specialist_save_every
    from .protocol.pipeline import pretrain_save_every

    shapes = read_json(RESULTS / BIG / "training_shapes_h100.json")
    mb, acc = ONE_GPU_BATCH["micro_batch"], ONE_GPU_BATCH["grad_accum"]
    probe = shapes[f"{BIG} mb{mb}x{acc} fusedTrue compileFalse"]
    inference = read_json(RESULTS / BIG / "inference_h100.json")
    repeats = inference["settings"]["repeats"]
    generation = sum(
        row["seconds"] * generation_repeats(repeats, row["new_tokens"], row["cache"])
        for row in inference["generation"]
        if row["new_tokens"] in GEN_LENGTHS
    )
    settings = inference["settings"]
    forward_points = len(settings["freeze_layers"]) + len(settings["batch_sizes"]) - 1  # the main point is shared
    min_seconds = inspect.signature(run_benchmark).parameters["min_seconds"].default  # the command's too
    syn = get_scale(SYNTHETIC)
    bench = read_json(RESULTS / SYNTHETIC / "benchmark_h100.json")
    spec_rate = bench["training"]["tokens_per_s"]  # the specialists' own shape (micro-batch x accumulation)
    wide_rate = shapes[f"{SYNTHETIC} mb16x1 fusedTrue compileFalse"]["tokens_per_s"]
    pretrain_tokens = syn.pretrain_steps * syn.pretrain_batch * syn.seq_len
    # the specialists, and the monolithic baseline with as many steps as all of them (cooperative.train_contributors)
    spec_tokens = 2 * len(syn.domains) * syn.spec_steps * syn.micro_batch * syn.grad_accum * syn.seq_len
    per_router = bench["router"]["projected_seconds_full_per_router"]
    routers = per_router * len(ABLATION_ROUTERS)
    return {
        "benchmark": {
            "seconds": round(probe["warm15_s"] + (BENCH_STEPS - 15) * probe["steady_step_s"], 1),
            "covers": f"its {BENCH_STEPS}-step training loop at {mb} x {acc}",
            "source": f"results/{BIG}/training_shapes_h100.json; model builds, the step breakdown, evaluation "
            "and router timing come on top, never timed as a whole",
        },
        "inference": {
            "seconds": round(generation + forward_points * min_seconds, 1),
            "covers": f"generating {_ints(GEN_LENGTHS)} tokens, and {forward_points} forward settings of at "
            f"least {min_seconds:g} s each",
            "source": f"results/{BIG}/inference_h100.json; model builds on top",
        },
        "data": {"seconds": None, "covers": "", "source": "never timed on a GPU machine: the run measures it"},
        "notebooks": {
            "seconds": round(pretrain_tokens / wide_rate + spec_tokens / spec_rate + routers, 1),
            "seconds_high": round(pretrain_tokens / spec_rate + spec_tokens / spec_rate + routers, 1),
            "covers": f"training alone: pretraining's {pretrain_tokens:,} tokens ({syn.pretrain_batch} x 1, every "
            f"block) at the 16 x 1 rate of {wide_rate:,.0f} tokens/s or, high, at the specialists' "
            f"{syn.micro_batch} x {syn.grad_accum} rate of {spec_rate:,.0f} tokens/s; the specialists' and the "
            f"monolithic baseline's {spec_tokens:,} tokens at the latter; {len(ABLATION_ROUTERS)} routers at "
            f"{per_router:.1f} s each",
            "source": f"results/{BIG}/training_shapes_h100.json, results/{SYNTHETIC}/benchmark_h100.json; "
            "kernel start-ups, curves and evaluation on top",
            "save_every_steps": {
                "pretraining": pretrain_save_every(syn),
                "specialist": specialist_save_every(syn.spec_steps),
            },
        },
    }


def describe_plan(rows: list[Part], budget: float, dry: bool = False) -> str:
    """The plan in words: each part's cap and command, and (not --dry) what the committed H100 measurements say."""
    est = {} if dry else estimates()
    fixed = sum(p.cap_s for p in rows if p.cap_s)
    least = budget - fixed - REPORT_RESERVE_S
    lines = [f"budget {budget:.0f} s from the script's start, {REPORT_RESERVE_S} s of it kept for the JSON"]
    for p in rows:
        cap = f"{p.cap_s:.0f} s" if p.cap_s else f"the rest (at least {least:.0f} s)"
        lines.append(f"{p.name:<10} cap {cap}: {p.what}")
        lines.append(f"{'':<10} python -m kalavai_utils {' '.join(p.args)}")
        e = est.get(p.name)
        if e and e["seconds"] is not None:
            high = f" to {e['seconds_high']:.0f}" if e.get("seconds_high") else ""
            lines.append(f"{'':<10} H100: about {e['seconds']:.0f}{high} s for {e['covers']} ({e['source']})")
        elif e:
            lines.append(f"{'':<10} H100: {e['source']}")
    if est:
        n = est["notebooks"]
        at_most = (
            budget - REPORT_RESERVE_S - sum(est[p.name]["seconds"] or 0 for p in rows if p.cap_s and p.name in est)
        )
        verdict = (
            "so one run cannot finish them"
            if n["seconds"] > at_most
            else "so one run finishes them only if pretraining runs near the faster rate and the parts before "
            "them take little beyond those estimates"
        )
        lines.append(
            f"The notebooks' training alone needs about {n['seconds']:.0f} to {n['seconds_high']:.0f} s; they get at "
            f"least {least:.0f} s and at most about {at_most:.0f} s (the budget less the estimates above), {verdict}. "
            "A second run on the same machine resumes from their cached steps (pretraining saves every "
            f"{n['save_every_steps']['pretraining']} steps, a specialist every {n['save_every_steps']['specialist']})."
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- run


def _error_line(text: str) -> str | None:
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or "Error" in line.split(":")[0]]
    return (errors or lines or [None])[-1]


def run_part(argv: list[str], cap_s: float, env: dict, log) -> tuple[str, int | None, float, str]:
    """(status, exit code, seconds, output tail) of `argv` in its own session, killed with its group past `cap_s`."""
    began = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    tail = bytearray()

    def copy():
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            log.write(chunk)
            tail.extend(chunk)
            del tail[:-20000]

    reader = threading.Thread(target=copy, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=cap_s)
        status = "ok" if code == 0 else "failed"
    except subprocess.TimeoutExpired:
        status, code = "timed out", None
        for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        proc.wait()
    reader.join(timeout=30)  # a notebook kernel, in a session of its own, can hold the pipe a moment longer
    log.flush()
    return status, code, time.monotonic() - began, tail.decode(errors="replace")


def device_info() -> dict:
    import torch

    from .notebooks import cpu_name

    cuda = torch.cuda.is_available()
    return {
        "device": "cuda" if cuda else "cpu",
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
        "device_count": torch.cuda.device_count() if cuda else 0,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
    }


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def _reference_training(result: dict) -> dict | None:
    if result.get("scale") != BIG:
        return None
    shapes = read_json(RESULTS / BIG / "training_shapes_h100.json")
    t = result["training"]
    key = f"{BIG} mb{t['micro_batch']}x{t['grad_accum']} fusedTrue compile{t['compiled']}"
    if key not in shapes:
        return None
    return {
        "file": f"results/{BIG}/training_shapes_h100.json",
        "key": key,
        "tokens_per_s": shapes[key]["tokens_per_s"],
        "fraction_of_peak": shapes[key]["mfu"],
        "peak_memory_gib": shapes[key]["peak_gib"],
    }


def summarize_benchmark(path: Path) -> dict | None:
    if not path.exists():
        return None
    r = read_json(path)
    t = r["training"]
    return {
        "file": str(path),
        "scale": r["scale"],
        "weights": r["weights"],
        "dtype": r["dtype"],
        "matmul_peak_flops": r["matmul_peak_flops"],
        "training": {
            k: t.get(k)
            for k in ("micro_batch", "grad_accum", "compiled", "steps", "tokens_per_s", "fraction_of_peak")
            + ("peak_memory_gib", "mixed_precision")
        },
        "step_breakdown": t.get("step_breakdown"),
        "evaluation": r["evaluation"],
        "router_speedup_vs_fused_forward": r["router"].get("speedup_vs_fused_forward"),
        "reference": _reference_training(r),
    }


def _inference_rows(r: dict) -> dict:
    s = r["settings"]
    main = (s["main_n"], s["main_freeze_layers"])
    forward = {
        f"batch{row['batch']} {row['variant']}": {
            "latency_x_single": row["latency_x_single"],
            "ideal_dense_ratio": row["ideal_dense_ratio"],
        }
        for row in r["forward"]
        if (row["n_experts"], row["freeze_layers"]) == main
        and row["variant"] in ("separate", "dense", "dense-batched", "top1-sequence", "top2-sequence")
    }
    generation = {
        f"{row['model']} {row['new_tokens']} tokens {'cached' if row['cache'] else 'cache-free'}": row["tokens_per_s"]
        for row in r["generation"]
    }
    return {"forward_x_single": forward, "generation_tokens_per_s": generation}


def summarize_inference(path: Path) -> dict | None:
    if not path.exists():
        return None
    r = read_json(path)
    out = {"file": str(path), "scale": r["scale"], "settings": r["settings"], **_inference_rows(r)}
    if r["scale"] == BIG:
        ref = read_json(RESULTS / BIG / "inference_h100.json")
        out["reference"] = {"file": f"results/{BIG}/inference_h100.json", **_inference_rows(ref)}
    return out


def training_progress(runs: Path) -> list[dict]:
    """Every training of the run: finished (its log) or stopped (its last saved state), with tokens/s."""
    from safetensors import safe_open

    from .protocol.training import CHECKPOINT_FILE

    out = []
    for path in sorted(runs.glob("**/train_log.json")) + sorted(runs.glob("**/pretrain_log.json")):
        log = read_json(path)
        out.append(
            {
                "training": str(path.parent.relative_to(runs)),
                "finished": True,
                "steps": len(log.get("loss", [])),
                **{k: log[k] for k in ("train_seconds", "tokens_per_s", "fraction_of_peak") if k in log},
            }
        )
    for path in sorted(runs.glob(f"**/{CHECKPOINT_FILE}")):
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads(f.metadata()["kalavai_train_state"])
        except Exception:  # noqa: BLE001 - a state being written when the part was stopped: nothing to read
            continue
        cfg = meta["identity"]["config"]
        tokens = meta["step"] * cfg["micro_batch"] * cfg["grad_accum"] * get_scale(runs.name).seq_len
        out.append(
            {
                "training": str(path.parent.parent.relative_to(runs)),
                "finished": False,
                "steps": meta["step"],
                "of_steps": cfg["steps"],
                "train_seconds": meta["train_seconds"],
                "tokens_per_s": tokens / meta["train_seconds"] if meta["train_seconds"] else None,
            }
        )
    return out


def summarize_notebooks(runs: Path) -> dict:
    from .notebooks import read_timings
    from .reports.reference import summarize_run

    out = {"folder": str(runs), "timings": read_timings(runs).get("notebooks", {})}
    if runs.is_dir():
        out["trainings"] = training_progress(runs)
        try:
            out["summaries"] = summarize_run(runs)
        except KalavaiError as e:
            out["summaries_error"] = str(e)
    return out


def _safe(fn, *args):
    """fn(*args), or what went wrong in one line: a file left half-made by a stopped part must not stop the JSON."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - reported in the JSON, not raised
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}


def run(
    dry: bool = False,
    budget: float | None = None,
    runs_root: Path | None = None,
    out_dir: Path | None = None,
    wheels: Path = ROOT / ".whl",
    site: Path = Path("runs/gpu-check/site"),  # under runs/, ignored by git
    started_at: float | None = None,
) -> dict:
    """Every part in order within the budget, then the JSON; returns it."""
    from .protocol.results import library_versions

    started_at = started_at or time.time()
    budget = budget or BUDGET_S
    deadline = started_at + budget - REPORT_RESERVE_S
    runs_root = Path(runs_root or ROOT / "runs" / ("gpu-check-dry" if dry else "gpu-check")).resolve()
    runs_root.mkdir(parents=True, exist_ok=True)
    info = device_info()
    out_dir = Path(out_dir or (runs_root if dry else RESULTS / "gpu-check"))
    report_path = out_dir / f"gpu-check-{slug(info['device_name'])}.json"
    if info["device"] != "cuda" and not dry:
        raise KalavaiError("no GPU here: the check measures one (`run --dry` tests its plumbing on a CPU)")
    plan = parts(dry, runs_root, Path(wheels), Path(site))
    synthetic = get_scale(plan[-1].args[2])
    previous = read_json(runs_root / "parts.json") if (runs_root / "parts.json").exists() else {}
    env = {
        **os.environ,
        "KALAVAI_RUNS": str(runs_root),
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # the Hub unreachable: a Hub scale's benchmark falls back at once to the published config (random weights)
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    records: dict[str, dict] = {}
    log_path = runs_root / "gpu-check.log"

    def report() -> dict:
        data = data_record_path(runs_root, synthetic.name)
        result = {
            "schema": SCHEMA,
            "dry": dry,
            **info,
            "date": _now(),
            "versions": library_versions(),
            "hf_hub_offline": env["HF_HUB_OFFLINE"],
            "budget_s": budget,
            "seconds": round(time.time() - started_at, 1),
            "estimates": None if dry else _safe(estimates),
            "parts": [records.get(p.name, {"name": p.name, "status": "not reached"}) for p in plan],
            "benchmark": _safe(summarize_benchmark, runs_root / "benchmark.json"),
            "inference": _safe(summarize_inference, runs_root / "inference.json"),
            "data": _safe(read_json, data) if data.exists() else None,
            "notebooks": _safe(summarize_notebooks, runs_root / synthetic.name),
        }
        files = [p for p in (runs_root / "benchmark.json", runs_root / "inference.json", log_path) if p.exists()]
        out = os.environ.get("OUT")  # the device tool's folder of files that come back
        result["copied_to_out"] = [str(Path(out) / p.name) for p in [report_path, *files]] if out else []
        atomic_write_json(report_path, result)
        atomic_write_json(runs_root / "parts.json", records)
        if out:
            for path in [report_path, *files]:
                shutil.copyfile(path, Path(out) / path.name)
        return result

    print(describe_plan(plan, budget, dry), flush=True)
    with open(log_path, "ab") as log:
        for part in plan:
            command = [sys.executable, "-m", "kalavai_utils", *part.args]
            shown = "python -m kalavai_utils " + " ".join(part.args)
            record = {"name": part.name, "command": shown}
            left = deadline - time.time()
            cap = min(part.cap_s, left) if part.cap_s else left
            earlier = previous.get(part.name, {})
            if part.name == "install" and dry:
                record.update(status="skipped", reason="dry run: this environment's notebook stack")
            elif earlier.get("status") == "ok" and earlier.get("command") == shown:
                record = {**earlier, "cached": True}  # finished by an earlier run of this folder
            elif cap < 5:
                record.update(status="skipped", reason="no time left in the budget")
            else:
                print(f"[gpu-check] {part.name}: {shown} (cap {cap:.0f} s)", flush=True)
                status, code, seconds, tail = run_part(command, cap, env, log)
                record.update(status=status, exit_code=code, seconds=round(seconds, 1), cap_s=round(cap, 1))
                record["date"] = _now()
                if status != "ok":
                    record["error"] = _error_line(tail) if status == "failed" else f"stopped after {cap:.0f} s"
                print(f"[gpu-check] {part.name}: {status} in {seconds:.0f} s", flush=True)
            if part.name == "install" and (Path(site) / ".kalavai-wheels").exists() and not dry:
                env.update(site_env(Path(site), env))
            records[part.name] = record
            report()  # after every part: a run stopped from outside still leaves its JSON
    result = report()
    print(f"[gpu-check] written: {report_path}", flush=True)
    return result
