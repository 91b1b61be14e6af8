"""Every recipe yaml: each key is used by code, and the UrbanSound8K twin trains end to end."""

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_train_recipe

from speechbrain_lmaczs.data import datasets_of_kind
from speechbrain_lmaczs.evaluation.settings import yaml_fields
from speechbrain_lmaczs.recipe import train_folder_key

ROOT = Path(__file__).resolve().parents[1]
YAMLS = sorted((ROOT / "recipes").glob("*/interpret/hparams/*.yaml"))
CODE = [p for p in (ROOT / "speechbrain_lmaczs").rglob("*.py")] + sorted((ROOT / "recipes").glob("*/*/*.py"))
# Keys SpeechBrain itself reads from the hparams (run options) or runs on load.
SPEECHBRAIN_KEYS = {"ckpt_interval_minutes", "ckpt_interval_steps", "precision", "eval_precision", "device"}
# Keys of eval.yaml that EvalSettings.from_hparams reads, one per field of the same name.
EVAL_SETTINGS_KEYS = {field.name for field in yaml_fields()}
# Keys of the folders of the caption datasets, read by recipe.prepare_train_manifest.
TRAIN_FOLDER_KEYS = {train_folder_key(name) for name in datasets_of_kind("captions")}


def _top_level_keys(text):
    return [m.group(1) for m in re.finditer(r"^([A-Za-z_][A-Za-z0-9_]*):", text, flags=re.M)]


@pytest.mark.parametrize("yaml_path", YAMLS, ids=lambda p: f"{p.parts[-4]}/{p.name}")
def test_every_yaml_key_is_used(yaml_path):
    text = yaml_path.read_text()
    code = "\n".join(p.read_text() for p in CODE if p.is_file())
    unused = []
    for key in _top_level_keys(text):
        if key.startswith("__") or key in SPEECHBRAIN_KEYS:
            continue
        referenced_in_yaml = re.search(rf"<{key}[>.\[]", text)
        # hparams["key"], hparams.key, or a helper called as f(hparams, "key", ...)
        read_by_code = re.search(rf"""hparams\[["']{key}["']\]|hparams\.{key}\b|hparams, ["']{key}["']""", code)
        read_by_settings = yaml_path.name == "eval.yaml" and key in EVAL_SETTINGS_KEYS
        read_by_settings = read_by_settings or key in TRAIN_FOLDER_KEYS
        if not (referenced_in_yaml or read_by_code or read_by_settings):
            unused.append(key)
    assert not unused, f"{yaml_path}: keys nobody reads: {unused}"


def test_urbansound8k_recipe_trains_on_a_fake_dataset(tmp_path):
    """The UrbanSound8K recipe reuses the ESC-50 code: short clips at other rates, stereo, 10 folds."""
    root = tmp_path / "UrbanSound8K"
    rows = [
        ("100032-3-0-0.wav", 1, 3, "dog_bark", 22050, 2, 1.5),
        ("100263-2-0-117.wav", 2, 2, "children_playing", 48000, 1, 4.0),
        ("101415-3-0-2.wav", 3, 3, "dog_bark", 16000, 1, 0.8),
        ("102106-8-0-0.wav", 4, 8, "siren", 44100, 2, 3.0),
    ]
    lines = ["slice_file_name,fsID,start,end,salience,fold,classID,class\n"]
    rng = np.random.default_rng(0)
    for name, fold, cid, label, rate, channels, seconds in rows:
        lines.append(f"{name},1,0.0,{seconds},1,{fold},{cid},{label}\n")
        path = root / "audio" / f"fold{fold}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, 0.3 * rng.standard_normal((int(rate * seconds), channels)), rate)
    for fold in range(1, 11):
        (root / "audio" / f"fold{fold}").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir()
    (root / "metadata" / "UrbanSound8K.csv").write_text("".join(lines))

    out = tmp_path / "run"
    run_train_recipe("lmaczs_mel.yaml", out, "--n_explanations=1", recipe="UrbanSound8k", data_folder=root)
    log = (out / "train_log.txt").read_text()
    assert "valid accuracy" in log and "n_clips: 4" in log
    assert len(list((out / "explanations").glob("*__*.wav"))) == 1
