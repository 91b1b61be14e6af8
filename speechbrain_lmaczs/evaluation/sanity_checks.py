"""The paper's two sanity checks: mask mean vs audio-prompt similarity, and cascading model randomization."""

import csv
import dataclasses
import logging
import os

import torch

from speechbrain_lmaczs.data.contamination import clip_generator
from speechbrain_lmaczs.evaluation.setup import batch_loader, condition_dataset
from speechbrain_lmaczs.evaluation.store import RANDOMIZATION_CSV, SIMILARITY_CSV, write_csv
from speechbrain_lmaczs.evaluation.tables import DISPLAY_NAMES
from speechbrain_lmaczs.files import atomic_write
from speechbrain_lmaczs.sanity import PearsonAccumulator, cascading_randomization, ssim

logger = logging.getLogger(__name__)

#: the encoder blocks the cascading randomization re-initializes, top first, per CLAP backend (relative to the clap)
RANDOMIZATION_BLOCKS = {
    # CNN14 of MS-CLAP 2022: conv_block6 (next to the embedding) down to conv_block1.
    "msclap": lambda clap: [f"audio_encoder.base.conv_block{i}" for i in range(6, 0, -1)],
    # HTSAT of transformers' ClapModel: its Swin stages, last first.
    "laion": lambda clap: [
        f"model.audio_model.audio_encoder.layers.{i}" for i in reversed(range(len(clap.audio_encoder.layers)))
    ],
}



def randomization_blocks(clap):
    """Names of the audio encoder's blocks, top first, as submodules of a classifier (``clap.<...>``).

    >>> from speechbrain_lmaczs.clap import load_clap
    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> randomization_blocks(load_clap("msclap", "tiny-random", savedir=folder.name))[:2]
    ['clap.audio_encoder.base.conv_block6', 'clap.audio_encoder.base.conv_block5']
    >>> folder.cleanup()
    """
    if clap.name not in RANDOMIZATION_BLOCKS:
        raise ValueError(
            f"No randomization blocks known for the CLAP backend {clap.name!r}: add them to RANDOMIZATION_BLOCKS."
        )
    return [f"clap.{name}" for name in RANDOMIZATION_BLOCKS[clap.name](clap)]


def block_label(name):
    """Short name of a randomized block for tables and plots.

    >>> block_label("clap.audio_encoder.base.conv_block6"), block_label("clap.model.audio_model.audio_encoder.layers.3")
    ('conv_block6', 'layers.3')
    """
    parts = name.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() else parts[-1]


def _clean_batches(setup, manifest, settings, device):
    """(ids, representations, predicted class) of the first ``sanity_clips`` clean clips, in batches."""
    dataset = condition_dataset(setup, settings, manifest, "clean", None)
    loader, _ = batch_loader(dataset, dataclasses.replace(settings, max_batches=None))
    out, count = [], 0
    for batch in loader:
        if count >= settings.sanity_clips:
            break
        keep = min(settings.sanity_clips - count, len(batch.id))
        with torch.no_grad():
            x = setup.domain.representation(batch.wav.data[:keep].to(device))
            targets = setup.targets(setup.classifier(x))
        out.append((list(batch.id)[:keep], x, targets))
        count += keep
    return out


