"""Phase 2 (notebook 06): the new languages, collapse detection, the load-balancing term, 20-expert fusion."""

import copy
import hashlib
import itertools
import math
import unicodedata

import pytest
import torch

from kalavai_utils import corpora, paper
from kalavai_utils.analysis import phase2_tables
from kalavai_utils.errors import KalavaiError
from kalavai_utils.experiments import phase2
from kalavai_utils.protocol import data, pipeline
from kalavai_utils.protocol.fusion import FusedModel
from kalavai_utils.protocol.joint import JOINT, joint_finetune
from kalavai_utils.protocol.models import tensor_sha256
from kalavai_utils.protocol.routers import (
    RouterRecipe,
    balance_loss,
    collapsed_domains,
    make_router,
    warm_start_batches,
)
from kalavai_utils.scales import SCALES, get_scale
from kalavai_utils.storage import read_json

TEN = corpora.LANGUAGES + corpora.PHASE2_LANGUAGES
NEW = corpora.PRIVATE_DOMAINS + corpora.PHASE2_LANGUAGES


def script(ch: str) -> str:
    return unicodedata.name(ch, "?").split()[0]


def letters(docs) -> set[str]:
    return {c for d in docs for c in d if unicodedata.category(c)[0] in "LM"}


@pytest.fixture(scope="module")
def samples():
    return {d: corpora.generate_documents(d, 40, seed=7) for d in TEN}


@pytest.mark.parametrize("domain", NEW)
def test_new_domains_are_deterministic(domain):
    a = corpora.generate_documents(domain, 10, seed=3)
    assert a == corpora.generate_documents(domain, 10, seed=3) and a != corpora.generate_documents(domain, 10, seed=4)
    assert len(set(a)) == 10 and set(a).isdisjoint(corpora.generate_documents(domain, 10, seed=3, stream="pretrain"))
    assert corpora.corpus_version(domain).endswith(corpora.common._PHASE2_VERSION)


def test_each_new_language_has_a_script_of_its_own(samples):
    main = {d: collections_mode([script(c) for c in letters(docs)]) for d, docs in samples.items()}
    new = [main[d] for d in corpora.PHASE2_LANGUAGES]
    assert len(set(new)) == len(new), main
    assert not set(new) & {main[d] for d in corpora.LANGUAGES}, main


def collections_mode(values):
    return max(set(values), key=values.count)


def test_languages_share_few_letters_and_trigrams(samples):
    def trigrams(docs):
        return {d[i : i + 3] for d in docs for i in range(len(d) - 2) if not any(c in " .,?;\n" for c in d[i : i + 3])}

    grams = {d: trigrams(docs) for d, docs in samples.items()}
    chars = {d: letters(docs) for d, docs in samples.items()}
    for a, b in itertools.combinations(TEN, 2):
        latin_pair = {a, b} == {"lang_tonal", "lang_mutation"}  # the paper's Yoruba and Welsh both write Latin
        jaccard = len(chars[a] & chars[b]) / len(chars[a] | chars[b])
        assert jaccard < (0.6 if latin_pair else 0.05), (a, b, jaccard)
        overlap = len(grams[a] & grams[b]) / min(len(grams[a]), len(grams[b]))
        assert overlap < (0.2 if latin_pair else 0.01), (a, b, overlap)


def test_word_order_differs():
    # lang_vso starts a clause with its verb (a "-ει/-ισε/-σει" word); lang_postpos ends it with an auxiliary
    doc = corpora.generate_documents("lang_vso", 1, seed=1)[0].split("\n")[1]
    first = [s.split()[0] for s in doc.split(". ") if s]
    assert all(w.lower().endswith(("ει", "ισε", "σει")) for w in first[:5]), first
    hindi = corpora.generate_documents("lang_postpos", 1, seed=1)[0].split("\n")[1]
    assert all(
        s.strip().split()[-1] in ("है", "हैं", "था", "थी", "थे") or s.strip().endswith(("गा", "गी", "गे"))
        for s in hindi.split("।")[:4]
        if s.strip().split() and not s.strip().endswith("?")
    )


