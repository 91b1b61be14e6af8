"""``lmaczs export``: a trained run as a folder ready for the Hugging Face hub, loadable with ``from_hparams``.

:func:`export_run` turns a ``train.py`` output folder into::

    OUT/hyperparams.yaml   inference hyperparameters: the CLAP, the masking domain, the decoder, a Pretrainer
    OUT/decoder.ckpt       the best decoder checkpoint (lowest validation loss), byte for byte
    OUT/config.json        "speechbrain_interface": "LMACZSExplainer", the label set, the prompt template, the CLAP
    OUT/README.md          a model card generated from the run (:mod:`speechbrain_lmaczs.model_card`)
    OUT/clap/...           the CLAP's own files, only with include_clap=True (otherwise the yaml names its hub id
                           or local path)

which :meth:`speechbrain_lmaczs.inference.LMACZSExplainer.from_hparams` loads from the folder itself or, once
uploaded, from its hub id. The decoder and masking domain are taken from the run's own (resolved)
``hyperparams.yaml``, so any decoder or domain settings the run used are reproduced without a list of keys here.
"""

import copy
import io
import logging
import os
import pydoc
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import ruamel.yaml
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from speechbrain.utils.checkpoints import CKPT_PREFIX

from speechbrain_lmaczs.clap import TINY_RANDOM, CLAPLoadError
from speechbrain_lmaczs.classifier import DEFAULT_TEMPLATE
from speechbrain_lmaczs.data import DataPrepError
from speechbrain_lmaczs.explain import ExplainError, run_labels
from speechbrain_lmaczs.files import write_json_atomic, write_text_atomic
from speechbrain_lmaczs.inference import CLAP_FOLDER, CONFIG_FILE, DECODER_FILE, LMACZSExplainer, check_run_folder
from speechbrain_lmaczs.lmaczs.checkpoints import checkpoint_problem
from speechbrain_lmaczs.model_card import TRAIN_LOG, model_card, parse_train_log

logger = logging.getLogger(__name__)

#: the interface an exported folder names in its config.json
INTERFACE = LMACZSExplainer.__name__
#: licence of an exported model when none is given (a hub model card value meaning "not stated")
DEFAULT_LICENSE = "unknown"


def complete_checkpoints(save_folder):
    """The checkpoint folders of ``save_folder`` that hold a readable decoder (none is renamed or changed)."""
    folder = Path(save_folder)
    if not folder.is_dir():
        return []
    candidates = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith(CKPT_PREFIX))
    return [p for p in candidates if checkpoint_problem(p, ["decoder"]) is None]


def check_exportable(run_folder):
    """The settings of a run folder that holds everything an export needs.

    Raises
    ------
    ExplainError
        Naming the first missing part (hyperparams.yaml, train_log.txt, a complete checkpoint, the label set).
    """
    settings = check_run_folder(run_folder)
    if not os.path.isfile(os.path.join(run_folder, TRAIN_LOG)):
        raise ExplainError(f"{run_folder} is incomplete: no {TRAIN_LOG} (has train.py finished an epoch?).")
    if not complete_checkpoints(os.path.join(run_folder, "save")):
        raise ExplainError(
            f"{run_folder} is incomplete: no complete checkpoint under save/ (has train.py finished an epoch?)."
        )
    return settings


def _plain_copy(node, memo):
    """A comment-free copy of a round-trip YAML node, keeping tags and shared (aliased) nodes shared."""
    if id(node) in memo:
        return memo[id(node)]
    if isinstance(node, CommentedMap):
        out = CommentedMap()
        memo[id(node)] = out
        for key, value in node.items():
            out[key] = _plain_copy(value, memo)
    elif isinstance(node, CommentedSeq):
        out = CommentedSeq()
        memo[id(node)] = out
        out.extend(_plain_copy(value, memo) for value in node)
    elif isinstance(node, TaggedScalar):
        return TaggedScalar(node.value, tag=node.tag.value)
    else:
        return copy.copy(node)
    if node.tag.value is not None:
        out.yaml_set_ctag(node.tag)
    return out


def _tagged(tag, mapping=None):
    node = CommentedMap(mapping or {})
    node.yaml_set_ctag(ruamel.yaml.tag.Tag(suffix=tag))
    return node


