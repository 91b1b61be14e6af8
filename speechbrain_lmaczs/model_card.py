"""The ``README.md`` model card of an exported explainer, written from the run it came from.

:func:`parse_train_log` reads the run's ``train_log.txt`` (SpeechBrain's ``FileTrainLogger`` format) keeping every
number as it was logged, and :func:`model_card` writes the card: hub metadata (licence, library, tags), the CLAP and
masking domain, the training and validation data, every validation epoch's zero-shot accuracy and faithfulness
metrics, how to load the model, the licences and the citation.
"""

import os
from pathlib import Path

from speechbrain_lmaczs import metrics
from speechbrain_lmaczs.explain import ExplainError

TRAIN_LOG = "train_log.txt"


def parse_train_log(path):
    """Read a SpeechBrain ``FileTrainLogger`` log, keeping every number as it was written.

    Parameters
    ----------
    path : str
        A ``train_log.txt``.

    Returns
    -------
    list of dict
        One per line: ``{"meta": {key: text}, "stages": {stage: {metric: text}}}``, in file order.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     log = os.path.join(d, "train_log.txt")
    ...     _ = Path(log).write_text("epoch: 1 - train loss: 5.51e-01 - valid loss: 7.92e-01, valid Fid-In: 1.00\\n")
    ...     entries = parse_train_log(log)
    >>> entries[0]["meta"], entries[0]["stages"]["train"]
    ({'epoch': '1'}, {'loss': '5.51e-01'})
    >>> entries[0]["stages"]["valid"]
    {'loss': '7.92e-01', 'Fid-In': '1.00'}
    """
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        meta_part, *stage_parts = line.split(" - ")
        meta = dict(_key_value(item) for item in meta_part.split(", "))
        stages = {}
        for part in stage_parts:
            for item in part.split(", "):
                key, value = _key_value(item)
                stage, _, metric = key.partition(" ")
                stages.setdefault(stage, {})[metric] = value
        entries.append({"meta": meta, "stages": stages})
    return entries


def _key_value(item):
    key, sep, value = item.rpartition(": ")
    if not sep:
        raise ExplainError(f"Unexpected entry {item!r} in the training log: is it a SpeechBrain train_log.txt?")
    return key.strip(), value.strip()


#: the metrics the model card explains; each one's description is the first line of its function's docstring
_METRIC_FUNCTIONS = (
    metrics.average_increase,
    metrics.average_drop,
    metrics.average_gain,
    metrics.faithfulness,
    metrics.input_fidelity,
    metrics.sparseness,
    metrics.complexity,
    metrics.mask_mean,
)


def _metric_lines():
    """One markdown item per faithfulness metric, e.g. ``- Average Drop (AD, lower is better): ...``."""
    lines = ["- **accuracy**: zero-shot accuracy of the CLAP on the validation clips, in percent."]
    lines += [f"- {fn.__doc__.strip().splitlines()[0]}" for fn in _METRIC_FUNCTIONS]
    return "\n".join(lines)


def _metrics_table(entries, stage):
    """A markdown table of one stage's metrics, a row per log line (numbers as logged)."""
    rows = [(entry["meta"], entry["stages"][stage]) for entry in entries if stage in entry["stages"]]
    if not rows:
        return "(none logged)\n"
    names = list(dict.fromkeys(key for _, stats in rows for key in stats))
    metas = list(dict.fromkeys(key for meta, _ in rows for key in meta))
    lines = ["| " + " | ".join(metas + names) + " |", "|" + "---|" * (len(metas) + len(names))]
    for meta, stats in rows:
        lines.append("| " + " | ".join([meta.get(k, "") for k in metas] + [stats.get(k, "") for k in names]) + " |")
    return "\n".join(lines) + "\n"


def _evaluation_data(settings):
    source = {
        "esc50": settings.get("data_folder"),
        "urbansound8k": settings.get("data_folder"),
        "labels": settings.get("eval_csv"),
        "manifest": settings.get("eval_manifest"),
    }.get(settings.get("eval_dataset"))
    folds = settings.get("eval_folds")
    text = f"`{settings.get('eval_dataset')}`" + (f" ({source})" if source else "")
    return text + (f", folds {folds}" if folds else "")


