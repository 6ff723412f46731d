"""Seeds as people give them (nvg_core.seeds): -1 or None for a random one, consecutive seeds, range checks."""

import pytest

from nvg_core.seeds import MAX_SEED, resolve_seed, seeds_for


def test_a_given_seed_is_kept_and_none_or_minus_one_draws_a_short_random_one():
    assert resolve_seed(0) == 0 and resolve_seed(MAX_SEED) == 2**63 - 1
    drawn = {resolve_seed(None) for _ in range(20)} | {resolve_seed(-1) for _ in range(20)}
    assert all(0 <= s < 2**31 for s in drawn) and len(drawn) > 30


@pytest.mark.parametrize("seed, message", [(-5, "seed must be between 0 and 9223372036854775807"),
                                           (2**63, "seed must be between 0 and"), (1.5, "whole number"),
                                           (True, "whole number"), ("7", "whole number")])
def test_bad_seeds_are_refused_with_the_reason(seed, message):
    with pytest.raises(ValueError, match=message):
        resolve_seed(seed)


def test_seeds_for_gives_consecutive_seeds_that_stop_at_the_largest():
    assert seeds_for(5, 3) == [5, 6, 7]
    assert seeds_for(MAX_SEED, 1) == [MAX_SEED]
    first, second = seeds_for(-1, 2)
    assert second == first + 1
    with pytest.raises(ValueError, match=r"seeds 9223372036854775806\.\.9223372036854775808 go past the largest seed"):
        seeds_for(MAX_SEED - 1, 3)
    with pytest.raises(ValueError, match="at least 1"):
        seeds_for(0, 0)
