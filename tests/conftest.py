"""Shared fixtures: tiny CLAP backends built, saved and loaded through the same loader users call."""

import os
from pathlib import Path

import pytest
import torch

SAMPLES = Path(__file__).parent / "samples"

# Two cores on CI: keep torch from oversubscribing them.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def samples_dir():
    return SAMPLES


@pytest.fixture(scope="session", params=["msclap", "laion"])
def tiny_clap(request, tmp_path_factory):
    """A frozen tiny random CLAP of each backend (saved to disk and loaded back)."""
    from speechbrain_lmaczs.clap import load_clap

    folder = tmp_path_factory.mktemp(f"tiny_{request.param}")
    return load_clap(request.param, "tiny-random", savedir=str(folder))


@pytest.fixture(scope="session")
def tiny_msclap(tmp_path_factory):
    from speechbrain_lmaczs.clap import load_clap

    return load_clap("msclap", "tiny-random", savedir=str(tmp_path_factory.mktemp("tiny_msclap")))


@pytest.fixture(scope="session")
def tiny_laion(tmp_path_factory):
    from speechbrain_lmaczs.clap import load_clap

    return load_clap("laion", "tiny-random", savedir=str(tmp_path_factory.mktemp("tiny_laion")))
