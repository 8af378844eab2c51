"""report.json, the report's SVG figures, and a self-contained report.html (figures inline)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path

from training import charts
from training.baselines import SIGNIFICANCE

#: A grayscale accuracy at most this far below the colour one counts as "does not need
#: colour" (issue #14's target for every shift: within 5 points of clean).
COLOUR_BLIND_TOLERANCE = 0.05

CONFUSION_FIGURE = "confusion_matrix.svg"
CURVES_FIGURE = "curves.svg"
RELIABILITY_FIGURE = "reliability.svg"
ROBUSTNESS_FIGURE = "robustness.svg"
#: Every figure file a report folder may hold; one without data to draw is not written.
FIGURE_FILES = (CONFUSION_FIGURE, CURVES_FIGURE, RELIABILITY_FIGURE, ROBUSTNESS_FIGURE)


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1%}" if pct else f"{v:.3f}"
    return html.escape(str(v))


def _review_rule(target) -> str:
    if target is None:
        return "The threshold is the one stored in the model's manifest."
    return (
        f"The threshold is the lowest one at which the validation images kept reach "
        f"{target:.0%} accuracy."
    )


def _seconds(v) -> str:
    return "-" if v is None else f"{v:.0f} s ({v / 60:.1f} min)"


def write_json(report: dict, path: Path) -> Path:
    Path(path).write_text(json.dumps(report, indent=1, sort_keys=False), encoding="utf-8")
    return Path(path)


def figures(report: dict) -> dict[str, str]:
    """The report's figures as SVG, by file name; one without data to draw is left out."""
    evaluation = report["evaluation"]
    training = report.get("training") or {}
    before, after = evaluation["reliability_before"], evaluation["reliability_after"]
    drawn = {
        CONFUSION_FIGURE: charts.confusion_matrix_svg(
            evaluation["test"]["confusion_matrix"], report["classes"]
        ),
        CURVES_FIGURE: charts.curves_svg(training.get("history") or {}, training.get("best_epoch")),
        RELIABILITY_FIGURE: charts.reliability_svg(
            {
                f"before (ECE {before['ece']:.3f})": before["bins"],
                f"after temperature (ECE {after['ece']:.3f})": after["bins"],
            },
            title="Reliability (test split)",
        ),
        ROBUSTNESS_FIGURE: charts.robustness_svg(report.get("robustness")),
    }
    return {name: svg for name, svg in drawn.items() if svg}


def write_figures(report: dict, folder: Path) -> list[Path]:
    """Write the report's figures as standalone ``.svg`` files into ``folder``."""
    return [charts.save_svg(svg, Path(folder) / name) for name, svg in figures(report).items()]


def _figure(svg: str | None) -> str:
    return f"<figure>{svg}</figure>" if svg else ""


def caveats(report: dict) -> list[str]:
    """Plain-language warnings every reader should see before the numbers."""
    out = []
    data = report.get("data", {})
    if report.get("synthetic"):
        out.append(
            "Trained and tested on SYNTHETIC cartoon smear fields. These numbers say nothing "
            "about real blood smears. NOT FOR CLINICAL USE."
        )
    else:
        out.append("Research model. NOT FOR CLINICAL USE: not validated on any patient population.")
    if not data.get("grouped"):
        out.append(
            "Random image-level split: no patient identifiers were given, so images of one "
            "patient may sit in both training and test. Test accuracy is optimistic."
        )
    if report.get("baseline_warning"):
        out.append(report["baseline_warning"])
    return out


