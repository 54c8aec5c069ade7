"""Hypothesis profiles of the adversarial suite.

- ``ci`` (the default): a small, derandomized run, so that CI sees the same examples every time and a
  red run means a change in the service; no shrinking (a failure is reported as first found, with
  its request and answer), so that a red run costs no more time than a green one. The whole
  directory runs in about a minute on 2 cores.
- ``long``: selected by ``LOSS_SERVICE_FUZZ_EXAMPLES=N`` (examples per property), randomized, with
  hypothesis's example database in ``.hypothesis/`` so that a failure found once is replayed first:

      LOSS_SERVICE_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/adversarial -q -p no:cacheprovider

  ``--hypothesis-seed=S`` fixes the seed of a long run (to replay one); a failure prints the
  ``@reproduce_failure`` blob that replays it exactly.

Each property's own ``max_examples`` is a share of the profile's (``examples(weight)``), so the
cheap properties get more examples than the costly ones under either profile.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

_LONG = os.environ.get("LOSS_SERVICE_FUZZ_EXAMPLES")
_HEALTH = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    database=None,
    print_blob=True,
    suppress_health_check=_HEALTH,
)
settings.register_profile(
    "long",
    max_examples=int(_LONG or 1000),
    deadline=None,
    print_blob=True,
    suppress_health_check=_HEALTH,
)
settings.load_profile("long" if _LONG else "ci")


def examples(weight: float = 1.0) -> int:
    """``weight`` times the profile's example count (at least 5)."""
    return max(5, round(settings.default.max_examples * weight))
