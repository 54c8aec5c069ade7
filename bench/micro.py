"""The in-process cost of a small request's compute: run_group for one cross-entropy request
(N=8, C=10, float32) alone and for a group of 28 such requests, on one torch thread.

    .venv/bin/python bench/micro.py [TREE]

TREE (default: this checkout) is the root of a loss-service tree, e.g. a `git worktree` of an
older commit, so two versions compare on one machine in one sitting. Prints the best of 7 runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from service.codecs.tensors import Decoded
from service.engine.compute import run_group
from service.losses import default_registry
from service.losses.prepare import prepare


def best_us(fn, calls: int) -> float:
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - start) / calls * 1e6)
    return min(runs)


def main() -> None:
    torch.set_num_threads(1)
    registry = default_registry()
    rng = np.random.default_rng(0)
    tensors = {
        "input": Decoded(rng.standard_normal((8, 10)).astype(np.float32), None),
        "target": Decoded(rng.integers(0, 10, (8,)), None),
    }
    one = prepare(registry, "cross_entropy", {}, "mean", tensors, False, False)
    group = [prepare(registry, "cross_entropy", {}, "mean", tensors, False, False) for _ in range(28)]
    cpu = torch.device("cpu")
    alone = best_us(lambda: run_group([one], cpu), 2000)
    together = best_us(lambda: run_group(group, cpu), 300)
    print(f"{sys.path[0]}: run_group alone {alone:.1f} us, a group of 28 {together:.1f} us")


if __name__ == "__main__":
    main()
