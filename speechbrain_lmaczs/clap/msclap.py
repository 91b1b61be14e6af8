"""Microsoft CLAP 2022 (CNN14 audio tower + BERT text tower), the model LMAC-ZS was published with.

The module tree mirrors the released checkpoint ``CLAP_weights_2022.pth`` so that its state dict loads with strict
key checking:

- ``audio_encoder.base``: CNN14 (``bn0``, ``conv_block1..6``, ``fc1``, ``fc_audioset``);
- ``audio_encoder.projection``: :class:`Projection` (2048 -> 1024);
- ``caption_encoder.base``: a ``transformers`` ``BertModel``;
- ``caption_encoder.projection``: :class:`Projection` (768 -> 1024);
- ``logit_scale``: the log temperature (stored here as ``log_logit_scale``, because ``logit_scale`` is the
  exponentiated value in the :class:`CLAPBackend` interface).

The torchlibrosa front-end of the original (``spectrogram_extractor``, ``logmel_extractor``) is replaced by the
differentiable :class:`LogMelFrontend` with the same settings, so its buffers in the checkpoint are not loaded.
"""

import json
import logging
import os
import re

import torch
from torch import nn

from speechbrain_lmaczs.clap.base import CLAPBackend, CLAPLoadError, l2_normalize
from speechbrain_lmaczs.clap.frontend import LogMelFrontend
from speechbrain_lmaczs.clap.msclap_loading import (
    CHECKPOINT_NAME,
    HUB_ID,
    TEXT_MODEL,
    _TINY_WORDS,
    _architecture_from_state_dict,
    _download_checkpoint,
    _load_tokenizer,
    _read_checkpoint,
    build_word_tokenizer,
)
from speechbrain_lmaczs.clap.msclap_towers import (
    AudioTower,
    Cnn14,
    ConvBlock,
    Projection,
    TextTower,
    calibration_clips,
)
from speechbrain_lmaczs.files import atomic_path, write_json_atomic

logger = logging.getLogger(__name__)

CONFIG_NAME = "clap_config.json"
CONV_CHANNELS_2022 = (64, 128, 256, 512, 1024, 2048)


# Checkpoint entries that are not weights of the parts we run: torchlibrosa's STFT kernels and mel matrix (the
# LogMelFrontend recomputes the same front-end, see tests/test_clap_msclap.py), and BERT's position-id buffer that
# transformers < 4.31 saved with the weights (recent versions rebuild it).
_IGNORED_PREFIXES = ("audio_encoder.base.spectrogram_extractor.", "audio_encoder.base.logmel_extractor.")
_IGNORED_KEYS = ("caption_encoder.base.embeddings.position_ids", "caption_encoder.base.embeddings.token_type_ids")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
_BERT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "hidden_act",
    "layer_norm_eps",
    "pad_token_id",
    "initializer_range",
)
def default_frontend(n_mels=64):
    """The front-end of MS-CLAP 2022: 44.1 kHz, 1024-point STFT, hop 320, mels 50 Hz-14 kHz, 5 s clips.

    >>> default_frontend().n_frames
    690
    """
    return LogMelFrontend(44100, 1024, 320, n_mels, 50, 14000, clip_seconds=5)


