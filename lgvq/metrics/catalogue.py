"""Every metric a table shows, declared once: which way is better and how it is stored.

Records hold each metric as its scorer returns it; `percent` metrics are stored as fractions in
[0, 1] and shown x100 with a "%" (the paper's convention). A key's family is its name before any
"[": `FID[shapes-cnn]` and `FID[inception]` are both "FID". A table refuses a metric without a
declaration, so direction and scale are never guessed from a name. A plug-in task declares its
own metrics with `declare_metric` (or reuses these, e.g. "Accuracy").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    lower_is_better: bool = False
    percent: bool = False     # stored as a fraction, shown x100 with "%"
    about: str = ""
    unit: str = ""            # of the stored value, for axis labels ("dB"); a percent metric's is "%"


_FRACTION = MetricInfo(percent=True)

METRICS: dict[str, MetricInfo] = {
    "FID": MetricInfo(lower_is_better=True, about="Frechet distance; the feature extractor in brackets"),
    "KID": MetricInfo(lower_is_better=True, about="kernel inception distance"),
    "PSNR": MetricInfo(about="dB, per image on uint8 RGB, averaged", unit="dB"),
    "SSIM": MetricInfo(about="scikit-image, per image, averaged"),
    "usage": MetricInfo(percent=True, about="codes used at least once on the test split"),
    "perplexity": MetricInfo(about="of the code histogram on the test split"),
    "dead_codes": MetricInfo(lower_is_better=True, about="codes never used on the test split"),
    "Recall@1": MetricInfo(percent=True, about="masked-word prediction; protocol in brackets"),
    "I2T-R@1": _FRACTION, "I2T-R@5": _FRACTION,
    "word_code_MSE": MetricInfo(lower_is_better=True, about="word-word vs code-code cosine MSE"),
    "attribute_accuracy": MetricInfo(percent=True, about="shapes-cnn: attributes a sample shows vs its caption's"),
    "caption_following": MetricInfo(percent=True, about="attribute accuracy against the own caption minus against "
                                                        "another condition's (points; 0: the caption is ignored)"),
    "named_exactly": MetricInfo(percent=True, about="captions naming exactly the shapes (colours) their image shows"),
    "Accuracy": MetricInfo(percent=True, about="exact match"),
    "WUPS@0.9": _FRACTION, "WUPS@0.0": _FRACTION,
    "Accuracy@0.5": MetricInfo(percent=True, about="boxes with IoU > 0.5"),
    "mean_IoU": MetricInfo(),
    # pycocoevalcap scores, already x100 in the records (lgvq.metrics.captions.to_paper_scale)
    "BLEU1": MetricInfo(), "BLEU2": MetricInfo(), "BLEU3": MetricInfo(), "BLEU4": MetricInfo(),
    "ROUGE-L": MetricInfo(), "METEOR": MetricInfo(), "CIDEr-D": MetricInfo(),
}


def family(metric: str) -> str:
    return metric.split("[")[0]


def metric_info(metric: str) -> MetricInfo:
    try:
        return METRICS[family(metric)]
    except KeyError:
        raise KeyError(f"metric '{metric}' is not declared in lgvq.metrics.catalogue.METRICS (which way is better, "
                       "fraction or not): declare it with declare_metric") from None


def declare_metric(name: str, info: MetricInfo) -> None:
    """For plug-ins: a metric family of their own. Redeclaring a family differently is an error."""
    if name in METRICS and METRICS[name] != info:
        raise ValueError(f"metric '{name}' is already declared as {METRICS[name]}")
    METRICS[name] = info
