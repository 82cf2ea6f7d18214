"""The paper's definitions (facts page, section 4), in one place and without torch.

Improvement of A over B = (L_B - L_A) / L_B x 100; the best specialist is the ONE
specialist with the lowest equal-weight (EW) loss; gain = improvement of a model's EW over
the best specialist's; divergence of a specialist = its improvement over the base on its
own domain; domain oracle = per-domain minimum over specialists; conversion efficiency =
gain / mean divergence.
"""
from __future__ import annotations

import math

from .errors import KalavaiError


def equal_weight(losses: dict[str, float], domains=None) -> float:
    domains = list(domains or losses)
    return sum(losses[d] for d in domains) / len(domains)


def improvement_pct(loss_a: float, loss_b: float) -> float:
    """Improvement of A over B in percent: (L_B - L_A) / L_B x 100."""
    return (loss_b - loss_a) / loss_b * 100.0


def divergence_pct(base_loss: float, spec_loss: float) -> float:
    """How far a specialist moved on its own domain: (L_base,d - L_spec,d) / L_base,d x 100."""
    base_loss, spec_loss = float(base_loss), float(spec_loss)
    if not (math.isfinite(base_loss) and math.isfinite(spec_loss)) or base_loss <= 0:
        raise KalavaiError(f"divergence needs finite losses and a positive base loss, got {base_loss}, {spec_loss}")
    return improvement_pct(spec_loss, base_loss)


def best_specialist(losses: dict[str, dict[str, float]], specialists: dict[str, str], domains) -> str:
    """The ONE specialist model with the lowest EW loss over all domains."""
    return min(specialists.values(), key=lambda m: equal_weight(losses[m], domains))


def oracle_ew(losses: dict[str, dict[str, float]], specialists: dict[str, str], domains) -> float:
    """Mean over domains of the best specialist loss on that domain."""
    return sum(min(losses[m][d] for m in specialists.values()) for d in domains) / len(domains)


def summarize(losses: dict[str, dict[str, float]], specialists: dict[str, str], domains, base: str = "base") -> dict:
    """EW losses, gains vs the best specialist and vs base, divergences, oracle, conversion efficiency.

    `losses[model][domain]` holds every model's held-out loss; `specialists` maps each
    contributor's domain to its model name.
    """
    domains = list(domains)
    for model, row in losses.items():
        missing = [d for d in domains if d not in row or not math.isfinite(row[d])]
        if missing:
            raise KalavaiError(f"model {model!r} has no finite loss on {', '.join(missing)}")
    ew = {m: equal_weight(row, domains) for m, row in losses.items()}
    best = best_specialist(losses, specialists, domains)
    divergence = {d: divergence_pct(losses[base][d], losses[m][d]) for d, m in specialists.items()}
    mean_div = sum(divergence.values()) / len(divergence)
    gain = {m: improvement_pct(ew[m], ew[best]) for m in losses}
    oracle = oracle_ew(losses, specialists, domains)
    return {
        "ew": ew,
        "best_specialist": best,
        "gain_vs_best_pct": gain,
        "gain_vs_base_pct": {m: improvement_pct(ew[m], ew[base]) for m in losses},
        "divergence_pct": divergence,
        "mean_divergence_pct": mean_div,
        "non_improving_specialists": sorted(d for d, v in divergence.items() if v <= 0),
        "oracle_ew": oracle,
        "oracle_gain_pct": improvement_pct(oracle, ew[best]),
        "conversion_efficiency": {m: (gain[m] / mean_div if mean_div else float("nan")) for m in losses},
    }
