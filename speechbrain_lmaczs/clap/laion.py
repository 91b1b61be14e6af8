"""LAION CLAP (HTSAT audio tower, RoBERTa text tower) through transformers' ``ClapModel``.

Only unfused checkpoints are supported (e.g. ``laion/clap-htsat-unfused``): the fused ones pick random crops and a
random ``is_longer`` flag, so the same clip would not always get the same explanation.

HTSAT does not see the log-mel as a (time, freq) image. With 64 mel bins and ``spec_size=256`` it resizes the
(up to 1024 frames x 64 mels) log-mel to exactly 1024 frames, cuts time into ``n_chunks = spec_size // n_mels = 4``
chunks of 256 frames and stacks the chunks along the frequency axis, giving a 256 x 256 image whose rows are
(chunk, mel) and whose columns are time within a chunk. Every stage of the Swin transformer keeps that layout, so
:func:`unfold_htsat_map` puts the chunks back one after the other in time before anyone reads a hidden map as
(time, freq).
"""

import logging
import os

import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import (
    AutoTokenizer,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    PreTrainedTokenizerFast,
)

from speechbrain_lmaczs.clap.base import CLAPBackend, CLAPLoadError, l2_normalize
from speechbrain_lmaczs.clap.frontend import LogMelFrontend
from speechbrain_lmaczs.clap.hub import hub_offline
from speechbrain_lmaczs.files import write_json_atomic

logger = logging.getLogger(__name__)

#: Name of the feature extractor's file in a checkpoint folder (transformers' convention).
FEATURE_EXTRACTOR_FILE = "preprocessor_config.json"

#: Front-end of the released LAION checkpoints, used when a folder has no feature extractor config.
LAION_FRONTEND = {
    "sample_rate": 48000,
    "n_fft": 1024,
    "hop_length": 480,
    "n_mels": 64,
    "f_min": 50.0,
    "f_max": 14000.0,
    "clip_seconds": 10.0,
}

# Words of the tiny test tokenizer: prompt templates, ESC-50 / UrbanSound8K label words and a few test words.
_TINY_WORDS = """
this is the sound of a an and in with
dog rooster pig cow frog cat hen insects sheep crow rain sea waves crackling fire crickets chirping birds water
drops wind pouring toilet flush thunderstorm crying baby sneezing clapping breathing coughing footsteps laughing
brushing teeth snoring drinking sipping door knock mouse click keyboard typing wood creaks can opening washing
machine vacuum cleaner clock alarm tick glass breaking helicopter chainsaw siren car horn engine train church bells
airplane fireworks hand saw air conditioner children playing drilling gun shot jackhammer street music speech noise
silence tone
""".split()


def unfold_htsat_map(image_map, n_chunks):
    """Put an HTSAT hidden map back in (time, freq) order.

    HTSAT folds time into its square input image: time chunk ``k`` of the log-mel occupies rows
    ``k * H / n_chunks`` to ``(k + 1) * H / n_chunks - 1`` (low to high mel inside a chunk) and the columns are time
    inside the chunk. Patch embedding and patch merging pool whole 2 x 2 neighbourhoods that never straddle two
    chunks, so every stage keeps this layout at a coarser resolution.

    Parameters
    ----------
    image_map : torch.Tensor
        (batch, channels, H, W) map in HTSAT's image layout; ``H`` must be a multiple of ``n_chunks``.
    n_chunks : int
        Number of time chunks stacked in the image (``spec_size // num_mel_bins`` of the audio config).

    Returns
    -------
    torch.Tensor
        (batch, channels, n_chunks * W, H // n_chunks): time first, frequency second.

    Example
    -------
    >>> image = torch.tensor([[0, 1], [2, 3], [10, 11], [12, 13]]).view(1, 1, 4, 2)
    >>> unfold_htsat_map(image, n_chunks=2)[0, 0]
    tensor([[ 0,  2],
            [ 1,  3],
            [10, 12],
            [11, 13]])
    """
    if image_map.dim() != 4:
        raise ValueError(f"Expected a (batch, channels, H, W) map, got shape {tuple(image_map.shape)}.")
    batch, channels, height, width = image_map.shape
    if height % n_chunks:
        raise ValueError(f"The map's height {height} is not a multiple of the {n_chunks} time chunks.")
    freq = height // n_chunks
    chunks = image_map.reshape(batch, channels, n_chunks, freq, width)
    # (chunk, freq, time in chunk) -> (chunk, time in chunk, freq): chunk-major time is the clip's own time order.
    return chunks.permute(0, 1, 2, 4, 3).reshape(batch, channels, n_chunks * width, freq)


