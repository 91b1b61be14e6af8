"""Whether the Hugging Face hub may be asked for files (the backends' loaders read local files only when it may not)."""

import os

_TRUE = ("1", "ON", "YES", "TRUE")


def hub_offline():
    """True when offline mode is on: huggingface_hub's setting, or ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``
    as they are now.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import; reading the environment again here also honours a
    later setting (in a notebook or a test).

    >>> import os
    >>> previous = os.environ.get("HF_HUB_OFFLINE")
    >>> os.environ["HF_HUB_OFFLINE"] = " yes "
    >>> hub_offline()
    True
    >>> _ = os.environ.pop("HF_HUB_OFFLINE") if previous is None else os.environ.update(HF_HUB_OFFLINE=previous)
    """
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return constants.is_offline_mode() or any(flag.strip().upper() in _TRUE for flag in flags)
