"""Every entry point ends a user's mistake with one stderr line, checks its output folder first, and a trained run
folder works after it is moved (issue 14)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import speechbrain as sb

from speechbrain_lmaczs.entry import resolve_run_options
from speechbrain_lmaczs.errors import ConfigError
from speechbrain_lmaczs.lmaczs.run_folder import check_clap_source, run_yaml_text

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "ESC50" / "interpret"
SAMPLES = ROOT / "tests" / "samples"
CLIP = SAMPLES / "ESC50" / "audio" / "1-100032-A-0.wav"
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def run(cmd, cwd=ROOT, timeout=900):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def lmaczs(*args, cwd=ROOT):
    return run([sys.executable, "-m", "speechbrain_lmaczs.cli", *args], cwd=cwd)


def assert_one_line(proc, prog, *fragments):
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    for fragment in fragments:
        assert fragment in lines[0]


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def _train(*extra, cwd=ROOT):
    return run(
        [
            sys.executable,
            RECIPE / "train.py",
            RECIPE / "hparams" / "lmaczs_mel.yaml",
            f"--data_folder={SAMPLES / 'ESC50'}",
            "--train_data=labels",
            "--clap_source=tiny-random",
            "--number_of_epochs=1",
            *extra,
        ],
        cwd=cwd,
    )


# ---------------------------------------------------------------- relocatable run folders


def test_run_trained_with_a_relative_folder_and_steps_alone_is_explained_after_a_move(tmp_path):
    """The issue's case: relative --output_folder, --ckpt_interval_steps=5 alone, moved, explained elsewhere."""
    train_cwd, elsewhere = tmp_path / "train_here", tmp_path / "elsewhere"
    train_cwd.mkdir()
    elsewhere.mkdir()
    proc = _train("--output_folder=runs/r1", "--batch_size=1", "--ckpt_interval_steps=5", "--n_explanations=0",
                  cwd=train_cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mutually exclusive" not in proc.stdout + proc.stderr
    # The steps option won over the yaml's ckpt_interval_minutes (SpeechBrain logs the override).
    log = (train_cwd / "runs" / "r1" / "log.txt").read_text()
    assert "ckpt_interval_minutes which is specified in hparams was overridden by command line input to: 0" in log
    moved = tmp_path / "moved" / "run"
    moved.parent.mkdir()
    shutil.move(str(train_cwd / "runs" / "r1"), moved)
    before_old, before_moved = tree(train_cwd), tree(moved)

    out = tmp_path / "out"
    proc = lmaczs("explain", CLIP, "--checkpoint", moved, "--out", out, "--prompt", "dog barking", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "report.html").is_file()
    # Nothing created in the working directory, at the old place, or in the run itself.
    assert tree(elsewhere) == [] and tree(train_cwd) == before_old == ["runs"]
    assert tree(moved) == before_moved

    # Its CLAP gone, the run is refused with what is missing and how to pass another; nothing is re-created.
    shutil.move(str(moved / "clap"), tmp_path / "clap_elsewhere")
    proc = lmaczs("explain", CLIP, "--checkpoint", moved, "--out", tmp_path / "out2", "--prompt", "dog", cwd=elsewhere)
    assert_one_line(proc, "lmaczs", "tiny-random CLAP is missing", str(moved / "clap"), "--clap_source")
    assert not (moved / "clap").exists() and not (tmp_path / "out2").exists() and tree(elsewhere) == []
    # ... and --clap_source names it.
    proc = lmaczs(
        "explain", CLIP, "--checkpoint", moved, "--out", tmp_path / "out2", "--prompt", "dog",
        "--clap_source", tmp_path / "clap_elsewhere", cwd=elsewhere,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (moved / "clap").exists() and tree(elsewhere) == []


def _write_run_yaml(folder, source, savedir):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hyperparams.yaml").write_text(
        "output_folder: /old/place/run\n"
        "save_folder: /old/place/run/save\n"
        "other: /old/place/runner\n"
        "clap_source: " + source + "\n"
        "clap: &id001 !apply:speechbrain_lmaczs.clap.load_clap\n"
        "  backend: msclap\n"
        f"  source: {source}\n"
        f"  savedir: {savedir}\n"
        "modules:\n"
        "  clap: *id001\n"
    )


def test_run_yaml_is_read_where_the_folder_is_now_and_overrides_reach_the_clap_node(tmp_path):
    run_folder = tmp_path / "run"
    _write_run_yaml(run_folder, "tiny-random", "/old/place/run/clap")
    from speechbrain_lmaczs.explaining import read_plain_yaml

    plain = read_plain_yaml(run_yaml_text(run_folder))
    assert plain["output_folder"] == str(run_folder) and plain["save_folder"] == str(run_folder / "save")
    assert plain["other"] == "/old/place/runner"  # only the run's own prefix moves
    text = run_yaml_text(run_folder, {"clap_source": "laion/clap-htsat-unfused"})
    assert "source: laion/clap-htsat-unfused" in text and "tiny-random" not in text


@pytest.mark.parametrize(
    "source,error",
    [
        ("microsoft/msclap", None),  # a hub id stays a hub id (the loader downloads it or reads the cache)
        ("/gone/CLAP_weights_2022.pth", "does not exist"),
        ("results/demo/clap", "does not exist"),  # a relative path of another working directory
        ("tiny-random", "tiny-random CLAP is missing"),
    ],
)
def test_missing_clap_is_named_with_clap_source(tmp_path, monkeypatch, source, error):
    monkeypatch.chdir(tmp_path)  # a checkout that has run the demo HAS results/demo/clap: not that one
    _write_run_yaml(tmp_path / "run", source, "/old/place/run/clap")
    if error is None:
        check_clap_source(tmp_path / "run")
    else:
        with pytest.raises(FileNotFoundError, match=error) as info:
            check_clap_source(tmp_path / "run")
        assert "--clap_source" in str(info.value)
    assert not Path("/old/place").exists()


# ---------------------------------------------------------------- the checkpoint options


def test_steps_option_alone_wins_over_the_yaml_minutes_and_both_are_refused():
    _, run_opts, _ = sb.parse_arguments(["x.yaml", "--ckpt_interval_steps=20"])
    resolved = resolve_run_options(run_opts)
    assert resolved.ckpt_interval_steps == 20 and resolved.ckpt_interval_minutes == 0
    assert "ckpt_interval_minutes" in resolved.overridden_args  # so the Brain does not read the yaml's 15
    _, run_opts, _ = sb.parse_arguments(["x.yaml"])
    assert resolve_run_options(run_opts) is run_opts
    _, run_opts, _ = sb.parse_arguments(["x.yaml", "--ckpt_interval_steps=20", "--ckpt_interval_minutes=3"])
    with pytest.raises(ConfigError, match="mutually exclusive"):
        resolve_run_options(run_opts)


# ---------------------------------------------------------------- one line per entry point


def test_train_refuses_contradicting_options_with_one_line_and_leaves_no_folder(tmp_path):
    out = tmp_path / "run"
    proc = _train(f"--output_folder={out}", "--ckpt_interval_steps=5", "--ckpt_interval_minutes=2")
    assert_one_line(proc, "train.py", "mutually exclusive")
    assert not out.exists()
    (tmp_path / "a_file").write_text("mine")
    proc = _train(f"--output_folder={tmp_path / 'a_file' / 'run'}")
    assert_one_line(proc, "train.py", "--output_folder", "is a file, not a folder")
    # a bad loss option is refused from the yaml's settings, before any folder or model exists
    for options, words in (
        (["--mix_target=masks"], "mix_target must be one of"),
        (["--sim_match=below"], "sim_match must be one of"),
        (["--mix_target=mask", "--lambda_out=1.0"], "needs an embedding mix_target"),
        (["--lambda_del=-1"], "lambda_del is the weight of a loss term"),
    ):
        proc = _train(f"--output_folder={out}", *options)
        assert_one_line(proc, "train.py", words)
        assert not out.exists()
    # --verbose keeps the traceback for whoever wants it.
    proc = _train(f"--output_folder={out}", "--ckpt_interval_steps=5", "--ckpt_interval_minutes=2", "--verbose")
    assert proc.returncode != 0 and "Traceback" in proc.stderr and not out.exists()


def _eval(*extra):
    return run(
        [
            sys.executable,
            RECIPE / "eval.py",
            RECIPE / "hparams" / "eval.yaml",
            f"--data_folder={SAMPLES / 'ESC50'}",
            *extra,
        ]
    )


@pytest.mark.parametrize(
    "option,fragment",
    [
        ("--snr_db=nan", "snr_db must be a finite number of dB"),
        ("--snr_db=-100", "snr_db must be between -40 and 96 dB"),
        ("--snr_db=200", "snr_db must be between -40 and 96 dB"),
        ("--methods=[magic]", "Unknown methods ['magic']"),
        (None, "is not a training output folder"),
    ],
)
def test_eval_refuses_bad_settings_with_one_line_before_creating_anything(tmp_path, option, fragment):
    not_a_run = tmp_path / "not_a_run"
    not_a_run.mkdir()
    out = tmp_path / "eval"
    proc = _eval(f"--checkpoint={not_a_run}", f"--output_folder={out}", *([option] if option else []))
    assert_one_line(proc, "eval.py", fragment)
    assert not out.exists()


def test_prepare_bad_option_is_one_line(tmp_path):
    proc = run([sys.executable, "-m", "speechbrain_lmaczs.prepare", "labels", "--csv", tmp_path / "none.csv",
                "--audio_folder", tmp_path, "--save_folder", tmp_path / "out"])
    assert_one_line(proc, "python -m speechbrain_lmaczs.prepare", "none.csv", "does not exist")
    (tmp_path / "a_file").write_text("mine")
    proc = run([sys.executable, "-m", "speechbrain_lmaczs.prepare", "esc50", "--data_folder", tmp_path,
                "--save_folder", tmp_path / "a_file" / "x"])
    assert_one_line(proc, "python -m speechbrain_lmaczs.prepare", "--save_folder", "is a file, not a folder")


EXIT_SCRIPT = """
import atexit, logging, sys
import torch.distributed as dist
from speechbrain_lmaczs.entry import exit_script
folder, grouped = sys.argv[1], sys.argv[2] == "group"
if grouped:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=0, world_size=1)
    dist.barrier()
logging.basicConfig(filename=f"{folder}/log.txt", level=logging.INFO)
logging.info("logged before the end")
atexit.register(lambda: open(f"{folder}/handler.txt", "w").write("ran"))
sys.stdout.write("written without a newline")
try:
    exit_script(3)
finally:
    sys.stdout.write(" | unwound")
"""


@pytest.mark.parametrize("grouped", ["group", "alone"])
def test_exit_script_keeps_status_output_and_exit_handlers_in_and_out_of_a_process_group(tmp_path, grouped):
    """In a process group the script leaves without the interpreter's teardown (os._exit: nothing unwinds, so the
    ``finally`` does not run); the status, the buffered output, the log and the exit handlers are all kept."""
    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(tmp_path), grouped], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 3, proc.stderr[-2000:]
    unwound = " | unwound" if grouped == "alone" else ""
    assert proc.stdout == "written without a newline" + unwound
    assert (tmp_path / "handler.txt").read_text() == "ran"
    assert "logged before the end" in (tmp_path / "log.txt").read_text()