# Hashes of every earlier domain's smoke-size documents (non-code: code reads this interpreter's
# standard library), taken with generator corpora-v3: Phase 2's domains (versioned apart) must
# never move them. A change of the main generator bumps its version and these hashes with it.
BEFORE_PHASE2 = {  # generate_documents(domain, 60, seed=1234), the smoke corpus
    "science": "ba89e2bfcc59807fe5db1f71fa7fe92753f80e5612a1f790c36d9d17a9f38b0b",
    "fiction": "12bb1026bdfe2169b0198a8f98f9137f38be0c33c9a1da3526b33090f8bc44fb",
    "law": "83d0a6786521c3a7cde2a958107fad30e6d642f4c10230ee1bbddff6ed694b74",
    "medicine": "ac316626a92ec1bbcbc86260c6b3f0f4c14eda097b7c0ce2d5c5f379d91814fb",
    "news": "38b80f7ba26778715d9bf6810dac873b7b82f1291cf2bba091ff82094b242bf4",
    "recipes": "59b4d15fb8f6ef1a8077eea7a9a5fd93a0874e0694051791d596f4a3c06113b1",
    "sports": "b4e6fef4bac6ee9926b8f670eca379e9d281a32e15aee7070bce25ba35d5d753",
    "finance": "068413b1125d98dcacc495632a0f58237d33e5bc87089b52fccd574d1703bb6c",
    "travel": "5f17f0c4d1dbe6b8952883803ea54768ff12a69f3d4395656c3950e3d0598d3e",
    "lang_script": "2843b7adf7dafd924eb472f8c2bb0d41fb1cca631bf23d0ae367a152c3994bc1",
    "lang_tonal": "a5990404b474a8db059b9a369185c6b936662b800baacafe0f7b0c7853b70f65",
    "lang_mutation": "efc65cc5e7799280bd1999f72988781569c786dfc61642c31c4a33a1d91ba23d",
}


def digest(docs) -> str:
    return hashlib.sha256("\x00".join(docs).encode()).hexdigest()


def test_earlier_domains_are_unchanged_and_the_base_never_sees_phase2():
    for domain, h in BEFORE_PHASE2.items():
        assert digest(corpora.generate_documents(domain, 60, seed=1234)) == h, domain
    for name, s in SCALES.items():
        if s.is_hub:
            continue
        offline = pipeline.all_offline_domains(s)
        assert not set(offline) & set(NEW), name  # neither the tokenizer nor the base's mixture reads them
        assert corpora.corpus_version() == corpora.corpus_version("science") == corpora.corpus_version(None)
    mixture = "".join(pipeline.pretrain_documents(get_scale("smoke")))
    assert not {script(c) for c in mixture} & {"CYRILLIC", "GREEK", "DEVANAGARI", "ARABIC", "HANGUL", "GEORGIAN", "CJK"}
    for word in ("wherein", "BACKGROUND:", "HAS ADOPTED"):
        assert word not in mixture


def test_collapse_rule_on_a_hand_made_gate_matrix():
    experts = ["tamil", "yoruba", "welsh", "code"]
    gates = {
        "tamil": [1.0, 0, 0, 0],
        "yoruba": [0.9984, 0.0, 0.0015, 0.0001],  # the paper's seed 42
        "welsh": [0, 0, 0.9999, 0.0001],
        "code": [0.3, 0.1, 0.1, 0.5],
    }
    out = phase2_tables.collapse_from_gates(gates, experts)
    assert out["collapsed"] == ["yoruba"] and out["top_expert"]["yoruba"] == "tamil"
    assert out["own_share"]["code"] == 0.5 and "code" not in out["collapsed"]  # exactly half is not collapse
    assert phase2_tables.collapse_from_gates(gates, experts, share=0.6)["collapsed"] == ["code", "yoruba"]
    # the notebook's tables write a collapse one way, "none" where no domain collapsed
    assert (
        phase2_tables.collapsed_text(out["collapsed"]) == "yoruba"
        and phase2_tables.collapsed_text([]) == phase2_tables.NO_COLLAPSE == "none"
    )


