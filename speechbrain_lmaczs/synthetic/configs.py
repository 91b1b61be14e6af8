"""The configurations of the synthetic benchmark: how the small CLAP sees sound and how LMAC-ZS masks it.

- ``default``: the benchmark as built for explaining (:func:`~speechbrain_lmaczs.synthetic.small_clap.small_frontend`
  measures dB from the power floor, so that a Mel mask attenuates towards silence; the small CLAP is trained with
  carved events, so that a silenced event stops counting as evidence); LMAC-ZS with the recipe yaml's own settings.
- ``released``: as close to a released MS-CLAP 2022 as the small CLAP gets: ``10 log10(power)`` with no floor
  offset (silence is -100 dB, the scenes' background near -30 dB), no carving; LMAC-ZS with the same yaml. Its
  ``mask_fill: background`` moves a removed bin to its band's background level, which works with either dB
  reference; the paper's ``mask * log-mel`` would raise every removed bin to 0 dB here, louder than the background
  (``recipe_overrides={"mask_fill": "zero"}`` measures that).

Example
-------
>>> sorted(CONFIGS), CONFIGS["released"].recipe_overrides
(['default', 'released'], {})
>>> CONFIGS["released"].frontend().silence_db
-100.0
"""

from dataclasses import dataclass, field

from speechbrain_lmaczs.synthetic.small_clap import small_frontend


@dataclass(frozen=True)
class BenchmarkConfig:
    """One configuration of the benchmark.

    Attributes
    ----------
    db_offset : float
        Of the small CLAP's front-end (:func:`small_frontend`).
    carve_prob : float
        Of the small CLAP's training (:func:`~speechbrain_lmaczs.synthetic.small_clap_training.train_small_clap`).
    recipe_overrides : dict
        Overrides of the Synthetic recipe's yaml when training LMAC-ZS (``key: value``).
    """

    db_offset: float
    carve_prob: float
    recipe_overrides: dict = field(default_factory=dict)

    def frontend(self):
        """The small CLAP's front-end in this configuration."""
        return small_frontend(db_offset=self.db_offset)

    def options(self):
        """What identifies the configuration in the build stamps."""
        return {"db_offset": self.db_offset, "carve_prob": self.carve_prob, "recipe": dict(self.recipe_overrides)}


#: name -> configuration; ``default`` is what ``make demo`` runs
CONFIGS = {
    "default": BenchmarkConfig(db_offset=100.0, carve_prob=0.5),
    "released": BenchmarkConfig(db_offset=0.0, carve_prob=0.0),
}