def _training_data(settings):
    source = {
        "clotho": settings.get("clotho_folder"),
        "captions": settings.get("train_csv"),
        "manifest": settings.get("train_manifest"),
        "labels": "the evaluation set's labels used as captions",
    }.get(settings.get("train_data"))
    return f"`{settings.get('train_data')}`" + (f" ({source})" if source else "")


def model_card(run_folder, settings, config, log, domain):
    """The ``README.md`` of an export: metadata, data, masking domain, the run's metrics, usage and licence.

    Parameters
    ----------
    run_folder : str
    settings : dict
        The run's plain settings.
    config : dict
        The export's ``config.json``.
    log : list of dict
        :func:`parse_train_log` of the run.
    domain : type
        The run's masking domain class (its docstring's first line describes it).

    Returns
    -------
    str
    """
    domain_line = (domain.__doc__ or domain.__name__).strip().splitlines()[0]
    clap, interface = config["clap"], config["speechbrain_interface"]
    clap_text = (
        "bundled in `clap/` (its weights are part of this repository)"
        if clap["bundled"]
        else f"`{clap['reference']}` (not included: it is fetched or read from there when loading)"
    )
    labels = config["labels"]
    shown = ", ".join(labels[:20]) + (f", ... ({len(labels)} in all)" if len(labels) > 20 else "")
    return f"""---
license: {config['license']}
library_name: speechbrain
pipeline_tag: audio-classification
tags:
- speechbrain
- explainability
- zero-shot-audio-classification
- lmaczs
- clap
---

# LMAC-ZS explainer ({config['masking_domain']}, CLAP {clap['backend']})

A trained **LMAC-ZS** mask decoder (Listenable Maps for Zero-Shot audio classifiers): for an audio clip and a text
prompt, it gives the time-frequency mask of what made a frozen CLAP zero-shot classifier match that prompt, and the
masked audio to listen to. Exported with `lmaczs export` from the training run `{run_folder}`
(checkpoint `{config['checkpoint']['name']}`, the lowest validation loss).

## Model

- **CLAP** (frozen): backend `{clap['backend']}`, {clap_text}.
- **Masking domain**: `{config['masking_domain']}`: {domain_line}
- **Zero-shot prompts**: `{config['prompt_template']}`, over the label set of `config.json` ({shown}).
- **Logit scale**: {'the CLAP temperature' if settings.get('use_logit_scale') else 'raw cosine similarities'}.

## Training data

- **Decoder trained on**: {_training_data(settings)}.
- **Validated zero-shot on**: {_evaluation_data(settings)}, \
{settings.get('valid_max_clips') or 'all the'} clips at most.
- **Training**: {settings.get('number_of_epochs')} epoch(s), batch size {settings.get('batch_size')}, \
learning rate {settings.get('lr')}, seed {settings.get('seed')}.

## Validation results (from the run's `{TRAIN_LOG}`)

Each validation epoch:

{_metrics_table(log, 'valid')}
The checkpoint exported (lowest validation loss), evaluated again at the end of training:

{_metrics_table(log, 'test')}
{_metric_lines()}

## How to use

```bash
pip install speechbrain-lmaczs
lmaczs explain clip.wav --prompt "dog barking" --checkpoint <this folder or hub id> --out explained/
```

```python
from speechbrain_lmaczs import {interface}

explainer = {interface}.from_hparams(source="<this folder or hub id>", savedir="pretrained_lmaczs")
result = explainer.explain_file("clip.wav", prompts=["dog barking", "rain"])  # prompts=None: top-3 labels
for explanation in result.explanations:
    print(explanation.prompt, explanation.probability, explanation.mask.shape)
```

## Licence

- This decoder: `{config['license']}`.
- The CLAP it explains and the data it was trained and validated on keep their own licences; check them before
  redistributing (in particular with the CLAP bundled).

## Citation

Paissan, Della Libera, Ravanelli, Subakan, "Listenable Maps for Zero-Shot Audio Classifiers", NeurIPS 2024.
"""
