"""speechbrain-lmaczs: LMAC-ZS explanations for zero-shot CLAP audio classifiers."""

from pathlib import Path

from setuptools import find_packages, setup


def _requirements(name):
    lines = Path(__file__).with_name(name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="speechbrain-lmaczs",
    version="0.1.0",
    description="Listenable Maps for Zero-Shot audio classifiers (LMAC-ZS) in SpeechBrain",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["speechbrain_lmaczs", "speechbrain_lmaczs.*"]),
    python_requires=">=3.10",
    install_requires=_requirements("requirements.txt"),
    extras_require={"dev": _requirements("requirements-dev.txt")},
    entry_points={"console_scripts": ["lmaczs=speechbrain_lmaczs.cli:main"]},
)
