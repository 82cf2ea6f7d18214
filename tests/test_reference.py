"""Reference results: export a run's summaries, compare a rerun with them (kalavai_utils.reports.reference).

The run folder is written by hand in the real layout (results files through protocol/results.py's
schema), so no model is trained here.
"""

import json

import pytest

from kalavai_utils.__main__ import main
from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol import prediction
from kalavai_utils.protocol.cooperative import CAUSAL_FUSED, paper_fused
from kalavai_utils.protocol.results import make_results, write_results
from kalavai_utils.reports import reference
from kalavai_utils.scales import get_scale
from kalavai_utils.storage import atomic_write_json, read_json

DOMAINS = ("code", "science", "fiction")
SEEDS = (42, 137)
PAPER_FUSED = paper_fused(get_scale("tiny"))  # the authors' router at the fixture's scale


def fake_losses(domains, shift: float = 0.0, paper: str = PAPER_FUSED) -> dict:
    """A plausible model x domain loss matrix: specialists good at home, worse elsewhere;
    the fused models near the domain oracle, well away from every claim's threshold."""
    base = {d: 3.0 + 0.1 * i for i, d in enumerate(domains)}
    losses = {"base": base}
    for i, d in enumerate(domains):
        losses[f"spec:{d}"] = {o: base[o] - (0.5 + 0.05 * i + shift if o == d else -0.1) for o in domains}
    best_at = {o: min(losses[f"spec:{d}"][o] for d in domains) for o in domains}
    losses["weight_avg"] = {o: base[o] + 0.05 for o in domains}
    losses["monolithic"] = {o: best_at[o] + 0.1 for o in domains}
    losses["uniform"] = {o: base[o] - 0.02 for o in domains}
    for name, extra in ((paper, 0.002), (CAUSAL_FUSED, 0.004)):
        losses[name] = {o: best_at[o] + extra for o in domains}
        losses[name + ":hard"] = {o: best_at[o] + extra + 0.001 for o in domains}
    return losses


def write_cooperative(folder, experiment, condition, seed, domains, shift=0.0, scale="tiny"):
    paper = paper_fused(get_scale(scale))
    losses = fake_losses(domains, shift, paper)
    gates = {name: {d: [1.0 if e == d else 0.0 for e in domains] for d in domains} for name in (paper, CAUSAL_FUSED)}
    # held-out curves on each specialist's own domain, from the base's loss to its own (notebook 04's early prediction)
    steps = range(0, 41, 4)
    curves = {
        d: [
            {"step": t, "losses": {d: losses[f"spec:{d}"][d] + (losses["base"][d] - losses[f"spec:{d}"][d]) * 0.9**t}}
            for t in steps
        ]
        for d in domains
    }
    results = make_results(
        experiment=experiment,
        condition=condition,
        scale=scale,
        seed=seed,
        config={},
        base_fingerprint="f" * 64,
        domains=domains,
        losses=losses,
        specialists={d: f"spec:{d}" for d in domains},
        gates=gates,
        extra={"curves": curves, "lr_schedule": [1e-3] * 40},
    )
    write_results(folder / "results.json", results)
    return results


def write_manifest(folder, domains, salt=""):
    records = {
        d: {
            "domain": d,
            "n_documents": 100,
            "chunks": {"train": 80, "unused": 10, "heldout": 10},
            "source": {"generator": "v1", "domain": d},
            "files": {f"{s}.safetensors": f"{salt}{d}{s}".ljust(64, "0") for s in ("train", "unused", "heldout")},
        }
        for d in domains
    }
    atomic_write_json(
        folder / "manifest.json",
        {"schema": "kalavai.data/1", "domains": records, "scale": "tiny", "tokenizer": "t" * 64, "seq_len": 128},
    )


