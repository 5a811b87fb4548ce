"""``python -m tidal``: the ``tidal`` command."""

from .cli import main

main(prog_name="tidal")
