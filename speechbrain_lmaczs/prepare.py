"""Command line for the data preparations: one subcommand per dataset, each writing one JSON manifest.

The coded datasets' subcommands come from :data:`speechbrain_lmaczs.data.DATASETS`.

Examples::

    python -m speechbrain_lmaczs.prepare esc50 --data_folder data/ESC50 --save_folder results/data
    python -m speechbrain_lmaczs.prepare urbansound8k --data_folder data/UrbanSound8K --save_folder results/data
    python -m speechbrain_lmaczs.prepare clotho --data_folder data/clotho --save_folder results/data
    python -m speechbrain_lmaczs.prepare captions --csv audiocaps.csv --audio_folder data/audiocaps \\
        --save_folder results/data --caption_columns caption --output audiocaps.json
    python -m speechbrain_lmaczs.prepare labels --csv mine.csv --audio_folder data/mine --save_folder results/data
    python -m speechbrain_lmaczs.prepare speech --data_folder data/speech --save_folder results/data
    python -m speechbrain_lmaczs.prepare ljspeech --data_folder data/LJSpeech --save_folder results/data
"""

import argparse
import logging
import sys

from speechbrain_lmaczs.classifier import DEFAULT_TEMPLATE

logger = logging.getLogger(__name__)

PROG = "python -m speechbrain_lmaczs.prepare"


def _coded_args(parser, dataset):
    """Arguments of a :data:`~speechbrain_lmaczs.data.DATASETS` subcommand, from its table entry."""
    parser.add_argument("--data_folder", required=True, help="folder of the dataset")
    parser.add_argument("--save_folder", required=True, help="where the manifest is written")
    parser.add_argument("--output", default=dataset.manifest, help=f"manifest file name (default: {dataset.manifest})")
    if dataset.folds:
        span = f"{min(dataset.folds)}-{max(dataset.folds)}"
        parser.add_argument("--folds", type=int, nargs="+", help=f"folds {span} to keep (default: all)")
    if dataset.downloads:
        parser.add_argument(
            "--no_download", action="store_true", help="fail instead of downloading into an empty data_folder"
        )


def _csv_args(parser, output):
    parser.add_argument("--csv", required=True, help="CSV file with a header row")
    parser.add_argument("--audio_folder", required=True, help="folder the CSV's file names are relative to")
    parser.add_argument("--save_folder", required=True, help="where the manifest is written")
    parser.add_argument("--output", default=output, help=f"manifest file name (default: {output})")
    parser.add_argument("--filename_column", default="filename", help="column with file names (default: filename)")


def build_parser():
    """The ``argparse`` parser of ``python -m speechbrain_lmaczs.prepare``: one subcommand per dataset of
    :data:`~speechbrain_lmaczs.data.DATASETS`, plus ``captions`` and ``labels`` (a CSV of your own).

    >>> build_parser().parse_args(["esc50", "--data_folder", "d", "--save_folder", "s"]).output
    'esc50.json'
    """
    from speechbrain_lmaczs.data import DATASETS

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Prepare a dataset: write its JSON manifest (id -> wav, duration, labels or caption). "
        "Errors end with one line on stderr (exit status 1); add --verbose anywhere for the traceback.",
    )
    sub = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, dataset in DATASETS.items():
        _coded_args(sub.add_parser(name, help=dataset.description), dataset)

    p = sub.add_parser("captions", help="a folder of audio + a CSV of captions (AudioCaps, FSD50K, MACS, yours)")
    _csv_args(p, "captions.json")
    p.add_argument("--caption_columns", nargs="+", default=["caption"], help="caption columns (default: caption)")

    p = sub.add_parser("labels", help="a folder of audio + a CSV of labels (+ optional folds)")
    _csv_args(p, "labels.json")
    p.add_argument("--label_column", default="label", help="column with class labels (default: label)")
    p.add_argument("--fold_column", default="fold", help="column with integer folds, used if present (default: fold)")
    p.add_argument("--folds", type=int, nargs="+", help="folds to keep (default: all rows)")
    p.add_argument("--template", default=DEFAULT_TEMPLATE, help=f"caption template (default: {DEFAULT_TEMPLATE!r})")
    return parser


def run(args):
    """Run the preparation an ``argparse`` namespace asks for; returns the manifest path."""
    from speechbrain_lmaczs import data

    if args.dataset in data.DATASETS:
        return data.DATASETS[args.dataset].run(
            args.data_folder,
            args.save_folder,
            output=args.output,
            folds=getattr(args, "folds", None),
            download=not getattr(args, "no_download", False),
        )
    if args.dataset == "captions":
        return data.prepare_captions(
            args.csv, args.audio_folder, args.save_folder, args.output, args.filename_column, args.caption_columns
        )
    if args.dataset == "labels":
        return data.prepare_labels(
            args.csv,
            args.audio_folder,
            args.save_folder,
            args.output,
            filename_column=args.filename_column,
            label_column=args.label_column,
            fold_column=args.fold_column,
            folds=args.folds,
            template=args.template,
        )
    raise ValueError(f"Unknown dataset {args.dataset!r}.")


def _prepare(argv):
    from speechbrain_lmaczs.files import check_writable_folder

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    check_writable_folder(args.save_folder, "--save_folder")
    manifest = run(args)
    logger.info("Manifest: %s", manifest)


def main(argv=None):
    """Entry point; returns the exit status.

    A problem with the data or the folders ends with one line on stderr and status 1 (the traceback only with
    ``--verbose``); a usage error with argparse's status 2.
    """
    from speechbrain_lmaczs.entry import run_script

    return run_script(_prepare, argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