def test_band_verdict_says_when_the_prediction_is_an_extrapolation():
    p = {"lo": 1.0, "hi": 3.0, "outside_fit_range": False}
    assert phase2_tables.band_verdict(p, 2.0) == "inside the 95% band."
    assert phase2_tables.band_verdict(p, 4.0) == "OUTSIDE the 95% band."
    for measured in (2.0, 4.0):
        verdict = phase2_tables.band_verdict({**p, "outside_fit_range": True}, measured)
        assert "extrapolation" in verdict and verdict.startswith(phase2_tables.band_verdict(p, measured)[:-1])


def test_balance_loss_by_hand():
    assert balance_loss(torch.tensor([[0.5, 0.5], [0.5, 0.5]])).item() == 0.0
    assert balance_loss(torch.tensor([[1.0, 0.0], [0.0, 1.0]])).item() == 0.0  # balanced on average
    assert balance_loss(torch.tensor([[1.0, 0.0], [1.0, 0.0]])).item() == pytest.approx(0.5)  # (1/2)^2 * 2
    g = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]]])  # [B=1, T=2, N=3]: mean (0.4, 0.2, 0.4)
    assert balance_loss(g).item() == pytest.approx(2 * (0.4 - 1 / 3) ** 2 + (0.2 - 1 / 3) ** 2)


def test_warm_start_batches_take_the_domains_in_turn():
    chunks = [torch.full((5, 4), i) for i in range(3)]
    batches = list(warm_start_batches(chunks, 7, 2, torch.Generator().manual_seed(0)))
    assert [int(b[0, 0]) for b in batches] == [0, 1, 2, 0, 1, 2, 0] and all(b.shape == (2, 4) for b in batches)


def test_sections_and_their_domains():
    s = get_scale("smoke")
    assert phase2.domains_for(s, "cross-lingual") == (*s.languages, "code")
    assert phase2.domains_for(s, "private") == corpora.PRIVATE_DOMAINS
    assert len(set(phase2.domains_for(s, "twenty"))) == 20
    assert phase2.domains_for(get_scale("1b"), "twenty") == tuple(phase2.twenty_hub_sources())
    with pytest.raises(KalavaiError, match="unknown Phase 2 section"):
        phase2.domains_for(s, "nine")


def test_hub_phase2_contributors_train_every_block_as_the_authors_did(monkeypatch, tmp_path):
    from kalavai_utils.protocol.cooperative import config_freeze, main_cooperative

    monkeypatch.setattr(phase2, "data_folder", lambda scale, runs, domains: tmp_path)  # no Hub here
    for name in ("410m", "1b"):
        scale = get_scale(name)
        for section in phase2.SECTIONS:
            coop = phase2.cooperative_for(scale, tmp_path, section, 137)
            assert (
                config_freeze(coop) == phase2.section_freeze_layers(scale, section) == paper.PHASE2_FREEZE_LAYERS == 0
            )
            domain = coop.domains[0]
            assert coop.train_config(domain).freeze_layers == 0
            assert coop.train_config(domain).steps == scale.spec_steps  # only the depth differs
        # the main cooperative keeps the scale's depth
        assert config_freeze(main_cooperative(scale, tmp_path, 137, tmp_path)) == scale.freeze_layers > 0
    # offline the cross-lingual contributors train every block too; the private and twenty keep the
    # scale's depth (notebook 04's fit was measured there)
    tiny = get_scale("tiny")
    assert phase2.train_overrides(tiny, "cross-lingual") == {"freeze_layers": paper.PHASE2_FREEZE_LAYERS}
    assert phase2.train_overrides(tiny, "private") == phase2.train_overrides(tiny, "twenty") == {}
    with pytest.raises(KalavaiError, match="unknown Phase 2 section"):
        phase2.train_overrides(get_scale("tiny"), "nine")


