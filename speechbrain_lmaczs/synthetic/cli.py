"""``python -m speechbrain_lmaczs.demo``: one demo run (``make demo``), or the benchmark over seeds (``--seeds``).

Usage::

    python -m speechbrain_lmaczs.demo [--quick] [--seed N] [--config default] [--output results/demo]
    python -m speechbrain_lmaczs.demo --seeds 0 1 2 [--methods lmaczs ig ...] [--configs default released]
        [--decoder_seeds 10 11 ...] [--quick] --output results/bench

The first runs :func:`speechbrain_lmaczs.synthetic.demo.run` (results.csv, figures, report); the second
:func:`speechbrain_lmaczs.synthetic.seeds.run_seeds` (a run per seed and configuration, then summary.csv). Step 3
of a run trains LMAC-ZS with the recipe of a checkout of the repository (``recipes/`` beside the package); an
installed package has none, so point ``--recipes`` at the ``recipes/`` folder of a checkout.
"""

import argparse
import logging
import os

import torch

from speechbrain_lmaczs.evaluation import METHODS
from speechbrain_lmaczs.synthetic.configs import CONFIGS
from speechbrain_lmaczs.synthetic.demo import __doc__ as DEMO_DOC
from speechbrain_lmaczs.synthetic.demo import recipe_folder, run


def main(argv=None):
    """Command-line entry point (``python -m speechbrain_lmaczs.demo``)."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_lmaczs.demo",
        description=DEMO_DOC + "\n" + __doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smaller data and fewer epochs (about 3 minutes)")
    parser.add_argument("--output", default="results/demo", help="output folder (default: results/demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the models and the evaluation")
    parser.add_argument("--config", default="default", choices=sorted(CONFIGS), help="configuration of one run")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="the benchmark over these seeds (each: small CLAP, data and decoder), with summary.csv")
    parser.add_argument("--configs", nargs="+", default=None, choices=sorted(CONFIGS),
                        help="configurations of --seeds (default: all)")
    parser.add_argument("--decoder_seeds", type=int, nargs="+", default=None,
                        help="with --seeds: also retrain the decoder alone with these seeds on the first seed's "
                             "small CLAP and data (summary_decoder_seeds.csv)")
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS), help="methods (default: all)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--recipes", default=None, help="the recipes/ folder of a checkout (default: the one beside the package)"
    )
    args = parser.parse_args(argv)
    if args.seeds is None and (args.configs or args.decoder_seeds):
        parser.error("--configs and --decoder_seeds go with --seeds (one run: --seed and --config).")
    try:
        recipe_folder(args.recipes)
    except FileNotFoundError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    common = {"quick": args.quick, "device": args.device, "recipes": args.recipes}
    if args.seeds is None:
        run(args.output, seed=args.seed, config=args.config, methods=args.methods, **common)
        return
    from speechbrain_lmaczs.synthetic.seeds import run_seeds

    run_seeds(args.output, args.seeds, args.configs, args.methods, args.decoder_seeds, **common)


if __name__ == "__main__":
    main()