@pytest.fixture
def run(tmp_path):
    """A finished tiny run: data, base, three seeds' specialists and fusion, a small sweep and its fit."""
    runs = tmp_path / "runs" / "tiny"
    write_manifest(runs / "data" / "corpus-overlap0.50", DOMAINS)
    write_manifest(runs / "data" / "corpus-overlap0.20", DOMAINS, salt="b")
    atomic_write_json(
        runs / "base" / "base_eval.json",
        {
            "fingerprint": "a" * 64,
            "revision": "step1000",
            "languages": ["welsh"],
            "losses": {"code": 3.0, "welsh": 2.0},
            "chars_per_token": {"code": 3.5, "welsh": 1.5},
            "loss_per_char": {"code": 3.0 / 3.5, "welsh": 2.0 / 1.5},
        },
    )
    atomic_write_json(
        runs / "base" / "pretrain_log.json",
        {
            "loss": [5.0, 4.0, 3.5],
            "curve": [{"step": 3, "losses": {"mixture": 3.6}}],
            "tokens": 6144,
            "n_params": 1300000,
            "train_seconds": 12.3,
            "tokens_per_s": 500.0,
            "matmul_peak_flops": 1e11,
            "fraction_of_peak": 0.01,
        },
    )
    main_results = []
    for seed in SEEDS:
        folder = runs / "main" / "main" / f"seed{seed}"
        main_results.append(write_cooperative(folder, "main", "main", seed, DOMAINS))
        baselines = {
            k: v
            for k, v in main_results[-1]["losses"].items()
            if k in ("base", "weight_avg", "monolithic") or k.startswith("spec:")
        }
        atomic_write_json(folder / "baselines" / "losses.json", baselines)
        for d in DOMAINS:
            atomic_write_json(
                folder / "specialists" / d / "train_log.json", {"loss": [3.0, 2.5], "tokens_per_s": 900.0}
            )
    sweep = [
        write_cooperative(runs / "sweep" / name / "seed42", "sweep", name, 42, domains, shift)
        for name, domains, shift in (
            ("overlap0.20", DOMAINS, 0.2),
            ("n2", DOMAINS[:2], -0.1),
            ("steps50", DOMAINS, -0.2),
            ("freeze0", DOMAINS, 0.1),
        )
    ]
    points = [r["metrics"] for r in [main_results[0], *sweep]]
    fit = prediction.fit_line(
        [m["mean_divergence_pct"] for m in points], [m["gain_vs_best_pct"][PAPER_FUSED] for m in points]
    )
    prediction.save_fit(
        runs / "sweep" / "fit.json",
        fit,
        {"scale": "tiny", "seeds": [42], "conditions": ["main", "overlap0.20", "n2", "steps50", "freeze0"]},
    )
    return runs


def move_loss(runs, seed, model, domain, delta):
    """Rewrite a results file with one loss moved (its metrics recomputed, as a rerun would)."""
    path = runs / "main" / "main" / f"seed{seed}" / "results.json"
    r = read_json(path)
    r["losses"][model][domain] += delta
    write_results(
        path,
        make_results(
            **{
                k: r[k]
                for k in (
                    "experiment",
                    "condition",
                    "scale",
                    "seed",
                    "config",
                    "base_fingerprint",
                    "domains",
                    "losses",
                    "specialists",
                    "gates",
                    "extra",
                )
            }
        ),
    )


FAKED = ["00_data", "01_base", "02_specialists", "03_fusion", "04_predict_gain"]  # what the fake run has


def compare(capsys, runs, ref, *extra):
    code = main(["compare-results", str(runs), str(ref), *extra])
    out, err = capsys.readouterr()
    return code, out.strip().splitlines(), err.strip().splitlines()