def colour_blind(report: Mapping) -> dict | None:
    """How much the CNN needs colour: its accuracy on grayscale test images beside its own
    unshifted accuracy and the colour-statistics baseline's, all on the same test split.

    None when the report has no grayscale row (no robustness table) or no colour baseline;
    tolerant of malformed reports, since the registry shows reports of any code version.
    """

    def number(d, key):
        v = d.get(key) if isinstance(d, Mapping) else None
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    rob = report.get("robustness")
    rob = rob if isinstance(rob, Mapping) else {}
    shifts = rob.get("shifts")
    shifts = shifts if isinstance(shifts, list) else []
    grey = next((r for r in shifts if isinstance(r, Mapping) and r.get("kind") == "grayscale"), {})
    baselines = report.get("baselines")
    base = baselines.get("colour_stats") if isinstance(baselines, Mapping) else None
    grey_acc, clean = number(grey, "accuracy"), number(rob.get("clean"), "accuracy")
    base_acc = number(base, "accuracy")
    if grey_acc is None or clean is None or base_acc is None:
        return None
    out = {
        "grayscale_accuracy": grey_acc,
        "grayscale_macro_f1": number(grey, "macro_f1"),
        "clean_accuracy": clean,
        "drop": clean - grey_acc,
        "colour_baseline_accuracy": base_acc,
    }
    evaluation = report.get("evaluation")
    test = evaluation.get("test") if isinstance(evaluation, Mapping) else None
    per_class = test.get("per_class") if isinstance(test, Mapping) else None
    if isinstance(per_class, Mapping):
        support = [number(v, "support") or 0.0 for v in per_class.values()]
        if sum(support):
            out["largest_class_share"] = max(support) / sum(support)
    return out


def colour_blind_line(check: Mapping | None) -> str | None:
    """The colour-blind check as one sentence for the top of a report."""
    if check is None:
        return None
    line = (
        f"Colour-blind check: {check['grayscale_accuracy']:.1%} on grayscale test images "
        f"({check['clean_accuracy']:.1%} in colour, {abs(check['drop']) * 100:.1f} points "
        f"{'lost' if check['drop'] >= 0 else 'gained'}); "
        f"colour statistics alone: {check['colour_baseline_accuracy']:.1%}"
    )
    if "largest_class_share" in check:
        line += f"; always answering the largest class: {check['largest_class_share']:.1%}"
    verdict = (
        "the model does not need colour"
        if check["drop"] <= COLOUR_BLIND_TOLERANCE
        else "the model depends on colour"
    )
    return f"{line}. {verdict.capitalize()}."


def validity_html(report: dict, robustness_svg: str | None = None) -> str:
    """Robustness table and plot, per-source metrics, and the out-of-scope guard."""
    parts = []
    rob = report.get("robustness")
    if rob:
        rows = "".join(
            f"<tr><th>{html.escape(r['label'])}</th><td>{_fmt(r['accuracy'], True)}</td>"
            f"<td>{_fmt(r['macro_f1'])}</td><td>{_fmt(-r['accuracy_drop'], True)}</td>"
            f"<td>{_fmt(r.get('out_of_scope'), True)}</td>"
            f"<td>{_fmt(r.get('accuracy_in_scope'), True)}</td></tr>"
            for r in rob["shifts"]
        )
        parts.append(
            "<h2>Robustness to colour and stain shifts (test split)</h2>"
            "<p><small>Every test image shifted the same stated way (HED jitter: per-image "
            f"stain scale and offset drawn with seed {rob['seed']}).</small></p>"
            "<table><tr><th>condition</th><th>accuracy</th><th>macro F1</th><th>change</th>"
            "<th>flagged out of scope</th><th>accuracy of the rest</th></tr>"
            f"<tr><th>unshifted</th><td>{_fmt(rob['clean']['accuracy'], True)}</td>"
            f"<td>{_fmt(rob['clean']['macro_f1'])}</td><td></td>"
            f"<td>{_fmt(rob['clean'].get('out_of_scope'), True)}</td>"
            f"<td>{_fmt(rob['clean'].get('accuracy_in_scope'), True)}</td></tr>{rows}</table>"
            + _figure(robustness_svg)
        )
    per_source = report.get("per_source")
    if per_source:
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{v['n']}</td><td>{_fmt(v['accuracy'], True)}"
            f"</td><td>{_fmt(v['macro_f1'])}</td></tr>"
            for k, v in per_source.items()
        )
        parts.append(
            "<h2>Per source (test split)</h2><table><tr><th>source</th><th>images</th>"
            f"<th>accuracy</th><th>macro F1</th></tr>{rows}</table>"
        )
    ood = report.get("ood")
    if ood:
        reasons = ood.get("reasons") or {}
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{_fmt(v, True)}</td>"
            f"<td>{html.escape(_reason_text(reasons.get(k)))}</td></tr>"
            for k, v in ood["flagged"].items()
        )
        parts.append(
            "<h2>Out-of-scope guard</h2>"
            + _guard_method(ood)
            + "<table><tr><th>images</th><th>flagged out of scope</th><th>by check</th></tr>"
            f"{rows}</table>"
        )
    return "".join(parts)


