"""Figure 1: how long ``import ideochar`` takes, against the floor of its own dependencies and ``fal_client``.

Each sample is a fresh interpreter that times one import statement with ``perf_counter`` (interpreter
start-up, the same for all, is left out). Variants alternate in a shuffled order every round. Bytecode
is compiled beforehand (``run.py`` does it), as it is for an installed package.

The floor is what ideochar cannot avoid: importing httpx, pydantic and pluggy and defining one model.
"import + first request" shows the cost that pydantic's deferred model building moves from the import
to the first ``CharacterRequest``, so that it is not hidden.
"""

from __future__ import annotations

import subprocess
import sys

from _support import PLOTS, ROOT, alternate, log, ms, reps, summary, write_result

_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"  # 1x1 PNG

VARIANTS: dict[str, str] = {
    "floor": "import httpx, pydantic, pluggy\nclass M(pydantic.BaseModel):\n    a: int\nM(a=1)",
    "ideochar": "import ideochar",
    "fal_client": "import fal_client",
    "ideochar + first request": (
        "import base64, ideochar\n"
        f"ideochar.CharacterRequest(prompt='x', reference=base64.b64decode('{_PNG}'), aspect_ratio='16:9')"
    ),
}

_TEMPLATE = """\
import time
_t = time.perf_counter()
{code}
print(time.perf_counter() - _t)
"""


def _sample(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _TEMPLATE.format(code=code)], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return float(out.strip().splitlines()[-1])


def _importtime_profile(module: str) -> str:
    """``python -X importtime -c 'import MODULE'``, the 30 largest cumulative entries."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True, check=True
    ).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        _, self_us, cumulative, name = (part.strip() for part in line.replace("import time:", "|").split("|"))
        rows.append((int(cumulative), int(self_us), name))
    rows.sort(reverse=True)
    lines = [f"{'cumulative us':>14} {'self us':>9}  module", *(f"{c:>14} {s:>9}  {n}" for c, s, n in rows[:30])]
    return "\n".join(lines) + "\n"


def main() -> None:
    rounds = reps(40, 5)
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(2):  # warm the page cache and the bytecode
        for code in VARIANTS.values():
            _sample(code)
    for _, name in alternate(list(VARIANTS), rounds):
        samples[name].append(ms(_sample(VARIANTS[name])))
    log("import: " + ", ".join(f"{n} {summary(v)['median']:.1f} ms" for n, v in samples.items()))
    PLOTS.mkdir(parents=True, exist_ok=True)
    (PLOTS / "import-profile.txt").write_text(
        "# python -X importtime -c 'import ideochar' (one run; cumulative and self microseconds)\n"
        + _importtime_profile("ideochar")
    )
    floor = summary(samples["floor"])["median"]
    write_result(
        "import",
        {
            "unit": "ms",
            "samples": samples,
            "summary": {name: summary(values) for name, values in samples.items()},
            "ratios_to_floor": {name: summary(values)["median"] / floor for name, values in samples.items()},
            "ratio_to_fal_client": summary(samples["ideochar"])["median"] / summary(samples["fal_client"])["median"],
            "target": {"ideochar / floor": 1.2},
            "variants": VARIANTS,
        },
    )


if __name__ == "__main__":
    main()
