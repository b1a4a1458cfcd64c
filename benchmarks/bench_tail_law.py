"""Tail-law comparisons: ``analysis.tail_law.compare_laws`` vs the ``powerlaw`` package, per layer.

For trained-like spectra (the tails of Student-t matrices' ESDs, xmin from ``fit_power_law``) and
synthetic tails of each law, in one process and single-threaded: CPU time (user + sys) of
``compare_laws`` and of ``powerlaw.Fit(xmin=our xmin, parameter_ranges={"alpha": [1, 20]})`` +
``distribution_compare`` against the three alternatives, the ratio, and whether the verdict-relevant
signs of R agree. ``python benchmarks/bench_tail_law.py`` writes ``benchmarks/results/bench_tail_law.json``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import single_thread_env  # noqa: E402

single_thread_env()

import numpy as np  # noqa: E402

from htsweep.analysis.powerlaw_fit import fit_power_law  # noqa: E402
from htsweep.analysis.spectrum import esd  # noqa: E402
from htsweep.analysis.tail_law import ALTERNATIVES, compare_laws  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "bench_tail_law.json"


def _cases() -> list[tuple[str, np.ndarray, float]]:
    rng = np.random.default_rng(0)
    cases = []
    for nu in (1.5, 2.5, 4.0):
        e = esd(rng.standard_t(nu, size=(1000, 500)), device="cpu")
        cases.append((f"esd_student_t_{nu}_1000x500", e, fit_power_law(e).xmin))
    cases.append(("pareto_1.5_n2000", (1 - rng.random(2000)) ** (-1 / 1.5), 1.0))
    x = np.exp(rng.normal(0.5, 1.0, 2000))
    cases.append(("lognormal_n2000", x, float(np.quantile(x, 0.3))))
    cases.append(("exponential_n2000", 1 + rng.exponential(1.0, 2000), 1.0))
    return cases


def main() -> int:
    import powerlaw

    rows = []
    for name, x, xmin in _cases():
        t0 = time.process_time()
        law = compare_laws(x, xmin=xmin)
        ours = time.process_time() - t0
        t0 = time.process_time()
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            fit = powerlaw.Fit(x, xmin=xmin, parameter_ranges={"alpha": [1, 20]}, verbose=0)
            ref = {a: fit.distribution_compare("power_law", a) for a in ALTERNATIVES}
        theirs = time.process_time() - t0
        rows.append({"case": name, "n_tail": law.n_tail, "ours_s": ours, "powerlaw_s": theirs,
                     "speedup": theirs / ours, "verdict": law.verdict,
                     "R": law.R, "R_powerlaw": {a: float(r[0]) for a, r in ref.items()},
                     "same_signs": all(np.sign(law.R[a]) == np.sign(ref[a][0]) for a in ALTERNATIVES)})
        print(f"{name}: n_tail {law.n_tail}, ours {ours:.3f} s, powerlaw {theirs:.3f} s "
              f"({theirs / ours:.2f}×), {law.verdict}", flush=True)
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "powerlaw": getattr(powerlaw, "__version__", "?"),
                          "note": "shared 2-core box; CPU time (user + sys), single-threaded"},
              "cases": rows}
    OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
