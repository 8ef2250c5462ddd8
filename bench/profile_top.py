"""Summarise py-spy collapsed stacks: ``python -m bench.profile_top FILE [--top 25] [--match STR]``.

Prints the functions with the most samples on-CPU, by self time and by total
(inclusive) time, as a share of all samples: where the operator spends its CPU.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

IDLE = {
    "EpollSelector.select (selectors.py)",
    "_worker (futures/thread.py)",
    "select (selectors.py)",
}
"""Leaf frames of a thread that waits: the event loop in epoll, a pool worker on its queue."""


def load(path: Path) -> list[tuple[list[str], int]]:
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def frame_name(frame: str) -> str:
    """'func (path/to/module.py:123)' -> 'func (module.py)'."""
    name, _, where = frame.partition(" (")
    file = where.split(":", 1)[0].rsplit("/", 2)
    return f"{name} ({'/'.join(file[-2:])})"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--match", default="", help="only stacks containing this text")
    p.add_argument(
        "--all",
        action="store_true",
        help="keep samples of threads waiting (epoll, idle pool workers); default drops them",
    )
    args = p.parse_args()
    stacks = [(s, n) for s, n in load(args.file) if args.match in ";".join(s)]
    everything = sum(n for _, n in stacks) or 1
    if not args.all:
        stacks = [(s, n) for s, n in stacks if frame_name(s[-1]) not in IDLE]
    total = sum(n for _, n in stacks) or 1
    print(f"{everything} samples, {total} busy ({100 * total / everything:.0f}%)")
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for stack, n in stacks:
        names = [frame_name(f) for f in stack]
        own[names[-1]] += n
        for name in set(names):
            incl[name] += n
    for title, counter in (("self", own), ("inclusive", incl)):
        print(f"\n-- top {args.top} by {title} time")
        for name, n in counter.most_common(args.top):
            print(f"{100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