def frontend_from_feature_extractor(feature_extractor):
    """The differentiable front-end that reproduces a ``ClapFeatureExtractor`` (non-fusion truncation).

    The extractor's non-fusion path is: periodic Hann STFT with centre reflect padding, power 2, slaney-normalised
    slaney-scale mel filters, ``10 * log10(max(x, 1e-10))``. Its fusion path uses another filterbank and random
    crops; explanations always use the deterministic one.

    Parameters
    ----------
    feature_extractor : transformers.ClapFeatureExtractor

    Returns
    -------
    LogMelFrontend

    Example
    -------
    >>> fe = ClapFeatureExtractor(frequency_min=50, truncation="rand_trunc")
    >>> front = frontend_from_feature_extractor(fe)
    >>> front.n_frames, front.n_mels, front.sample_rate
    (1001, 64, 48000)
    """
    if feature_extractor.top_db is not None:
        raise ValueError(
            f"This LAION CLAP feature extractor clips the log-mel with top_db={feature_extractor.top_db}, which the "
            "differentiable front-end does not reproduce. Use a checkpoint whose preprocessor_config.json has "
            '"top_db": null (all released LAION CLAP checkpoints do).'
        )
    if feature_extractor.truncation != "rand_trunc":
        logger.info(
            "LAION CLAP feature extractor asks for truncation=%r; the front-end reproduces its deterministic "
            "'rand_trunc' log-mel (slaney filterbank) on clips of exactly %s s.",
            feature_extractor.truncation,
            feature_extractor.max_length_s,
        )
    frontend = LogMelFrontend(
        sample_rate=feature_extractor.sampling_rate,
        n_fft=feature_extractor.fft_window_size,
        hop_length=feature_extractor.hop_length,
        n_mels=feature_extractor.feature_size,
        f_min=feature_extractor.frequency_min,
        f_max=feature_extractor.frequency_max,
        clip_seconds=feature_extractor.max_length_s,
        mel_norm="slaney",
        mel_scale="slaney",
        amin=1e-10,
    )
    # Same filters, but torchaudio builds them in float32, where the tiny weights at the triangles' edges lose up to
    # half their value; next to a loud tone that moves a band by ~0.01 dB. The extractor's own (float64) filters
    # do not have that error.
    with torch.no_grad():
        frontend.mel_fbank.copy_(torch.from_numpy(feature_extractor.mel_filters_slaney))
    return frontend


def _default_feature_extractor():
    return ClapFeatureExtractor(
        feature_size=LAION_FRONTEND["n_mels"],
        sampling_rate=LAION_FRONTEND["sample_rate"],
        hop_length=LAION_FRONTEND["hop_length"],
        max_length_s=int(LAION_FRONTEND["clip_seconds"]),
        fft_window_size=LAION_FRONTEND["n_fft"],
        frequency_min=LAION_FRONTEND["f_min"],
        frequency_max=LAION_FRONTEND["f_max"],
        truncation="rand_trunc",
        padding="repeatpad",
    )


