"""End-to-end runs of the training recipe on tests/samples with a tiny random CLAP."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_train_recipe
import soundfile as sf
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "recipes" / "ESC50" / "interpret" / "train.py"
HPARAMS = ROOT / "recipes" / "ESC50" / "interpret" / "hparams"
# meta key SpeechBrain puts on intra-epoch checkpoints
INTRA_EPOCH_FLAG = "brain_intra_epoch_ckpt"


def _command(yaml_name, output, *extra):
    return [
        sys.executable,
        str(TRAIN),
        str(HPARAMS / yaml_name),
        f"--data_folder={ROOT / 'tests' / 'samples' / 'ESC50'}",
        "--train_data=labels",
        "--clap_source=tiny-random",
        f"--output_folder={output}",
        "--number_of_epochs=1",
        *extra,
    ]


@pytest.mark.parametrize("yaml_name,rate", [("lmaczs_mel.yaml", 44100), ("lmaczs_stft.yaml", 16000)])
def test_train_smoke_writes_log_checkpoint_and_listenable_wavs(request, tmp_path, yaml_name, rate):
    if yaml_name == "lmaczs_mel.yaml":
        out = request.getfixturevalue("trained_mel_run")  # the shared run, made with --n_explanations=2
    else:
        out = tmp_path / "run"
        run_train_recipe(yaml_name, out, "--n_explanations=2")
    log = (out / "train_log.txt").read_text()
    for key in ("valid loss", "valid AI", "valid AD", "valid accuracy", "valid prompt_sensitivity", "test loss"):
        assert key in log
    assert (out / "hyperparams.yaml").is_file()
    ckpts = list((out / "save").glob("CKPT+*"))
    assert len(ckpts) == 1 and (ckpts[0] / "decoder.ckpt").is_file()
    # The checkpoint is kept by a key that really is in its meta.
    meta = yaml.safe_load((ckpts[0] / "CKPT.yaml").read_text())
    assert "loss" in meta and meta["n_clips"] == 5
    # The tiny CLAP is saved with the run, so eval/explain load the same weights.
    assert (out / "clap" / "clap_config.json").is_file()
    wavs = sorted((out / "explanations").glob("*__*.wav"))
    assert len(wavs) == 2
    for wav in wavs:
        data, sr = sf.read(wav)
        original, _ = sf.read(str(wav).split("__")[0] + ".wav")
        assert sr == rate and len(data) == len(original) == 5 * rate
        assert 0 < abs(data).max() and abs(data).max() <= abs(original).max() + 1e-3


def test_train_resumes_mid_epoch_after_being_killed(tmp_path):
    """Kill a run after an intra-epoch checkpoint; the rerun continues from that step."""
    out = tmp_path / "run"
    cmd = _command("lmaczs_mel.yaml", out, "--batch_size=1", "--ckpt_interval_minutes=0", "--ckpt_interval_steps=1", "--n_explanations=0")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    killed_at = None
    try:
        while time.time() < deadline and proc.poll() is None:
            for meta_file in (out / "save").glob("CKPT+*/CKPT.yaml"):
                brain = meta_file.parent / "brain.ckpt"
                try:
                    meta = yaml.safe_load(meta_file.read_text()) or {}
                    step = yaml.safe_load(brain.read_text())["step"]
                except (OSError, TypeError, KeyError, yaml.YAMLError):
                    continue  # being written right now
                if meta.get(INTRA_EPOCH_FLAG) and step >= 2:
                    killed_at = step
            if killed_at is not None:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert killed_at is not None, "the run never wrote an intra-epoch checkpoint at step >= 2"
    log_before = (out / "log.txt").read_text()
    assert "Training epoch 1 from step 0" in log_before

    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log_after = (out / "log.txt").read_text()[len(log_before):]
    resumed = [line for line in log_after.splitlines() if "Training epoch 1 from step" in line]
    assert resumed, log_after[-2000:]
    step = int(resumed[0].rsplit(" ", 1)[-1])
    # The checkpoint seen may be one step behind the one written just before the kill.
    assert killed_at - 1 <= step <= killed_at + 1 and step >= 1
    assert "test loss" in (out / "train_log.txt").read_text()


def test_half_written_checkpoints_are_set_aside_and_the_last_complete_one_is_resumed(tmp_path):
    from speechbrain.utils.checkpoints import Checkpointer
    from speechbrain.utils.epoch_loop import EpochCounter

    from speechbrain_lmaczs.lmaczs.checkpoints import set_aside_incomplete_checkpoints

    def checkpointer():
        return Checkpointer(tmp_path / "save", recoverables={"decoder": torch.nn.Linear(3, 2),
                                                             "counter": EpochCounter(5)})

    writer = checkpointer()
    writer.recoverables["decoder"].weight.data.fill_(7.0)
    good = writer.save_checkpoint(name="good")  # folder CKPT+good
    # what a kill leaves: an empty CKPT.yaml; a missing parameter file; a truncated one (torch.save writes a zip)
    for name in ("CKPT+z1", "CKPT+z2", "CKPT+z3"):
        shutil.copytree(good.path, tmp_path / "save" / name)
    (tmp_path / "save" / "CKPT+z1" / "CKPT.yaml").write_text("")
    (tmp_path / "save" / "CKPT+z2" / "counter.ckpt").unlink()
    decoder_file = tmp_path / "save" / "CKPT+z3" / "decoder.ckpt"
    decoder_file.write_bytes(decoder_file.read_bytes()[:200])
    # the newest (z1, empty meta) is what made SpeechBrain's recovery fail before
    with pytest.raises(TypeError):
        checkpointer().recover_if_possible()

    reader = checkpointer()
    moved = set_aside_incomplete_checkpoints(reader)
    assert sorted(p.name for p in moved) == ["incomplete-CKPT+z1", "incomplete-CKPT+z2", "incomplete-CKPT+z3"]
    assert all(p.is_dir() for p in moved)  # kept, only renamed
    ckpt = reader.recover_if_possible()
    assert ckpt.path.name == "CKPT+good"
    assert torch.all(reader.recoverables["decoder"].weight == 7.0)
    assert set_aside_incomplete_checkpoints(reader) == []
