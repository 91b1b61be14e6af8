"""The error a user's setting or option causes (the other user errors are named by what they concern:
``DataPrepError``, ``CLAPLoadError``, ``ExplainError``, ``NotWritableError``).

Every entry point (the ``lmaczs`` command, ``python -m speechbrain_lmaczs.prepare``, the recipes' ``train.py`` and
``eval.py``) ends on these with one line on stderr and exit status 1; see :mod:`speechbrain_lmaczs.entry`.
"""


class ConfigError(ValueError):
    """A setting (yaml key or command-line option) that cannot work; the message names it and what to do."""
