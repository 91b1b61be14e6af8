"""``python -m speechbrain_lmaczs.demo``: the entry point of ``make demo``, kept at this path for the command line.

The demo itself lives in :mod:`speechbrain_lmaczs.synthetic.demo` and the benchmark over seeds in
:mod:`speechbrain_lmaczs.synthetic.seeds` (the synthetic benchmark's subpackage); this
module only forwards to :func:`speechbrain_lmaczs.synthetic.cli.main`, and is the one module outside
``synthetic/`` that imports it. Run ``python -m speechbrain_lmaczs.demo --help`` for the options.
"""

from speechbrain_lmaczs.synthetic.cli import main

if __name__ == "__main__":
    main()