def _reason_text(counts: dict | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (counts or {}).items())


def _guard_method(ood: dict) -> str:
    """One paragraph on how the guard scores, for either kind of guard."""
    if ood.get("method") == "multi-check":
        checks = ", ".join(html.escape(c) for c in ood.get("checks", []))
        return (
            "<p>Several checks in the same compiled call as the probabilities: Mahalanobis "
            "distance to the nearest class mean (shared Ledoit-Wolf covariance, training "
            "split) of the pooled outputs of several layers, and input-level checks on "
            f"focus, contrast and near-white area. Checks: {checks}. Each threshold is the "
            f"{ood['quantile']:.2%} quantile of validation scores"
            + (" (validation and a stain-jittered copy)" if ood.get("stain_augmented") else "")
            + f", chosen so that all checks together flag {ood.get('target', 0.01):.0%} of "
            "validation images; an image is flagged when any check passes its threshold, "
            "and the check that passed it furthest is named.</p>"
        )
    return (
        "<p>Mahalanobis distance of the features feeding the "
        f"output layer (<code>{html.escape(ood['layer'])}</code>) to the nearest class "
        "mean, with one shared covariance (Ledoit-Wolf shrinkage "
        f"{ood['shrinkage']:.3f}) fitted on the training split. Threshold "
        f"{ood['threshold']:.2f}: the {ood['quantile']:.0%} quantile of validation "
        "scores, so about 1 % of in-distribution images are flagged by design.</p>"
    )


