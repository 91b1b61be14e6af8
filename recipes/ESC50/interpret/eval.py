#!/usr/bin/env python3
"""Head-to-head evaluation of LMAC-ZS and the baseline interpreters, clean and out-of-domain.

Every method (GradCAM, GradCAM++, SmoothGrad, IG, ScoreCAM, GScoreCAM, LMAC-ZS) explains the zero-shot classifier of
a trained LMAC-ZS checkpoint on its masking domain, on clean clips and on clips contaminated at 3 dB SNR with
another clip of the dataset, white noise or speech. Writes ``results.csv`` (per method x condition, a row for the
method's masks and one for its constant-mean reference),
``results.md`` (the paper's table layout) and ``per_clip.csv`` to ``--output_folder``; a run that is interrupted
and restarted skips the pairs already written. The same script serves the UrbanSound8K recipe (its hparams/eval.yaml
sets ``eval_dataset: urbansound8k``).

Run (the checkpoint is the --output_folder of train.py; add --device=cuda on a GPU):
    python eval.py hparams/eval.yaml --data_folder=/data/ESC50 --checkpoint=results/ESC50/lmaczs_mel/msclap/1234
Smoke run (a tiny random CLAP trained by train.py's smoke run; any folder of speech files):
    python eval.py hparams/eval.yaml --data_folder=/data/ESC50 --clap_source=tiny-random --checkpoint=OUT \
        --speech_folder=/data/speech --max_clips=2 --ig_n_steps=4 --smoothgrad_n_samples=3
Sanity checks (mask mean vs similarity, cascading randomisation): add --sanity_similarity=True
--sanity_randomisation=True.
Several processes (see the README's Scaling out): torchrun --nproc_per_node=N eval.py ... (each rank evaluates a
shard of the clips, rank 0 merges), or independent jobs with --shard=i/n (1-based, e.g. a SLURM array) followed
by the same command without --shard, which merges the shards of --output_folder.

Authors: the speechbrain-lmaczs developers
"""

import speechbrain as sb
from speechbrain.utils.distributed import infer_device, run_on_main

from speechbrain_lmaczs.entry import exit_script, run_script, start_run
from speechbrain_lmaczs.evaluation import check_evaluation_settings, prepare_evaluation_data, run_evaluation


def main(argv):
    """Evaluate as the yaml and the command line say (see the module docstring)."""
    hparams_file, run_opts, overrides, hparams = start_run(argv, check=check_evaluation_settings)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )

    # Manifests are written on the main process only; the others read them afterwards.
    run_on_main(prepare_evaluation_data, kwargs={"hparams": hparams})
    manifests = prepare_evaluation_data(hparams)

    run_evaluation(
        hparams,
        manifests,
        device=run_opts.device or infer_device(),
        # --debug: a few batches per (method, condition), as SpeechBrain's debug runs do.
        max_batches=run_opts.debug_batches if run_opts.debug else None,
    )


if __name__ == "__main__":
    exit_script(run_script(main))