class MSCLAP2022(CLAPBackend):
    """Microsoft CLAP 2022: CNN14 audio encoder and BERT text encoder with projections to a shared space.

    Use :meth:`from_pretrained` to load the released weights (or a folder written by :meth:`save_pretrained`) and
    :meth:`build_tiny` for a small random model in tests. The constructor builds random weights.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        Tokenizer of the text tower (BERT's uncased WordPiece for the released model).
    conv_channels : sequence of 6 int
        Widths of CNN14's conv blocks.
    embedding_dim : int
        Size of CNN14's clip embedding (``fc1``).
    classes_num : int
        Size of CNN14's AudioSet head (unused, present in checkpoints).
    proj_dim : int
        Size of the shared audio-text space.
    text_config : dict or transformers.BertConfig, optional
        BERT configuration; None gives bert-base.
    text_max_length : int
        Prompts are padded (and truncated) to this many tokens, as in MS-CLAP.
    frontend : LogMelFrontend, optional
        Log-mel front-end; None gives :func:`default_frontend`.
    init_audio_weights : bool
        False leaves CNN14's weights uninitialised, for loaders that overwrite them at once (its random
        initialisation takes seconds).

    Example
    -------
    >>> clap = MSCLAP2022.build_tiny().freeze()
    >>> logmel = clap.frontend(torch.randn(2, clap.clip_samples))
    >>> emb, hidden = clap.encode_audio(logmel, return_hidden=True)
    >>> emb.shape, [tuple(h.shape) for h in hidden[:2]]
    (torch.Size([2, 32]), [(2, 128, 21, 2), (2, 64, 21, 2)])
    >>> clap.encode_text(["this is the sound of dog", "rain"]).shape
    torch.Size([2, 32])
    """

    name = "msclap"

    def __init__(
        self,
        tokenizer,
        conv_channels=CONV_CHANNELS_2022,
        embedding_dim=2048,
        classes_num=527,
        proj_dim=1024,
        text_config=None,
        text_max_length=100,
        frontend=None,
        init_audio_weights=True,
    ):
        from transformers import BertConfig

        super().__init__(frontend if frontend is not None else default_frontend())
        if text_config is None:
            text_config = BertConfig()
        elif isinstance(text_config, dict):
            text_config = BertConfig(**text_config)
        if text_max_length > text_config.max_position_embeddings:
            raise ValueError(
                f"text_max_length={text_max_length} exceeds BERT's max_position_embeddings="
                f"{text_config.max_position_embeddings}: lower it or enlarge the text model."
            )
        self.tokenizer = tokenizer
        self.text_max_length = int(text_max_length)
        audio_args = (self.frontend.n_mels, conv_channels, embedding_dim, classes_num, proj_dim)
        if init_audio_weights:
            self.audio_encoder = AudioTower(*audio_args)
        else:
            with torch.device("meta"):
                self.audio_encoder = AudioTower(*audio_args)
            self.audio_encoder.to_empty(device="cpu")
        self.caption_encoder = TextTower(text_config, proj_dim)
        self.log_logit_scale = nn.Parameter(torch.tensor(1 / 0.07).log())

    # ------------------------------------------------------------------ interface
    @property
    def hidden_channels(self):
        """Channels of the maps of conv blocks 6, 5, 4, 3 (deepest first)."""
        base = self.audio_encoder.base
        return [getattr(base, f"conv_block{i}").conv2.out_channels for i in (6, 5, 4, 3)]

    @property
    def logit_scale(self):
        """exp of the checkpoint's ``logit_scale``."""
        return self.log_logit_scale.exp()

    def encode_audio(self, logmel, return_hidden=False):
        """Log-mel (batch, time, mel) in dB -> L2-normalised audio embedding (batch, proj_dim).

        With ``return_hidden``, also returns the outputs of conv blocks 6, 5, 4, 3 as (batch, channels, time, freq)
        tensors, deepest first. The block-6 map is the output of ``cam_layer`` and is the one the embedding is
        computed from.
        """
        n_mels = self.frontend.n_mels
        if logmel.dim() != 3 or logmel.shape[-1] != n_mels:
            raise ValueError(f"encode_audio expects a (batch, time, {n_mels}) log-mel, got {tuple(logmel.shape)}.")
        if logmel.shape[1] < 32:
            raise ValueError(f"CNN14 pools time by 32: give at least 32 frames, got {logmel.shape[1]}.")
        base = self.audio_encoder.base
        maps = base.conv_maps(logmel.unsqueeze(1))
        maps[-1] = self.cam_layer(maps[-1])
        embedding = l2_normalize(self.audio_encoder.projection(base.embed(maps[-1])))
        if return_hidden:
            return embedding, [maps[5], maps[4], maps[3], maps[2]]
        return embedding

    def tokenize(self, prompts):
        """Prompts -> dict of (n_prompts, text_max_length) tensors, padded to the maximum length as MS-CLAP does."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts) or len(prompts) == 0:
            raise TypeError("prompts must be a non-empty list of strings.")
        tokens = self.tokenizer(
            list(prompts),
            max_length=self.text_max_length,
            padding="max_length",
            truncation=True,
            return_attention_mask=True,
            return_token_type_ids=True,
            return_tensors="pt",
        )
        device = self.log_logit_scale.device
        return {k: tokens[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids")}

    def encode_text(self, prompts):
        """List of prompts -> L2-normalised text embeddings (n_prompts, proj_dim)."""
        return l2_normalize(self.caption_encoder(**self.tokenize(prompts)))

    # ------------------------------------------------------------------ saving and loading
    def architecture(self):
        """Constructor arguments (except tokenizer and front-end) as JSON-friendly values."""
        base = self.audio_encoder.base
        bert = self.caption_encoder.base.config
        return {
            "conv_channels": [getattr(base, f"conv_block{i}").conv2.out_channels for i in range(1, 7)],
            "embedding_dim": base.fc1.out_features,
            "classes_num": base.fc_audioset.out_features,
            "proj_dim": self.audio_encoder.projection.linear1.out_features,
            "text_config": {k: getattr(bert, k) for k in _BERT_FIELDS},
            "text_max_length": self.text_max_length,
        }

    def checkpoint_state_dict(self):
        """State dict with the key names of ``CLAP_weights_2022.pth``."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        state["logit_scale"] = state.pop("log_logit_scale")
        return state

    def load_checkpoint_state_dict(self, state):
        """Load a ``CLAP_weights_2022.pth``-style state dict, checking that every key matches.

        Raises
        ------
        CLAPLoadError
            If keys are missing or unexpected, or shapes differ.
        """
        state = {
            k: v for k, v in state.items() if k not in _IGNORED_KEYS and not k.startswith(_IGNORED_PREFIXES)
        }
        if "logit_scale" in state:
            state["log_logit_scale"] = state.pop("logit_scale")
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise CLAPLoadError(
                f"This is not an MS-CLAP 2022 checkpoint matching the expected architecture: {err}"
            ) from err
        return self

    def save_pretrained(self, folder):
        """Write ``CLAP_weights_2022.pth`` (``{"model": state_dict}``, released key names), the tokenizer and
        ``clap_config.json`` to ``folder``."""
        os.makedirs(folder, exist_ok=True)
        with atomic_path(os.path.join(folder, CHECKPOINT_NAME)) as tmp:
            torch.save({"model": self.checkpoint_state_dict()}, tmp)
        self.tokenizer.save_pretrained(folder)
        config = {
            "backend": self.name,
            "checkpoint": CHECKPOINT_NAME,
            "tokenizer": ".",
            "architecture": self.architecture(),
            "frontend": self.frontend.config(),
        }
        write_json_atomic(os.path.join(folder, CONFIG_NAME), config)
        logger.info("Saved MS-CLAP 2022 to %s", folder)

    @classmethod
    def from_pretrained(cls, source, tokenizer=None, text_config=None, weights_only=True):
        """Load MS-CLAP 2022 weights.

        Parameters
        ----------
        source : str or path
            One of: a ``CLAP_weights_2022.pth`` file in the released format; a folder written by
            :meth:`save_pretrained` (with ``clap_config.json``); a folder holding ``CLAP_weights_2022.pth``;
            or a hub id such as ``"microsoft/msclap"`` (downloaded once, then read from the hub cache).
        tokenizer : str or tokenizer, optional
            For a bare checkpoint: a tokenizer, a folder, or a hub id. By default, tokenizer files next to the
            checkpoint, else ``bert-base-uncased`` (from the hub or its cache).
        text_config : dict, optional
            For a bare checkpoint: BERT settings that the weights' shapes do not tell (e.g.
            ``num_attention_heads``, which otherwise follows BERT's 64 dimensions per head).
        weights_only : bool
            Read the checkpoint with ``torch.load(weights_only=...)``. Set False only for a file you trust.

        Returns
        -------
        MSCLAP2022
            In eval mode (not frozen: :func:`load_clap` freezes it).

        Raises
        ------
        CLAPLoadError
            When the source cannot be found, downloaded or read; the message says what to do.
        """
        source = os.fspath(source)
        if os.path.isdir(source):
            if os.path.isfile(os.path.join(source, CONFIG_NAME)):
                return cls._from_folder(source, tokenizer, weights_only)
            checkpoint = os.path.join(source, CHECKPOINT_NAME)
            if not os.path.isfile(checkpoint):
                raise CLAPLoadError(
                    f"{source} holds neither {CONFIG_NAME} (written by save_pretrained) nor {CHECKPOINT_NAME}: "
                    "give the folder or file of an MS-CLAP 2022 checkpoint."
                )
            return cls._from_checkpoint(checkpoint, tokenizer, text_config, weights_only)
        if os.path.isfile(source):
            return cls._from_checkpoint(source, tokenizer, text_config, weights_only)
        if re.fullmatch(r"[\w.-]+/[\w.-]+", source) and not source.endswith((".pth", ".pt")):
            checkpoint = _download_checkpoint(source)
            return cls._from_checkpoint(checkpoint, tokenizer or TEXT_MODEL, text_config, weights_only)
        raise CLAPLoadError(
            f"No file or folder {source!r}: give the path of {CHECKPOINT_NAME}, a folder written by "
            f"save_pretrained, or the hub id {HUB_ID!r}."
        )

    @classmethod
    def _from_folder(cls, folder, tokenizer, weights_only):
        with open(os.path.join(folder, CONFIG_NAME)) as f:
            config = json.load(f)
        if config.get("backend") != cls.name:
            raise CLAPLoadError(
                f"{folder} holds a {config.get('backend')!r} CLAP, not {cls.name!r}: load it with that backend."
            )
        if tokenizer is None:
            tokenizer = os.path.normpath(os.path.join(folder, config["tokenizer"]))
        model = cls(
            _load_tokenizer(tokenizer),
            frontend=LogMelFrontend(**config["frontend"]),
            init_audio_weights=False,
            **config["architecture"],
        )
        state = _read_checkpoint(os.path.join(folder, config["checkpoint"]), weights_only)
        return model.load_checkpoint_state_dict(state).eval()

    @classmethod
    def _from_checkpoint(cls, path, tokenizer, text_config, weights_only):
        state = _read_checkpoint(path, weights_only)
        architecture = _architecture_from_state_dict(state, path)
        architecture["frontend"] = default_frontend(architecture.pop("n_mels"))
        if text_config is None and architecture["text_config"]["hidden_size"] % 64:
            logger.warning(
                "%s: BERT hidden size %d is not a multiple of 64, assuming 1 attention head; pass text_config="
                "{'num_attention_heads': ...} if the model used more.",
                path,
                architecture["text_config"]["hidden_size"],
            )
        architecture["text_config"].update(text_config or {})
        if tokenizer is None:
            folder = os.path.dirname(os.path.abspath(path))
            has_files = any(os.path.isfile(os.path.join(folder, name)) for name in _TOKENIZER_FILES)
            tokenizer = folder if has_files else TEXT_MODEL
        model = cls(_load_tokenizer(tokenizer), init_audio_weights=False, **architecture)
        logger.info("Loaded MS-CLAP 2022 weights from %s", path)
        return model.load_checkpoint_state_dict(state).eval()

    @classmethod
    def build_random(cls, seed=0, text_config=None, **architecture):
        """A random MS-CLAP with calibrated BatchNorms and a word-level tokenizer built in-process (no download).

        The tokenizer knows the prompt template and the ESC-50 and UrbanSound8K class names. The BatchNorm
        statistics are calibrated (``bn0`` to -40 dB mean and 10 dB deviation, the conv blocks on a few synthetic
        clips), so that different sounds give clearly different embeddings.

        Parameters
        ----------
        seed : int
            Seed of the weights and of the calibration clips (the global RNG is left untouched).
        text_config : dict, optional
            BERT settings; ``vocab_size`` defaults to the tokenizer's. None gives bert-base (the released size).
        **architecture
            Other constructor arguments (default: the released sizes).

        Returns
        -------
        MSCLAP2022
            In eval mode.
        """
        tokenizer = build_word_tokenizer(_TINY_WORDS.split())
        if text_config is not None:
            text_config = {"vocab_size": len(tokenizer), **text_config}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(tokenizer, text_config=text_config, **architecture)
            clips = calibration_clips(model.sample_rate, model.clip_samples)
            model.audio_encoder.base.calibrate_batch_norms(model.frontend(clips))
        return model.eval()

    @classmethod
    def build_tiny(cls, seed=0):
        """A small random MS-CLAP (same code paths, ~0.3M parameters) for tests and quick runs
        (:meth:`build_random` at a tiny size).

        Parameters
        ----------
        seed : int
            Seed of the weights and of the calibration clips (the global RNG is left untouched).

        Returns
        -------
        MSCLAP2022
        """
        text_config = {
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "max_position_embeddings": 128,
            # Wider than BERT's 0.02 so that random prompts get clearly different embeddings.
            "initializer_range": 0.5,
        }
        return cls.build_random(
            seed, text_config, conv_channels=(4, 8, 16, 32, 64, 128), embedding_dim=128, classes_num=10, proj_dim=32
        )






# The towers and the loading helpers moved to msclap_towers / msclap_loading; their names stay importable here.
__all__ = [
    "CHECKPOINT_NAME",
    "CONFIG_NAME",
    "CONV_CHANNELS_2022",
    "HUB_ID",
    "TEXT_MODEL",
    "AudioTower",
    "Cnn14",
    "ConvBlock",
    "MSCLAP2022",
    "Projection",
    "TextTower",
    "build_word_tokenizer",
    "default_frontend",
]