def _unwritable_folders(tmp_path):
    """Output folders no user can write, root included: under a plain file; under /proc; a 0555 folder (only
    refused for a non-root user: root ignores permission bits)."""
    (tmp_path / "a_file").write_text("mine")
    folders = [tmp_path / "a_file" / "out"]
    if Path("/proc/self").is_dir():
        folders.append(Path("/proc/lmaczs_out"))
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        folders.append(locked / "out")
    return folders


def test_explain_out_that_cannot_be_written_fails_first_with_one_line(tmp_path):
    # The checkpoint is not even a run: the folder is checked before anything is loaded or computed.
    for out in _unwritable_folders(tmp_path):
        proc = lmaczs("explain", CLIP, "--checkpoint", tmp_path, "--out", out, "--prompt", "dog")
        assert_one_line(proc, "lmaczs", f"--out {out} cannot be written")


def test_writable_check_tolerates_a_parent_made_meanwhile_by_another_run(tmp_path, monkeypatch):
    """Two runs started together into sibling folders of a new parent: the one whose probe finds the parent just
    made by the other goes on, and leaves that parent in place."""
    from speechbrain_lmaczs import files

    real_mkdir = os.mkdir

    def racing_mkdir(path, *args, **kwargs):
        if os.path.basename(path) == "shared":
            real_mkdir(path)  # the other run wins the race
            raise FileExistsError(17, "File exists", path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(files.os, "mkdir", racing_mkdir)
    files.check_writable_folder(tmp_path / "shared" / "run_a", "--output_folder")
    assert (tmp_path / "shared").is_dir()  # the other run's parent is not removed
    assert not (tmp_path / "shared" / "run_a").exists()  # the probe's own folder is