def test_summary_has_every_notebook_and_no_timings(run):
    s = reference.summarize_run(run)
    assert list(s) == FAKED  # notebooks without files (05-07 here) are left out
    assert s["00_data"]["corpus"] == "corpus-overlap0.50" and "corpus-overlap0.20" in s["04_predict_gain"]["data"]
    assert s["02_specialists"]["main"]["seed42"]["specialists"]["code"]["divergence_pct"] == pytest.approx(50 / 3)
    assert all(v["holds"] for v in s["03_fusion"]["verdicts"].values())  # the fake numbers satisfy every claim
    assert s["03_fusion"]["headline"]["gain_vs_best_pct"][PAPER_FUSED]["n"] == 2  # mean ± std over the seeds, stored
    assert s["04_predict_gain"]["leave_one_out"]["n"] == 5
    # what notebook 04 shows beside the authors' line: the held-out split, the causal router's line, early prediction
    assert s["04_predict_gain"]["holdout"]["n"] == 2  # 30 % of 5 conditions
    assert set(s["04_predict_gain"]["causal"]) == {"fit", "leave_one_out", "holdout"}
    early = s["04_predict_gain"]["early_prediction"]
    assert list(early) == ["0.1", "0.2", "0.3", "0.5", "1"]
    assert all(early[f]["divergence_error"] >= 0 for f in ("0.1", "0.2", "0.3", "0.5"))
    # the gain predicted before fusion, at every fraction; at 1 from the finished curves (no extrapolation)
    assert set(early["1"]) == {"gain_error", "gain_bias"} and all("gain_error" in e for e in early.values())
    assert set(s["04_predict_gain"]["points"][PAPER_FUSED]["n2"]["seed42"]) >= {"gain", "mean_divergence", "base_loss"}
    assert "condition" not in s["04_predict_gain"]["points"][PAPER_FUSED]["n2"]["seed42"]
    flat = {nb: reference.flatten(x) for nb, x in s.items()}
    assert not [k for f in flat.values() for k in f if "seconds" in k or "tokens_per_s" in k or "fingerprint" in k]
    text = json.dumps(s)
    assert str(run) not in text  # no absolute paths


def test_sweep_summary_takes_the_authors_router_of_the_runs_scale(tmp_path):
    """At 1B the authors' router is linear: the sweep's points and leave-one-out are on it, not on the MLP."""
    runs = tmp_path / "runs" / "1b"
    for name, shift in (("main", 0.0), ("two-domain", 0.2), ("private-domains", -0.1), ("cross-lingual", 0.3)):
        for seed in (42, 137):  # two seeds of each condition: left out together
            experiment = "main" if name == "main" else "sweep"
            folder = (
                runs / experiment / name / f"seed{seed}" if name != "main" else runs / "main" / "main" / f"seed{seed}"
            )
            write_cooperative(folder, experiment, name, seed, DOMAINS, shift + 0.01 * (seed == 137), scale="1b")
    s = reference.summarize_sweep(runs)
    assert set(s["points"]) == {"fused:linear:sequence", CAUSAL_FUSED} and PAPER_FUSED not in s["points"]
    assert set(s["points"]["fused:linear:sequence"]) == {"main", "two-domain", "private-domains", "cross-lingual"}
    assert s["leave_one_out"]["n"] == 4  # conditions, not the 8 cooperatives


def test_export_then_compare_reports_nothing(run, tmp_path, capsys):
    ref = tmp_path / "results" / "tiny"
    assert main(["export-results", str(run), str(ref)]) == 0
    assert sorted(p.name for p in ref.glob("*.json")) == [f"{nb}.json" for nb in FAKED]
    header = read_json(ref / "03_fusion.json")
    assert header["scale"] == "tiny" and header["generator"] == "v1" and "torch" in header["versions"]
    capsys.readouterr()
    assert reference.compare_results(run, ref).differences == []
    code, out, err = compare(capsys, run, ref)
    assert code == 0 and len(out) == 1 and out[0].startswith("all ") and not err


