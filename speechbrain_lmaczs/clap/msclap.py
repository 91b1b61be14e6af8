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
import pickle
import re

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_lmaczs.clap import CLAPLoadError
from speechbrain_lmaczs.clap.base import CLAPBackend, cumulative_batch_norm_statistics, l2_normalize
from speechbrain_lmaczs.clap.frontend import LogMelFrontend

logger = logging.getLogger(__name__)

HUB_ID = "microsoft/msclap"
CHECKPOINT_NAME = "CLAP_weights_2022.pth"
CONFIG_NAME = "clap_config.json"
TEXT_MODEL = "bert-base-uncased"
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
# Words of the tiny test tokenizer: the prompt template, the ESC-50 and UrbanSound8K class names, and a few more.
_TINY_WORDS = """
this is the sound of a an and in on with from at to some someone something people person man woman child
children baby animal music noise voice speech talking singing playing sounds audio recording loud quiet
dog rooster pig cow frog cat hen insects sheep crow rain sea waves crackling fire crickets chirping birds water
drops wind pouring toilet flush thunderstorm crying sneezing clapping breathing coughing footsteps laughing
brushing teeth snoring drinking sipping door wood knock mouse click keyboard typing creaks can opening washing
machine vacuum cleaner clock alarm tick glass breaking helicopter chainsaw siren car horn engine train church
bells airplane fireworks hand saw air conditioner bark drilling idling gun shot jackhammer street
"""


class Projection(nn.Module):
    """MS-CLAP's projection head: ``LN(l1(x) + dropout(l2(gelu(l1(x)))))``, both linear maps without bias.

    Parameters
    ----------
    d_in, d_out : int
        Input and output sizes.
    dropout : float
        Dropout on the residual branch (inactive in eval mode).

    Example
    -------
    >>> Projection(8, 4)(torch.randn(3, 8)).shape
    torch.Size([3, 4])
    """

    def __init__(self, d_in, d_out, dropout=0.5):
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        """(..., d_in) -> (..., d_out)."""
        x = self.linear1(x)
        return self.layer_norm(x + self.drop(self.linear2(F.gelu(x))))


class ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU layers followed by average pooling (one CNN14 stage)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x, pool_size):
        """(batch, in, time, freq) -> (batch, out, time // pool, freq // pool)."""
        # Out-of-place ReLU: hooks and autograd on the block outputs must see unmodified tensors.
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)


