"""Resumable steps: each one skips itself when its outputs exist with the same options.

A step has options (everything its outputs depend on), outputs, and a function that builds them. Two
:class:`~speechbrain_lmaczs.files.BuildStamp` files under ``<output_folder>/steps/`` record it:

- ``<name>.started.json``: the options the step was last started with. A step started again with the same options
  continues where it stopped (the recipes resume their own work: training checkpoints, finished evaluation pairs).
- ``<name>.json``: written after the step has finished; while it matches the options and the outputs exist, the
  step is skipped.

A step that owns a folder of expensive work (training, evaluation) and finds it built with other options moves it
aside to ``<folder>.replaced-<time>`` before starting again: nothing is mixed, and nothing is deleted.

>>> import tempfile, pathlib
>>> out = tempfile.TemporaryDirectory()
>>> built = []
>>> step = Step("demo", "write a file", {"n": 1}, lambda: built.append(1), outputs=())
>>> runner = StepRunner(out.name)
>>> runner.status(step)
'to run'
>>> runner.run(step), runner.run(step), built
(True, False, [1])
>>> runner.status(Step("demo", "write a file", {"n": 2}, None))
'to run again (options changed)'
>>> out.cleanup()
"""

import dataclasses
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from speechbrain_lmaczs.files import BuildStamp

logger = logging.getLogger(__name__)


class StepFailed(RuntimeError):
    """A step's command failed; the message names the step and its log."""


@dataclasses.dataclass
class Step:
    """One step of the reproduction.

    Parameters
    ----------
    name : str
        Short unique name (also the stamp's and the log's file name).
    description : str
        What it does, for the plan.
    options : dict
        Everything its outputs depend on (JSON-serialisable).
    run : callable
        No-argument function that builds the outputs (may be called again after an interruption).
    outputs : sequence of path
        Files or folders that must exist for the step to count as done.
    folder : path, optional
        A folder the step owns: moved aside when it holds work done with other options.
    estimate_s : float, optional
        Estimated GPU seconds (None: not a GPU step).
    note : str
        Shown in the plan (e.g. what the estimate is based on, or a download size).
    """

    name: str
    description: str
    options: dict
    run: object
    outputs: tuple = ()
    folder: object = None
    estimate_s: float = None
    note: str = ""


class StepRunner:
    """Runs steps with their stamps under ``<output_folder>/steps``."""

    def __init__(self, output_folder):
        self.stamps = Path(output_folder) / "steps"

    def _stamps(self, step):
        return BuildStamp(self.stamps / f"{step.name}.json"), BuildStamp(self.stamps / f"{step.name}.started.json")

    def status(self, step):
        """``done``, ``to resume`` (started with the same options), ``to run again (options changed)`` or ``to run``."""
        done, started = self._stamps(step)
        if done.matches(step.options, *step.outputs):
            return "done"
        if started.matches(step.options):
            return "to resume"
        if started.read() is not None or done.read() is not None:
            return "to run again (options changed)"
        return "to run"

    def run(self, step):
        """Run ``step`` unless it is done; returns True when it ran."""
        done, started = self._stamps(step)
        if done.matches(step.options, *step.outputs):
            logger.info("[%s] done with the same options: skipped.", step.name)
            return False
        resuming = started.matches(step.options)
        if not resuming and step.folder is not None:
            _move_aside(Path(step.folder))
        done.clear()
        self.stamps.mkdir(parents=True, exist_ok=True)
        started.write(step.options)
        logger.info("[%s] %s: %s", step.name, "resuming" if resuming else "starting", step.description)
        start = time.monotonic()
        step.run()
        missing = [str(path) for path in step.outputs if not Path(path).exists()]
        if missing:
            raise StepFailed(f"Step {step.name} finished without writing {', '.join(missing)}.")
        done.write(step.options)
        logger.info("[%s] finished in %.0f s.", step.name, time.monotonic() - start)
        return True


def _move_aside(folder):
    """Rename a non-empty ``folder`` to ``<folder>.replaced-<time>`` (its work was done with other options)."""
    if folder.is_dir() and any(folder.iterdir()):
        target = folder.with_name(f"{folder.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        logger.warning("%s holds work done with other options: moved to %s.", folder, target)
        folder.rename(target)


def run_command(name, command, log_path, env=None, echo=True):
    """Run ``command``, appending its output to ``log_path`` (and echoing it to stderr); raise on failure.

    Parameters
    ----------
    name : str
        Step name, for the error message.
    command : list of str
        The command line.
    log_path : path
        Log file (appended: an interrupted and resumed step keeps both attempts' output).
    env : dict, optional
        Environment of the command.
    echo : bool
        Also copy the output to this process's stderr as it comes (progress bars included).
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("[%s] running: %s (log: %s)", name, " ".join(command), log_path)
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env) as proc:
            for chunk in iter(lambda: proc.stdout.read1(1 << 16), b""):
                log.write(chunk)
                if echo:
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.flush()
            status = proc.wait()
    if status != 0:
        raise StepFailed(f"Step {name} failed (exit status {status}): see {log_path}. Run again to resume.")


def child_environment():
    """The environment for the recipes' processes: this package's checkout first on PYTHONPATH."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
