"""Router modules, pooling, the mixture, and router training on a toy cooperative."""

import pytest
import torch
from transformers import GPTNeoXForCausalLM

from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol.fusion import FusedModel
from kalavai_utils.protocol.models import freeze_prefix, offline_config
from kalavai_utils.protocol.routers import (
    causal_lm_loss,
    make_router,
    mix_logits,
    pool_router_input,
    stack_logits,
    token_losses,
    train_router,
    train_routers,
)
from kalavai_utils.scales import get_scale

VOCAB, SEQ, K = 512, 32, 1
N_DOMAINS = 3
SPAN = VOCAB // N_DOMAINS  # domain i uses the tokens [i*SPAN, (i+1)*SPAN)


def domain_chunks(i, n, seed):
    """Domain i counts in steps of i+1 inside its own token range, from random starts.

    Predicting the next token needs the current one, so the specialists' hidden states
    carry the token (and with it the domain): the router has something to read.
    """
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, SPAN, (n, 1), generator=g)
    return i * SPAN + (start + (i + 1) * torch.arange(SEQ)) % SPAN


@pytest.fixture(scope="module")
def toy():
    """Three specialists, each trained briefly on its own domain from one shared base."""
    torch.manual_seed(0)
    config = offline_config(get_scale("smoke"))  # d=32, 2 layers, vocab 512, seq 32
    base = GPTNeoXForCausalLM(config)
    with torch.no_grad():  # the shared base "knows" the domains: each has its own embedding direction
        for i in range(N_DOMAINS):
            base.gpt_neox.embed_in.weight[i * SPAN : (i + 1) * SPAN] += 0.03 * torch.randn(config.hidden_size)
    specs = []
    for i in range(N_DOMAINS):
        m = GPTNeoXForCausalLM(config)
        m.load_state_dict(base.state_dict())
        freeze_prefix(m, K)
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
        data = domain_chunks(i, 64, seed=i)
        for step in range(40):
            x = data[step % 8 * 8 : (step % 8 + 1) * 8]
            loss = m(x, labels=x).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        specs.append(m.eval())
    train = torch.cat([domain_chunks(i, 32, seed=100 + i) for i in range(N_DOMAINS)])
    held = [domain_chunks(i, 4, seed=200 + i) for i in range(N_DOMAINS)]
    return specs, train, held


def fuse(specs, seed=0, **kw):
    return FusedModel.from_specialists(specs, ["code", "science", "fiction"], K, seed=seed, **kw)


def test_make_router_shapes_bias_and_seed():
    lin = make_router("linear", 32, 3)
    assert [tuple(p.shape) for p in lin.parameters()] == [(3, 32)]
    mlp = make_router("mlp", 32, 3, hidden=16)
    assert [tuple(p.shape) for p in mlp.parameters()] == [(16, 32), (3, 16)]
    assert all(m.bias is None for m in mlp.modules() if isinstance(m, torch.nn.Linear))
    h = torch.randn(2, 5, 32)
    assert mlp(h).shape == (2, 5, 3)
    assert torch.equal(
        make_router("mlp", 32, 3, hidden=16, seed=1).net[0].weight,
        make_router("mlp", 32, 3, hidden=16, seed=1).net[0].weight,
    )
    assert not torch.equal(
        make_router("linear", 32, 3, seed=1).net.weight, make_router("linear", 32, 3, seed=2).net.weight
    )
    # The seeded init keeps PyTorch's default scale (uniform within 1/sqrt(fan_in)).
    assert lin.net.weight.abs().max() <= 32**-0.5
    with pytest.raises(KalavaiError, match="router kind"):
        make_router("attention", 32, 3)


def test_pooling():
    h = torch.randn(2, 6, 4)
    assert torch.equal(pool_router_input(h, "token"), h)
    seq = pool_router_input(h, "sequence")
    assert torch.allclose(seq, h.mean(1, keepdim=True).expand_as(h))
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    masked = pool_router_input(h, "sequence", mask)
    assert torch.allclose(masked[0, 0], h[0, :3].mean(0), atol=1e-6)
    assert torch.allclose(masked[1, 0], h[1].mean(0), atol=1e-6)
    with pytest.raises(KalavaiError, match="granularity"):
        pool_router_input(h, "document")