def test_summary_carries_the_cross_lingual_perplexity_table_per_seed(tmp_path):
    from kalavai_utils.protocol.results import make_results, write_results
    from kalavai_utils.reports import reference

    langs = ["lang_a", "lang_b", "code"]
    model = phase2_tables.paper_model([{"scale": "tiny"}])
    for seed, fused_a in ((42, 2.0), (137, 2.5)):  # lang_a falls e^1 = 2.7x in one seed, e^0.5 = 1.6x in the other
        losses = {
            "base": {d: 3.0 for d in langs},
            **{f"spec:{d}": {o: (2.2 if o == d else 3.2) for o in langs} for d in langs},
            model: {"lang_a": fused_a, "lang_b": 3.0 - math.log(1.5), "code": 2.1},
        }
        gates = {model: {d: [1.0 if e == d else 0.0 for e in langs] for d in langs}}
        write_results(
            tmp_path / "phase2" / "cross-lingual" / f"seed{seed}" / "results.json",
            make_results(
                experiment="phase2",
                condition="cross-lingual",
                scale="tiny",
                seed=seed,
                config={},
                base_fingerprint="x",
                domains=langs,
                losses=losses,
                specialists={d: f"spec:{d}" for d in langs},
                gates=gates,
            ),
        )
    ppl = reference.summarize_phase2(tmp_path)["cross-lingual"]["perplexity"]
    assert ppl["router"] == model and set(ppl) == {"router", "mean_over_seeds", "seed42", "seed137"}
    assert ppl["seed42"]["lang_a"] == pytest.approx(
        {"base": math.exp(3.0), "own_specialist": math.exp(2.2), "fused": math.exp(2.0), "fold": math.e}
    )
    assert ppl["seed137"]["lang_a"]["fold"] == pytest.approx(math.exp(0.5))
    assert ppl["seed42"]["lang_b"]["fold"] == pytest.approx(1.5) and set(ppl["seed42"]) == set(langs)
    # over seeds: the notebook's table, whose folds the several-fold claim reads
    mean = ppl["mean_over_seeds"]["lang_a"]
    assert mean["fused"] == pytest.approx((math.exp(2.0) + math.exp(2.5)) / 2)
    assert mean["fold"] == pytest.approx(math.exp(3.0) / mean["fused"])
    cross = phase2.load_section(tmp_path, "cross-lingual")
    claim = next(c for c in phase2_tables.cross_lingual_claims(tmp_path, cross, model) if "several-fold" in c["claim"])
    assert f"lang_a {mean['fold']:.2f}x" in claim["numbers"] and not claim["holds"]


def test_memory_of_twenty_experts():
    table = phase2_tables.memory_table(get_scale("smoke"))
    assert (table["n_copies_of_prefix_in_fused"] == 1).all()
    assert (table["fused_gb"] < table["peak_assembly_gb"]).all()
    assert (table["peak_assembly_gb"] < table["peak_with_weight_average_gb"]).all()
    assert (table["peak_with_weight_average_gb"] < table["peak_if_all_loaded_gb"]).all()
    assert (
        table.loc["1b", "frozen blocks"] == 0
        and table.loc["smoke", "frozen blocks"] == get_scale("smoke").freeze_layers
    )


@pytest.fixture(scope="module")
def smoke_base(tmp_path_factory):
    scale = get_scale("smoke")
    runs = tmp_path_factory.mktemp("runs") / "smoke"
    info = pipeline.prepare_base(scale, runs)
    return scale, runs, pipeline.load_base(scale, runs), info["fingerprint"]


def test_the_base_is_weak_on_the_new_languages(smoke_base):
    scale, runs, base, _ = smoke_base
    table = phase2.base_weakness(scale, runs, base, corpora.PHASE2_LANGUAGES)
    ref, new = table[table.kind == "reference"], table[table.kind == "new"]
    assert new["chars_per_token"].max() < ref["chars_per_token"].min()  # the tokenizer never saw these scripts
    assert new["loss_per_char"].min() > ref["loss_per_char"].max()
    assert "perplexity" not in table.columns  # per token, not comparable across domains: not shown


