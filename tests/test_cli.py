"""The `lmaczs` console script end to end on tests/samples, with the tiny CLAP and the briefly trained decoder."""

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from matplotlib.image import imread

from speechbrain_lmaczs.cli import main
from speechbrain_lmaczs.explain import methods
from speechbrain_lmaczs.report import WRITTEN

CLIP = Path(__file__).parent / "samples" / "ESC50" / "audio" / "1-100032-A-0.wav"


def cli(*args):
    """``main`` as the console script calls it, from any path-like arguments."""
    return main([str(a) for a in args])


def run_script(*args):
    """The installed console script (``python -m`` where the package is not installed)."""
    script = Path(sys.executable).with_name("lmaczs")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "speechbrain_lmaczs.cli"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=600)


class ReportLinks(HTMLParser):
    """The audio players and images of a report."""

    def __init__(self):
        super().__init__()
        self.audio, self.images = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "audio":
            self.audio.append((attrs["data-role"], attrs["src"]))
        elif tag == "img":
            self.images.append(attrs["src"])


def links(report):
    parser = ReportLinks()
    parser.feed(Path(report).read_text(encoding="utf-8"))
    return parser


def assert_one_line_error(stderr, *fragments):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lmaczs: error: ") and "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_is_complete(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: lmaczs" in out and "explain" in out and "examples:" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("AUDIO", "--checkpoint", "--out", "--prompt", "--label", "--top-k", "--method", "--device",
                   "--overwrite", "--verbose"):
        assert option in out
    for method in methods():
        assert method in out
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_explain_end_to_end(trained_mel_run, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["explain", CLIP, "--prompt", "dog barking", "--prompt", "rain", "--checkpoint", trained_mel_run,
            "--out", out, "--method", "lmaczs", "--method", "gradcam"]
    proc = run_script(*args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"Wrote {out / 'report.html'}"
    stems = ["lmaczs_dog_barking", "lmaczs_rain", "gradcam_dog_barking", "gradcam_rain"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.wav" for s in stems] + [f"{s}.png" for s in stems] + ["original.wav", "report.html", WRITTEN]
    )
    # The record of what lmaczs wrote here (all that --overwrite may replace).
    assert json.loads((out / WRITTEN).read_text()) == sorted(p.name for p in out.iterdir() if p.name != WRITTEN)
    info = sf.info(str(CLIP))
    for name in [f"{s}.wav" for s in stems] + ["original.wav"]:
        data, rate = sf.read(out / name)
        assert rate == info.samplerate and data.shape == (info.frames,) and np.abs(data).max() > 0
    for stem in stems:
        assert imread(out / f"{stem}.png").shape[:2] == (800, 1000)
    report = links(out / "report.html")
    assert report.audio == [("original", "original.wav")] + [("explanation", f"{s}.wav") for s in stems]
    assert report.images == [f"{s}.png" for s in stems]

    # A second run refuses to overwrite, before loading anything, and leaves the files alone.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert cli(*args) == 1
    assert_one_line_error(capsys.readouterr().err, "already exists", "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    assert cli(*args[:-4], "--overwrite") == 0  # LMAC-ZS only this time
    assert (out / "lmaczs_rain.wav").read_bytes() == before["lmaczs_rain.wav"]  # deterministic
    assert len(links(out / "report.html").audio) == 3


def test_long_stereo_file_at_another_rate_top_k_labels(trained_mel_run, tmp_path, capsys):
    """12 s of stereo OGG at 22.05 kHz: three windows, every WAV exactly as long as the input."""
    rate = 22050
    wav, _ = sf.read(CLIP, dtype="float32")
    mono = np.concatenate([wav[::2], wav[::2], wav[::2]])[: 12 * rate]
    path = tmp_path / "long.ogg"
    sf.write(path, np.stack([mono, 0.5 * mono], axis=1), rate)
    frames = sf.info(str(path)).frames
    out = tmp_path / "out"
    assert cli("explain", path, "--checkpoint", trained_mel_run, "--out", out, "--top-k", "2") == 0
    assert "explaining (lmaczs)" in capsys.readouterr().err  # progress bar over the windows
    report = links(out / "report.html")
    assert [role for role, _ in report.audio] == ["original", "explanation", "explanation"]
    for _, src in report.audio:
        data, written_rate = sf.read(out / src)
        assert written_rate == rate and data.shape == (frames,)
    assert all(src.startswith("lmaczs_this_is_the_sound_of_") for src in report.images)


def _bad_input(kind, folder, trained_run):
    """(argv, expected fragment) of one bad invocation."""
    clip, out = str(CLIP), str(folder / "out")
    base = ["--checkpoint", str(trained_run), "--out", out, "--prompt", "dog"]
    path = folder / "bad.wav"
    if kind == "missing file":
        return ["explain", str(folder / "nope.wav"), *base], "no such file"
    if kind == "not audio":
        path.write_text("hello")
        return ["explain", str(path), *base], "is not an audio file"
    if kind == "zero length":
        sf.write(path, np.zeros((0, 2), dtype="float32"), 16000)
        return ["explain", str(path), *base], "holds no audio samples"
    if kind == "nan samples":
        sf.write(path, np.full(100, np.nan, dtype="float32"), 16000, subtype="FLOAT")
        return ["explain", str(path), *base], "NaN or infinite samples"
    if kind == "empty prompt":
        return ["explain", clip, *base, "--prompt", " "], "--prompt is empty"
    if kind == "not a training output":
        (folder / "run").mkdir()
        return ["explain", clip, "--checkpoint", str(folder / "run"), "--out", out], "not a training output folder"
    if kind == "top-k":
        return ["explain", clip, *base[:4], "--top-k", "0"], "--top-k must be at least 1"
    if kind == "device":
        return ["explain", clip, *base, "--device", "toaster"], "is not a torch device"
    if kind == "output is a file":
        Path(out).write_text("mine")
        return ["explain", clip, *base], "is a file"
    raise AssertionError(kind)


BAD = ["missing file", "not audio", "zero length", "nan samples", "empty prompt", "not a training output", "top-k",
       "device", "output is a file"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_gives_one_line_and_status_1(kind, trained_mel_run, tmp_path, capsys):
    argv, fragment = _bad_input(kind, tmp_path, trained_mel_run)
    assert cli(*argv) == 1
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, fragment)
    assert captured.out == ""
    assert kind == "output is a file" or not (tmp_path / "out").exists()


def test_console_script_error_has_no_traceback(tmp_path):
    proc = run_script("explain", tmp_path / "nope.wav", "--checkpoint", tmp_path, "--out", tmp_path / "out")
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "nope.wav: no such file")


def test_usage_errors_exit_with_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli("explain", CLIP, "--checkpoint", tmp_path, "--out", tmp_path / "out", "--method", "magic")
    assert exit_info.value.code == 2
    assert "invalid choice: 'magic'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli("explain", CLIP, "--out", tmp_path / "out")
    assert exit_info.value.code == 2
    assert "the following arguments are required: --checkpoint" in capsys.readouterr().err


def test_the_input_is_never_overwritten(trained_mel_run, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    clip = out / "original.wav"
    clip.write_bytes(CLIP.read_bytes())
    argv = ["explain", clip, "--checkpoint", trained_mel_run, "--out", out, "--prompt", "dog", "--overwrite"]
    assert cli(*argv) == 1
    assert_one_line_error(capsys.readouterr().err, "is the input itself")
    assert clip.read_bytes() == CLIP.read_bytes() and sorted(out.iterdir()) == [clip]
