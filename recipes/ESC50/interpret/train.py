#!/usr/bin/env python3
"""Train LMAC-ZS: a text-conditioned mask decoder explaining a frozen zero-shot CLAP classifier.

The decoder is trained on audio-caption pairs with the zero-shot loss (similarity matching, L1 mask
regularisation, prompt diversity) and validated zero-shot on a labelled set (accuracy + faithfulness metrics).
After training, listenable explanations of a few validation clips are written to ``<output_folder>/explanations``.

Run (real CLAP, Clotho, ESC-50; add --device=cuda --precision=bf16 on a GPU;
several GPUs: torchrun --nproc_per_node=N train.py ..., see the README's Scaling out):
    python train.py hparams/lmaczs_mel.yaml --data_folder=/data/ESC50 --clotho_folder=/data/clotho
Smoke run (tiny random CLAP, ESC-50 labels as captions):
    python train.py hparams/lmaczs_mel.yaml --data_folder=/data/ESC50 --train_data=labels \
        --clap_source=tiny-random --number_of_epochs=1

Authors: the speechbrain-lmaczs developers
"""

import speechbrain as sb
from speechbrain.utils.distributed import run_on_main

from speechbrain_lmaczs.classifier import ZeroShotClassifier
from speechbrain_lmaczs.entry import exit_script, run_script, start_run
from speechbrain_lmaczs.lmaczs.brain import LMACZSBrain, check_loss_options
from speechbrain_lmaczs.interpreters.lmaczs import LMACZSInterpreter
from speechbrain_lmaczs.recipe import dataio_prep, prepare_manifests, write_explanations


def main(argv):
    """Train as the yaml and the command line say (see the module docstring)."""
    hparams_file, run_opts, overrides, hparams = start_run(argv, check=check_loss_options)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )

    # Manifests are written on the main process only; the others read them afterwards.
    run_on_main(prepare_manifests, kwargs={"hparams": hparams})
    manifests = prepare_manifests(hparams)
    datasets = dataio_prep(hparams, manifests, hparams["clap"])

    brain = LMACZSBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        eval_prompts=datasets["prompts"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    brain.evaluate(datasets["valid"], min_key="loss", test_loader_kwargs=hparams["valid_dataloader_opts"])

    classifier = ZeroShotClassifier(
        brain.modules.clap,
        datasets["prompts"],
        to_logmel=brain.modules.domain.to_logmel,
        use_logit_scale=hparams["use_logit_scale"],
    )
    run_on_main(
        write_explanations,
        kwargs={
            "interpreter": LMACZSInterpreter(classifier, brain.decoder, brain.modules.domain),
            "domain": brain.modules.domain,
            "dataset": datasets["valid"],
            "folder": hparams["explanations_folder"],
            "n_items": hparams["n_explanations"],
            "device": brain.device,
        },
    )


if __name__ == "__main__":
    exit_script(run_script(main))
