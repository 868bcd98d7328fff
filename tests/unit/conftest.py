"""Hypothesis profiles for the property-based tests.

`default` keeps hypothesis' own behaviour (each test sets its example count; see
QBSYNC_HYPOTHESIS_EXAMPLES). `no-shrink` reports the first failing example at once instead of spending
minutes minimising it: handy when checking that a deliberately broken core is caught
(`HYPOTHESIS_PROFILE=no-shrink pytest tests/unit`).
"""

from __future__ import annotations

import os

from hypothesis import Phase, settings

settings.register_profile("default", settings())
settings.register_profile("no-shrink", phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
