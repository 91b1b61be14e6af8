"""speechbrain-lmaczs: LMAC-ZS explanations for zero-shot CLAP audio classifiers."""

from pathlib import Path

from setuptools import find_packages, setup

# Compatible ranges, so that installing into an environment that already has torch and SpeechBrain keeps them.
# requirements.txt pins the exact versions tested together (README commands, CI); .ci/constraints_oldest.txt
# holds the lower bounds, and CI checks that they resolve together. Each lower bound comes from an API used:
INSTALL_REQUIRES = [
    "torch>=2.3",  # first wheels built against NumPy 2 (transformers 5 needs >= 2.2, SpeechBrain 1.1 >= 2.1)
    "torchaudio>=2.3",  # released with torch; functional.resample / melscale_fbanks only (I/O is soundfile's)
    "torchvision>=0.18",  # torch 2.3's; only imported by grad-cam
    # 1.1: Brain's RunOptions (run_opts.device) and utils.distributed.infer_device (eval recipe); 1.0.2 already
    # has utils.seed_everything (every yaml) and fetch(..., save_filename, local_strategy) (from_hparams)
    "speechbrain>=1.1,<2",
    "transformers>=5,<6",  # ClapModel.get_text_features returns an output with pooler_output from v5 on
    "huggingface_hub>=1.3,<2",  # imported directly (offline mode, hf_hub_download); transformers 5's range
    "tokenizers>=0.22",  # imported directly (LAION tokenizer); transformers 5's lower bound
    "hyperpyyaml>=1.2",
    "ruamel.yaml>=0.17.28",  # round-trip tags (lmaczs export); hyperpyyaml 1.2's own lower bound
    "pyyaml>=5.1",
    "numpy>=1.23",  # first with Python 3.11 wheels
    "soundfile>=0.12",  # soundfile.LibsndfileError
    "tqdm>=4",
    "matplotlib>=3.5",  # Figure(layout="constrained")
    "captum>=0.9",  # tested series (no older release checked)
    "grad-cam>=1.5",  # tested series (no older release checked)
]


def _requirements(name):
    lines = Path(__file__).with_name(name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    name="speechbrain-lmaczs",
    version="0.1.0",
    description="Listenable Maps for Zero-Shot audio classifiers (LMAC-ZS) in SpeechBrain",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["speechbrain_lmaczs", "speechbrain_lmaczs.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={"dev": _requirements("requirements-dev.txt")},
    entry_points={"console_scripts": ["lmaczs=speechbrain_lmaczs.cli:main"]},
)
