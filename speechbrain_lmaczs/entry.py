"""What the recipes' ``train.py`` and ``eval.py`` do before their work, and how they end on a user's mistake.

:func:`run_script` runs a recipe's ``main(argv)``: an error the user caused (a bad option, missing data, a folder
that cannot be written, a missing CLAP) ends with one line ``<script>: error: ...`` on stderr and exit status 1; the
traceback is shown only with ``--verbose`` (and for real bugs). :func:`start_run` parses the command line as
SpeechBrain does, resolves the options that contradict the yaml the way the README says, checks the settings and
that the output folder can be written, all before the experiment directory is created, so that a refused run
leaves nothing behind. :func:`exit_script` ends the script with that status.
"""

import atexit
import dataclasses
import logging
import os
import sys

import yaml

from speechbrain_lmaczs.errors import ConfigError

logger = logging.getLogger(__name__)

#: the command-line flag that shows tracebacks (removed before SpeechBrain reads the arguments)
VERBOSE = "--verbose"


def expected_errors():
    """The exception classes a user's input causes (each carries a message that says what to do)."""
    from speechbrain_lmaczs.clap import CLAPLoadError
    from speechbrain_lmaczs.data import DataPrepError
    from speechbrain_lmaczs.files import NotWritableError
    from speechbrain_lmaczs.recording import ExplainError

    return (ConfigError, DataPrepError, CLAPLoadError, ExplainError, NotWritableError, FileNotFoundError)


def run_script(main, argv=None, prog=None):
    """Run ``main(argv)``; returns the exit status (0, or 1 after one stderr line for a user's error).

    Parameters
    ----------
    main : callable
        The script's work, given the arguments without ``--verbose``.
    argv : list of str, optional
        Default: ``sys.argv[1:]``.
    prog : str, optional
        Name in the error line; default: the script's file name.

    Returns
    -------
    int

    >>> def main(argv):
    ...     raise ConfigError(f"bad option {argv[0]}")
    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     status = run_script(main, ["--x=1"], prog="train.py")
    >>> status, err.getvalue()
    (1, 'train.py: error: bad option --x=1\\n')
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or os.path.basename(sys.argv[0])
    verbose = VERBOSE in argv
    argv = [arg for arg in argv if arg != VERBOSE]
    try:
        main(argv)
    except expected_errors() as err:
        if verbose:
            raise
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0


def exit_script(status):
    """End the script with exit ``status``, as ``sys.exit`` does; a torchrun worker skips the interpreter's teardown.

    In a process that joined a process group, gloo's worker threads may still be releasing the tensors of the last
    collectives (a checkpoint's broadcast, a gather of metrics) when the main thread returns. Once the interpreter
    is finalizing, CPython ends any thread that asks for the GIL (``pthread_exit``); the unwind through PyTorch's
    destructor aborts the process ("terminate called without an active exception", SIGABRT), and torchrun reports
    a job that finished all its work as failed (seen with torch 2.11 and Python 3.11, in 3 of 4 restarted runs of
    ``tests/test_distributed.py``'s resume test). Such a worker here runs the exit handlers (logging's flush and
    close among them) and flushes its streams while the interpreter is whole, then leaves with ``os._exit``: its
    work is written by then, and its threads end with the process instead of being unwound.
    """
    from speechbrain.utils.distributed import is_distributed_initialized

    if is_distributed_initialized():
        atexit._run_exitfuncs()  # what the interpreter would run at exit, run before os._exit
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(status)
    sys.exit(status)


def _one_line(err):
    return " ".join(str(err).split())


def _overrides_dict(overrides):
    loaded = yaml.safe_load(overrides) if isinstance(overrides, str) else overrides
    return dict(loaded or {})


def resolve_run_options(run_opts):
    """``--ckpt_interval_steps`` given alone wins over the yaml's ``ckpt_interval_minutes`` (as the README says).

    SpeechBrain refuses both at once; the yaml's minutes are a default, so a steps option on the command line
    switches them off. Both on the command line (each > 0) is refused here, before anything is created.
    """
    given = run_opts.overridden_args
    if "ckpt_interval_steps" in given and run_opts["ckpt_interval_steps"] > 0:
        if "ckpt_interval_minutes" in given and run_opts["ckpt_interval_minutes"] > 0:
            raise ConfigError(
                "--ckpt_interval_steps and --ckpt_interval_minutes are mutually exclusive: give one of them."
            )
        return dataclasses.replace(
            run_opts, ckpt_interval_minutes=0, overridden_args=set(given) | {"ckpt_interval_minutes"}
        )
    return run_opts


def read_settings(hparams_file, overrides):
    """The yaml's plain settings with the overrides, references resolved and no object built (tags read as None).

    Used to check options and folders before loading a CLAP or creating anything.
    """
    from hyperpyyaml import resolve_references

    from speechbrain_lmaczs.explaining import read_plain_yaml

    with open(hparams_file, encoding="utf-8") as fin:
        resolved = resolve_references(fin, overrides)
    return read_plain_yaml(resolved)


def start_run(argv, check=None):
    """Parse a recipe's command line, check it and load the yaml; the script then creates the experiment directory.

    In this order: SpeechBrain's argument parsing; :func:`resolve_run_options`; a local ``--clap_source`` made
    absolute (so the run's yaml names it from any working directory; a hub id stays one); ``check(settings)`` on
    the plain settings; the output folder tried for writing (and left as it was); under torchrun, the process
    group started; then the yaml loaded (objects built), by the main process first. The script itself calls
    ``sb.create_experiment_directory`` (SpeechBrain copies the calling script into the run).

    Parameters
    ----------
    argv : list of str
        ``hparams.yaml`` then SpeechBrain's options and yaml overrides.
    check : callable, optional
        Called with the plain settings (dict) before anything is built or created; raises on a bad setting.

    Returns
    -------
    tuple
        ``(hparams_file, run_opts, overrides, hparams)``.
    """
    import speechbrain as sb
    from speechbrain.utils.distributed import if_main_process

    from speechbrain_lmaczs.distributed import load_hparams_main_first, start_processes
    from speechbrain_lmaczs.files import check_writable_folder
    from speechbrain_lmaczs.lmaczs.run_folder import absolute_local_source

    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    if not os.path.isfile(hparams_file):
        raise ConfigError(f"{hparams_file} does not exist: the first argument is the recipe's hparams yaml.")
    run_opts = resolve_run_options(run_opts)
    overrides = _overrides_dict(overrides)
    if "clap_source" in overrides:
        overrides["clap_source"] = absolute_local_source(overrides["clap_source"])
    try:
        settings = read_settings(hparams_file, overrides)
    except yaml.YAMLError as err:
        raise ConfigError(f"{hparams_file} or an override is not valid YAML: {' '.join(str(err).split())}") from err
    if check is not None:
        check(settings)
    if if_main_process():  # under torchrun, ranks trying the same folder at once would race
        check_writable_folder(settings["output_folder"], "--output_folder")
    # Under torchrun: one process group; the main process builds or downloads the CLAP, the others then load it.
    start_processes(run_opts)
    hparams = load_hparams_main_first(hparams_file, overrides)
    return hparams_file, run_opts, overrides, hparams