def inference_hparams(run_folder, labels, template, use_logit_scale, clap):
    """The text of the exported ``hyperparams.yaml``.

    The ``domain`` and ``decoder`` entries are the run's own (its saved yaml has every reference resolved, and
    their references to the CLAP stay references to the exported ``clap``).

    Parameters
    ----------
    run_folder : str
    labels : list of str
    template : str
    use_logit_scale : bool
    clap : dict
        ``{"backend": ..., "reference": ...}`` (a hub id or a path) or ``{"backend": ..., "files": [...]}`` (bundled
        in ``clap/``).

    Returns
    -------
    str
    """
    rt = ruamel.yaml.YAML()
    with open(os.path.join(run_folder, "hyperparams.yaml"), encoding="utf-8") as fin:
        run = rt.load(fin)
    memo = {}
    clap_node = _plain_copy(run["clap"], memo)
    # Rewrite the CLAP node in place: the domain and decoder point at it (aliases) for its attributes.
    clap_node.clear()
    if "files" in clap:
        clap_node.yaml_set_ctag(ruamel.yaml.tag.Tag(suffix="!apply:speechbrain_lmaczs.inference.fetch_clap"))
        clap_node.update(
            backend=clap["backend"],
            files=CommentedSeq(clap["files"]),
            source=TaggedScalar("<source>", tag="!ref"),
            savedir=TaggedScalar("<savedir>", tag="!ref"),
        )
    else:
        clap_node.yaml_set_ctag(ruamel.yaml.tag.Tag(suffix="!apply:speechbrain_lmaczs.clap.load_clap"))
        clap_node.update(backend=clap["backend"], source=clap["reference"])
    domain, decoder = _plain_copy(run["domain"], memo), _plain_copy(run["decoder"], memo)
    doc = CommentedMap()
    doc["source"] = TaggedScalar("", tag="!PLACEHOLDER")
    doc["savedir"] = None
    doc["labels"] = CommentedSeq(labels)
    doc["prompt_template"] = template
    doc["use_logit_scale"] = bool(use_logit_scale)
    doc["clap"] = clap_node
    doc["domain"] = domain
    doc["decoder"] = decoder
    doc["modules"] = CommentedMap(clap=clap_node, decoder=decoder)
    doc["pretrainer"] = _tagged(
        "!new:speechbrain.utils.parameter_transfer.Pretrainer",
        {
            "loadables": CommentedMap(decoder=decoder),
            "custom_hooks": CommentedMap(decoder=_tagged("!name:speechbrain_lmaczs.inference.load_state_dict_strict")),
        },
    )
    stream = io.StringIO()
    rt.dump(doc, stream)
    banner = (
        "# " + "#" * 76 + "\n"
        "# Inference hyperparameters of a trained LMAC-ZS explainer, written by `lmaczs export`.\n"
        f"# Load with: speechbrain_lmaczs.{INTERFACE}.from_hparams(source=<this folder or hub id>, savedir=...)\n"
        "# from_hparams sets `source` (the folder or hub id) and `savedir` (null: files are read in place).\n"
        "# The decoder weights are decoder.ckpt, loaded by the pretrainer below.\n"
        "# " + "#" * 76 + "\n\n"
    )
    return banner + stream.getvalue()


def _domain_class(run_folder):
    """The masking domain class the run used (from its yaml tag)."""
    rt = ruamel.yaml.YAML()
    with open(os.path.join(run_folder, "hyperparams.yaml"), encoding="utf-8") as fin:
        tag = rt.load(fin)["domain"].tag.value or ""
    cls = pydoc.locate(tag.partition(":")[2])
    if cls is None:
        raise ExplainError(f"{run_folder}: the masking domain {tag!r} of its hyperparams.yaml cannot be imported.")
    return cls


def _package_version():
    try:
        return version("speechbrain-lmaczs")
    except PackageNotFoundError:
        return "unknown"


