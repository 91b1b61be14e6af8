"""Reading MS-CLAP 2022 from disk or the Hugging Face hub: checkpoints, architectures read off a state dict, and
tokenizers (BERT's, or a word-level one built in-process)."""

import logging
import os
import pickle
import re

import torch

from speechbrain_lmaczs.clap.base import CLAPLoadError
from speechbrain_lmaczs.clap.hub import hub_offline

logger = logging.getLogger(__name__)

HUB_ID = "microsoft/msclap"
CHECKPOINT_NAME = "CLAP_weights_2022.pth"
TEXT_MODEL = "bert-base-uncased"

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


def _download_checkpoint(repo_id):
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, CHECKPOINT_NAME, local_files_only=hub_offline())
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
        return AutoTokenizer.from_pretrained(os.fspath(tokenizer), local_files_only=local or hub_offline())
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
    """Constructor arguments read off the shapes of a released-format state dict, with ``n_mels`` (the input
    bands of ``bn0``) in place of the front-end."""
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
        "n_mels": n_mels,
    }
