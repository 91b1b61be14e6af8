"""Sharing a trained explainer: `lmaczs export`, `from_hparams` (folder and offline hub cache), folder/manifest mode."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_lmaczs.classifier import make_prompts
from speechbrain_lmaczs.cli import main
from speechbrain_lmaczs.explain import Explainer, ExplainError
from speechbrain_lmaczs.export import export_run
from speechbrain_lmaczs.model_card import parse_train_log

ROOT = Path(__file__).resolve().parents[1]
AUDIO = Path(__file__).parent / "samples" / "ESC50" / "audio"
CLIP = AUDIO / "1-100032-A-0.wav"
PROMPTS = ["dog barking", "rain falling"]


def cli(*args):
    return main([str(a) for a in args])


def one_line_error(stderr, *fragments):
    """One line of lmaczs's own on stderr (progress bars aside), an error naming ``fragments``."""
    lines = [line for line in stderr.strip().splitlines() if line.startswith("lmaczs")]
    assert len(lines) == 1 and lines[0].startswith("lmaczs: error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def run_result(trained_mel_run):
    """Masks and waveforms of the run folder's Explainer on CLIP: the reference every load must reproduce."""
    explainer = Explainer.from_folder(trained_mel_run)
    return explainer, explainer.explain_file(CLIP, prompts=PROMPTS)


@pytest.fixture(scope="module")
def exported(trained_mel_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported") / "lmaczs-tiny"
    assert cli("export", trained_mel_run, out, "--include-clap", "--license", "apache-2.0") == 0
    return out


def assert_same_explanations(result, reference):
    assert [e.prompt for e in result.explanations] == [e.prompt for e in reference.explanations]
    for got, want in zip(result.explanations, reference.explanations):
        assert torch.allclose(got.mask, want.mask, atol=1e-6)
        assert got.probability == pytest.approx(want.probability, abs=1e-6)
        assert torch.allclose(got.waveform, want.waveform, atol=1e-6)


def test_export_then_from_hparams_gives_the_run_masks(exported, run_result, tmp_path):
    from speechbrain_lmaczs import LMACZSExplainer

    explainer, reference = run_result
    assert isinstance(explainer, LMACZSExplainer)  # Explainer.from_folder routes to the one interface
    files = sorted(p.name for p in exported.iterdir())
    assert files == ["README.md", "clap", "config.json", "decoder.ckpt", "hyperparams.yaml"]
    config = json.loads((exported / "config.json").read_text())
    assert config["speechbrain_interface"] == "LMACZSExplainer"
    assert config["labels"] == explainer.labels and config["prompt_template"] == explainer.template
    assert config["clap"]["bundled"] is True and config["license"] == "apache-2.0"
    best = Path(explainer.model.checkpoint.paramfiles["decoder"])
    assert (exported / "decoder.ckpt").read_bytes() == best.read_bytes()

    savedir = tmp_path / "collected"
    loaded = LMACZSExplainer.from_hparams(source=str(exported), savedir=str(savedir), run_opts={"device": "cpu"})
    assert_same_explanations(loaded.explain_file(CLIP, prompts=PROMPTS), reference)
    # SpeechBrain's fetching collected (linked) the files into savedir, the bundled CLAP's included.
    assert (savedir / "decoder.ckpt").exists() and (savedir / "clap" / "clap_config.json").exists()
    # Top-k over the exported label set, and a baseline on the same loaded model.
    top = loaded.explain_file(CLIP, top_k=2)
    assert top.candidates == make_prompts(explainer.labels, explainer.template)
    assert_same_explanations(top, explainer.explain_file(CLIP, top_k=2))
    assert loaded.with_method("gradcam").explain_file(CLIP, prompts=PROMPTS[:1]).method == "gradcam"


def test_export_referring_to_the_clap(trained_mel_run, run_result, tmp_path):
    from speechbrain_lmaczs.inference import LMACZSExplainer

    out = export_run(trained_mel_run, tmp_path / "ref")
    assert not (Path(out) / "clap").exists()
    assert json.loads((Path(out) / "config.json").read_text())["clap"]["reference"] == str(trained_mel_run / "clap")
    loaded = LMACZSExplainer.from_hparams(source=out, run_opts={"device": "cpu"})
    assert_same_explanations(loaded.explain_file(CLIP, prompts=PROMPTS), run_result[1])


HUB_SCRIPT = """
import sys, torch
from speechbrain_lmaczs import LMACZSExplainer
from speechbrain_lmaczs.explain import ExplainError
explainer = LMACZSExplainer.from_hparams(source="lmaczs-tests/tiny-esc50", savedir=sys.argv[1])
result = explainer.explain_file(sys.argv[2], prompts=sys.argv[4:])
torch.save([e.mask for e in result.explanations], sys.argv[3])
try:
    LMACZSExplainer.from_hparams(source="lmaczs-tests/not-in-the-cache")
except ExplainError as err:
    print("MISSING:", err)
"""


def test_from_hparams_reads_a_hub_repository_from_the_offline_cache(exported, run_result, tmp_path):
    """The export laid out as a hub repository in a local cache; HF_HUB_OFFLINE=1, so nothing can be downloaded."""
    hub = tmp_path / "hf_home" / "hub"
    repo = hub / "models--lmaczs-tests--tiny-esc50"
    revision = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(exported, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HOME=str(tmp_path / "hf_home"), HF_HUB_CACHE=str(hub))
    env["HF_HUB_OFFLINE"] = "1"
    savedir = tmp_path / "pretrained"
    masks = tmp_path / "masks.pt"
    proc = subprocess.run(
        [sys.executable, "-c", HUB_SCRIPT, str(savedir), str(CLIP), str(masks), *PROMPTS],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for got, want in zip(torch.load(masks), run_result[1].explanations):
        assert torch.allclose(got, want.mask, atol=1e-6)
    # The collected files are links into the hub cache, not copies of the exported folder.
    assert os.path.realpath(savedir / "decoder.ckpt").startswith(os.path.realpath(hub))
    assert os.path.realpath(savedir / "clap" / "CLAP_weights_2022.pth").startswith(os.path.realpath(hub))
    assert "MISSING: Cannot load an exported LMAC-ZS explainer from lmaczs-tests/not-in-the-cache" in proc.stdout


def test_model_card_names_the_run_numbers(exported, trained_mel_run):
    card = (exported / "README.md").read_text()
    log = (trained_mel_run / "train_log.txt").read_text()
    valid = re.findall(r"valid ([\w-]+): ([^,\s]+)", log)
    test = re.findall(r"test ([\w-]+): ([^,\s]+)", log)
    assert {"accuracy", "AI", "AD", "FF", "Fid-In"} <= {name for name, _ in valid}
    rows = [line for line in card.splitlines() if line.startswith("| ")]
    # The header row names every metric, and the epoch's row holds every value as logged, in the same order.
    assert any(all(f" {name} |" in row for name, _ in valid) for row in rows)
    assert any(" | ".join(value for _, value in valid) in row for row in rows), (valid, rows)
    assert any(" | ".join(value for _, value in test) in row for row in rows)
    assert "license: apache-2.0" in card and "MelMasking" in card and "`labels`" in card
    assert "LMACZSExplainer.from_hparams" in card and "lmaczs explain" in card
    # The parser keeps the text as logged and reads every line.
    entries = parse_train_log(trained_mel_run / "train_log.txt")
    assert len(entries) == len(log.strip().splitlines())
    assert entries[0]["stages"]["valid"] == dict(valid)


def write_audio(folder):
    """Recordings at three rates (one stereo, one in a sub-folder), a text file and an empty WAV."""
    data, rate = sf.read(CLIP, dtype="float32")
    folder.mkdir()
    (folder / "sub").mkdir()
    sf.write(folder / "dog_44k.wav", data, rate)
    sf.write(folder / "sub" / "dog_16k.flac", data[::2], 16000)  # 6.9 s (the clip is silent until 2.2 s)
    other, other_rate = sf.read(AUDIO / sorted(os.listdir(AUDIO))[1], dtype="float32")
    other = np.tile(other, 2)[: other_rate * 7]  # longer than one model window
    stereo = np.stack([other, 0.5 * other], axis=1)
    sf.write(folder / "stereo_22k.wav", stereo[::2], other_rate // 2)
    (folder / "notes.txt").write_text("not audio")
    sf.write(folder / "empty.wav", np.zeros(0, dtype="float32"), 16000)
    return {
        "dog_44k.wav": rate,
        "sub/dog_16k.flac": 16000,
        "stereo_22k.wav": other_rate // 2,
    }


def check_batch_output(out, expected_files, prompts):
    rows = list(csv.reader((out / "summary.csv").open()))
    assert rows[0] == ["file", "prompt", "probability", "mask_mean", "explanation_wav", "method"]
    rows = rows[1:]
    assert sorted((r[0], r[1]) for r in rows) == sorted((f, p) for f in expected_files for p in prompts)
    for file in expected_files:
        mine = [r for r in rows if r[0] == file]
        # The probabilities are a softmax over the given prompts.
        assert sum(float(r[2]) for r in mine) == pytest.approx(1.0, abs=1e-4)
        info = sf.info(file)
        for r in mine:
            assert 0.0 <= float(r[3]) <= 1.0
            wav = out / r[4]
            assert wav.is_file() and sf.info(wav).frames == info.frames and sf.info(wav).samplerate == info.samplerate
    index = (out / "index.html").read_text()
    for link in sorted({os.path.dirname(r[4]) for r in rows}):
        assert f'href="{link}/report.html"' in index and (out / link / "report.html").is_file()
    return index


def test_explain_a_folder(exported, tmp_path, capsys, caplog):
    folder = tmp_path / "clips"
    rates = write_audio(folder)
    out = tmp_path / "out"
    status = cli("explain", folder, "--checkpoint", exported, "--prompt", PROMPTS[0], "--prompt", PROMPTS[1],
                 "--out", out)
    assert status == 1  # the empty WAV failed
    err = capsys.readouterr().err
    one_line_error(err, "1 file(s) could not be explained", "empty.wav")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("Skipped 1 file(s) that are not audio: notes.txt" in w for w in warnings), warnings
    assert any("empty.wav holds no audio samples" in w for w in warnings), warnings
    files = [str(folder / name) for name in rates]
    assert len(set(rates.values())) == 3
    index = check_batch_output(out, files, PROMPTS)
    assert 'class="failed">' + str(folder / "empty.wav") in index
    assert 'class="skipped">' + str(folder / "notes.txt") in index


def test_explain_a_manifest(trained_mel_run, tmp_path, capsys):
    folder = tmp_path / "clips"
    write_audio(folder)
    manifest = {
        "dog": {"wav": "{data_root}/dog_44k.wav", "label": "dog"},
        "flac": {"wav": "sub/dog_16k.flac"},
        "gone": {"wav": "{data_root}/missing.wav"},
    }
    (folder / "set.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    # A run folder works as --checkpoint too; without prompts, the top-2 labels of the run are explained.
    assert cli("explain", folder / "set.json", "--checkpoint", trained_mel_run, "--top-k", "2", "--out", out) == 1
    one_line_error(capsys.readouterr().err, "1 file(s)", "missing.wav")
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["file"] for r in rows] == [str(folder / "dog_44k.wav")] * 2 + [str(folder / "sub" / "dog_16k.flac")] * 2
    assert {r["explanation_wav"].split("/")[0] for r in rows} == {"dog", "flac"}
    assert (out / "dog" / "report.html").is_file() and not (out / "gone").exists()


def test_export_refuses_an_incomplete_run(trained_mel_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_mel_run, run)
    (run / "train_log.txt").unlink()
    assert cli("export", run, tmp_path / "a") == 1
    one_line_error(capsys.readouterr().err, "incomplete", "train_log.txt")
    shutil.copy(trained_mel_run / "train_log.txt", run / "train_log.txt")
    for checkpoint in (run / "save").glob("CKPT+*"):
        (checkpoint / "decoder.ckpt").write_bytes(b"")  # as a run killed while saving leaves it
    assert cli("export", run, tmp_path / "b") == 1
    one_line_error(capsys.readouterr().err, "incomplete", "no complete checkpoint")
    assert cli("export", tmp_path / "nothing", tmp_path / "c") == 1
    one_line_error(capsys.readouterr().err, "does not exist")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    # The console script itself: one line on stderr, status 1.
    script = Path(sys.executable).with_name("lmaczs")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "speechbrain_lmaczs.cli"]
    proc = subprocess.run(cmd + ["export", str(run), str(tmp_path / "d")], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 1
    one_line_error(proc.stderr, "no complete checkpoint")


def test_export_refuses_a_non_empty_folder(trained_mel_run, exported, capsys):
    assert cli("export", trained_mel_run, exported) == 1
    one_line_error(capsys.readouterr().err, "is not empty", "--overwrite")


def test_load_errors_are_one_clear_message(tmp_path):
    from speechbrain_lmaczs.inference import LMACZSExplainer, load_explainer

    with pytest.raises(ExplainError, match="neither a folder nor a hub id"):
        load_explainer(str(tmp_path / "missing" / "deeper" / "path"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExplainError, match="Cannot load an exported LMAC-ZS explainer"):
        LMACZSExplainer.from_hparams(source=str(tmp_path / "empty"))


def test_run_labels_of_a_run_that_read_its_own_manifest(trained_mel_run, tmp_path):
    """eval_dataset: manifest (the demo's runs): the label set is the manifest's classes."""
    from speechbrain_lmaczs.explain import run_labels

    run = tmp_path / "run"
    run.mkdir()
    manifest = trained_mel_run / "manifests" / "esc50.json"
    text = (trained_mel_run / "hyperparams.yaml").read_text()
    text = re.sub(r"(?m)^eval_dataset: .*$", "eval_dataset: manifest", text)
    text = re.sub(r"(?m)^eval_manifest:.*$", f"eval_manifest: {manifest}", text)
    (run / "hyperparams.yaml").write_text(text)
    assert run_labels(run) == run_labels(trained_mel_run)
    (run / "hyperparams.yaml").write_text(text.replace(str(manifest), str(tmp_path / "gone.json")))
    with pytest.raises(ExplainError, match="gone.json.*no longer exists"):
        run_labels(run)
