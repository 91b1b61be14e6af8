"""Out-of-domain contamination: the SNR is what was asked, the result is deterministic per clip."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speechbrain_lmaczs.data import Contaminator, load_clip, make_dataset, prepare_esc50, prepare_speech
from speechbrain_lmaczs.data.pipeline import peak_normalize

SAMPLES = Path(__file__).parent / "samples"
RATE = 16000
CLIP = RATE * 2


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    folder = tmp_path_factory.mktemp("manifests")
    return {
        "esc50": prepare_esc50(SAMPLES / "ESC50", folder),
        "speech": prepare_speech(SAMPLES / "speech", folder),
    }


@pytest.fixture(scope="module")
def clean(manifests):
    return load_clip(str(SAMPLES / "ESC50" / "audio" / "1-100032-A-0.wav"), RATE, CLIP)


def snr_db(signal, noise):
    return float(10 * torch.log10(signal.pow(2).sum() / noise.pow(2).sum()))


@pytest.mark.parametrize("condition", ["white_noise", "mixture", "speech"])
@pytest.mark.parametrize("target", [3.0, -5.0])
def test_snr_is_exact(manifests, clean, condition, target):
    pool = {"white_noise": None, "mixture": manifests["esc50"], "speech": manifests["speech"]}[condition]
    contaminate = Contaminator(condition, target, RATE, CLIP, pool=pool, seed=0)
    scaled = contaminate.scaled_contaminant(clean, "1-100032-A-0")
    assert snr_db(clean, scaled) == pytest.approx(target, abs=1e-3)
    out = contaminate(clean, "1-100032-A-0")
    # the output is the normalised sum: same SNR, peak 1
    assert torch.allclose(out, peak_normalize(clean + scaled))
    assert float(out.abs().max()) == pytest.approx(1.0, abs=1e-6)


def test_mixture_never_uses_the_clip_itself(manifests):
    # 5 s windows at the native rate: an ESC-50 clip fills one exactly, so the contaminant is a whole clip
    rate = 44100
    contaminate = Contaminator("mixture", 3.0, rate, 5 * rate, pool=manifests["esc50"], seed=0)
    clips = {p.stem: load_clip(str(p), rate, 5 * rate) for p in sorted((SAMPLES / "ESC50" / "audio").iterdir())}
    used = set()
    for seed in range(3):
        contaminate.seed = seed
        for clip_id in clips:
            noise = peak_normalize(contaminate.contaminant(clip_id))
            (match,) = [other for other, wav in clips.items() if torch.allclose(noise, wav, atol=1e-5)]
            assert match != clip_id
            # the evaluation's prompt selectivity reads the contaminant's label through this id
            assert contaminate.contaminant_id(clip_id) == match
            used.add(match)
    assert len(used) > 1
    assert Contaminator("white_noise", 3.0, rate, 5 * rate, seed=0).contaminant_id("1-100032-A-0") is None


def test_speech_pool_from_a_folder(clean):
    contaminate = Contaminator("speech", 3.0, RATE, CLIP, pool=str(SAMPLES / "speech"), seed=1)
    assert len(contaminate.pool) == 5
    noise = contaminate.contaminant("any-clip")
    assert noise.shape == (CLIP,) and float(noise.abs().max()) > 0  # 16/22.05 kHz speech resampled and fitted


def test_deterministic_per_clip_and_seed(manifests, clean):
    a = Contaminator("speech", 3.0, RATE, CLIP, pool=manifests["speech"], seed=0)
    b = Contaminator("speech", 3.0, RATE, CLIP, pool=manifests["speech"], seed=0)
    assert torch.equal(a(clean, "clip-7"), b(clean, "clip-7"))
    noise = Contaminator("white_noise", 3.0, RATE, CLIP, seed=0)
    assert torch.equal(noise(clean, "clip-7"), noise(clean, "clip-7"))
    assert not torch.equal(noise(clean, "clip-7"), noise(clean, "clip-8"))
    reseeded = Contaminator("white_noise", 3.0, RATE, CLIP, seed=1)
    assert not torch.equal(noise(clean, "clip-7"), reseeded(clean, "clip-7"))


def test_same_noise_in_another_interpreter(tmp_path):
    """Seeds come from a stable hash: another process (other PYTHONHASHSEED) draws the same noise."""
    code = (
        "import torch; from speechbrain_lmaczs.data import Contaminator;"
        f"n = Contaminator('white_noise', 3.0, {RATE}, {CLIP}, seed=5).contaminant('5-156999-C-19');"
        "torch.save(n, __import__('sys').argv[1])"
    )
    out = tmp_path / "noise.pt"
    env = dict(os.environ, PYTHONHASHSEED="123")
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, cwd=Path(__file__).parents[1])
    theirs = torch.load(out)
    ours = Contaminator("white_noise", 3.0, RATE, CLIP, seed=5).contaminant("5-156999-C-19")
    assert torch.equal(theirs, ours)


def test_clean_and_silent_clips(clean):
    assert Contaminator("clean", 3.0, RATE, CLIP)(clean, "x") is clean
    out = Contaminator("white_noise", 3.0, RATE, CLIP)(torch.zeros(CLIP), "x")
    assert torch.isfinite(out).all()


def test_bad_arguments(manifests, clean):
    with pytest.raises(ValueError, match="Unknown contamination"):
        Contaminator("reverb", 3.0, RATE, CLIP)
    with pytest.raises(ValueError, match="needs a pool"):
        Contaminator("mixture", 3.0, RATE, CLIP)
    with pytest.raises(ValueError, match="takes no pool"):
        Contaminator("white_noise", 3.0, RATE, CLIP, pool=manifests["speech"])
    with pytest.raises(ValueError, match=r"Expected a \(32000,\) clip"):
        Contaminator("white_noise", 3.0, RATE, CLIP)(clean[:100], "x")


def test_dataset_applies_the_contaminator(manifests, clean):
    contaminate = Contaminator("mixture", 3.0, RATE, CLIP, pool=manifests["esc50"], seed=0)
    dataset = make_dataset(manifests["esc50"], RATE, CLIP, contaminator=contaminate)
    assert torch.allclose(dataset[0]["wav"], contaminate(clean, "1-100032-A-0"))
    with pytest.raises(ValueError, match="sample clips"):
        make_dataset(manifests["esc50"], RATE, CLIP // 2, contaminator=contaminate)
