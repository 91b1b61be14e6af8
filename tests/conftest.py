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


ROOT = Path(__file__).resolve().parents[1]


def run_train_recipe(yaml_name, output, *extra, recipe="ESC50", data_folder=SAMPLES / "ESC50", timeout=900):
    """Run recipes/<recipe>/interpret/train.py with a tiny random CLAP for 1 epoch (labels as captions).

    By default on the bundled ESC-50 clips.
    """
    import subprocess
    import sys

    cmd = [
        sys.executable,
        str(ROOT / "recipes" / recipe / "interpret" / "train.py"),
        str(ROOT / "recipes" / recipe / "interpret" / "hparams" / yaml_name),
        f"--data_folder={data_folder}",
        "--train_data=labels",
        "--clap_source=tiny-random",
        f"--output_folder={output}",
        "--number_of_epochs=1",
        *extra,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def trained_mel_run(tmp_path_factory):
    """Output folder of a short LMAC-ZS training run (Mel masking, tiny msclap CLAP, bundled ESC-50 clips)."""
    out = tmp_path_factory.mktemp("trained_mel") / "run"
    run_train_recipe("lmaczs_mel.yaml", out, "--n_explanations=2")
    return out
