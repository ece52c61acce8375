"""Run ``python -m monai.bundle <args>`` and kill the process with SIGKILL at one chosen moment of a save.

Used by test_crash_safety.py to interrupt a real training where a crash hurts most. The moment is the
first argument:

* ``inside:<name>[#<n>]``: during the ``n``-th (default first) write of a checkpoint file whose name contains
  ``<name>`` (half of its bytes are on disk, in the saver's temporary file);
* ``before-removal:<name>``: after the new checkpoint is complete, just before the file whose name contains
  ``<name>`` is deleted.

Usage: ``python crash_training.py inside:checkpoint_epoch=2 run training --config_file ...``.
"""

from __future__ import annotations

import io
import os
import runpy
import signal
import sys
from pathlib import Path

import torch


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _crash_inside(target: str) -> None:
    name, _, count = target.partition("#")
    remaining = [int(count or 1)]
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if name in str(getattr(f, "name", f)):
            remaining[0] -= 1
        if remaining[0] == 0:
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            _kill()
        return real_save(obj, f, *args, **kwargs)

    torch.save = save


def _crash_before_removal(name: str) -> None:
    real_unlink = Path.unlink

    def unlink(self, *args, **kwargs):
        if name in self.name and not self.name.startswith("."):
            _kill()
        return real_unlink(self, *args, **kwargs)

    Path.unlink = unlink


def main() -> None:
    moment, target = sys.argv[1].split(":", 1)
    {"inside": _crash_inside, "before-removal": _crash_before_removal}[moment](target)
    sys.argv = ["monai.bundle", *sys.argv[2:]]
    runpy.run_module("monai.bundle", run_name="__main__")


if __name__ == "__main__":
    main()