class Cnn14(nn.Module):
    """CNN14 of PANNs as used by MS-CLAP, from log-mel input (the front-end lives in :class:`LogMelFrontend`).

    Parameters
    ----------
    n_mels : int
        Mel bands of the input (``bn0`` normalises each band).
    conv_channels : sequence of 6 int
        Output channels of ``conv_block1..6`` (64 ... 2048 in the released model).
    embedding_dim : int
        Output size of ``fc1``.
    classes_num : int
        Output size of ``fc_audioset`` (kept so the checkpoint loads strictly; not used for embeddings).

    Example
    -------
    >>> cnn = Cnn14(64, (2, 2, 4, 4, 8, 8), 16, 3).eval()
    >>> maps = cnn.conv_maps(torch.randn(1, 1, 690, 64))
    >>> [tuple(m.shape[1:]) for m in maps[2:]]
    [(4, 86, 8), (4, 43, 4), (8, 21, 2), (8, 21, 2)]
    >>> cnn.embed(maps[-1]).shape
    torch.Size([1, 16])
    """

    def __init__(self, n_mels, conv_channels, embedding_dim, classes_num):
        super().__init__()
        if len(conv_channels) != 6:
            raise ValueError(f"CNN14 has 6 conv blocks: conv_channels needs 6 widths, got {list(conv_channels)}.")
        self.bn0 = nn.BatchNorm2d(n_mels)
        widths = [1] + [int(c) for c in conv_channels]
        for i in range(6):
            self.add_module(f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(widths[-1], embedding_dim)
        self.fc_audioset = nn.Linear(embedding_dim, classes_num)

    def conv_maps(self, x):
        """Outputs of the 6 conv blocks, (batch, channels, time, freq) each; ``x`` is (batch, 1, time, mel)."""
        # bn0 normalises each mel band: BatchNorm2d over the channel axis, so mel goes there for a moment.
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        maps = []
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x, pool_size=(2, 2) if i < 6 else (1, 1))
            x = F.dropout(x, p=0.2, training=self.training)
            maps.append(x)
        return maps

    def embed(self, last_map):
        """Deepest map (batch, channels, time, freq) -> clip embedding (batch, embedding_dim)."""
        x = last_map.mean(dim=3)
        x = x.amax(dim=2) + x.mean(dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu(self.fc1(x))
        return F.dropout(x, p=0.5, training=self.training)


class AudioTower(nn.Module):
    """``base`` (:class:`Cnn14`) and ``projection`` (:class:`Projection`), named as in the checkpoint."""

    def __init__(self, n_mels, conv_channels, embedding_dim, classes_num, proj_dim):
        super().__init__()
        self.base = Cnn14(n_mels, conv_channels, embedding_dim, classes_num)
        self.projection = Projection(embedding_dim, proj_dim)


class TextTower(nn.Module):
    """``base`` (``transformers.BertModel``) and ``projection`` (:class:`Projection`) of the CLS token."""

    def __init__(self, bert_config, proj_dim):
        super().__init__()
        from transformers import BertModel

        self.base = BertModel(bert_config, add_pooling_layer=True)
        self.projection = Projection(bert_config.hidden_size, proj_dim)

    def forward(self, input_ids, attention_mask, token_type_ids):
        """Token ids (batch, length) -> projected, un-normalised CLS embedding (batch, proj_dim)."""
        hidden = self.base(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        return self.projection(hidden[:, 0])


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
        torch.save({"model": self.checkpoint_state_dict()}, os.path.join(folder, CHECKPOINT_NAME))
        self.tokenizer.save_pretrained(folder)
        config = {
            "backend": self.name,
            "checkpoint": CHECKPOINT_NAME,
            "tokenizer": ".",
            "architecture": self.architecture(),
            "frontend": self.frontend.config(),
        }
        with open(os.path.join(folder, CONFIG_NAME), "w") as f:
            json.dump(config, f, indent=2)
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
    def build_tiny(cls, seed=0):
        """A small random MS-CLAP (same code paths, ~0.3M parameters) for tests and quick runs.

        The BatchNorm statistics are calibrated (``bn0`` to -40 dB mean and 10 dB deviation, the conv blocks on
        a few synthetic clips), so that different sounds give clearly different embeddings.

        Parameters
        ----------
        seed : int
            Seed of the weights and of the calibration clips (the global RNG is left untouched).

        Returns
        -------
        MSCLAP2022
        """
        tokenizer = build_word_tokenizer(_TINY_WORDS.split())
        text_config = {
            "vocab_size": len(tokenizer),
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "max_position_embeddings": 128,
            # Wider than BERT's 0.02 so that random prompts get clearly different embeddings.
            "initializer_range": 0.5,
        }
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(
                tokenizer,
                conv_channels=(4, 8, 16, 32, 64, 128),
                embedding_dim=128,
                classes_num=10,
                proj_dim=32,
                text_config=text_config,
            )
            model._calibrate_batch_norms(_calibration_clips(model.sample_rate, model.clip_samples))
        return model.eval()

    @torch.no_grad()
    def _calibrate_batch_norms(self, wavs):
        # Random conv weights shrink the activations block after block; without matching running statistics the
        # embedding would hardly depend on the input.
        base = self.audio_encoder.base
        base.bn0.running_mean.fill_(-40.0)
        base.bn0.running_var.fill_(100.0)
        self.eval()
        block_norms = [m for name, m in base.named_modules() if name.startswith("conv_block") and "bn" in name]
        with cumulative_batch_norm_statistics(block_norms):
            base.conv_maps(self.frontend(wavs).unsqueeze(1))


def build_word_tokenizer(words):
    """A whitespace, lower-casing word-level tokenizer with BERT's special tokens, built in-process.

    Parameters
    ----------
    words : iterable of str
        Vocabulary (besides ``[PAD] [UNK] [CLS] [SEP] [MASK]``, which get ids 0-4).

    Returns
    -------
    transformers.PreTrainedTokenizerFast

    Example
    -------
    >>> tok = build_word_tokenizer(["dog", "bark"])
    >>> tok.convert_ids_to_tokens(tok("Dog barks")["input_ids"])
    ['[CLS]', 'dog', '[UNK]', '[SEP]']
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate(specials)}
    for word in sorted({w.lower() for w in words} - set(specials)):
        vocab[word] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _calibration_clips(sample_rate, n_samples):
    """Noise at two levels, two tones, a chirp and near-silence: a spread of what the encoder will meet."""
    t = torch.arange(n_samples) / sample_rate
    noise = torch.randn(2, n_samples)
    chirp_phase = 2 * torch.pi * (200 * t + 1500 * t**2)
    return torch.stack(
        [
            0.3 * noise[0],
            0.01 * noise[1],
            0.5 * torch.sin(2 * torch.pi * 440 * t),
            0.2 * torch.sin(2 * torch.pi * 3000 * t),
            0.3 * torch.sin(chirp_phase),
            1e-4 * noise[0],
        ]
    )


def _hub_offline():
    # huggingface_hub reads HF_HUB_OFFLINE once at import; read the environment again so that setting it later
    # (in a notebook or a test) is honoured too.
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return constants.is_offline_mode() or any(f.upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def _download_checkpoint(repo_id):
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, CHECKPOINT_NAME, local_files_only=_hub_offline())
    except Exception as err:  # hub errors are many (offline, not cached, HTTP, missing file): all mean the same
        raise CLAPLoadError(
            f"{repo_id!r} is not a local file or folder, and {CHECKPOINT_NAME} (MS-CLAP 2022) could not be fetched "
            f"from that Hugging Face hub repository ({type(err).__name__}: {err}). Without network access, download "
            f"it elsewhere (hub {HUB_ID}, or Zenodo record 7312125) and pass its local path, e.g. "
            f"load_clap('msclap', '/path/to/{CHECKPOINT_NAME}')."
        ) from err


def _load_tokenizer(tokenizer):
    if not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    from transformers import AutoTokenizer

    local = os.path.isdir(tokenizer)
    try:
        return AutoTokenizer.from_pretrained(os.fspath(tokenizer), local_files_only=local or _hub_offline())
    except Exception as err:  # as above: offline, not cached, or not a tokenizer
        raise CLAPLoadError(
            f"Could not load the MS-CLAP text tokenizer {os.fspath(tokenizer)!r} ({type(err).__name__}: {err}). "
            f"Pass tokenizer=<folder> (e.g. a saved {TEXT_MODEL} tokenizer) to MSCLAP2022.from_pretrained, or put "
            "the tokenizer files next to the checkpoint."
        ) from err


def _read_checkpoint(path, weights_only):
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        raise CLAPLoadError(
            f"{path} holds more than tensors, so torch.load(weights_only=True) refuses it. If you trust the file "
            "(e.g. the official Microsoft release), load it with MSCLAP2022.from_pretrained(path, weights_only=False)."
        ) from err
    except (OSError, RuntimeError) as err:
        raise CLAPLoadError(f"Could not read the checkpoint {path}: {err}. Is it a complete PyTorch file?") from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise CLAPLoadError(f"{path} is not an MS-CLAP checkpoint: expected a dict with the weights under 'model'.")
    return checkpoint["model"]


def _architecture_from_state_dict(state, path):
    """Constructor arguments read off the shapes of a released-format state dict."""
    try:
        base = "audio_encoder.base."
        conv_channels = [state[f"{base}conv_block{i}.conv1.weight"].shape[0] for i in range(1, 7)]
        n_mels = state[f"{base}bn0.weight"].shape[0]
        embedding_dim, classes_num = state[f"{base}fc_audioset.weight"].shape[::-1]
        proj_dim = state["audio_encoder.projection.linear1.weight"].shape[0]
        bert = "caption_encoder.base."
        vocab_size, hidden_size = state[f"{bert}embeddings.word_embeddings.weight"].shape
        layers = {int(m.group(1)) for k in state if (m := re.match(rf"{re.escape(bert)}encoder\.layer\.(\d+)\.", k))}
        text_config = {
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "num_hidden_layers": len(layers),
            # Not visible in the shapes: BERT's convention of 64 dimensions per head (12 heads for bert-base).
            "num_attention_heads": hidden_size // 64 if hidden_size % 64 == 0 else 1,
            "intermediate_size": state[f"{bert}encoder.layer.0.intermediate.dense.weight"].shape[0],
            "max_position_embeddings": state[f"{bert}embeddings.position_embeddings.weight"].shape[0],
            "type_vocab_size": state[f"{bert}embeddings.token_type_embeddings.weight"].shape[0],
        }
    except KeyError as err:
        raise CLAPLoadError(f"{path} is not an MS-CLAP 2022 checkpoint: it has no weight {err}.") from err
    return {
        "conv_channels": conv_channels,
        "embedding_dim": embedding_dim,
        "classes_num": classes_num,
        "proj_dim": proj_dim,
        "text_config": text_config,
        "frontend": default_frontend(n_mels),
    }
