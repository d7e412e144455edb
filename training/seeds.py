"""Each training's seed: from SEED, its combination and its rerun alone.

Never from the task it is packed into, the worker that trains it or
CPU_COUNT, so results do not depend on them, and a grown sweep's trainings
equal a fresh run's. The workers derive it (a few microseconds a training,
which on a big grid of tiny trainings was a sixteenth of the main
process's work); evaluate.py --predict derives the winner's. Numpy only:
the main process imports it without torch.
"""
from __future__ import annotations

import numpy as np


def training_seed(seed: int, combination: str, rerun: int) -> int:
    """Seed of one training: depends on SEED, the combination and the rerun number only."""
    state = np.random.SeedSequence([seed, int(combination, 16), rerun]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1  # 63 bits: any torch.Generator accepts it