def _figure(n_panels=1):
    """A matplotlib figure drawn by the Agg canvas (no pyplot, so no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(n_panels, 4)
    rows = -(-n_panels // cols)
    figure = Figure(figsize=(max(5.0, 3.6 * cols), max(3.8, 3.2 * rows)), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(rows, cols, i + 1) for i in range(n_panels)]


def _sanity_done(path):
    if os.path.isfile(path):
        logger.info("%s exists: sanity check skipped (delete it to run the check again).", path)
        return True
    return False


def similarity_check(setup, manifest, settings, output_folder, device):
    """Mask mean vs audio-prompt similarity, Pearson r per method (the paper's first sanity check).

    Each of the first ``sanity_clips`` clean clips is explained for ``sanity_prompts`` class prompts: its
    predicted class and seeded random others. The similarity is the cosine between the clip's audio embedding and
    the prompt's text embedding. LMAC-ZS masks are expected to shrink when the similarity is low.

    Writes ``sanity_similarity.csv`` (method, pearson_r, n_points), ``sanity_similarity_points.csv`` (every point)
    and ``sanity_similarity.png`` (one scatter per method).
    """
    summary_path = os.path.join(output_folder, SIMILARITY_CSV)
    if _sanity_done(summary_path):
        return
    classifier = setup.classifier
    batches = _clean_batches(setup, manifest, settings, device)
    points = {method: [] for method in settings.sanity_methods}
    for ids, x, predicted in batches:
        with torch.no_grad():
            cosines = classifier.embed(x) @ classifier.text_embeddings.T
        n_prompts = len(setup.prompts)
        columns = [_sanity_prompts(clip_id, int(c), n_prompts, settings) for clip_id, c in zip(ids, predicted)]
        for method in settings.sanity_methods:
            interpreter = setup.interpreter(method, settings)
            for j in range(len(columns[0])):
                targets = torch.tensor([cols[j] for cols in columns], device=x.device)
                means = interpreter.explain(x, targets).mean(dim=(1, 2))
                for i, clip_id in enumerate(ids):
                    similarity = float(cosines[i, targets[i]])
                    points[method].append((clip_id, setup.prompts[int(targets[i])], similarity, float(means[i])))
    summary = []
    for method, values in points.items():
        accumulator = PearsonAccumulator()
        accumulator.update([v[2] for v in values], [v[3] for v in values])
        summary.append({"method": method, "pearson_r": accumulator.value(), "n_points": accumulator.n})

    def write_points(fout):
        writer = csv.writer(fout)
        writer.writerow(["method", "id", "prompt", "similarity", "mask_mean"])
        for method, values in points.items():
            writer.writerows([method, *value] for value in values)

    atomic_write(os.path.join(output_folder, "sanity_similarity_points.csv"), write_points)
    figure, axes = _figure(len(points))
    for ax, (method, values), result in zip(axes, points.items(), summary):
        ax.scatter([v[2] for v in values], [v[3] for v in values], s=12, alpha=0.7)
        ax.set_title(f"{DISPLAY_NAMES[method]} (r = {result['pearson_r']:.2f})")
        ax.set_xlabel("audio-prompt cosine similarity")
        ax.set_ylabel("mask mean")
    figure.savefig(os.path.join(output_folder, "sanity_similarity.png"), dpi=120)
    write_csv(summary_path, ["method", "pearson_r", "n_points"], summary)
    logger.info("Mask mean vs similarity: %s", {r["method"]: round(r["pearson_r"], 3) for r in summary})


def _sanity_prompts(clip_id, predicted, n_prompts, settings):
    """The predicted class first, then seeded random other classes (all of them when there are few)."""
    order = torch.randperm(n_prompts, generator=clip_generator(clip_id, settings.seed)).tolist()
    others = [i for i in order if i != predicted]
    return [predicted] + others[: min(settings.sanity_prompts, n_prompts) - 1]


def randomization_check(setup, manifest, settings, output_folder, device):
    """Cascading model randomisation (Adebayo et al., 2018), the paper's second sanity check.

    The audio encoder's blocks are re-initialised one more at a time from the top (:func:`randomization_blocks`);
    after each step every method explains the first ``sanity_clips`` clean clips again, for the class the ORIGINAL
    model predicted, and the SSIM between the original and the new mask is averaged over the clips. LMAC-ZS keeps
    its trained decoder (it explains the randomized encoder's features). An explanation that does not change when
    the model does is not explaining the model.

    Writes ``sanity_randomisation.csv`` (method, step, blocks, ssim, n_clips) and ``sanity_randomisation.png``.
    """
    summary_path = os.path.join(output_folder, RANDOMIZATION_CSV)
    if _sanity_done(summary_path):
        return
    classifier = setup.classifier
    blocks = randomization_blocks(classifier.clap)
    batches = _clean_batches(setup, manifest, settings, device)
    original = {}
    for method in settings.sanity_methods:
        interpreter = setup.interpreter(method, settings)
        original[method] = [interpreter.explain(x, targets).cpu() for _, x, targets in batches]
    size = min(batches[0][1].shape[1:])
    window = min(11, size if size % 2 else size - 1)
    results = []
    cascade = cascading_randomization(classifier, blocks, settings.seed)
    for step, (randomized_blocks, randomized) in enumerate(cascade, 1):
        randomized.eval()
        for method in settings.sanity_methods:
            interpreter = setup.interpreter(method, settings, classifier=randomized)
            values = [
                ssim(reference, interpreter.explain(x, targets).cpu(), window_size=window)
                for (_, x, targets), reference in zip(batches, original[method])
            ]
            values = torch.cat(values)
            results.append(
                {
                    "method": method,
                    "step": step,
                    "blocks": block_label(randomized_blocks[-1]),
                    "ssim": float(values.mean()),
                    "n_clips": int(values.numel()),
                }
            )
        del randomized  # one randomized copy of the model at a time
        latest = results[-len(settings.sanity_methods) :]
        ssims = {r["method"]: round(r["ssim"], 3) for r in latest}
        logger.info("Randomised down to %s: SSIM %s", randomized_blocks[-1], ssims)
    figure, (ax,) = _figure(1)
    for method in settings.sanity_methods:
        mine = [r for r in results if r["method"] == method]
        ax.plot([r["step"] for r in mine], [r["ssim"] for r in mine], marker="o", label=DISPLAY_NAMES[method])
    ax.set_xticks(range(1, len(blocks) + 1))
    ax.set_xticklabels([block_label(b) for b in blocks], rotation=45, ha="right")
    ax.set_xlabel("randomized down to")
    ax.set_ylabel("SSIM with the original mask")
    ax.legend(loc="best")
    figure.savefig(os.path.join(output_folder, "sanity_randomisation.png"), dpi=120)
    write_csv(summary_path, ["method", "step", "blocks", "ssim", "n_clips"], results)