@pytest.mark.slow
def test_twenty_experts_fuse_at_smoke(smoke_base):
    scale, runs, base, fp = smoke_base
    results = phase2.run_section(scale, runs, base, fp, "twenty", seeds=[42], recipes=[phase2.MANY])
    r = results[0]
    assert len(r["domains"]) == 20 and len(r["specialists"]) == 20
    model = phase2.recipe_model(*phase2.paper_router(scale), phase2.MANY)
    assert model in r["losses"] and len(r["gates"][model]["code"]) == 20
    # the prediction read each specialist on its own domain alone; the fused pass scored them again
    predicted = read_json(runs / "phase2" / "twenty" / "seed42" / "prediction.json")
    assert abs(predicted["paper_line"]["mean_divergence"] - r["metrics"]["mean_divergence_pct"]) < 1e-3
    summary = phase2_tables.summarize(runs)
    assert "twenty" in summary and "gain" in summary["twenty"]["prediction"]["paper_line"]
    # notebook 06's memory table, as it shows it: this scale and the Hub scales
    memory, table = summary["twenty"]["memory"], phase2_tables.memory_table(scale)
    assert list(memory) == list(table.index) == ["smoke", "410m", "1b"]
    assert (
        memory["1b"]["fused_gb"] == table.loc["1b", "fused_gb"]
        and memory["smoke"]["frozen_blocks"] == scale.freeze_layers
    )
    assert set(memory["1b"]) == {
        "bytes_per_param",
        "frozen_blocks",
        "fused_gb",
        "peak_assembly_gb",
        "peak_with_weight_average_gb",
        "peak_if_all_loaded_gb",
    }
    assert "twenty.inside_band.paper_line" in summary["verdicts"]


# ---------------------------------------------------------------- the authors' later baselines (cross-lingual)


def test_own_text_router_reads_no_contributor_document_or_chunk(smoke_base):
    scale, runs, _, _ = smoke_base
    domains = phase2.domains_for(scale, "cross-lingual")
    own = phase2.own_text_folder(scale, runs, domains)
    contributors = phase2.data_folder(scale, runs, domains)
    for d in domains:
        theirs = set(data.domain_documents(scale, d)[0])
        ours = data.domain_documents(scale, d, stream="pretrain")[0]
        assert ours and theirs.isdisjoint(ours), d
        rows = {tuple(c.tolist()) for c in data.load_split(contributors, d, "train")}
        own_rows = [tuple(c.tolist()) for c in data.load_split(own, d, "train")]
        # no document is shared; a chunk may repeat a short common run of tokens by chance (1 in 2,218 at smoke)
        shared = sum(r in rows for r in own_rows)
        assert own_rows and shared <= 0.002 * len(own_rows), (d, shared)
    coop = phase2.cooperative_for(scale, runs, "cross-lingual", 42, phase2.cross_lingual_recipes(scale))
    assert coop.own_text_dir == own and phase2.OWN_TEXT in phase2.cross_lingual_recipes(scale)


def test_own_text_router_is_refused_at_the_hub_scales(tmp_path):
    hub = get_scale("410m")
    assert phase2.OWN_TEXT not in phase2.cross_lingual_recipes(hub)
    with pytest.raises(KalavaiError, match="FLORES-200") as e:
        phase2.own_text_folder(hub, tmp_path, ("tamil",))
    assert "\n" not in str(e.value)


def test_reinit_draws_another_router_init():
    plain, reinit = RouterRecipe(), phase2.REINIT
    seeds = [reinit.init_seed(42, a) for a in (1, 2, 3)]
    assert plain.init_seed(42) == 42 and 42 not in seeds and len(set(seeds)) == 3
    w = [make_router("mlp", 8, 4, hidden=16, seed=s).state_dict() for s in (42, *seeds[:2])]
    assert all(not torch.equal(w[0][k], w[i][k]) for i in (1, 2) for k in w[0])
    assert collapsed_domains({"a": [0.4, 0.6], "b": [0.1, 0.9]}, ["a", "b"]) == ["a"]