def test_mix_logits_and_loss():
    logits = torch.randn(3, 2, 5, 11)
    stacked = stack_logits(iter(logits), 3)  # the same values, stored position by position
    assert torch.equal(stacked, logits) and stacked.permute(1, 2, 0, 3).is_contiguous()
    g = torch.softmax(torch.randn(2, 5, 3), -1)
    for layout in (logits, stacked):
        assert torch.equal(mix_logits(layout, torch.tensor([0.0, 1.0, 0.0]).expand(2, 5, 3)), logits[1])
        assert torch.allclose(mix_logits(layout, g), torch.einsum("nbtv,btn->btv", logits, g), atol=1e-6)
        # each expert's loss at every position; its mean is that expert's loss on the batch
        labels = torch.randint(0, 11, (2, 5))
        per_token = token_losses(layout, labels)
        assert per_token.shape == (3, 2, 4)
        for i in range(3):
            assert torch.allclose(per_token[i].mean(), causal_lm_loss(logits[i], labels), atol=1e-6)

    model = GPTNeoXForCausalLM(offline_config(get_scale("smoke"))).eval()
    x = torch.randint(0, VOCAB, (2, SEQ))
    labels = x.clone()
    labels[0, 5:9] = -100
    with torch.no_grad():
        assert torch.allclose(causal_lm_loss(model(x).logits, labels), model(x, labels=labels).loss, atol=1e-6)


def test_specialists_are_clearly_best_on_their_own_domain(toy):
    specs, _, held = toy
    with torch.no_grad():
        losses = torch.tensor([[s(x, labels=x).loss.item() for x in held] for s in specs])
    for d in range(N_DOMAINS):  # losses[expert, domain]: the own expert wins by a clear margin
        best, runner_up = losses[:, d].sort().values[:2]
        assert losses[d, d] == best and runner_up - best > 0.5, losses


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_train_router_learns_the_domains(toy, kind):
    specs, train, held = toy
    fused = fuse(specs, router_kind=kind, router_hidden=16)
    before = {k: v.clone() for k, v in fused.state_dict().items() if not k.startswith("router.")}
    with torch.no_grad():
        uniform_loss = torch.stack([fused(x, labels=x).loss for x in held]).mean()

    losses = train_router(fused, train, steps=40, batch=4, lr=5e-2, weight_decay=0.01, seed=0, progress=False)

    assert len(losses) == 40
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.5
    with torch.no_grad():
        outs = [fused(x, labels=x) for x in held]
        oracle = torch.stack([s(x, labels=x).loss for s, x in zip(specs, held)]).mean()  # own expert per domain
    fused_loss = torch.stack([o.loss for o in outs]).mean()
    assert fused_loss < uniform_loss - 1.0
    assert fused_loss < oracle + 0.2, (fused_loss, oracle)
    for d, out in enumerate(outs):  # domain d is routed to expert d
        assert out.gates[..., d].mean() > 0.9, (d, out.gates.mean((0, 1)))
    # Only the router moved, and only the router is left trainable.
    after = fused.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert {n for n, p in fused.named_parameters() if p.requires_grad} == {
        n for n, _ in fused.router.named_parameters(prefix="router")
    }


