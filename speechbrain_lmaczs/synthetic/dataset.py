"""One split of synthetic scenes on disk: WAVs, support masks and a SpeechBrain JSON manifest."""

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from speechbrain_lmaczs.files import BuildStamp, atomic_path, atomic_write, write_json_atomic
from speechbrain_lmaczs.synthetic.scenes import GENERATOR_VERSION, SceneConfig, make_scene
from speechbrain_lmaczs.synthetic.supports import SpectrogramGrid, source_powers, supports_from_powers

logger = logging.getLogger(__name__)

def write_synthetic_dataset(
    folder,
    n_scenes,
    seed,
    split,
    frontend,
    config=None,
    rel_db=-30.0,
    margin_db=0.0,
    subtype="PCM_16",
):
    """Write one split of synthetic scenes: WAVs, support masks and a SpeechBrain JSON manifest.

    Layout under ``folder``::

        {split}.json                      manifest (SpeechBrain style: id -> entry)
        {split}.options.json              the options below; written last, it marks a complete split
        {split}/audio/{split}_{i:05d}.wav
        {split}/support/{split}_{i:05d}.npz   "mel": bool (n_events, time, n_mels) and
                                              "linear": bool (n_events, time, n_fft // 2 + 1), events in manifest order

    Manifest entries::

        {"wav": absolute path, "duration": s, "sample_rate": Hz, "caption": "a low hum and a rising chirp",
         "class_string": label of the first event (the only one in single-event scenes), "classID": its index,
         "n_events": ..., "events": [{"classID", "label", "caption", "prompt", "onset", "offset", "level_db"}, ...],
         "support": absolute path of the npz}

    Scenes are generated at the front-end's sampling rate. Calling again with the same options is a no-op; with
    other options the split is rewritten. Every file is written under a temporary name and renamed into place,
    so an interrupted run never leaves a truncated file behind a valid name.

    Parameters
    ----------
    folder : str or path
        Output folder (created if missing).
    n_scenes : int
        Number of scenes.
    seed : int
        Dataset seed (see :func:`make_scene`).
    split : str
        Split name, e.g. ``"train"``, ``"valid"``, ``"test"``.
    frontend : LogMelFrontend
        Defines the sampling rate and the mel and linear grids of the masks.
    config : SceneConfig, optional
        Scene parameters; its ``sample_rate`` is replaced by the front-end's.
    rel_db, margin_db : float
        Support definition, see :func:`dominant_support`.
    subtype : str
        soundfile subtype of the WAVs (``"PCM_16"`` or ``"FLOAT"``).

    Returns
    -------
    pathlib.Path
        Path of the manifest.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_lmaczs.clap.frontend import LogMelFrontend
    >>> fe = LogMelFrontend(16000, 512, 160, 40, 50.0, 8000.0, clip_seconds=2.0)
    >>> cfg = SceneConfig(clip_seconds=2.0, n_events=(1, 2))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     manifest = write_synthetic_dataset(d, 2, 0, "valid", fe, cfg)
    ...     sorted(json.loads(manifest.read_text()))
    ['valid_00000', 'valid_00001']
    """
    if n_scenes < 1:
        raise ValueError(f"n_scenes={n_scenes}: ask for at least one scene.")
    config = SceneConfig() if config is None else config
    config = SceneConfig(**{**asdict(config), "sample_rate": frontend.sample_rate})
    folder = Path(folder).resolve()
    manifest_path = folder / f"{split}.json"
    options = {
        "generator_version": GENERATOR_VERSION,
        "n_scenes": int(n_scenes),
        "seed": int(seed),
        "split": split,
        "scene_config": json.loads(json.dumps(asdict(config))),
        "frontend": frontend.config(),
        "rel_db": float(rel_db),
        "margin_db": float(margin_db),
        "subtype": subtype,
    }
    stamp = BuildStamp(folder / f"{split}.options.json")
    if stamp.matches(options, manifest_path):
        logger.info("Synthetic split %r already written in %s, skipping.", split, folder)
        return manifest_path
    if stamp.read() is not None:
        logger.info("Synthetic split %r in %s was written with other options, rewriting it.", split, folder)
    stamp.clear()

    audio_dir, support_dir = folder / split / "audio", folder / split / "support"
    audio_dir.mkdir(parents=True, exist_ok=True)
    support_dir.mkdir(parents=True, exist_ok=True)
    mel_grid = SpectrogramGrid.from_frontend(frontend, "mel")
    linear_grid = SpectrogramGrid.from_frontend(frontend, "linear")

    manifest = {}
    for index in tqdm(range(n_scenes), desc=f"synthetic {split}", dynamic_ncols=True):
        scene = make_scene(seed, index, config, split=split)
        scene_id = f"{split}_{index:05d}"
        wav_path, support_path = audio_dir / f"{scene_id}.wav", support_dir / f"{scene_id}.npz"

        with atomic_path(wav_path) as tmp:
            sf.write(tmp, scene.waveform, scene.sample_rate, subtype=subtype, format="WAV")

        # Both grids share the front-end's STFT: transform once, project twice.
        event_power, rest_power = source_powers(scene, linear_grid)
        supports = {
            name: supports_from_powers(grid.project(event_power), grid.project(rest_power), rel_db, margin_db)
            for name, grid in (("mel", mel_grid), ("linear", linear_grid))
        }
        atomic_write(support_path, lambda f: np.savez_compressed(f, **supports), binary=True)

        first = scene.events[0]
        manifest[scene_id] = {
            "wav": str(wav_path),
            "duration": scene.duration,
            "sample_rate": scene.sample_rate,
            "caption": scene.caption,
            "class_string": first.label,
            "classID": first.class_index,
            "n_events": len(scene.events),
            "events": [e.to_dict() for e in scene.events],
            "support": str(support_path),
        }

    write_json_atomic(manifest_path, manifest)
    stamp.write(options)
    logger.info("Wrote %d synthetic scenes of split %r to %s.", n_scenes, split, folder)
    return manifest_path