def test_joint_finetune_trains_suffixes_and_router_never_the_prefix(smoke_base):
    scale, _, base, _ = smoke_base
    fused = FusedModel.from_specialists(
        [copy.deepcopy(base), copy.deepcopy(base)], ["a", "b"], scale.freeze_layers, "linear", "sequence", seed=1
    )
    router = copy.deepcopy(fused.router)
    before = {k: v.clone() for k, v in fused.state_dict().items()}
    r_before = {k: v.clone() for k, v in router.state_dict().items()}
    chunks = torch.randint(0, base.config.vocab_size, (16, scale.seq_len))
    losses = joint_finetune(fused, router, "sequence", chunks, scale, seed=0, recipe=JOINT)
    assert len(losses) == JOINT.optimizer_steps(scale) >= 1
    after = fused.state_dict()
    prefix = [k for k in before if k.startswith(("embed_in", "shared_layers"))]
    suffix = [k for k in before if k.startswith("experts.") and before[k].is_floating_point()]
    assert prefix and all(torch.equal(before[k], after[k]) for k in prefix)
    assert any(not torch.equal(before[k], after[k]) for k in suffix if k.startswith("experts.0."))
    assert any(not torch.equal(before[k], after[k]) for k in suffix if k.startswith("experts.1."))
    assert all(not torch.equal(r_before[k], v) for k, v in router.state_dict().items())
    assert not any(p.requires_grad for p in fused.parameters())


@pytest.mark.slow
def test_cross_lingual_later_baselines_at_smoke(smoke_base):
    scale, runs, base, fp = smoke_base
    recipes = phase2.cross_lingual_recipes(scale)
    [r] = phase2.run_section(scale, runs, base, fp, "cross-lingual", seeds=[42], recipes=recipes)
    folder = runs / "phase2" / "cross-lingual" / "seed42"
    # the compute-matched monolithic: the union of the four contributors' train chunks, 4 x the specialists' steps
    mono = read_json(folder / "monolithic" / "step.json")["config"]
    spec = read_json(folder / "specialists" / "code" / "step.json")["config"]
    union = torch.cat(
        [data.load_split(phase2.data_folder(scale, runs, r["domains"]), d, "train") for d in r["domains"]]
    )
    assert mono["train"]["steps"] == len(r["domains"]) * spec["train"]["steps"] == 4 * scale.spec_steps
    assert mono["data"]["train_sha256"] == tensor_sha256(union)
    names = phase2_tables.later_models(scale)
    for model in ("monolithic", names["joint"], names["reinit"], names["own text"]):
        assert model in r["losses"] and model in r["metrics"]["gain_vs_best_pct"], model
    assert names["joint"] in r["gates"] and names["reinit"] in r["gates"]
    assert len(phase2_tables.own_text_table([r])) == 1 and len(phase2_tables.baselines_table([r])) == 6
    attempts = phase2_tables.reinit_attempts(runs, [r])
    assert 1 <= len(attempts) <= phase2.REINIT.reinit and attempts.init_seed.iloc[0] == 42 + 1001
    ids = {v.id for v in phase2_tables.verdicts(runs)}
    assert {
        "cross_lingual.monolithic_below_fused",
        "cross_lingual.joint_beats_router_only",
        "cross_lingual.reinit_no_collapse",
        "cross_lingual.own_text_router_matches",
    } <= ids
    # cached: a second run trains nothing and gives the same numbers
    [again] = phase2.run_section(scale, runs, base, fp, "cross-lingual", seeds=[42], recipes=recipes)
    assert again["losses"] == r["losses"]