def test_train_router_is_deterministic_given_the_seed(toy):
    specs, train, _ = toy
    runs = []
    for seed in (0, 0, 1):
        fused = fuse(specs)
        losses = train_router(fused, train, steps=8, batch=4, lr=1e-2, weight_decay=0.01, seed=seed, progress=False)
        runs.append((losses, fused.router.net.weight.detach().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]


def test_train_router_refuses_bad_chunks(toy):
    specs, _, _ = toy
    with pytest.raises(KalavaiError, match="chunks"):
        train_router(
            fuse(specs),
            torch.zeros(0, SEQ, dtype=torch.long),
            steps=1,
            batch=1,
            lr=1e-3,
            weight_decay=0.0,
            seed=0,
            progress=False,
        )


def test_routers_trained_side_by_side_end_as_if_trained_alone(toy):
    """train_routers shares the experts' outputs between routers; each must still get exactly its own run."""
    specs, train, _ = toy
    variants = [("linear", "sequence"), ("mlp", "sequence"), ("mlp", "token")]
    alone = []
    for kind, granularity in variants:
        fused = fuse(specs, router_kind=kind, granularity=granularity, router_hidden=16, seed=3)
        losses = train_router(fused, train, steps=12, batch=4, lr=1e-2, weight_decay=0.01, seed=5, progress=False)
        alone.append((losses, fused.router.state_dict()))
    fused = fuse(specs)
    routers = [(make_router(kind, 32, N_DOMAINS, hidden=16, seed=3), granularity) for kind, granularity in variants]
    together = train_routers(
        fused, routers, train, steps=12, batch=4, lr=1e-2, weight_decay=0.01, seed=5, progress=False
    )
    for (losses, state), mine, (router, _) in zip(alone, together, routers):
        assert mine == losses
        assert all(torch.equal(v, router.state_dict()[k]) for k, v in state.items())
    # The routers did move, and differently, so the check above could have failed.
    assert together[0] != together[1] and together[0][0] != together[0][-1]


def test_routers_of_other_lengths_and_recipes_side_by_side_end_as_if_trained_alone(toy):
    """Routers differing in steps, balance term or schedule share batches; each gets its own run."""
    specs, train, _ = toy
    recipes = [(12, 0.0, "constant"), (20, 0.05, "cosine"), (8, 0.0, "cosine")]
    alone = []
    for steps, balance, schedule in recipes:
        fused = fuse(specs, router_kind="mlp", granularity="sequence", router_hidden=16, seed=3)
        losses = train_router(
            fused,
            train,
            steps=steps,
            batch=4,
            lr=1e-2,
            weight_decay=0.01,
            seed=5,
            progress=False,
            balance=balance,
            schedule=schedule,
        )
        alone.append((losses, fused.router.state_dict()))
    routers = [(make_router("mlp", 32, N_DOMAINS, hidden=16, seed=3), "sequence") for _ in recipes]
    together = train_routers(
        fuse(specs),
        routers,
        train,
        steps=[r[0] for r in recipes],
        batch=4,
        lr=1e-2,
        weight_decay=0.01,
        seed=5,
        progress=False,
        balance=[r[1] for r in recipes],
        schedule=[r[2] for r in recipes],
    )
    for (losses, state), mine, (router, _), (steps, _, _) in zip(alone, together, routers, recipes):
        assert len(mine) == steps and mine == losses
        assert all(torch.equal(v, router.state_dict()[k]) for k, v in state.items())
    assert together[0] != together[1][:12]  # the recipes did train differently
    with pytest.raises(KalavaiError, match="one per router"):
        train_routers(
            fuse(specs), routers, train, steps=[4, 4], batch=4, lr=1e-2, weight_decay=0.0, seed=0, progress=False
        )


def test_a_warm_started_router_side_by_side_ends_as_if_trained_alone(toy):
    """A warm start's single-domain batches cost their own pass; after it the router takes the
    plain routers' mixed batches of the same steps, and still gets exactly its own run."""
    specs, train, _ = toy
    per_domain = list(train.split(32))
    recipes = [0, 4, 4]  # warm steps: a plain router, then two warm-started ones (12 steps each)
    alone = []
    for w in recipes:
        fused = fuse(specs, router_kind="mlp", granularity="sequence", router_hidden=16, seed=3)
        losses = train_router(
            fused, train, 12, 4, 1e-2, 0.01, seed=5, progress=False, warm_start=per_domain, warm_steps=w
        )
        alone.append((losses, fused.router.state_dict()))
    routers = [(make_router("mlp", 32, N_DOMAINS, hidden=16, seed=s), "sequence") for s in (3, 3, 4)]
    together = train_routers(
        fuse(specs),
        routers,
        train,
        12,
        4,
        1e-2,
        0.01,
        seed=5,
        progress=False,
        warm_start=per_domain,
        warm_steps=recipes,
    )
    for (losses, state), mine, (router, _) in zip(alone[:2], together, routers):
        assert mine == losses
        assert all(torch.equal(v, router.state_dict()[k]) for k, v in state.items())
    assert together[0] != together[1] and together[1] != together[2]  # the warm start and the init mattered
    with pytest.raises(KalavaiError, match="warm_steps=13"):
        train_routers(
            fuse(specs),
            routers[:1],
            train,
            12,
            4,
            1e-2,
            0.0,
            seed=0,
            progress=False,
            warm_start=per_domain,
            warm_steps=13,
        )


@pytest.mark.parametrize("granularity", ["sequence", "token"])
def test_train_router_matches_the_fused_forward_loss(toy, granularity):
    """The training path (experts once, shared, then `fuse`) gives FusedModel.forward's loss on the same batch."""
    specs, train, _ = toy
    fused = fuse(specs, router_kind="mlp", granularity=granularity, router_hidden=16, seed=2)
    chunks = train[::7]
    drawn = chunks[
        torch.randint(len(chunks), (4,), generator=torch.Generator().manual_seed(0))
    ]  # train_router's first batch
    with torch.no_grad():
        expected = fused(drawn, labels=drawn).loss.item()
    losses = train_router(fused, chunks, steps=1, batch=4, lr=1e-2, weight_decay=0.0, seed=0, progress=False)
    assert abs(losses[0] - expected) < 1e-5