class LAIONCLAP(CLAPBackend):
    """LAION CLAP through transformers' ``ClapModel`` (unfused HTSAT checkpoints).

    - ``encode_audio`` takes the log-mel of :attr:`frontend` (batch, time <= 1024, n_mels) and returns the same
      normalised embedding as ``ClapModel.get_audio_features(...).pooler_output``.
    - Hidden maps (``return_hidden=True``), deepest first, at most 4, each (batch, channels, time, freq) after
      :func:`unfold_htsat_map`: the encoder's final, layer-normalised map (the one HTSAT average-pools into the
      embedding; it passes through :attr:`cam_layer`, and the embedding is computed from that output), then the
      outputs of the earlier Swin stages (before their patch merging). With a real checkpoint (4 stages) and a 10 s
      clip they are (768, 32, 2), (384, 64, 4), (192, 128, 8), (96, 256, 16). Their time axis spans the clip: HTSAT
      resizes the 1001 frames of a 10 s clip to 1024 (bicubic, corners aligned) before folding.
    - ``logit_scale`` is ``exp(logit_scale_a)``: ``ClapModel.forward`` (transformers 5.24) scales
      ``logits_per_audio`` (audio rows, text columns: the zero-shot classifier's layout) with ``logit_scale_a`` and
      ``logits_per_text`` with ``logit_scale_t``.

    Parameters
    ----------
    model : transformers.ClapModel
        An unfused CLAP (``audio_config.enable_fusion`` false).
    tokenizer : transformers.PreTrainedTokenizerBase
        The checkpoint's text tokenizer.
    feature_extractor : transformers.ClapFeatureExtractor
        The checkpoint's feature extractor; the front-end's parameters are read from it.

    Example
    -------
    >>> clap = LAIONCLAP.build_tiny(seed=0).freeze()
    >>> logmel = clap.frontend(torch.randn(1, clap.clip_samples))
    >>> embedding, hidden = clap.encode_audio(logmel, return_hidden=True)
    >>> embedding.shape, [tuple(h.shape[1:]) for h in hidden]
    (torch.Size([1, 8]), [(64, 32, 2), (32, 64, 4), (16, 128, 8), (8, 256, 16)])
    >>> clap.encode_text(["this is the sound of dog"]).shape
    torch.Size([1, 8])
    """

    name = "laion"

    #: Most hidden maps ``encode_audio`` returns (the real HTSAT has 4 stages).
    max_hidden_maps = 4

    def __init__(self, model, tokenizer, feature_extractor):
        audio_config = model.config.audio_config
        if audio_config.enable_fusion:
            raise ValueError(
                "This LAION CLAP checkpoint is a fused model (audio_config.enable_fusion=True): its feature fusion "
                "uses random crops, so the same clip would not always get the same explanation. Use an unfused "
                "checkpoint such as laion/clap-htsat-unfused."
            )
        frontend = frontend_from_feature_extractor(feature_extractor)
        if frontend.n_mels != audio_config.num_mel_bins:
            raise ValueError(
                f"The feature extractor makes {frontend.n_mels} mel bands but the audio encoder expects "
                f"{audio_config.num_mel_bins}: the folder mixes files from different checkpoints."
            )
        super().__init__(frontend)
        self.model = model
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor

    @property
    def audio_encoder(self):
        """transformers' ``ClapAudioEncoder`` (HTSAT)."""
        return self.model.audio_model.audio_encoder

    @property
    def n_chunks(self):
        """Time chunks HTSAT stacks along the frequency axis of its input image."""
        return self.audio_encoder.freq_ratio

    @property
    def max_frames(self):
        """Most log-mel frames the encoder takes (shorter inputs are resized to this)."""
        return self.audio_encoder.spec_size * self.n_chunks

    @property
    def hidden_channels(self):
        """Channels of the returned hidden maps, deepest first."""
        audio_config = self.model.config.audio_config
        n_stages = len(audio_config.depths)
        channels = [audio_config.patch_embeds_hidden_size * 2**stage for stage in range(n_stages)]
        return channels[::-1][: self.max_hidden_maps]

    @property
    def logit_scale(self):
        """exp(logit_scale_a), the temperature of ``ClapModel``'s ``logits_per_audio``."""
        return self.model.logit_scale_a.exp()

    def _check_logmel(self, logmel):
        if not torch.is_tensor(logmel) or logmel.dim() != 3:
            shape = tuple(logmel.shape) if torch.is_tensor(logmel) else type(logmel).__name__
            raise ValueError(f"encode_audio expects a (batch, time, mel) log-mel tensor, got {shape}.")
        n_frames, n_mels = logmel.shape[1:]
        if n_mels != self.frontend.n_mels:
            raise ValueError(
                f"The log-mel has {n_mels} mel bands but this CLAP expects {self.frontend.n_mels}: compute it with "
                "the backend's own frontend."
            )
        if n_frames > self.max_frames:
            raise ValueError(
                f"The log-mel has {n_frames} frames but HTSAT takes at most {self.max_frames}: crop the waveform "
                f"to clip_samples={self.clip_samples} ({self.frontend.clip_seconds:g} s) before the frontend."
            )

    def encode_audio(self, logmel, return_hidden=False):
        """Normalised audio embedding of a log-mel, and optionally the unfolded hidden maps.

        Parameters
        ----------
        logmel : torch.Tensor
            (batch, time, n_mels) log-mel in dB from :attr:`frontend`, at most :attr:`max_frames` frames. HTSAT
            stretches any length to :attr:`max_frames`, so repeat-pad clips shorter than ``clip_samples`` before
            the front-end, as ``ClapFeatureExtractor`` does (``padding="repeatpad"``).
        return_hidden : bool
            Also return the hidden maps (see the class docstring).

        Returns
        -------
        torch.Tensor or (torch.Tensor, list of torch.Tensor)
            The (batch, projection_dim) embedding, and the maps when asked.
        """
        self._check_logmel(logmel)
        encoder = self.audio_encoder
        outputs = encoder(
            logmel.unsqueeze(1),
            output_hidden_states=return_hidden,
            output_hidden_states_before_downsampling=True,
            return_dict=True,
        )
        # transformers hands back the final layer-normalised map already regrouped as (freq, time), in the order
        # unfold_htsat_map produces (the tests check both against each other).
        deepest = self.cam_layer(outputs.last_hidden_state.transpose(-1, -2))
        # HTSAT's embedding is an average over every position of that map; pooling the cam_layer output instead of
        # taking transformers' pooler_output keeps the gradient path through cam_layer (GradCAM hooks it).
        pooled = deepest.mean(dim=(-2, -1))
        embedding = l2_normalize(self.model.audio_projection(pooled))
        if not return_hidden:
            return embedding
        # hidden_states[0] is the patch embedding; then one map per stage, in image layout, before patch merging.
        stage_maps = outputs.hidden_states[1:-1]
        shallower = [unfold_htsat_map(stage_map, self.n_chunks) for stage_map in reversed(stage_maps)]
        return embedding, ([deepest] + shallower)[: self.max_hidden_maps]

    def encode_text(self, prompts):
        """Normalised text embeddings (n_prompts, projection_dim) of a list of prompts."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts) or len(prompts) == 0:
            raise TypeError("encode_text expects a non-empty list of strings (one prompt per class).")
        tokens = self.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
        device = self.model.logit_scale_a.device
        features = self.model.get_text_features(
            input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device)
        )
        return l2_normalize(features.pooler_output)

    def save_pretrained(self, folder):
        """Write the model, tokenizer and feature extractor in transformers' format, plus ``clap_config.json``."""
        os.makedirs(folder, exist_ok=True)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        self.feature_extractor.save_pretrained(folder)
        write_json_atomic(os.path.join(folder, "clap_config.json"), {"backend": self.name})

    @classmethod
    def from_pretrained(cls, source, cache_dir=None):
        """Load a LAION CLAP from a local folder or a Hugging Face hub id.

        Parameters
        ----------
        source : str or path
            A folder holding ``ClapModel.save_pretrained`` files, the tokenizer and (optionally)
            ``preprocessor_config.json``; or a hub id such as ``laion/clap-htsat-unfused`` (offline: from the
            cache only).
        cache_dir : str, optional
            Hugging Face cache folder, if not the default one.

        Returns
        -------
        LAIONCLAP

        Raises
        ------
        CLAPLoadError
            When the checkpoint is neither a readable folder nor available from the hub or its cache.
        """
        source = os.path.expanduser(str(source))
        is_folder = os.path.isdir(source)
        if not is_folder and _looks_like_path(source):
            raise CLAPLoadError(
                f"The LAION CLAP folder {source!r} does not exist. Give the folder that holds the checkpoint files "
                "(config.json, model.safetensors, tokenizer files, preprocessor_config.json) or a hub id such as "
                "laion/clap-htsat-unfused."
            )
        offline = hub_offline()
        hub_kwargs = {"cache_dir": cache_dir, "local_files_only": offline}
        try:
            model = ClapModel.from_pretrained(source, **hub_kwargs)
            tokenizer = AutoTokenizer.from_pretrained(source, **hub_kwargs)
            if is_folder and not os.path.isfile(os.path.join(source, FEATURE_EXTRACTOR_FILE)):
                logger.warning(
                    "%s has no %s: using the released LAION CLAP front-end %s.",
                    source,
                    FEATURE_EXTRACTOR_FILE,
                    LAION_FRONTEND,
                )
                feature_extractor = _default_feature_extractor()
            else:
                feature_extractor = ClapFeatureExtractor.from_pretrained(source, **hub_kwargs)
        except (OSError, ValueError) as err:
            raise CLAPLoadError(_load_error_message(source, is_folder, offline, err)) from err
        logger.info("Loaded LAION CLAP from %s", source)
        return cls(model, tokenizer, feature_extractor)

    @classmethod
    def build_tiny(cls, seed=0):
        """A tiny randomly initialised LAION CLAP with the real architecture, for tests and quick runs.

        Four one-block HTSAT stages (8 to 64 channels) so that all four hidden maps exist with the real layouts,
        a one-layer text tower, a word-level tokenizer over prompt and label words, and the released front-end.
        The input BatchNorm is given log-mel-like statistics: with its default ones (mean 0, variance 1) the
        -100..0 dB input saturates the random network and every clip gets nearly the same embedding.

        Parameters
        ----------
        seed : int
            Seed of the random weights.

        Returns
        -------
        LAIONCLAP
        """
        depths = [1, 1, 1, 1]
        patch_channels = 8
        config = ClapConfig(
            text_config={
                "vocab_size": 100,
                "hidden_size": 16,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 32,
                "max_position_embeddings": 40,
            },
            audio_config={
                "num_mel_bins": 64,
                "spec_size": 256,
                "patch_embeds_hidden_size": patch_channels,
                "depths": depths,
                "num_attention_heads": [2] * len(depths),
                # HTSAT's last stage has patch_embeds_hidden_size * 2 ** (n_stages - 1) channels.
                "hidden_size": patch_channels * 2 ** (len(depths) - 1),
                "window_size": 8,
                "mlp_ratio": 2.0,
            },
            projection_dim=8,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ClapModel(config)
        batch_norm = model.audio_model.audio_encoder.batch_norm
        batch_norm.running_mean.fill_(-40.0)
        batch_norm.running_var.fill_(100.0)
        # RoBERTa computes position ids from the pad id, so the longest sequence is max_position_embeddings - 2.
        tokenizer = _tiny_tokenizer(
            pad_id=config.text_config.pad_token_id,
            model_max_length=config.text_config.max_position_embeddings - 2,
            vocab_size=config.text_config.vocab_size,
        )
        return cls(model.eval(), tokenizer, _default_feature_extractor())


def _looks_like_path(source):
    # Hub ids are "name" or "owner/name"; anything else that is not a folder was meant as a path.
    return os.path.isabs(source) or source.startswith(".") or source.count("/") > 1 or "\\" in source


def _load_error_message(source, is_folder, offline, err):
    if is_folder:
        return (
            f"Could not load a LAION CLAP from the folder {source!r} ({err}). The folder needs the files written by "
            "ClapModel.save_pretrained (config.json, model.safetensors) and the tokenizer files, e.g. a copy of "
            "the hub repository laion/clap-htsat-unfused."
        )
    if offline:
        reason = "offline mode is on (HF_HUB_OFFLINE) and it is not in the Hugging Face cache"
    else:
        reason = "it could not be downloaded from the Hugging Face hub"
    return (
        f"Could not load the LAION CLAP model {source!r}: it is not a local folder and {reason} ({err}). On a "
        f"machine with internet access run `hf download {source} --local-dir /path/to/clap` (or "
        f"`huggingface-cli download {source} --local-dir /path/to/clap`), bring that folder here and pass its path "
        "as the CLAP source (clap_source in the hparams)."
    )


def _tiny_tokenizer(pad_id, model_max_length, vocab_size):
    # RoBERTa's special-token ids, so that the text config's pad/bos/eos ids mean the same tokens.
    specials = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    if specials["<pad>"] != pad_id:
        raise ValueError(f"The tiny tokenizer pads with id 1 but the text config pads with id {pad_id}.")
    vocab = dict(specials)
    for word in _TINY_WORDS:
        vocab.setdefault(word, len(vocab))
    if len(vocab) > vocab_size:
        raise ValueError(f"The tiny tokenizer has {len(vocab)} tokens, more than the vocabulary size {vocab_size}.")
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", specials["<s>"]), ("</s>", specials["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )
