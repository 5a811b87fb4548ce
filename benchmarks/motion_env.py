"""A separate virtualenv holding Motion (PyPI ``motion-python``), for the
side-by-side benchmarks in :mod:`benchmarks.motion_compare`.

    python -m benchmarks.motion_env [--recreate]

creates ``benchmarks/.motion-venv/`` (ignored by git) with the same Python
interpreter that runs this module (3.11 for the project) if it is missing or
broken, and prints what it holds. Nothing from Motion is part of the
repository; Motion is installed from PyPI with pip.

What Motion 0.1.132 needs beyond its declared dependencies:

* ``requests``: ``motion/execute.py`` and ``motion/server/update_task.py``
  import it at module level, but the package does not declare it, so
  ``pip install motion-python==0.1.132`` alone gives a package whose
  ``import motion`` fails with ``ModuleNotFoundError: No module named
  'requests'``.
* ``numpy<2``: Motion's core does not import numpy; the benchmark's large
  state workload puts a numpy array in the state, so the venv needs numpy.
  It is held below 2 because Motion's ``table`` extra pins ``pyarrow<15``,
  which was built against numpy 1.x, so numpy 1.x is the numpy that Motion
  0.1.132 could be used with (the extra itself is not installed here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

MOTION_VERSION = "0.1.132"
REQUIREMENTS = (f"motion-python=={MOTION_VERSION}", "requests", "numpy<2")
"""What ``pip install`` gets in the Motion venv (see the module docstring for why each)."""

VENV = Path(__file__).resolve().parent / ".motion-venv"
"""Where the Motion venv lives (listed in ``.gitignore``)."""

_PROBE = """
import json, sys
from importlib import metadata
import motion, numpy, redis, cloudpickle
names = ("motion-python", "requests", "numpy", "redis", "cloudpickle", "pydantic")
print(json.dumps({
    "python": sys.version.split()[0],
    "packages": {n: metadata.version(n) for n in names},
}))
"""


class MotionEnvError(RuntimeError):
    """The Motion venv could not be created or does not work."""


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def base_python() -> str:
    """The interpreter the Motion venv is made from: the one behind this
    process (its base interpreter when this runs inside a venv)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def probe(venv: Path = VENV) -> dict[str, object] | None:
    """Versions of Python and of the packages in the Motion venv, or None if
    the venv is missing or ``import motion`` fails there."""
    python = venv_python(venv)
    if not python.is_file():
        return None
    proc = subprocess.run(
        [str(python), "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False, env=_clean_env()
    )
    if proc.returncode != 0:
        return None
    info: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return info


def _clean_env() -> dict[str, str]:
    """This process's environment without what would make the Motion venv's
    interpreter see this project's packages."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


def _run(cmd: Sequence[str], what: str) -> None:
    print(f"motion_env: {what}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=1800, check=False, env=_clean_env())
    if proc.returncode != 0:
        raise MotionEnvError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-5000:]}")


def ensure(venv: Path = VENV, *, recreate: bool = False) -> dict[str, object]:
    """Make sure the Motion venv exists and imports Motion; returns :func:`probe`'s answer."""
    if not recreate:
        info = probe(venv)
        if info is not None and info["packages"].get("motion-python") == MOTION_VERSION:  # type: ignore[attr-defined]
            return info
    if venv.exists():
        shutil.rmtree(venv)
    _run([base_python(), "-m", "venv", str(venv)], "create the Motion venv")
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, *REQUIREMENTS], "install Motion")
    info = probe(venv)
    if info is None:
        proc = subprocess.run(
            [str(venv_python(venv)), "-c", "import motion"], capture_output=True, text=True, check=False
        )
        raise MotionEnvError(f"Motion was installed in {venv} but does not import:\n{proc.stderr[-4000:]}")
    return info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.motion_env", description="Create the virtualenv holding Motion for the benchmarks."
    )
    parser.add_argument("--recreate", action="store_true", help="delete and make it again")
    args = parser.parse_args(argv)
    info = ensure(recreate=args.recreate)
    print(f"Motion venv: {VENV}")
    print(f"  python {info['python']} ({venv_python()})")
    for name, version in info["packages"].items():  # type: ignore[attr-defined]
        print(f"  {name} {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
