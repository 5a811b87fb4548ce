"""Installing what the tests need with apt, when it is missing."""

from __future__ import annotations

import os
import shutil
import subprocess


def apt_install(script: str, what: str, error: type[Exception], *, no_apt: str) -> None:
    """Run the shell ``script`` (``apt-get update && apt-get install …``) as
    root, through ``sudo -n`` when not root. Raises ``error`` with ``no_apt``
    when there is no apt-get, and with apt's output (naming ``what``) when
    it fails."""
    if shutil.which("apt-get") is None:
        raise error(no_apt)
    cmd = ["sh", "-c", script]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise error(f"{what} is missing; installing it needs root, and sudo is not available")
        cmd = ["sudo", "-n", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise error(
            f"installing {what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
        )