def test_loss_moved_beyond_tolerance_is_reported(run, tmp_path, capsys):
    ref = tmp_path / "ref"
    reference.export_reference(run, ref)
    line = f"03_fusion: main/seed42/losses/{PAPER_FUSED}/code"
    # 2e-4 nats: beyond the same-machine tolerance, within what another CPU moves: reported, not a failure
    move_loss(run, 42, PAPER_FUSED, "code", 2e-4)
    code, out, _ = compare(capsys, run, ref)
    assert code == 0 and any(
        l.startswith(line) and l.endswith("(tol 1e-4; within cross-machine noise)") for l in out
    ), out
    assert ", 0 moved" in out[-1]
    # a hundred times the tolerance has moved
    move_loss(run, 42, PAPER_FUSED, "code", 1e-2)
    code, out, _ = compare(capsys, run, ref)
    assert code == 1 and any(l.startswith(line) and l.endswith("(tol 1e-4)") for l in out), out
    assert "moved" in out[-1] and ", 0 moved" not in out[-1]


def test_loss_moved_within_tolerance_passes(run, tmp_path, capsys):
    ref = tmp_path / "ref"
    reference.export_reference(run, ref)
    move_loss(run, 42, PAPER_FUSED, "code", 5e-5)  # its gain moves by about 0.002 pp: also within tolerance
    code, out, _ = compare(capsys, run, ref)
    assert code == 0 and out[-1].startswith("all ")
    # a tighter tolerance does see it
    code, out, _ = compare(capsys, run, ref, "--tol-loss", "1e-7")
    assert code == 1 and any(f"main/seed42/losses/{PAPER_FUSED}/code" in l for l in out)


def test_cross_machine_bands_cover_the_measured_rerun():
    """The committed measurement of a rerun on another CPU: every number it saw move is within the bands."""
    from kalavai_utils.protocol.pipeline import ROOT

    measured = [read_json(p) for p in sorted((ROOT / "results" / "tiny" / "reruns").glob("*.json"))]
    assert any(m["differences"] for m in measured)  # at least one rerun that moved something
    for m in measured:
        assert all(d["noise"] for d in m["differences"]), m["summary"]
        assert m["largest_move"]["routed"] <= reference.ROUTED_CROSS_MACHINE * 1e-4
        assert m["largest_move"]["soft"] <= reference.CROSS_MACHINE * 1e-4


def test_changed_hash_is_reported(run, tmp_path, capsys):
    ref = tmp_path / "ref"
    reference.export_reference(run, ref)
    path = run / "data" / "corpus-overlap0.50" / "manifest.json"
    m = read_json(path)
    m["domains"]["science"]["files"]["heldout.safetensors"] = "e" * 64
    atomic_write_json(path, m)
    code, out, _ = compare(capsys, run, ref)
    assert code == 1
    assert any(l.startswith("00_data: domains/science/files/heldout.safetensors") and "e" * 64 in l for l in out), out


def test_changed_verdict_and_missing_key_are_reported(run, tmp_path, capsys):
    ref = tmp_path / "ref"
    reference.export_reference(run, ref)
    # weight averaging now beats the best specialist in one seed: that claim no longer holds
    move_loss(run, 137, "weight_avg", "code", -2.0)
    (run / "main" / "main" / "seed42" / "specialists" / "fiction" / "train_log.json").unlink()
    code, out, _ = compare(capsys, run, ref)
    assert code == 1
    assert any(l.startswith("03_fusion: verdicts/fusion.weight_average_below_best/holds True -> False") for l in out), (
        out
    )
    assert any(l.startswith("02_specialists: main/seed42/training/fiction/steps missing from this run") for l in out), (
        out
    )


def test_partial_run_compares_only_its_notebooks(run, tmp_path, capsys):
    ref = tmp_path / "ref"
    reference.export_reference(run, ref)
    partial = tmp_path / "partial" / "tiny"
    partial.mkdir(parents=True)
    for sub in ("data", "base"):  # what `--only 00,01` leaves behind
        (run / sub).rename(partial / sub)
    result = reference.compare_results(partial, ref)
    assert result.differences == [] and set(result.compared) == {"00_data", "01_base"}
    assert set(result.skipped) == {"02_specialists", "03_fusion", "04_predict_gain"}
    code, out, _ = compare(capsys, partial, ref)
    assert code == 0 and "skipped: 02_specialists (not in this run)" in out[-1]