def write_html(report: dict, path: Path) -> Path:
    """One readable page: caveats, headline numbers, baselines, per-class table, figures."""
    t = report["evaluation"]["test"]
    classes = report["classes"]
    rows = "".join(
        f"<tr><th>{html.escape(c)}</th>"
        + "".join(
            f"<td>{_fmt(t['per_class'][c][k])}</td>"
            for k in ("precision", "recall", "specificity", "f1", "roc_auc")
        )
        + f"<td>{t['per_class'][c]['support']}</td></tr>"
        for c in classes
    )
    base = report.get("baselines", {})
    base_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_fmt(v['accuracy'], True)}</td>"
        f"<td>{_fmt(v['macro_f1'])}</td><td>{_fmt(v.get('mcnemar_p'))}</td>"
        f"<td>{html.escape(v['description'])}</td></tr>"
        for k, v in base.items()
    )
    review = t.get("review", {})
    cfg = report.get("config", {})
    data = report.get("data", {})
    warn = "".join(f'<p class="warn">{html.escape(c)}</p>' for c in caveats(report))
    blind = colour_blind_line(report.get("colour_blind") or colour_blind(report))
    if blind:
        warn += f'<p class="blind" id="colour-blind"><strong>{html.escape(blind)}</strong></p>'
    headline = [
        ("accuracy", _fmt(t["accuracy"], True)),
        ("macro F1", _fmt(t["macro_f1"])),
        ("weighted F1", _fmt(t["weighted_f1"])),
        ("macro one-vs-rest ROC AUC", _fmt(t["macro_roc_auc"])),
        ("ECE before / after temperature", f"{_fmt(t['ece_before'])} / {_fmt(t['ece_after'])}"),
        ("temperature (fitted on validation)", _fmt(t["temperature"])),
        ("needs-review threshold (chosen on validation)", _fmt(t["confidence_threshold"])),
        ("test images flagged for review", _fmt(review.get("flagged_fraction"), True)),
        ("accuracy of test images not flagged", _fmt(review.get("accepted_accuracy"), True)),
    ]
    head_rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in headline)
    sizes = data.get("sizes", {})
    facts = [
        ("architecture", report.get("architecture")),
        ("input size", f"{report.get('input_size')} px"),
        ("weights", cfg.get("weights") or "none (from scratch)"),
        ("epochs run", report.get("training", {}).get("epochs_run")),
        ("training wall time", _seconds(report.get("training", {}).get("wall_seconds"))),
        (
            "split train / validation / test",
            f"{sizes.get('train')} / {sizes.get('validation')} / {sizes.get('test')}",
        ),
        ("duplicate copies removed before splitting", data.get("duplicates_dropped")),
        ("dataset fingerprint", data.get("fingerprint")),
        ("seed", cfg.get("seed")),
    ]
    fact_rows = "".join(f"<tr><th>{k}</th><td>{_fmt(v)}</td></tr>" for k, v in facts)
    drawn = figures(report)
    figs = "".join(
        _figure(drawn.get(name)) for name in (CONFUSION_FIGURE, CURVES_FIGURE, RELIABILITY_FIGURE)
    )
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(report["name"])} {html.escape(report["version"])} evaluation</title>
<style>
body{{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;
padding:0 1rem;color:#222}}
table{{border-collapse:collapse;margin:.5rem 0 1.5rem}}th,td{{padding:.25rem .7rem;
border-bottom:1px solid #ddd;text-align:left}}td{{font-variant-numeric:tabular-nums}}
.warn{{background:#fff3cd;border-left:4px solid #e0a800;padding:.5rem .8rem}}
.blind{{background:#e8f0fe;border-left:4px solid #1a56c4;padding:.5rem .8rem}}
figure{{margin:1rem 0}}figure svg{{max-width:100%;height:auto}}small{{color:#666}}
{charts.FILE_STYLE}
</style></head><body>
<h1>{html.escape(report["name"])} {html.escape(report["version"])}</h1>
<p>{html.escape(report["architecture"])} · classes: {html.escape(", ".join(classes))}
 · created {html.escape(report.get("created", ""))}</p>
{warn}
<h2>Test split</h2><table>{head_rows}</table>
<h2>Cheap baselines on the same split</h2>
<table><tr><th></th><th>accuracy</th><th>macro F1</th><th>p (CNN better, McNemar)</th>
<th></th></tr>{base_rows}</table>
{validity_html(report, drawn.get(ROBUSTNESS_FIGURE))}
<h2>Per class (test split)</h2>
<table><tr><th>class</th><th>precision</th><th>recall (sensitivity)</th><th>specificity</th>
<th>F1</th><th>ROC AUC</th><th>support</th></tr>{rows}</table>
<h2>Figures</h2>{figs}
<h2>Run</h2><table>{fact_rows}</table>
<p><small>Confidence is the largest probability after dividing log-probabilities by the
temperature; an image whose confidence is below the threshold is flagged "needs review".
{_review_rule(t.get("review_target_accuracy"))}</small></p>
</body></html>
"""
    Path(path).write_text(doc, encoding="utf-8")
    return Path(path)


# A local accuracy this far below the training report's test accuracy is called out.
DROP_WARNING = 0.05


def reported_test_accuracy(report: object) -> float | None:
    """The test-split accuracy a training report states, or None where it states none."""
    evaluation = report.get("evaluation") if isinstance(report, dict) else None
    test = evaluation.get("test") if isinstance(evaluation, dict) else None
    accuracy = test.get("accuracy") if isinstance(test, dict) else None
    return float(accuracy) if isinstance(accuracy, int | float) else None


def local_evaluation_warnings(result: dict, reported_accuracy: float | None) -> list[str]:
    """What an administrator must read before deploying on the strength of a local
    evaluation (``training.local_evaluation.evaluate_folder``'s result)."""
    warnings = []
    accuracy = result["metrics"]["accuracy"]
    if reported_accuracy is not None and accuracy < reported_accuracy - DROP_WARNING:
        warnings.append(
            f"Accuracy here is {accuracy:.1%}, {(reported_accuracy - accuracy) * 100:.1f} points "
            "below the "
            f"{reported_accuracy:.1%} of the model's own test split: these images differ "
            "from its training data (stain, scanner, patients)."
        )
    baseline = result["colour_baseline"]
    if "accuracy" in baseline and (
        accuracy <= baseline["accuracy"] or baseline["mcnemar_p"] >= SIGNIFICANCE
    ):
        warnings.append(
            f"Colour statistics alone separate these classes {baseline['accuracy']:.1%} of "
            f"the time (cross-validated on this set); the model's {accuracy:.1%} is not "
            f"clearly above that (McNemar p = {baseline['mcnemar_p']:.2g})."
        )
    if result["unreadable_count"]:
        warnings.append(
            f"{result['unreadable_count']} file(s) could not be decoded and were left out."
        )
    if len(result["classes_present"]) < len(result["metrics"]["per_class"]):
        missing = sorted(set(result["metrics"]["per_class"]) - set(result["classes_present"]))
        warnings.append(f"No images of {', '.join(missing)}: the model is unchecked on them here.")
    return warnings
