"""Training under torchrun (2 CPU processes, gloo) on tests/samples with a tiny random CLAP: the issue's contract."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "ESC50" / "interpret"
SAMPLES = ROOT / "tests" / "samples" / "ESC50"
N_CLIPS = len(list((SAMPLES / "audio").glob("*.wav")))

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="torchrun with gloo; /proc")


def _torchrun(output, *extra, epochs=1):
    """The contract's command, run from the recipe folder (as a user would)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "train.py", "hparams/lmaczs_mel.yaml", "--data_folder", str(SAMPLES), "--train_data=labels",
        "--clap_source=tiny-random", f"--number_of_epochs={epochs}", "--output_folder", str(output),
        "--distributed_backend=gloo", *extra,
    ]


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def _epoch_lines(output):
    return [line for line in (output / "train_log.txt").read_text().splitlines() if line.startswith("epoch: 1 ")]


def _files(output):
    return sorted(str(path.relative_to(output)) for path in output.rglob("*") if path.is_file())


def test_torchrun_two_processes_train_validate_on_the_whole_set_and_one_writes(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(_torchrun(out, "--n_explanations=2"), cwd=RECIPE, env=_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert list((out / "save").glob("CKPT*"))
    (epoch,) = _epoch_lines(out)  # one line: only rank 0 logs
    # Each rank validated its own share (3 + 2 clips); the logged metrics are over the whole set.
    assert int(re.search(r"valid n_clips: (\d+)", epoch).group(1)) == N_CLIPS
    assert int(re.search(r"test n_clips: (\d+)", (out / "train_log.txt").read_text()).group(1)) == N_CLIPS
    log = (out / "log.txt").read_text()
    # Both ranks stepped (5 clips padded to 3 per rank, batch 2) and DDP kept their decoders equal.
    assert "Steps per rank: [2, 2]; decoder weights equal on every rank: True" in log
    # Only rank 0 wrote: one checkpoint, 2 explanations (+ their originals), one CLAP, no stray temporary file.
    files = _files(out)
    assert len([f for f in files if f.startswith("explanations/")]) == 4
    assert len({Path(f).parent for f in files if f.startswith("save/")}) == 1
    assert not [f for f in files if Path(f).name.startswith(".tmp")]
    assert "Traceback" not in proc.stderr


def _children(pid):
    """Process ids whose parent is ``pid`` (torchrun's workers), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _last_complete_checkpoint(save, while_writing=False):
    """(counter, step, end_of_epoch) of the checkpoint a restart resumes from (None without one).

    ``while_writing``: the job may be writing a checkpoint right now; a file that cannot be read yet counts as
    that checkpoint not being complete."""
    from speechbrain_lmaczs.lmaczs.checkpoints import checkpoint_problem

    found = []
    for folder in save.glob("CKPT+*"):
        try:
            if checkpoint_problem(folder, ["decoder", "counter", "brain", "optimizer"]):
                continue  # a kill while saving: set aside on restart
            meta = yaml.safe_load((folder / "CKPT.yaml").read_text())
            brain = yaml.safe_load((folder / "brain.ckpt").read_text())
            counter = int((folder / "counter.ckpt").read_text())
            found.append((meta["unixtime"], counter, brain["step"], meta["end-of-epoch"]))
        except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError):
            if not while_writing:
                raise
    return max(found)[1:] if found else None


def test_torchrun_job_killed_mid_run_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    # 3 epochs of 3 steps per rank, a checkpoint after every step: the kill lands while there is work left.
    cmd = _torchrun(out, "--batch_size=1", "--ckpt_interval_minutes=0",
                    "--ckpt_interval_steps=1", "--n_explanations=0", epochs=3)
    proc = subprocess.Popen(cmd, cwd=RECIPE, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.time() + 600, []
    try:
        while time.time() < deadline and proc.poll() is None:
            workers = workers if len(workers) == 2 else _children(proc.pid)
            # a COMPLETE checkpoint: killing while the first one is still being written leaves none to resume from
            if _last_complete_checkpoint(out / "save", while_writing=True) is not None:
                break
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL to torchrun only: it cannot stop its workers, they must end by themselves
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the job ended by itself (exit {proc.returncode}) before the kill"
    assert len(workers) == 2
    deadline = time.time() + 30
    while time.time() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in workers):
        time.sleep(0.1)
    # Orphaned workers would go on writing checkpoints under the restarted job.
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")], "torchrun's workers outlived it"
    resume_from = _last_complete_checkpoint(out / "save")
    assert resume_from is not None, "the job was killed before any checkpoint"
    counter, step, end_of_epoch = resume_from
    expected = f"Training epoch {counter + 1} from step 0" if end_of_epoch else f"Training epoch {counter} from step {step}"
    log_before = (out / "log.txt").read_text()

    proc = subprocess.run(cmd, cwd=RECIPE, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    resumed = re.findall(r"Training epoch \d+ from step \d+", (out / "log.txt").read_text()[len(log_before):])
    assert resumed and resumed[0] == expected, (resumed, resume_from)
    # Every epoch validated and logged exactly once over the killed run and the restart, on the whole set.
    log = (out / "train_log.txt").read_text().splitlines()
    epochs = [line for line in log if line.startswith("epoch: ")]
    assert [line.split(" ")[1] for line in epochs] == ["1", "2", "3"], epochs
    assert all(int(re.search(r"valid n_clips: (\d+)", line).group(1)) == N_CLIPS for line in epochs)