def test_bad_input_is_one_line_exit_2(run, tmp_path, capsys):
    code, out, err = compare(capsys, run, tmp_path / "no-such-folder")
    assert code == 2 and len(err) == 1 and err[0].startswith("error: no reference folder")
    (tmp_path / "empty").mkdir()
    code, _, err = compare(capsys, run, tmp_path / "empty")
    assert code == 2 and len(err) == 1 and "no reference summaries" in err[0]
    code, _, err = compare(capsys, tmp_path / "no-run", tmp_path / "empty")
    assert code == 2 and len(err) == 1
    assert main(["export-results", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "nothing to summarize" in capsys.readouterr().err
    with pytest.raises(KalavaiError):
        reference.compare_results(run, tmp_path / "empty", tol=-1)


def test_tolerance_classes():
    assert reference.tolerance("main/seed42/losses/base/code", 2.0, 2.1, 1e-4) == 1e-4
    assert reference.tolerance("main/seed42/gain_vs_best_pct/uniform", 1.0, 1.0, 1e-4) == pytest.approx(1e-2)
    assert reference.tolerance("main/seed42/gates/fused:mlp:sequence/code/0", 0.5, 0.5, 1e-4) == pytest.approx(1e-3)
    assert reference.tolerance("domains/code/chunks/train", 80, 80, 1e-4) is None
    assert reference.tolerance("claims/x", True, False, 1e-4) is None
    assert reference.tolerance("holdout/rmse", 1.0, 1.0, 1e-4) == pytest.approx(1e-2)
    assert reference.tolerance("early_prediction/0.1/divergence_error", 8.0, 8.0, 1e-4) == pytest.approx(1e-2)
    assert reference.tolerance("early_prediction/0.1/loss_error", 0.2, 0.2, 1e-4) == 1e-4
    # perplexities relative to their size: exp(loss) moves by its loss's move times itself; a fold by two losses' moves
    assert reference.tolerance("cross-lingual/perplexity/seed42/lang_a/base", 20.0, 20.5, 1e-4) == pytest.approx(
        2.05e-3
    )
    assert reference.tolerance(
        "cross-lingual/perplexity/mean_over_seeds/lang_a/fold", 1.25, 1.25, 1e-4
    ) == pytest.approx(2.5e-4)
    assert reference.tolerance("cross-lingual/perplexity/router", "fused:mlp:sequence", "x", 1e-4) is None


def test_files_beside_the_summaries_are_not_read_as_summaries(run, tmp_path, capsys):
    ref = tmp_path / "ref"
    reference.export_reference(run, ref)
    (ref / "timings.json").write_text('{"total_seconds": 1.0}')  # committed beside them by a real run
    code, _, _ = compare(capsys, run, ref)
    assert code == 0


def test_early_gain_errors_predict_each_cooperative_without_its_condition(run):
    from kalavai_utils.analysis import sweep_tables

    _, meta = prediction.load_fit(run / "sweep" / "fit.json")
    results = reference._sweep_results(run, meta)
    gains = sweep_tables.early_gain_errors(results, PAPER_FUSED)
    points = sweep_tables.points_table(results, PAPER_FUSED)
    assert len(gains) == len(points) * (
        len(sweep_tables.EARLY_FRACTIONS) + 1
    )  # every cooperative, every fraction and 1
    assert not gains.duplicated(["condition", "seed", "fraction"]).any()
    full = gains[gains.fraction == 1.0]
    assert (full.predicted_divergence == full.actual_divergence).all()  # the finished curve: nothing extrapolated
    row = full.iloc[0]
    others = points[points.condition != row.condition]
    line = prediction.fit_line(others.mean_divergence, others.gain, groups=others.condition)
    assert row.predicted_gain == pytest.approx(line.predict([row.actual_divergence])[0][0])
    measured = points.set_index(["condition", "seed"]).gain
    assert row.gain == measured[(row.condition, row.seed)]
    assert row.abs_gain_error == pytest.approx(abs(row.predicted_gain - row.gain))
