"""The HTML report in a real browser: headless Chromium opens it from disk, plays nothing but reads every player.

The report's own script writes each player's duration into the DOM once the browser has read the file; Chromium's
``--dump-dom`` (after a virtual time budget) returns that DOM. A screenshot of the same page is kept for the README.
"""

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from matplotlib.image import imread

from speechbrain_lmaczs.explain import Explainer, Explanation, RecordingExplanation
from speechbrain_lmaczs.report import explanation_figure, heard_spectrogram, output_names, write_report

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "tests" / "samples" / "ESC50" / "audio" / "1-100032-A-0.wav"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
WINDOW = (1280, 2200)

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (apt-get install chromium): the HTML report is not opened in a browser",
)


def chromium(user_data_dir, *args):
    """Run headless Chromium with nothing that reaches the network, and return its stdout."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--mute-audio",
        f"--user-data-dir={user_data_dir}",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class Players(HTMLParser):
    """The audio elements of a DOM with their attributes, and the text of their duration labels."""

    def __init__(self):
        super().__init__()
        self.players, self.labels, self._in_label = [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "audio":
            self.players.append(attrs)
        self._in_label = tag == "span" and attrs.get("class") == "duration"

    def handle_data(self, data):
        if self._in_label:
            self.labels.append(data)

    def handle_endtag(self, tag):
        self._in_label = False


@pytest.fixture(scope="module")
def report(trained_mel_run, tmp_path_factory):
    explainer = Explainer.from_folder(trained_mel_run)
    results = [
        explainer.explain_file(CLIP, prompts=["dog barking", "thunder and rain"]),
        explainer.with_method("gradcam").explain_file(CLIP, prompts=["dog barking"]),
    ]
    return Path(write_report(results, tmp_path_factory.mktemp("report") / "out"))


@needs_chromium
def test_every_player_of_the_report_can_play(report, tmp_path):
    dom = chromium(tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", report.as_uri())
    parsed = Players()
    parsed.feed(dom)
    roles = [player["data-role"] for player in parsed.players]
    assert roles == ["original", "explanation", "explanation", "explanation"]
    for player in parsed.players:
        assert "data-error" not in player, player
        # Written by the page's script from the browser's decoded metadata: the clip lasts 5 s.
        assert float(player["data-duration"]) == pytest.approx(5.0, abs=0.01), player
    assert parsed.labels == ["5.00 s"] * 4


@needs_chromium
def test_screenshot_of_the_report(report, tmp_path):
    shot = tmp_path / "report.png"
    chromium(
        tmp_path / "profile",
        f"--screenshot={shot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
        report.as_uri(),
    )
    assert shot.stat().st_size > 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(shot)
    assert image.shape[:2] == (WINDOW[1], WINDOW[0])
    assert image[..., :3].std() > 0.05  # the page rendered, not a blank canvas
    if os.environ.get("LMACZS_UPDATE_SCREENSHOT") == "1":
        # The README's screenshot is refreshed on demand only: tests do not write into the checkout.
        shutil.copyfile(shot, ROOT / "docs" / "report_screenshot.png")


# ---------------------------------------------------------------- without a browser


def fake_result(method, prompts, frames=50, bands=8):
    """A RecordingExplanation of 1 s at 8 kHz with 20-ms frames, without any model."""
    torch.manual_seed(0)
    explanations = [
        Explanation(p, 1.0 / len(prompts), method, torch.rand(frames, bands), torch.zeros(8000)) for p in prompts
    ]
    return RecordingExplanation(
        path="/data/clip.wav",
        sample_rate=8000,
        waveform=torch.zeros(8000),
        spectrogram=-40 * torch.rand(frames, bands),
        frame_seconds=0.02,
        frequencies=torch.linspace(100, 3900, bands),
        frequency_scale="mel",
        method=method,
        candidates=list(prompts),
        probabilities=torch.full((len(prompts),), 1.0 / len(prompts)),
        n_windows=1,
        explanations=explanations,
    )


def test_output_names_are_unique_file_stems():
    results = [fake_result("gradcam", ["dog!", "dog?", "a/b"]), fake_result("gradcam++", ["dog!"])]
    assert output_names(results) == [["gradcam_dog", "gradcam_dog_2", "gradcam_a_b"], ["gradcamplusplus_dog"]]


def test_figure_shows_prompt_probability_and_axes():
    result = fake_result("lmaczs", ["dog barking", "rain", "wind", "birds"])
    figure = explanation_figure(result, result.explanations[0])
    assert figure.get_suptitle().startswith('"dog barking": p = 0.250\nLMAC-ZS explanation of clip.wav')
    axes = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == [
        "Input spectrogram", "Mask", "Masked spectrogram (what the explanation plays)"
    ]
    assert axes[-1].get_xlabel() == "Time (s)"
    for ax in axes:
        assert ax.get_ylabel() == "Frequency (Hz, mel bands)"
        assert ax.get_xlim() == pytest.approx((-0.01, 0.99))  # 50 frames of 20 ms, centred
        assert ax.get_yticklabels()[0].get_text() == "100" and ax.get_yticklabels()[-1].get_text() == "3.9k"


def test_heard_spectrogram_is_the_masked_magnitude_in_db():
    spec = torch.tensor([[0.0, -20.0, -30.0]])
    heard = heard_spectrogram(spec, torch.tensor([[1.0, 0.1, 0.0]]), db_range=60.0)
    assert heard.tolist() == [[0.0, -40.0, -60.0]]