def export_run(run_folder, out_folder, include_clap=False, license=DEFAULT_LICENSE, overwrite=False):
    """Write a trained run as a hub-ready model folder (see the module docstring for its files).

    Parameters
    ----------
    run_folder : str or path
        A ``train.py`` output folder with at least one complete checkpoint and its ``train_log.txt``.
    out_folder : str or path
        Where to write (created; it must be empty unless ``overwrite``).
    include_clap : bool
        Copy the CLAP's weights into ``out_folder/clap`` (a self-contained folder, e.g. for a small CLAP of your
        own); otherwise the yaml refers to the CLAP by its hub id or local path.
    license : str
        Licence of the exported decoder, as the hub's model card metadata writes it (e.g. ``apache-2.0``).
    overwrite : bool
        Replace the files of an earlier export in ``out_folder``.

    Returns
    -------
    str
        ``out_folder``.

    Raises
    ------
    ExplainError
        When the run folder is incomplete, or ``out_folder`` is not empty (without ``overwrite``).
    """
    from speechbrain_lmaczs.lmaczs.pretrained import load_trained

    run_folder, out_folder = os.path.abspath(run_folder), os.fspath(out_folder)
    settings = check_exportable(run_folder)
    try:
        labels = run_labels(run_folder)
    except DataPrepError as err:
        raise ExplainError(f"{run_folder} is incomplete: its label set cannot be read ({err}).") from err
    if os.path.exists(out_folder) and not os.path.isdir(out_folder):
        raise ExplainError(f"{out_folder} is a file: give a folder to export to.")
    if os.path.isdir(out_folder) and os.listdir(out_folder) and not overwrite:
        raise ExplainError(f"{out_folder} is not empty: choose another folder, or pass --overwrite.")
    log = parse_train_log(os.path.join(run_folder, TRAIN_LOG))
    try:
        model = load_trained(run_folder)
    except (FileNotFoundError, CLAPLoadError) as err:
        raise ExplainError(str(err)) from err

    os.makedirs(out_folder, exist_ok=True)
    shutil.copyfile(model.checkpoint.paramfiles["decoder"], os.path.join(out_folder, DECODER_FILE))
    clap = {"backend": settings["clap_backend"]}
    clap_out = os.path.join(out_folder, CLAP_FOLDER)
    if os.path.isdir(clap_out):
        shutil.rmtree(clap_out)  # only reached with overwrite: an earlier export's CLAP
    if include_clap:
        model.clap.save_pretrained(clap_out)
        clap["files"] = sorted(str(p.relative_to(clap_out)) for p in Path(clap_out).rglob("*") if p.is_file())
    else:
        clap["reference"] = clap_reference(run_folder, settings)
    template = settings.get("prompt_template") or DEFAULT_TEMPLATE
    domain = _domain_class(run_folder)
    write_text_atomic(
        os.path.join(out_folder, "hyperparams.yaml"),
        inference_hparams(run_folder, labels, template, model.use_logit_scale, clap),
    )
    config = {
        "speechbrain_interface": INTERFACE,
        "interface_module": "speechbrain_lmaczs",
        "labels": labels,
        "prompt_template": template,
        "clap": {
            "backend": clap["backend"],
            "bundled": include_clap,
            "reference": f"{CLAP_FOLDER}/" if include_clap else clap["reference"],
        },
        "masking_domain": domain.__name__,
        "checkpoint": {"name": os.path.basename(model.checkpoint.path), "meta": model.checkpoint.meta},
        "license": license,
        "exported_from": run_folder,
        "exported_with": f"speechbrain-lmaczs {_package_version()}",
    }
    write_json_atomic(os.path.join(out_folder, CONFIG_FILE), config, indent=2)
    write_text_atomic(os.path.join(out_folder, "README.md"), model_card(run_folder, settings, config, log, domain))
    logger.info("Exported %s to %s", run_folder, out_folder)
    return out_folder


def clap_reference(run_folder, settings):
    """How an export refers to the CLAP of a run: its hub id, or the absolute path of its local files."""
    source = settings.get("clap_source")
    if source == TINY_RANDOM:
        rt = ruamel.yaml.YAML()
        with open(os.path.join(run_folder, "hyperparams.yaml"), encoding="utf-8") as fin:
            source = rt.load(fin)["clap"].get("savedir")
    if isinstance(source, str) and os.path.exists(source):
        logger.warning(
            "The export refers to the CLAP by the local path %s: it loads only where that path exists "
            "(pass include_clap / --include-clap for a self-contained folder).",
            os.path.abspath(source),
        )
        return os.path.abspath(source)
    return source
