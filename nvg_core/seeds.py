"""Seeds as people give them: a seed (with the class and the settings) names an image, -1 asks for a random one.

A request for several images gets consecutive seeds, so each image can be made again alone (the pipeline
gives every image its own generator: NVGPipeline.generators). The app and `nvg generate` both use these.
"""

from __future__ import annotations

import numbers
import random

MAX_SEED = 2**63 - 1  # the largest seed: a signed 64-bit integer, kept exactly by JSON clients and numpy
RANDOM_SEED = -1  # asks for a random seed


def resolve_seed(seed: int | None) -> int:
    """`seed` itself (0..MAX_SEED), or a fresh random one for None or RANDOM_SEED (below 2^31: short to
    read back and type in again)."""
    if seed is None or (not isinstance(seed, bool) and seed == RANDOM_SEED):
        return random.randrange(2**31)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be a whole number, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED} ({RANDOM_SEED}: a random one), got {seed}")
    return int(seed)


def seeds_for(seed: int | None, count: int) -> list[int]:
    """`count` consecutive seeds from `seed` (a random start for None or RANDOM_SEED), none past MAX_SEED."""
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise ValueError(f"the number of seeds must be a whole number of at least 1, got {count!r}")
    first = resolve_seed(seed)
    if first + count - 1 > MAX_SEED:
        raise ValueError(f"seeds {first}..{first + count - 1} go past the largest seed {MAX_SEED}")
    return list(range(first, first + int(count)))
