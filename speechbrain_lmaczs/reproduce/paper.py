"""The LMAC-ZS paper's published numbers, as data, and the claims that rest on them.

Source: Paissan, Della Libera, Ravanelli, Subakan, "Listenable Maps for Zero-Shot Audio Classifiers" (NeurIPS
2024), as transcribed in the project's reference notes (``method.md``): the ESC-50 in-domain tables of the Mel and
the STFT masking setups and the zero-shot accuracies of the two setups. The reference gives no out-of-domain
(mixtures, white noise, speech) or UrbanSound8K numbers of the paper, so none are listed here: results for those
conditions are reported as "ours only" by :mod:`speechbrain_lmaczs.reproduce.compare`.

>>> PAPER_TABLES["ESC-50 STFT"].values["LMAC-ZS"]["AI"]
43.35
>>> PAPER_TABLES["ESC-50 Mel"].accuracy, PAPER_TABLES["ESC-50 STFT"].accuracy
(80.7, 78.9)
>>> [m for m in DIRECTIONS if DIRECTIONS[m] == "lower"]
['AD', 'COMP']
"""

import dataclasses

from speechbrain_lmaczs.interpreters import INTERPRETERS

#: metrics of the paper's tables, in their order
METRICS = ("AI", "AD", "AG", "FF", "Fid-In", "SPS", "COMP", "MM")
#: which way is better for each metric ("reported": no better direction, so no ranking or ordering)
DIRECTIONS = {
    "AI": "higher",
    "AD": "lower",
    "AG": "higher",
    "FF": "higher",
    "Fid-In": "higher",
    "SPS": "higher",
    "COMP": "lower",
    "MM": "reported",
    "accuracy": "higher",
}
#: the eval recipe's method names -> the names the paper's tables use
PAPER_NAMES = {name: interpreter.display_name for name, interpreter in INTERPRETERS.items()}


@dataclasses.dataclass(frozen=True)
class PaperTable:
    """One published table: where it was measured and its numbers.

    Parameters
    ----------
    dataset, domain, condition : str
        Evaluation set (``esc50``), masking domain (``mel`` or ``stft``) and condition (``clean``) of the table,
        as the reproduction names its evaluation runs.
    accuracy : float
        Zero-shot accuracy (percent) of the classifier in this setup.
    values : dict
        Paper method name -> metric -> value.
    """

    dataset: str
    domain: str
    condition: str
    accuracy: float
    values: dict


def _rows(text):
    """Parse ``method: AI AD AG FF Fid-In SPS COMP MM`` lines into {method: {metric: value}}."""
    table = {}
    for line in text.strip().splitlines():
        method, numbers = line.split(":")
        table[method.strip()] = dict(zip(METRICS, (float(v) for v in numbers.split()), strict=True))
    return table


#: the paper's ESC-50 in-domain tables (method.md), by table name
PAPER_TABLES = {
    "ESC-50 Mel": PaperTable(
        "esc50",
        "mel",
        "clean",
        80.7,
        _rows(
            """
            GradCAM:    2.90 45.85  1.01 0.28  0.19  0.71  9.52 0.15
            GradCAM++:  8.45 35.07  3.19 0.50  0.39  0.41 10.32 0.35
            SmoothGrad: 0.50 52.76  0.12 0.024 0.036 0.301 10.52 0.039
            IG:         0.25 53.47  0.054 0.064 0.022 0.57 10.09 0.037
            LMAC-ZS:   23.45 17.12 10.31 0.51  0.68  0.80  9.12 0.17
            """
        ),
    ),
    "ESC-50 STFT": PaperTable(
        "esc50",
        "stft",
        "clean",
        78.9,
        _rows(
            """
            GradCAM:   20.30 23.75  7.77 0.78 0.58 0.72 11.54 0.14
            GradCAM++: 32.50  8.97  7.95 0.79 0.84 0.41 12.41 0.35
            SmoothGrad: 6.95 32.75  2.85 0.78 0.47 0.53 11.98 0.0001
            IG:        16.10 21.51  6.05 0.79 0.65 0.74 11.58 0.0095
            ScoreCAM:  29.97 12.14  8.82 0.70 0.75 0.32 12.59 0.41
            GScoreCAM: 29.64  8.56  6.62 0.79 0.84 0.36 12.52 0.39
            LMAC-ZS:   43.35  4.29 10.57 0.78 0.90 0.65 11.86 0.10
            """
        ),
    ),
}

#: what the paper's tables do not cover in the reference, said in the comparison
NOT_IN_REFERENCE = (
    "The reference notes give no published numbers for the out-of-domain conditions (mixtures, white noise, "
    "speech) nor for UrbanSound8K, so those results are reported without a paper column."
)

#: Pearson r from which a mask mean counts as tracking the audio-prompt similarity (a moderate correlation by the
#: usual convention; the paper shows scatter plots, not a threshold: this is the reproduction's reading of them)
SIMILARITY_R = 0.3
#: cascading randomisation: the paper says LMAC-ZS changes sharply after 3 randomised blocks and GradCAM++ does not;
#: read as "LMAC-ZS's SSIM to its original mask is below GradCAM++'s once this many blocks are randomised"
RANDOMISED_BLOCKS = 3
