"""What the end-to-end test runs `tidal serve` on."""

from sample import define

import tidal

define(tidal.default_app())