def test_held_out_coverage_tests_each_section_against_each_line(tmp_path):
    from kalavai_utils.analysis import phase2_tables, sweep_tables

    def result(div, gain):
        return {"metrics": {"mean_divergence_pct": div, "gain_vs_best_pct": {"m": gain}}}

    # no notebook 04 fit in this runs root: the paper's line and the authors' refit only
    table = phase2_tables.held_out_coverage(
        {"cross": [result(20.0, 14.0), result(22.0, 16.0)], "far": [result(20.0, 90.0)]}, "m", tmp_path
    )
    assert set(table["band"]) == {sweep_tables.LINES["paper"], sweep_tables.LINES["authors_refit_14"]}
    cross = table[table["condition"] == "cross"]
    assert cross["divergence"].tolist() == [21.0, 21.0] and cross["measured"].tolist() == [15.0, 15.0]
    assert cross["inside"].all() and not table[table["condition"] == "far"]["inside"].any()


def test_the_cross_lingual_calibration_table_and_its_two_bars():
    """Hand-made losses whose bars are known: divergence = 1 - own/base, ratio = exp(base - own)."""
    from kalavai_utils.protocol import metrics

    lo, hi = metrics.CROSS_LINGUAL_DIVERGENCE_PCT
    langs = get_scale("tiny").languages
    base = {langs[0]: 4.0, langs[1]: 5.0, langs[2]: 6.0, "code": 5.0}
    # divergences 30, 40, 50 and 0 %: mean 30 % (inside the band); ratios e^1.2, e^2, e^3 (all >= 3x)
    own = {langs[0]: 2.8, langs[1]: 3.0, langs[2]: 3.0, "code": 5.0}

    def result(seed, own):
        return {
            "seed": seed,
            "scale": "tiny",
            "specialists": {d: f"spec:{d}" for d in own},
            "losses": {"base": base, **{f"spec:{d}": {d: v} for d, v in own.items()}},
        }

    good = phase2_tables.calibration(result(42, own))
    assert math.isclose(good["mean_divergence_pct"], 30.0)
    assert good["verdicts"] == {"cross_lingual.regime.divergence_in_band": True, "cross_lingual.regime.base_weak": True}
    ratios = {r["contributor"]: r["ppl_ratio"] for r in good["rows"]}
    assert math.isclose(ratios[langs[0]], math.exp(1.2)) and math.isclose(ratios["code"], 1.0)
    # the bars: 3x, but lang_script's is the authors' Tamil ratio (4.41 / 3.295 on their seed 42, their lowest)
    bars = {r["contributor"]: r["ppl_ratio_bar"] for r in good["rows"] if r["language"]}
    assert math.isclose(bars[langs[0]], 4.41 / 3.295) and bars[langs[1]] == bars[langs[2]] == 3.0
    # the code contributor's ratio of 1 does not fail the per-language bar; one weak language does
    weak = {**own, langs[1]: 4.0}  # ratio e^1.0 = 2.72 < 3: fails; mean divergence 25 %: still inside
    assert phase2_tables.calibration(result(137, weak))["verdicts"]["cross_lingual.regime.base_weak"] is False
    # lang_script at 1.35x passes its bar (the authors' Tamil, 1.34x); at 1.30x it does not
    for ratio, holds in ((1.35, True), (1.30, False)):
        script = {**own, langs[0]: base[langs[0]] - math.log(ratio)}
        assert phase2_tables.calibration(result(1, script))["verdicts"]["cross_lingual.regime.base_weak"] is holds
    far = {d: v * 0.2 for d, v in base.items()}  # every divergence 80 %: outside the band
    assert (
        lo <= 30.0 <= hi
        and not phase2_tables.calibration(result(7, far))["verdicts"]["cross_lingual.regime.divergence_in_band"]
    )

    table = phase2_tables.calibration_table([result(42, own), result(137, weak)])
    assert list(table[table.contributor == "mean"]["divergence_pct"].round(2)) == [
        30.0,
        25.0,
        paper.CROSS_LINGUAL["divergence"],
    ]
    verdicts = {v.id: v for v in phase2_tables.calibration_verdicts([result(42, own), result(137, weak)])}
    assert verdicts["cross_lingual.regime.divergence_in_band"].holds is True
    assert verdicts["cross_lingual.regime.base_weak"].holds is False  # must hold on every seed
    assert "seed 137" in verdicts["cross_lingual.regime.base_weak"].numbers
