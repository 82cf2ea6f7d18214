"""Command line: `python -m kalavai_utils COMMAND ...` (also installed as `kalavai`).

Bad input ends with one line `error: ...` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from .errors import KalavaiError

ABLATION_SECTIONS_HELP = (
    "notebook 05's sections, comma-separated, e.g. freeze,crossover "
    "(default: every one offline; at the Hub scales all but the crossover ladder)"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kalavai", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    nb = sub.add_parser("run-notebooks", help="execute the numbered notebooks with papermill")
    nb.add_argument("--scale", default="tiny")
    nb.add_argument("--only", help="comma-separated notebook numbers, e.g. 00,01")
    nb.add_argument("--seeds", help="comma-separated seeds, overriding the scale's")
    nb.add_argument("--runs-root", help="folder for runs/ (default: ./runs)")
    nb.add_argument("--kernel", help="Jupyter kernel name (default python3)")
    nb.add_argument(
        "--processes", help="train notebook 02's specialists over this many processes first (train-cooperative)"
    )
    nb.add_argument(
        "--capacity-pretrain-fraction",
        help="notebook 05's capacity_pretrain_fraction, in (0, 1] "
        "(default: the scale's; 1 = the like-for-like capacity control)",
    )
    nb.add_argument("--ablation-sections", help=ABLATION_SECTIONS_HELP)

    cs = sub.add_parser(
        "check-scale", help="check a run's arguments and KALAVAI_* settings (run_all.sh, before anything runs)"
    )
    cs.add_argument("scale")
    cs.add_argument("--only")
    cs.add_argument("--seeds")
    cs.add_argument("--processes")
    cs.add_argument("--capacity-pretrain-fraction")
    cs.add_argument("--ablation-sections")

    bu = sub.add_parser(
        "budget",
        help="the expected GPU-hours of the notebooks at a Hub scale, per notebook (an estimate from H100 timings)",
    )
    bu.add_argument("--scale", required=True)
    bu.add_argument("--only", help="comma-separated notebook numbers (default: every one the scale runs)")
    bu.add_argument("--seeds", help="comma-separated seeds, overriding the scale's")
    bu.add_argument("--ablation-sections", help=ABLATION_SECTIONS_HELP)
    bu.add_argument("--skip-offline", action="store_true", help="print nothing at an offline scale (run_all.sh)")

    ev = sub.add_parser("env", help="print every KALAVAI_* setting: value, source and meaning (a bad value: exit 2)")
    ev.add_argument("--check", action="store_true", help="only check them: print nothing unless one is bad")

    tc = sub.add_parser(
        "train-cooperative",
        help="notebook 02's training (data, base, specialists, monolithic); "
        "for `accelerate launch` over several processes",
    )
    tc.add_argument("--scale", default="tiny")
    tc.add_argument("--seeds", help="comma-separated seeds, overriding the scale's")
    tc.add_argument("--runs-root", help="folder for runs/ (default: ./runs)")

    ts = sub.add_parser("train-specialist", help="contributor: fine-tune the base on your own text into a submission")
    ts.add_argument("--base", required=True, help="the shared base checkpoint folder (with its tokenizer)")
    ts.add_argument(
        "--data", required=True, nargs="+", help="text files (one document each) or .jsonl with a 'text' field"
    )
    ts.add_argument("--out", required=True, help="submission folder to write")
    ts.add_argument("--name", help="contributor / domain name (default: the output folder's name)")
    ts.add_argument("--scale", default="tiny", help="whose training recipe to use")
    ts.add_argument("--seed", type=int, default=42)
    ts.add_argument("--steps", type=int)
    ts.add_argument(
        "--heldout-out", help="also write the held-out split (never trained on) as DIR/<name>/ for the coordinator"
    )

    vf = sub.add_parser(
        "verify", help="coordinator: a verdict for every submission against the base; exit 1 if any is refused"
    )
    vf.add_argument("--base", required=True)
    vf.add_argument("--freeze-layers", type=int, required=True)
    vf.add_argument("--json", action="store_true", help="print every verdict as JSON: [{path, accepted, reason, ...}]")
    vf.add_argument("submissions", nargs="+")

    pg = sub.add_parser("predict-gain", help="predict the fusion gain from divergences, before training a router")
    pg.add_argument("--base", required=True)
    pg.add_argument("--submissions", required=True, nargs="+")
    pg.add_argument("--data", required=True, help="chunk folder holding each contributor's held-out split")
    pg.add_argument("--fit", default="paper", help="'paper' or a fit JSON written by notebook 04")
    pg.add_argument("--freeze-layers", type=int, help="the coordinator's frozen depth K (or give --scale)")
    pg.add_argument("--scale", help="take K from this scale's settings")
    pg.add_argument("--json", action="store_true", help="print the full prediction as JSON")

    fu = sub.add_parser(
        "fuse",
        help="coordinator: verify the submissions again, train a router on your text, write one fused model folder",
    )
    fu.add_argument("--base", required=True, help="the shared base checkpoint folder (with its tokenizer)")
    fu.add_argument("--submissions", required=True, nargs="+")
    fu.add_argument(
        "--router-text",
        required=True,
        nargs="+",
        help="text the router trains on: text files (one document each), .jsonl with a 'text' field, "
        "or chunk folders (their train split, else their held-out split)",
    )
    fu.add_argument(
        "--heldout",
        nargs="+",
        default=[],
        metavar="NAME=PATH",
        help="held-out data per domain for the evaluation table (a chunk folder's held-out split, or a text "
        "file); every expert needs its own domain's",
    )
    fu.add_argument("--out", required=True, help="the fused model folder to write (new or empty)")
    fu.add_argument(
        "--router",
        default="token",
        help="token: a causal per-token linear router (default; the model generates with a cache); "
        "sequence: the authors' router, pooled over the whole chunk",
    )
    fu.add_argument("--steps", type=int, help="router training steps (default: the recipe's, 500 as in the paper)")
    fu.add_argument("--seed", type=int, default=42)
    fu.add_argument("--freeze-layers", type=int, help="the coordinator's frozen depth K (or give --scale)")
    fu.add_argument("--scale", help="take K and the router recipe from this scale (default recipe: the paper's)")

    eva = sub.add_parser(
        "evaluate",
        help="the paper's evaluation of model folders on held-out data: per-domain table, gains, divergence, oracle",
    )
    eva.add_argument(
        "--model",
        required=True,
        nargs="+",
        metavar="NAME=PATH",
        help="model folders: the base, specialists, a fused folder, any causal LM with the base's tokenizer",
    )
    eva.add_argument(
        "--heldout",
        required=True,
        nargs="+",
        metavar="NAME=PATH",
        help="held-out data per domain: a chunk folder (its held-out split) or a text file",
    )
    eva.add_argument("--base", required=True, help="which --model is the base")
    eva.add_argument(
        "--specialists",
        required=True,
        help="which --model names are specialists, comma-separated; each one's domain is the --heldout set of "
        "its name, or the one its submission manifest names",
    )
    eva.add_argument("--json", help="also write the results here (the project's results schema)")

    bm = sub.add_parser("benchmark", help="measure training / fused-eval / router speed; writes JSON")
    bm.add_argument("--scale", default="tiny")
    bm.add_argument("--out", help="JSON path (default runs/<scale>/benchmarks/speed.json)")
    bm.add_argument("--steps", type=int, default=30, help="optimizer steps; the first 10 are left out as warm-up")

    bi = sub.add_parser(
        "benchmark-inference", help="time fused inference (dense, batched, top-1/2, generation); writes JSON"
    )
    bi.add_argument("--scale", default="tiny")
    bi.add_argument("--out", help="JSON path (default runs/<scale>/benchmarks/inference.json)")
    bi.add_argument("--n-experts", default="2,3,4,5,20", help="comma-separated N to sweep")
    bi.add_argument(
        "--freeze-layers", help="comma-separated frozen depths K to sweep (default: 0, L/2, L-1 and the scale's)"
    )
    bi.add_argument("--batch-sizes", help="comma-separated batch sizes to sweep (default: 1, the eval batch, twice it)")
    bi.add_argument("--gen-lengths", default="64,256,1024", help="comma-separated new-token counts ('' for none)")
    bi.add_argument("--seq-len", type=int, help="tokens per sequence (default: the scale's)")
    bi.add_argument("--repeats", type=int, default=3, help="rounds at least, for every timing")
    bi.add_argument(
        "--min-seconds",
        type=float,
        default=1.0,
        help="forward timings: more rounds (up to 100) until they take this long",
    )

    gc = sub.add_parser(
        "gpu-check", help="the prepared GPU check (scripts/gpu_check.sh): prepare, plan, data, install, run"
    )
    gc.add_argument(
        "stage",
        choices=("prepare", "plan", "data", "install", "run"),
        help="prepare: wheels for the GPU machine (online); plan: the time plan; data: a scale's tokenizer and "
        "corpora; install: the wheels into --site; run: every part, then the JSON",
    )
    gc.add_argument("--dry", action="store_true", help="run/plan: the same parts at scale smoke, on a CPU")
    gc.add_argument("--budget", type=float, help="run/plan: seconds in all, start-up included (default 480)")
    gc.add_argument("--scale", default="synthetic-25m", help="data: whose data")
    gc.add_argument("--runs-root", help="run/data: the run folder (default runs/gpu-check; dry runs/gpu-check-dry)")
    gc.add_argument("--out", help="run: the JSON's folder (default results/gpu-check; dry: the run folder)")
    gc.add_argument("--wheels", default=".whl", help="the wheels' folder (default .whl)")
    gc.add_argument(
        "--site", default="runs/gpu-check/site", help="install: where the wheels go (default: runs/gpu-check/site)"
    )
    gc.add_argument("--started-at", type=float, help="the check's start, epoch seconds (scripts/gpu_check.sh's)")

    ge = sub.add_parser("generate", help="generate text with a saved fused model, streaming tokens")
    ge.add_argument(
        "--fused", required=True, help="a fused model folder (FusedModel.save_pretrained, with a tokenizer)"
    )
    ge.add_argument("--prompt", required=True)
    ge.add_argument("--max-new-tokens", type=int, default=64)
    ge.add_argument("--sample", action="store_true", help="sample (default: greedy)")
    ge.add_argument("--seed", type=int, default=0)
    ge.add_argument("--no-cache", action="store_true", help="re-read the whole sequence at every step")

    ht = sub.add_parser(
        "harness-task", help="write a local lm-evaluation-harness task of the held-out text, one per domain"
    )
    ht.add_argument("--fused", required=True, help="the fused model folder to score (its tokenizer and context)")
    ht.add_argument("--data", required=True, help="a corpus folder holding <domain>/heldout.safetensors")
    ht.add_argument("--out", required=True, help="the task folder, for lm-eval's --include_path")
    ht.add_argument("--domains", help="comma-separated (default: the fused model's expert names)")
    ht.add_argument(
        "--max-chunks",
        type=int,
        default=200,
        help="held-out chunks per domain, in order (default: the evaluation's 200)",
    )
    sub.add_parser(
        "lm-eval",
        add_help=False,
        help="lm-evaluation-harness's own command line (extra `eval`), with fused folders loadable",
    ).add_argument("harness_args", nargs=argparse.REMAINDER)

    er = sub.add_parser("export-results", help="write a run's reference summaries, one JSON per notebook")
    er.add_argument("runs_dir", help="a run folder, e.g. runs/tiny")
    er.add_argument("out_dir", help="where to write them, e.g. results/tiny")
    er.add_argument(
        "--executed-dir",
        help="where the run's executed notebooks go, cleaned of timestamps and paths "
        "(default: executed/<scale>, the copies a reader opens on the repository page)",
    )

    cr = sub.add_parser("compare-results", help="compare a run with reference summaries; exit 1 if any number moved")
    cr.add_argument("runs_dir", help="a run folder, e.g. runs/tiny")
    cr.add_argument("ref_dir", help="reference summaries, e.g. results/tiny")
    cr.add_argument("--tol-loss", type=float, default=1e-4, help="loss tolerance in nats (percentages: 100x)")
    cr.add_argument("--json", help="also write the comparison here (every difference, each marked noise or moved)")

    rd = sub.add_parser("render-docs", help="rewrite the generated blocks of README.md and docs/*.md from results/")
    rd.add_argument("--scale", default="tiny", help="whose results/<scale>/ to render from")
    rd.add_argument("--check", action="store_true", help="write nothing; exit 1 if any block is stale")

    for name, text in (
        ("fetch", "put everything a Hub scale's notebooks read into the Hub cache and the run folder (online)"),
        ("preflight", "check every model revision and dataset a Hub scale's notebooks read, one line each"),
    ):
        hp = sub.add_parser(name, help=text)
        hp.add_argument("--scale", required=True)
        hp.add_argument("--only", help="comma-separated notebook numbers (default: every one the scale runs)")
        hp.add_argument("--runs-root", help="folder for runs/ (default: ./runs)")

    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["lm-eval"]:  # every later argument is the harness's, --help included
        from .reports.harness import run_cli

        try:
            return run_cli(argv[1:])
        except KalavaiError as e:
            from .storage import printable

            print(f"error: {printable(e)}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    failed = False
    try:
        if args.command == "run-notebooks":
            from .notebooks import run_notebooks

            run_notebooks(
                args.scale,
                args.only,
                args.seeds,
                args.runs_root,
                args.kernel,
                args.processes,
                args.capacity_pretrain_fraction,
                args.ablation_sections,
            )
        elif args.command == "check-scale":
            from .notebooks import (
                parse_ablation_sections,
                parse_capacity_fraction,
                parse_processes,
                parse_seeds,
                select,
            )
            from .scales import get_scale
            from .settings import settings

            settings()  # a bad KALAVAI_* value fails here, before anything runs
            get_scale(args.scale)
            parse_processes(args.processes, args.scale, select(args.only, args.scale))
            parse_seeds(args.seeds)
            parse_capacity_fraction(args.capacity_pretrain_fraction, args.scale)
            parse_ablation_sections(args.ablation_sections, args.scale)
        elif args.command == "budget":
            from .experiments import budget
            from .notebooks import parse_ablation_sections, parse_seeds, select
            from .scales import SCALES, get_scale

            scale = get_scale(args.scale)
            if args.skip_offline and not scale.is_hub:
                return 0  # an offline scale's expected time comes from its timings (run-notebooks prints it)
            notebooks = [nb.name[:2] for nb in select(args.only, scale.name)]
            seeds, sections = parse_seeds(args.seeds), parse_ablation_sections(args.ablation_sections, scale.name)
            if scale != SCALES[scale.name]:  # KALAVAI_SIZES=ci: a code-path test on a CPU, never a result
                print(f"budget: KALAVAI_SIZES=ci cuts scale {scale.name} to a test of its code paths: no GPU budget")
                return 0
            print(budget.describe(budget.plan(scale, notebooks, seeds, sections)))
        elif args.command == "env":
            from .settings import describe

            rows = describe()
            if not args.check:
                width = max(len(r["name"]) for r in rows)
                value_width = max(len(r["value"]) for r in rows)
                for r in rows:
                    print(f"{r['name']:<{width}}  {r['value']:<{value_width}}  {r['source']:<11}  {r['meaning']}")
        elif args.command == "train-cooperative":
            from .notebooks import parse_seeds
            from .protocol.cooperative import train_main_cooperatives
            from .protocol.pipeline import process_state, run_dir
            from .scales import get_scale

            scale = get_scale(args.scale)
            seeds = parse_seeds(args.seeds) or list(scale.seeds)
            logs = train_main_cooperatives(scale, run_dir(scale, args.runs_root), seeds)
            if process_state().is_main_process:
                for seed, by_name in logs.items():
                    print(f"seed {seed}: trained {', '.join(by_name)}")
        elif args.command == "train-specialist":
            from pathlib import Path

            from .protocol.contributor import train_specialist_from_files

            out = train_specialist_from_files(
                args.base,
                args.data,
                args.out,
                args.name or Path(args.out).name,
                args.scale,
                args.seed,
                args.steps,
                args.heldout_out,
            )
            from .protocol.pipeline import process_state

            if process_state().is_main_process:  # under `accelerate launch` only rank 0 writes it
                print(f"submission written: {out}")
        elif args.command == "verify":
            import json

            from .protocol.models import load_causal_lm
            from .protocol.submission import verify_all
            from .storage import printable  # names a contributor chose: no forged line, no terminal escape

            verdicts = verify_all(args.submissions, load_causal_lm(args.base), args.freeze_layers, base_dir=args.base)
            if args.json:
                print(json.dumps(verdicts, indent=2, default=str))
            else:
                for v in verdicts:
                    print(
                        f"accepted: {printable(v['path'])} ({printable(v['contributor'])})"
                        if v["accepted"]
                        else f"refused: {printable(v['path'])}: {printable(v['reason'])}"
                    )
            n_refused = sum(not v["accepted"] for v in verdicts)
            if n_refused:
                print(f"{n_refused} of {len(verdicts)} submissions refused", file=sys.stderr)
                return 1
        elif args.command == "predict-gain":
            import json

            from .protocol.forecast import describe, forecast

            result = forecast(args.base, args.submissions, args.data, args.fit, args.freeze_layers, args.scale)
            print(json.dumps(result, indent=2, default=str) if args.json else describe(result))
        elif args.command == "fuse":
            from .experiments.coordinator import describe_fusion, fuse

            result = fuse(
                args.base,
                args.submissions,
                args.router_text,
                args.out,
                heldout=args.heldout,
                router=args.router,
                steps=args.steps,
                seed=args.seed,
                freeze_layers=args.freeze_layers,
                scale=args.scale,
            )
            print(describe_fusion(result))
        elif args.command == "evaluate":
            from .experiments.coordinator import describe_results, evaluate
            from .storage import printable

            results = evaluate(args.model, args.heldout, args.base, args.specialists, args.json)
            print(describe_results(results))
            if args.json:
                print(f"written: {printable(args.json)}")
        elif args.command == "benchmark":
            import json

            from .experiments.benchmark import main as bench
            from .protocol.pipeline import ROOT, run_dir
            from .scales import get_scale

            runs = run_dir(get_scale(args.scale))
            out = args.out or str(runs / "benchmarks" / "speed.json")
            print(
                json.dumps(
                    bench(
                        args.scale,
                        out,
                        args.steps,
                        runs=runs,
                        reference=ROOT / "results" / args.scale / "benchmark.json",
                    ),
                    indent=2,
                )
            )
            print(f"written: {out}")
        elif args.command == "benchmark-inference":
            from .experiments.inference import main as bench_inference
            from .protocol.pipeline import run_dir
            from .scales import get_scale

            def ints(text):
                return tuple(int(x) for x in text.split(",") if x.strip()) if text is not None else None

            out = args.out or str(run_dir(get_scale(args.scale)) / "benchmarks" / "inference.json")
            bench_inference(
                args.scale,
                out,
                n_experts=ints(args.n_experts),
                freeze_layers=ints(args.freeze_layers),
                batch_sizes=ints(args.batch_sizes),
                gen_lengths=ints(args.gen_lengths),
                seq_len=args.seq_len,
                repeats=args.repeats,
                min_seconds=args.min_seconds,
                progress=True,
            )
            print(f"written: {out}")
        elif args.command == "gpu-check":
            from pathlib import Path

            from . import gpu_check

            wheels = Path(args.wheels)
            if args.stage == "prepare":
                gpu_check.prepare(wheels)
            elif args.stage == "plan":
                budget = args.budget or gpu_check.BUDGET_S
                rows = gpu_check.parts(args.dry, Path(args.runs_root or "runs/gpu-check"), wheels, Path(args.site))
                print(gpu_check.describe_plan(rows, budget, args.dry))
            elif args.stage == "data":
                gpu_check.prepare_data(args.scale, Path(args.runs_root or gpu_check.ROOT / "runs" / "gpu-check"))
            elif args.stage == "install":
                gpu_check.install(wheels, Path(args.site))
            else:
                gpu_check.run(args.dry, args.budget, args.runs_root, args.out, wheels, Path(args.site), args.started_at)
        elif args.command == "generate":
            from .experiments.inference import generate_text

            generate_text(
                args.fused, args.prompt, args.max_new_tokens, args.sample, args.seed, False if args.no_cache else None
            )
        elif args.command == "harness-task":
            from .reports.harness import write_harness_task

            write_harness_task(args.fused, args.data, args.out, args.domains, args.max_chunks)
        elif args.command == "export-results":
            from pathlib import Path

            from .protocol.pipeline import ROOT
            from .reports.executed import export_executed
            from .reports.reference import export_reference

            executed = args.executed_dir or ROOT / "executed" / Path(args.runs_dir).name
            for path in [
                *export_reference(args.runs_dir, args.out_dir),
                *export_executed(args.runs_dir, executed, ROOT),
            ]:
                print(f"written: {path}")
        elif args.command == "compare-results":
            from .reports.reference import compare_results

            comparison = compare_results(args.runs_dir, args.ref_dir, args.tol_loss)
            for difference in comparison.differences:
                print(difference)
            print(comparison.summary())
            if args.json:
                from .storage import atomic_write_json

                atomic_write_json(args.json, comparison.to_dict(args.runs_dir), sort_keys=True)
            if comparison.moved:
                return 1
        elif args.command in ("fetch", "preflight"):
            from .experiments import needs
            from .notebooks import select
            from .protocol.pipeline import run_dir
            from .scales import get_scale

            scale = get_scale(args.scale)
            if not scale.is_hub:
                return 0  # an offline scale makes its own data and base: nothing to fetch or check
            notebooks = [nb.name[:2] for nb in select(args.only, scale.name)]
            runs = run_dir(scale, args.runs_root)
            if args.command == "fetch":
                needs.fetch(scale, runs, notebooks)
            else:
                rows = needs.preflight(scale, runs, notebooks)
                for what, problem in rows:
                    print(f"{'ok' if problem is None else 'MISSING'}  {what}" + (f": {problem}" if problem else ""))
                missing = sum(problem is not None for _, problem in rows)
                if missing:
                    raise KalavaiError(f"preflight: {missing} of {len(rows)} needs missing (listed above)")
                print(f"preflight: all {len(rows)} models, domains and tasks of scale {scale.name} are available")
        elif args.command == "render-docs":
            from .reports.readme import render_docs

            changed = render_docs(".", args.scale, write=not args.check)
            for path in changed:
                print(f"{'stale' if args.check else 'rewritten'}: {path}")
            if args.check and changed:
                return 1
    except KalavaiError as e:
        failed = True
        from .storage import printable

        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    except BaseException:
        failed = True
        raise
    finally:
        # a failing process does not wait for the others at the end: they may never get there
        _end_processes(wait=not failed)
    return 0


def _end_processes(wait: bool) -> None:
    from .protocol.pipeline import end_processes  # a command under `accelerate launch` opened a process group

    end_processes(wait)


if __name__ == "__main__":
    sys.exit(main())
