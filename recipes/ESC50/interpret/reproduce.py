#!/usr/bin/env python3
"""Reproduce the LMAC-ZS paper's ESC-50 results in one command, and compare them with the paper's numbers.

Fetches what is missing (MS-CLAP 2022 weights, ESC-50, Clotho, LJSpeech; UrbanSound8K is used when its folder
exists), logs the plan with estimated GPU times, trains the Mel and the STFT decoder (train.py), evaluates all
seven methods on clean, mixture, white noise and speech at 3 dB plus the two sanity checks (eval.py), and writes
paper_comparison.md and paper_comparison.csv into --output_folder. Started again, it skips every finished step
and resumes the interrupted one.

Run (one GPU; the folders may be empty, they are downloaded into):
    python reproduce.py --data_folder=/data/ESC50 --clotho_folder=/data/clotho --speech_folder=/data/LJSpeech \
        [--urbansound8k_folder=/data/UrbanSound8K] --output_folder=results/reproduce --device=cuda
Offline at test size (tiny random CLAP, bundled clips):
    python reproduce.py --smoke --output_folder=/tmp/reproduce_smoke

Authors: the speechbrain-lmaczs developers
"""

import sys

from speechbrain_lmaczs.reproduce.chain import main

if __name__ == "__main__":
    sys.exit(main())
