"""``python -m tidal.cli``: the ``tidal`` command."""

from . import main

main(prog_name="tidal")
