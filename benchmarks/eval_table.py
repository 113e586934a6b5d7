"""One markdown table from several ``evaluate.py --eval-set`` outputs: a row per group and method.

    python benchmarks/eval_table.py NAME=FILE.json [NAME=FILE.json ...]
"""

import json
import sys

CLICKS = ("1", "3", "5", "10", "20")


def table(runs: dict) -> str:
    groups = []
    for result in runs.values():
        groups += [g for g in result["groups"] if g not in groups]
    lines = ["| group | method | n | " + " | ".join(f"Dice@{k}" for k in CLICKS) + " | NoC@85 | NoC@90 | NoF@90 |",
             "|---|---|---|" + "---|" * (len(CLICKS) + 3)]
    for group in groups:
        for name, result in runs.items():
            s = result["groups"].get(group)
            if not s:
                continue
            dice = " | ".join(f"{s['dice_at'][k]:.3f}" for k in CLICKS)
            lines.append(f"| {group} | {name} | {s['n_samples']} | {dice} | {s['noc85']:.2f} | {s['noc90']:.2f} | {s['nof90']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or not all("=" in a for a in args):
        print(__doc__, file=sys.stderr)
        return 2
    runs = {}
    for arg in args:
        name, path = arg.split("=", 1)
        with open(path) as f:
            runs[name] = json.load(f)
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
