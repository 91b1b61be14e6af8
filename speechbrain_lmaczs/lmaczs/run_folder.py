"""A training run's ``hyperparams.yaml`` read back wherever the run folder now is.

SpeechBrain saves the yaml of a run with every ``!ref`` resolved, so the paths inside it (``save/``, ``clap/``,
``manifests/`` ...) are spelled as they were typed at training time: relative to the working directory of that
day, or absolute at the old place. :func:`run_yaml_text` rewrites every value under the recorded ``output_folder``
to the same place under the folder the run is read from, and :func:`check_clap_source` refuses a CLAP that is not
there (instead of building a new random one, or a ``save/`` folder, at the old place).

>>> import tempfile
>>> run = tempfile.TemporaryDirectory()
>>> _ = open(f"{run.name}/hyperparams.yaml", "w").write(
...     "output_folder: old/run\\nsave_folder: old/run/save\\n"
...     "clap: !apply:speechbrain_lmaczs.clap.load_clap\\n  backend: msclap\\n  source: tiny-random\\n"
...     "  savedir: old/run/clap\\n")
>>> text = run_yaml_text(run.name)
>>> f"save_folder: {run.name}/save" in text, f"savedir: {run.name}/clap" in text
(True, True)
>>> check_clap_source(run.name)
Traceback (most recent call last):
...
FileNotFoundError: The run's tiny-random CLAP is missing (no .../clap/clap_config.json): ...
>>> run.cleanup()
"""

import io
import os
import re

from ruamel.yaml import YAML

#: tag of the yaml nodes that load a CLAP (their ``backend`` / ``source`` / ``savedir`` are the run's CLAP)
CLAP_TAG = "!apply:speechbrain_lmaczs.clap.load_clap"
#: the top-level keys of the recipes' yamls that name the CLAP (overridden by eval.py's / explain's options)
CLAP_KEYS = {"clap_backend": "backend", "clap_source": "source"}
#: what a Hugging Face hub id looks like (``owner/name``); anything else that does not exist is a missing path
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class NotARunError(FileNotFoundError):
    """A folder given as a training run that is not one (or no longer holds its parts)."""


def check_run_folder(folder, option="--checkpoint"):
    """Refuse a folder that is not a ``train.py`` output folder, with one line naming what it lacks.

    >>> import tempfile
    >>> empty = tempfile.TemporaryDirectory()
    >>> check_run_folder(empty.name)
    Traceback (most recent call last):
    ...
    speechbrain_lmaczs.lmaczs.run_folder.NotARunError: --checkpoint ... is not a training output folder (no \
hyperparams.yaml): pass the --output_folder of train.py.
    >>> empty.cleanup()
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise NotARunError(f"{option} {folder} does not exist: pass the --output_folder of train.py.")
    if not os.path.isfile(os.path.join(folder, "hyperparams.yaml")):
        raise NotARunError(
            f"{option} {folder} is not a training output folder (no hyperparams.yaml): pass the --output_folder "
            "of train.py."
        )


def _yaml():
    yaml = YAML()
    yaml.width = 4096  # long paths stay on one line
    return yaml


def _relocate(value, recorded, folder):
    """``value`` with the recorded output folder prefix replaced by ``folder`` (other values unchanged)."""
    if not isinstance(value, str) or not recorded:
        return value
    recorded = recorded.rstrip("/")
    if value == recorded:
        return folder
    if value.startswith(recorded + "/"):
        return os.path.join(folder, value[len(recorded) + 1 :])
    return value


def _walk(node, recorded, folder, clap_overrides):
    """Relocate every string under ``node`` in place; set the CLAP overrides on the CLAP nodes."""
    items = node.items() if hasattr(node, "items") else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        if isinstance(value, (dict, list)):
            _walk(value, recorded, folder, clap_overrides)
        else:
            node[key] = _relocate(value, recorded, folder)
    tag = getattr(getattr(node, "tag", None), "value", None)
    if tag == CLAP_TAG:
        for key, value in clap_overrides.items():
            node[CLAP_KEYS[key]] = value


def _load_tree(folder):
    with open(os.path.join(folder, "hyperparams.yaml"), encoding="utf-8") as fin:
        return _yaml().load(fin)


def run_yaml_text(folder, overrides=None):
    """The run's ``hyperparams.yaml`` with its paths moved to ``folder`` and the CLAP overrides applied.

    Parameters
    ----------
    folder : str
        The run folder, wherever it is now.
    overrides : dict, optional
        ``clap_backend`` / ``clap_source`` to use instead of the recorded ones (set on the top-level keys and on
        the CLAP-loading node, whose values the saved yaml holds resolved); other keys are left to the caller.

    Returns
    -------
    str
        YAML text for ``hyperpyyaml.load_hyperpyyaml``.
    """
    folder = os.path.abspath(folder)
    tree = _load_tree(folder)
    clap_overrides = {key: value for key, value in (overrides or {}).items() if key in CLAP_KEYS}
    recorded = tree.get("output_folder") if hasattr(tree, "get") else None
    _walk(tree, recorded if isinstance(recorded, str) else None, folder, clap_overrides)
    for key, value in clap_overrides.items():
        tree[key] = value
    tree["output_folder"] = folder
    out = io.StringIO()
    _yaml().dump(tree, out)
    return out.getvalue()


def _clap_nodes(node):
    if hasattr(node, "items"):
        if getattr(getattr(node, "tag", None), "value", None) == CLAP_TAG:
            yield node
        for value in node.values():
            yield from _clap_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _clap_nodes(value)


def check_clap_source(folder, overrides=None):
    """Refuse a run whose CLAP is not where its yaml (moved to ``folder``) says, before anything is built.

    A hub id stays a hub id (the backend's loader downloads it or reads the hub cache); a ``tiny-random`` CLAP must
    have been saved in the run (loading it must not build a new random one); a local checkpoint must exist.

    Raises
    ------
    FileNotFoundError
        Naming what is missing and how to pass another CLAP (``--clap_source``).
    """
    from speechbrain_lmaczs.clap import TINY_RANDOM

    tree = _yaml().load(run_yaml_text(folder, overrides))
    for node in _clap_nodes(tree):
        source, savedir = node.get("source"), node.get("savedir")
        if source == TINY_RANDOM:
            config = os.path.join(str(savedir), "clap_config.json")
            if savedir is None or not os.path.isfile(config):
                raise FileNotFoundError(
                    f"The run's tiny-random CLAP is missing (no {config}): copy the run folder with its clap/ "
                    "folder, or pass the CLAP it was trained with as --clap_source."
                )
        elif isinstance(source, str) and not os.path.exists(source) and not HUB_ID.match(source):
            raise FileNotFoundError(
                f"The run's CLAP checkpoint {source} does not exist (not a hub id either): pass its new place as "
                "--clap_source."
            )


def absolute_local_source(source):
    """``source`` made absolute when it is a local file or folder, else unchanged (a hub id, ``tiny-random``).

    Recorded in a run's yaml, an absolute path still names the same checkpoint from any working directory.

    >>> absolute_local_source("microsoft/msclap"), absolute_local_source("tiny-random")
    ('microsoft/msclap', 'tiny-random')
    >>> absolute_local_source(".") == os.getcwd()
    True
    """
    if isinstance(source, str) and source and os.path.exists(source):
        return os.path.abspath(source)
    return source
