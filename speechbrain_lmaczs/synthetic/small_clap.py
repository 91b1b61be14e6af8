"""The small CLAP of the synthetic benchmark: a scaled-down MS-CLAP 2022 whose tokenizer knows the scenes' words.

:func:`build_small_clap` builds it with random weights; :func:`speechbrain_lmaczs.synthetic.small_clap_training.
train_small_clap` trains it. The training captions are drawn by :func:`sample_caption`.
"""

import torch

from speechbrain_lmaczs.clap.frontend import LogMelFrontend
from speechbrain_lmaczs.clap.msclap import MSCLAP2022, build_word_tokenizer
from speechbrain_lmaczs.synthetic.events import CLASS_LABELS, EVENT_CLASSES

#: Prefixes of the training captions. One is the zero-shot prompt's template; the others keep the text tower from
#: depending on it.
CAPTION_TEMPLATES = ("{}", "this is the sound of {}", "the sound of {}", "a recording of {}", "we hear {}")

#: Caption of a scene whose events were all silenced (see :func:`carve_events`), so that the contrastive stage has
#: a text for it. (Measured on the demo's model: emptied scenes still embed at cosine ~0.35 to every event prompt.)
BACKGROUND_CAPTION = "nothing but quiet background noise"


def small_frontend(db_offset=100.0):
    """The front-end of the small CLAP: 16 kHz, 1024-point STFT with a 20 ms hop, 64 mel bands from 50 Hz to 8 kHz,
    5 s clips (251 frames).

    MS-CLAP 2022's own front-end (44.1 kHz, hop 320: 690 frames) makes every CNN14 step about four times slower,
    which a ten-minute training on two CPU cores cannot afford; the synthetic events all lie below 7 kHz, so
    nothing is lost at 16 kHz. The layout (64 mels, 5 s clips, slaney mel scale, dB) is MS-CLAP's. The dB values
    are measured from the power floor (``db_offset`` 100 for ``amin`` 1e-10): silence is 0 dB, so a Mel mask (which
    multiplies the log-mel) attenuates towards silence, and a zero mask removes an event; with the released
    models' ``10 log10(power)`` the synthetic scenes' background sits near -30 dB and a zero mask would raise it to
    0 dB. The small CLAP is trained with the offset (CNN14's first BatchNorm over the mel bands absorbs it).
    ``db_offset=0`` gives the released models' convention (the benchmark's ``released`` configuration,
    :mod:`speechbrain_lmaczs.synthetic.configs`).

    Example
    -------
    >>> fe = small_frontend()
    >>> fe.sample_rate, fe.n_frames, fe.n_mels, fe.silence_db
    (16000, 251, 64, 0.0)
    >>> small_frontend(db_offset=0.0).silence_db
    -100.0
    """
    return LogMelFrontend(16000, 1024, 320, 64, 50, 8000, clip_seconds=5.0, db_offset=float(db_offset))


def caption_vocabulary():
    """Every word the training captions and the zero-shot prompts can contain, split as the tokenizer splits.

    Example
    -------
    >>> words = caption_vocabulary()
    >>> {"this", "and", "hum", "-", "frequency"} <= set(words)
    True
    """
    from tokenizers import pre_tokenizers

    texts = [caption for event in EVENT_CLASSES for caption in event.captions]
    texts += [template.format("and") for template in CAPTION_TEMPLATES] + [BACKGROUND_CAPTION]
    splitter = pre_tokenizers.Whitespace()
    return sorted({word.lower() for text in texts for word, _ in splitter.pre_tokenize_str(text)})


def build_small_clap(
    seed=0,
    frontend=None,
    conv_channels=(8, 16, 32, 64, 128, 256),
    embedding_dim=256,
    proj_dim=64,
    text_width=64,
    text_layers=2,
    text_max_length=32,
    text_init=0.2,
):
    """A randomly initialised small MS-CLAP 2022 whose tokenizer knows the synthetic captions' words.

    Parameters
    ----------
    seed : int
        Seed of the weights (the global RNG is left untouched).
    frontend : LogMelFrontend, optional
        Defaults to :func:`small_frontend`.
    conv_channels : sequence of 6 int
        Widths of CNN14's conv blocks.
    embedding_dim : int
        Output size of CNN14's ``fc1``.
    proj_dim : int
        Size of the joint audio-text space.
    text_width, text_layers : int
        Hidden size and number of layers of the BERT text tower (heads of 16 dimensions).
    text_max_length : int
        Prompts are padded to this many tokens (the longest training caption has 28).
    text_init : float
        Standard deviation of BERT's initial weights. Ten times BERT's 0.02: with 0.02, the CLS token of a fresh
        BERT barely depends on the words (cosine ~0.9999 between any two captions), and contrastive training
        then sits on a plateau until that symmetry breaks; with 0.2 it starts near 0.7.

    Returns
    -------
    MSCLAP2022
        In eval mode.

    Example
    -------
    >>> clap = build_small_clap(conv_channels=(2, 2, 4, 4, 8, 8), embedding_dim=8, proj_dim=4, text_width=16)
    >>> from speechbrain_lmaczs.synthetic.events import prompt_for
    >>> clap.encode_text([prompt_for("hum")]).shape
    torch.Size([1, 4])
    """
    tokenizer = build_word_tokenizer(caption_vocabulary())
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": int(text_width),
        "num_hidden_layers": int(text_layers),
        "num_attention_heads": max(1, int(text_width) // 16),
        "intermediate_size": 2 * int(text_width),
        "max_position_embeddings": 2 * int(text_max_length),
        "initializer_range": float(text_init),
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MSCLAP2022(
            tokenizer,
            conv_channels=tuple(conv_channels),
            embedding_dim=int(embedding_dim),
            classes_num=len(CLASS_LABELS),
            proj_dim=int(proj_dim),
            text_config=text_config,
            text_max_length=int(text_max_length),
            frontend=frontend if frontend is not None else small_frontend(),
        )
    return model.eval()


def sample_caption(class_indices, rng):
    """A random caption of a scene: one caption variant per event, events in random order, a random prefix.

    Parameters
    ----------
    class_indices : sequence of int
        Classes of the scene's events (empty: :data:`BACKGROUND_CAPTION`).
    rng : numpy.random.Generator

    Returns
    -------
    str

    Example
    -------
    >>> import numpy as np
    >>> caption = sample_caption([1, 2], np.random.default_rng(0))
    >>> ("hum" in caption, "and" in caption)
    (True, True)
    """
    parts = [EVENT_CLASSES[c].captions[int(rng.integers(len(EVENT_CLASSES[c].captions)))] for c in class_indices]
    parts = [parts[i] for i in rng.permutation(len(parts))]
    template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    return template.format(" and ".join(parts) if parts else BACKGROUND_CAPTION)

