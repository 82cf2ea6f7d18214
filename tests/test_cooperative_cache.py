"""The coordinator's caches are keyed on content, and the authors' router follows the scale."""

from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import GPTNeoXForCausalLM

from kalavai_utils.protocol import cooperative
from kalavai_utils.protocol.cooperative import Cooperative, fit_routers, paper_fused, paper_router
from kalavai_utils.protocol.fusion import FusedModel
from kalavai_utils.protocol.models import offline_config
from kalavai_utils.scales import get_scale

SMOKE = get_scale("smoke").with_overrides(router_steps=2)
VOCAB, SEQ = 512, 32


def tiny_model(seed):
    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(offline_config(SMOKE)).eval()


def coop(tmp_path, **kw):
    return Cooperative(
        scale=SMOKE,
        experiment="main",
        condition="main",
        seed=0,
        domains=("code", "science"),
        data_dir=Path(tmp_path),
        **kw,
    )


def count_calls(monkeypatch, name):
    calls = []
    real = getattr(cooperative, name)
    monkeypatch.setattr(cooperative, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_paper_router_follows_the_scale(tmp_path):
    assert paper_router(get_scale("1b")) == ("linear", "sequence") == paper_router(get_scale("6.9b"))
    assert paper_router(get_scale("410m")) == ("mlp", "sequence") == paper_router(get_scale("tiny"))
    assert paper_fused(get_scale("1b")) == "fused:linear:sequence"
    c = Cooperative(
        scale=get_scale("1b"), experiment="main", condition="main", seed=0, domains=("code",), data_dir=tmp_path
    )
    assert c.routers == (("linear", "sequence"), ("linear", "token"))


def test_router_refitted_when_train_chunks_change_but_not_their_shape(tmp_path, monkeypatch):
    base = tiny_model(0)
    fused = FusedModel.from_specialists([base, base], ["code", "science"], 1, router_hidden=SMOKE.router_hidden)
    trained = count_calls(monkeypatch, "train_routers")
    g = torch.Generator().manual_seed(0)
    chunks = torch.randint(0, VOCAB, (8, SEQ), generator=g)
    routers = [("mlp", "sequence"), ("linear", "token")]
    first = fit_routers(fused, routers, chunks, coop(tmp_path), tmp_path / "routers")
    again = fit_routers(fused, routers, chunks.clone(), coop(tmp_path), tmp_path / "routers")
    assert len(trained) == 1  # the second call read both routers from disk
    fits = [cooperative.read_json(tmp_path / "routers" / n.replace(":", "-") / "router_log.json")["fit"] for n in first]
    assert fits[0] == fits[1] and fits[0]["side_by_side"] == 2 and fits[0]["seconds"] > 0  # one pass, time shared
    for name, (router, loss) in first.items():
        assert again[name][1] == loss and all(
            torch.equal(v, again[name][0].state_dict()[k]) for k, v in router.state_dict().items()
        )
    edited = chunks.clone()
    edited[0, 0] = (edited[0, 0] + 1) % VOCAB  # same shape, one token different
    fit_routers(fused, routers, edited, coop(tmp_path), tmp_path / "routers")
    assert len(trained) == 2


def test_baselines_reevaluated_when_the_monolithic_model_changes(tmp_path, monkeypatch):
    base, specs = tiny_model(0), [tiny_model(1), tiny_model(2)]
    monolithic = {"model": tiny_model(3)}
    monkeypatch.setattr(
        cooperative, "collect_submissions", lambda folders, *a: [SimpleNamespace(model=monolithic["model"])]
    )
    monkeypatch.setattr(cooperative.data, "load_splits", lambda *a: {"code": torch.zeros(4, SEQ, dtype=torch.long)})
    evaluated = []
    monkeypatch.setattr(cooperative, "evaluate_domains", lambda *a, **k: evaluated.append(1) or {"code": 1.0})
    monkeypatch.setattr(cooperative, "FusedModel", SimpleNamespace(from_specialists=lambda *a: None))
    monkeypatch.setattr(cooperative, "evaluate_pass", lambda *a, **k: (evaluated.append(1) or {}, {}))
    c = coop(tmp_path)
    assembly = cooperative.Assembly(
        fused=None, fingerprints=[cooperative.fingerprint(m) for m in specs], weight_avg=specs[0]
    )
    cooperative.evaluate_baselines(c, tmp_path, base, "base-fp", assembly)
    n = len(evaluated)
    cooperative.evaluate_baselines(c, tmp_path, base, "base-fp", assembly)
    assert len(evaluated) == n  # cached
    timed = cooperative.read_json(tmp_path / "main" / "main" / "seed0" / "baselines" / "step.json")["evaluation"]
    assert timed["seconds"] > 0 and timed["threads"] == torch.get_num_threads()  # for benchmark.run_phases
    monolithic["model"] = tiny_model(4)  # a retrained monolithic baseline, everything else the same
    cooperative.evaluate_baselines(c, tmp_path, base, "base-fp", assembly)
    assert len(evaluated) == 2 * n - 1  # all but the base, whose loss on these chunks is kept by content


def test_baselines_and_fusion_redone_when_the_held_out_chunks_change(tmp_path, monkeypatch):
    base, specs = tiny_model(0), [tiny_model(1), tiny_model(2)]
    heldout = {"code": torch.zeros(4, SEQ, dtype=torch.long), "science": torch.ones(4, SEQ, dtype=torch.long)}
    monkeypatch.setattr(cooperative.data, "load_splits", lambda *a: dict(heldout))
    monkeypatch.setattr(cooperative.data, "load_split", lambda *a: heldout["code"])
    evaluated, fused = [], []
    monkeypatch.setattr(
        cooperative, "evaluate_domains", lambda m, sets, *a, **k: evaluated.append(1) or {d: 1.0 for d in sets}
    )
    monkeypatch.setattr(cooperative, "evaluate_pass", lambda *a, **k: (evaluated.append(1) or {}, {}))
    monkeypatch.setattr(cooperative, "fit_routers", lambda *a: {})
    monkeypatch.setattr(
        cooperative,
        "evaluate_fused",
        lambda *a, **k: (
            fused.append(1)
            or {"spec:code": {"code": 0.9, "science": 1.1}, "spec:science": {"code": 1.1, "science": 0.9}},
            {},
        ),
    )
    c = coop(tmp_path, monolithic=False)
    assembly = cooperative.Assembly(
        fused=None, fingerprints=[cooperative.fingerprint(m) for m in specs], weight_avg=specs[0]
    )
    monkeypatch.setattr(cooperative, "assemble", lambda *a, **k: assembly)
    cooperative.evaluate_cooperative(c, tmp_path, base, "base-fp")
    n = len(evaluated)
    cooperative.evaluate_cooperative(c, tmp_path, base, "base-fp")
    assert (len(evaluated), len(fused)) == (n, 1)  # both steps cached
    heldout["science"] = heldout["science"] * 2  # same shape and counts, other tokens
    cooperative.evaluate_cooperative(c, tmp_path, base, "base-fp")
    # both steps redone; of the baselines all but the base's loss on code, whose chunks did not change
    assert (len(evaluated), len(fused)) == (2 * n - 1, 2)


def test_the_base_loss_on_a_held_out_set_is_shared_by_content(tmp_path, monkeypatch):
    base = tiny_model(0)
    evaluated = []
    real = cooperative.evaluate_domains
    monkeypatch.setattr(
        cooperative, "evaluate_domains", lambda model, sets, *a: evaluated.append(list(sets)) or real(model, sets, *a)
    )
    chunks = torch.randint(0, VOCAB, (4, SEQ), generator=torch.Generator().manual_seed(1))
    first = cooperative.base_losses(base, "fp", {"code": chunks}, SMOKE, tmp_path)
    # another cooperative's folder of the same chunks under another name: read, not evaluated
    assert cooperative.base_losses(base, "fp", {"law": chunks.clone()}, SMOKE, tmp_path) == {"law": first["code"]}
    assert evaluated == [["code"]]
    edited = chunks.clone()
    edited[0, 0] = (edited[0, 0] + 1) % VOCAB
    cooperative.base_losses(base, "fp", {"code": edited}, SMOKE, tmp_path)  # other content
    cooperative.base_losses(base, "other-base", {"code": chunks}, SMOKE, tmp_path)  # another base
    assert evaluated == [["code"]] * 3
    assert first["code"] == real(base.eval(), {"code": chunks}, SMOKE.eval_batch, SMOKE.eval_max_batches)["code"]


def test_monolithic_training_data_is_keyed_on_content(tmp_path, monkeypatch):
    content = {"code": torch.arange(2 * SEQ).reshape(2, SEQ), "science": torch.ones(3, SEQ, dtype=torch.long)}
    monkeypatch.setattr(
        cooperative.data, "load_splits", lambda folder, domains, split: {d: content[d] for d in domains}
    )
    monkeypatch.setattr(cooperative.data, "load_split", lambda folder, domain, split: content[domain])
    monkeypatch.setattr(cooperative, "data_stats", lambda folder, domain, chunks: {"domain": domain})
    recorded = []
    monkeypatch.setattr(
        cooperative, "train_specialist", lambda *a, contributor, data, **k: recorded.append((contributor, data)) or {}
    )

    def monolithic_data():
        cooperative.train_contributors(coop(tmp_path), tmp_path, None, "base-fp")
        return [data for who, data in recorded if who == "monolithic"][-1]

    before = monolithic_data()
    content["science"] = content["science"] * 2  # same shape and counts, other tokens
    assert monolithic_data() != before
