"""Draw docs/figures/phases.png: one synthetic example of each of the 5+1 phases, ESD + fits.

Each panel is :func:`analysis.plots.plot_esd` (linear histogram, fitted MP density, λ+, PL xmin)
of a 1024 × 512 matrix from :func:`analysis.synthetic.make`, titled with the classifier's label,
its confidence and the deciding rule; the heavy-tailed-looking panels get a log–log inset of the
tail with the power-law fit (:func:`analysis.plots.plot_tail`).

Usage::

    .venv/bin/python benchmarks/make_phase_figure.py [--out docs/figures/phases.png]
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from htsweep.analysis.marchenko_pastur import fit_marchenko_pastur
from htsweep.analysis.phases import PHASES, classify_phase
from htsweep.analysis.plots import plot_esd, plot_tail
from htsweep.analysis.powerlaw_fit import fit_power_law
from htsweep.analysis.spectrum import esd
from htsweep.analysis.synthetic import make

ROOT = Path(__file__).resolve().parents[1]
N, M = 1024, 512
EXAMPLES = {
    "random_like": {},
    "bleeding_out": {"k": 4, "excess": 0.3},
    "bulk_plus_spikes": {"k": 3, "ratio": 5.0},
    "bulk_decay": {"frac": 0.25, "tail_alpha": 5.0},
    "heavy_tailed": {"mu": 2.0},
    "rank_collapse": {"rank_frac": 0.3, "noise": 1e-3},
}


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "phases.png")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    for ax, phase in zip(axes.ravel(), PHASES, strict=True):
        W = make(phase, N, M, seed=args.seed, **EXAMPLES[phase])
        eigs = esd(W)
        mp = fit_marchenko_pastur(eigs, q=N / M)
        pl = fit_power_law(eigs)
        res = classify_phase(eigs, q=N / M, mp=mp, pl=pl)
        shown = eigs if phase != "rank_collapse" else eigs[eigs > 1e-3 * eigs[-1]]
        plot_esd(shown, mp=mp if phase != "rank_collapse" else None, pl=pl, ax=ax)
        rule = textwrap.fill(res.evidence["rule"], 70)
        ax.set_title(f"{phase}  →  {res.phase} ({res.confidence:.2f})\n{rule}", fontsize=8.5)
        if phase == "rank_collapse":
            ax.text(0.45, 0.6, f"{res.evidence['zero_frac']:.0%} of eigenvalues ≈ 0\n(not shown; "
                    f"gap {res.evidence['zero_gap_decades']:.1f} decades)", transform=ax.transAxes)
        if phase in ("bulk_decay", "heavy_tailed") and pl.success:
            inset = ax.inset_axes([0.5, 0.3, 0.45, 0.4])
            plot_tail(eigs, pl, ax=inset)
            inset.set_title("")
            inset.tick_params(labelsize=6)
            inset.xaxis.label.set_size(7)
            inset.yaxis.label.set_size(7)
            leg = inset.get_legend()
            if leg is not None:
                leg.remove()
    fig.suptitle(f"Synthetic 5+1 phases ({N}×{M}, Q={N / M:g}): ESD, MP fit (red), λ+ (dashed), "
                 "PL xmin (dotted); title = true → predicted (confidence)", fontsize=11)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
