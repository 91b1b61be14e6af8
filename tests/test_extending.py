"""The README's "Extending" examples, run as written: a new interpreter and a new dataset, each one new file plus
its registry lines, applied to a copy of the package and checked in a fresh interpreter."""

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "samples"
#: the bundled ESC-50 clips, by class
CLIPS = {
    "dog": ["1-100032-A-0"],
    "car_horn": ["2-100648-A-43"],
    "thunderstorm": ["3-103051-C-19", "4-156993-A-19", "5-156999-C-19"],
}


def extending_blocks():
    """(info string, code) of every fenced block of the README's "Extending" section, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Extending\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(python[^\n]*)\n(.*?)^```$", section, flags=re.S | re.M)


def add_registry_lines(path, code):
    """Put the block's import after the module's last package import, its entry at the end of the registry table."""
    lines = path.read_text(encoding="utf-8").split("\n")
    for line in code.strip("\n").split("\n"):
        if line.startswith("from "):
            last_import = max(i for i, text in enumerate(lines) if text.startswith("from speechbrain_lmaczs."))
            lines.insert(last_import + 1, line)
        else:
            table = next(i for i, text in enumerate(lines) if re.match(r"^[A-Z_]+ = \{$", text))
            lines.insert(lines.index("}", table), line)
    path.write_text("\n".join(lines), encoding="utf-8")


def apply_readme(package_root):
    """Write the README's files and registry lines into a copy of the package; returns its check blocks."""
    checks = []
    for info, code in extending_blocks():
        words = dict(word.split("=", 1) for word in info.split()[1:] if "=" in word)
        if "file" in words:
            target = package_root / words["file"]
            assert not target.exists(), f"the README's example {words['file']} already exists"
            target.write_text(code, encoding="utf-8")
        elif "registry" in words:
            add_registry_lines(package_root / words["registry"], code)
        elif info.split()[1:] == ["check"]:
            checks.append(code)
    return checks


#: run after the README's checks: the new method goes through the evaluation loop on a tiny classifier
EVALUATION_RUN = '''
import csv
import torch
from speechbrain_lmaczs.clap import load_clap
from speechbrain_lmaczs.evaluation import EvalSettings, evaluate
from speechbrain_lmaczs.lmaczs.decoder import MaskDecoder
from speechbrain_lmaczs.lmaczs.domains import MelMasking
from speechbrain_lmaczs.lmaczs.pretrained import TrainedLMACZS

assert speechbrain_lmaczs.interpreters.input_x_gradient.__file__.startswith(PACKAGE_COPY)
clap = load_clap("msclap", "tiny-random", savedir="clap")
decoder = MaskDecoder(clap.hidden_channels, clap.joint_dim, width=16, n_final_upsamplings=3)
model = TrainedLMACZS(clap, decoder, MelMasking(clap.frontend)).eval()
settings = EvalSettings(methods=["gradcam", "input_x_gradient"], conditions=["clean"], batch_size=2, max_clips=3)
evaluate(model, "manifests/class_folders.json", "eval", settings)
with open("eval/results.csv", newline="") as fin:
    rows = [row for row in csv.DictReader(fin) if row["mask"] == "method"]  # not the constant-mean references
assert [row["method"] for row in rows] == ["gradcam", "input_x_gradient"], rows
assert int(rows[1]["n_clips"]) == 3 and 0.0 <= float(rows[1]["MM"]) <= 1.0, rows[1]
markdown = open("eval/results.md").read()
assert "| Input x Gradient | abs -> upsample(nearest) to (T,F)" in markdown, markdown
print("extending examples: OK")
'''


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("extended")
    shutil.copytree(ROOT / "speechbrain_lmaczs", root / "speechbrain_lmaczs", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_readme_has_both_examples():
    infos = [info for info, _ in extending_blocks()]
    assert infos.count("python check") == 2
    assert sum(info.startswith("python file=") for info in infos) == 2
    assert sum(info.startswith("python registry=") for info in infos) == 2


def test_readme_extensions_register_and_run(package_copy, tmp_path):
    checks = apply_readme(package_copy)
    for label, names in CLIPS.items():
        (tmp_path / "my_sounds" / label).mkdir(parents=True)
        for name in names:
            shutil.copy(SAMPLES / "ESC50" / "audio" / f"{name}.wav", tmp_path / "my_sounds" / label)
    script = "\n".join(
        ["import speechbrain_lmaczs.interpreters.input_x_gradient", f"PACKAGE_COPY = {str(package_copy)!r}"]
        + [textwrap.dedent(check) for check in checks]
        + [EVALUATION_RUN]
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(package_copy), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "extending examples: OK" in result.stdout
    # Both registries were changed by one line plus its import, nothing else.
    for registry in ("interpreters/__init__.py", "data/__init__.py"):
        before = (ROOT / "speechbrain_lmaczs" / registry).read_text(encoding="utf-8").split("\n")
        after = (package_copy / "speechbrain_lmaczs" / registry).read_text(encoding="utf-8").split("\n")
        assert len(after) == len(before) + 2
