"""The scoreboard: how often dpodoctor's verdicts are right on runs whose truth is known. Not part of the test suite.

    PYTHONPATH=. python benchmarks/accuracy.py                          # corpus + ../shared/real-logs if present
    PYTHONPATH=. python benchmarks/accuracy.py --corpus tests/fixtures/corpus --no-real-logs
    PYTHONPATH=/work/diag python benchmarks/accuracy.py                 # score another checkout's rules

It runs ``dpodoctor.check`` (the Python API, no config, no cache) on every run folder of the corpus (default
``../corpus-data/runs`` beside the repository, made by ``tools/corpus/generate.py``), labels each run from
``tools/corpus/manifest.jsonl`` (the label is how the run was made, never what the tool said), and scores the findings
against ``tools/corpus/labels.py`` (EXPECTATIONS: label → expected codes; the one table to edit when rules change).
When ``../shared/real-logs`` exists, its public runs are scored too, separately, against a small hand-made label
table (labels.REAL_LOGS) taken from the issue's text: they are not induced.

It prints, per rule code, true positives, false positives and false negatives, and the false-alarm rate on healthy
runs; then a summary per label and the list of misclassified runs. Only findings at warning or error count (info is a
note, not a verdict). It writes nothing (a report file only where ``--json`` points).

Which package is scored: whatever ``import dpodoctor`` finds first (PYTHONPATH, then an installed copy, then this
checkout); the header prints its path. The label table and manifest are looked up the same way (``tools.corpus``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))  # appended: a checkout on PYTHONPATH (or an installed dpodoctor) wins over this one

import dpodoctor  # noqa: E402
from tools.corpus import labels as label_table  # noqa: E402

SEVERITY_RANK = {"info": 1, "warning": 2, "error": 3}
VERDICT = 2  # warning and above are verdicts; info is a note


@dataclass
class Scored:
    """One run, its label, what dpodoctor found, and how that compares with the label's expectation."""

    name: str
    label: str
    source: str  # "corpus" or "real-logs"
    params: dict[str, Any] = field(default_factory=dict)
    findings: list[tuple[str, str]] = field(default_factory=list)  # (code, severity), every severity
    unreadable: str = ""
    detected_by: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    too_severe: list[str] = field(default_factory=list)
    verdict: str = ""  # ok | false alarm | missed | too severe | unreadable | unscored

    @property
    def flagged(self) -> list[str]:
        """Codes at warning or error."""
        return sorted({code for code, severity in self.findings if SEVERITY_RANK[severity] >= VERDICT})

    def describe_findings(self) -> str:
        shown = [f"{code}[{severity[0]}]" for code, severity in sorted(set(self.findings))]
        return " ".join(shown) or "-"


def diagnose(path: Path) -> tuple[list[tuple[str, str]], str]:
    """Findings of every run dpodoctor reads under ``path`` (one folder = one training run), or why it could not."""
    try:
        report = dpodoctor.check([path], use_config=False, exit_zero=True, jobs=1, cache=False)
    except dpodoctor.DpoDoctorError as error:
        return [], str(error)
    findings = [(f.code, f.severity.value) for run in report.runs for f in run.findings]
    return findings, ""


def score(item: Scored) -> Scored:
    """Fill the verdict fields of ``item`` from its label's expectation."""
    expectation = label_table.EXPECTATIONS.get(item.label)
    if expectation is None or expectation.kind == "unscored":
        item.verdict = "unscored"
        return item
    if item.unreadable:
        item.verdict = "unreadable"
        return item
    flagged = item.flagged
    item.detected_by = [c for c in flagged if c in expectation.codes]
    item.false_positives = [c for c in flagged if c not in expectation.codes and c not in expectation.also_ok]
    cap = SEVERITY_RANK[expectation.worst]
    item.too_severe = sorted({c for c, s in item.findings if SEVERITY_RANK[s] > cap})
    if expectation.kind == "healthy":
        item.verdict = "false alarm" if flagged else "ok"
    elif not item.detected_by:
        item.verdict = "missed"
    elif item.too_severe:
        item.verdict = "too severe"
    else:
        item.verdict = "ok"
    return item


def load_manifest(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["name"]: row for row in rows}


def corpus_runs(corpus: Path, manifest: dict[str, dict[str, Any]]) -> list[Scored]:
    runs = []
    for folder in sorted(p for p in corpus.iterdir() if p.is_dir()):
        row = manifest.get(folder.name, {})
        item = Scored(folder.name, row.get("label", "(not in manifest)"), "corpus", row.get("params", {}))
        item.findings, item.unreadable = diagnose(folder)
        runs.append(score(item))
    return runs


def real_log_runs(root: Path) -> list[Scored]:
    runs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label, _source = label_table.REAL_LOGS.get(folder.name, ("real:unlabelled", ""))
        item = Scored(folder.name, label, "real-logs")
        item.findings, item.unreadable = diagnose(folder)
        runs.append(score(item))
    return runs


def loss_family(params: dict[str, Any]) -> str:
    if not params:
        return "?"
    if params.get("trainer", "dpo") != "dpo":
        kind = params.get("extra", {}).get("loss_type")
        return params["trainer"] + (f":{kind}" if kind else "")
    return "+".join(params.get("loss_type", ["sigmoid"]))


def table(header: list[str], rows: list[list[Any]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def per_rule(runs: list[Scored]) -> list[list[Any]]:
    """TP / FP / FN per code. FN: the label lists the code and the run was missed by every code of its label."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    healthy_fa: Counter[str] = Counter()
    for item in runs:
        if item.verdict in ("unscored", "unreadable"):
            continue
        expectation = label_table.EXPECTATIONS[item.label]
        for code in item.detected_by:
            tp[code] += 1
        for code in item.false_positives:
            fp[code] += 1
            if expectation.kind == "healthy":
                healthy_fa[code] += 1
        if item.verdict == "missed":
            for code in expectation.codes:
                fn[code] += 1
    codes = sorted(set(tp) | set(fp) | set(fn))
    healthy = sum(1 for r in runs if r.verdict in ("ok", "false alarm") and _kind(r) == "healthy")
    rows = []
    for code in codes:
        name = dpodoctor.RULES[code].name if code in dpodoctor.RULES else "(no such rule)"
        precision = f"{tp[code] / (tp[code] + fp[code]):.0%}" if tp[code] + fp[code] else "-"
        rate = f"{healthy_fa[code]}/{healthy} ({healthy_fa[code] / healthy:.0%})" if healthy else "-"
        rows.append([code, name, tp[code], fp[code], fn[code], precision, rate])
    return rows


def _kind(item: Scored) -> str:
    expectation = label_table.EXPECTATIONS.get(item.label)
    return expectation.kind if expectation else "unscored"


def per_label(runs: list[Scored]) -> list[list[Any]]:
    groups: dict[str, list[Scored]] = defaultdict(list)
    for item in runs:
        groups[item.label].append(item)
    rows = []
    for label in sorted(groups, key=lambda x: (_kind(groups[x][0]), x)):
        items = groups[label]
        counts = Counter(i.verdict for i in items)
        codes = Counter(c for i in items for c in i.flagged)
        common = " ".join(f"{c}×{n}" for c, n in codes.most_common(4)) or "-"
        rows.append(
            [
                label,
                _kind(items[0]),
                len(items),
                counts["ok"],
                counts["false alarm"],
                counts["missed"],
                counts["too severe"],
                counts["unreadable"],
                common,
            ]
        )
    return rows


def render(runs: list[Scored], title: str, *, by_family: bool) -> list[str]:
    out = [f"== {title}: {len(runs)} run(s)", ""]
    out.append("-- per label (a run is ok when its label's expectation holds; see tools/corpus/labels.py)")
    header = ["label", "kind", "runs", "ok", "false alarm", "missed", "too severe", "unreadable", "flagged codes"]
    out += [table(header, per_label(runs)), ""]
    out.append("-- per rule (findings at warning or error; FN counts runs missed by every code of their label)")
    rule_header = ["code", "name", "TP", "FP", "FN", "precision", "fires on healthy"]
    out += [table(rule_header, per_rule(runs)) or "(no verdicts)", ""]
    healthy = [r for r in runs if _kind(r) == "healthy" and r.verdict != "unreadable"]
    alarms = [r for r in healthy if r.verdict == "false alarm"]
    if healthy:
        out.append(
            f"false-alarm rate on healthy-looking runs (any warning or error): {len(alarms)}/{len(healthy)}"
            f" = {len(alarms) / len(healthy):.0%}"
        )
        if by_family:
            families: dict[str, list[Scored]] = defaultdict(list)
            for r in healthy:
                families[loss_family(r.params)].append(r)
            parts = [
                f"{fam} {sum(r.verdict == 'false alarm' for r in rs)}/{len(rs)}" for fam, rs in sorted(families.items())
            ]
            out.append("  by loss: " + ", ".join(parts))
    failures = [r for r in runs if _kind(r) == "failure"]
    if failures:
        caught = sum(r.verdict in ("ok", "too severe") for r in failures)
        out.append(f"induced failures detected by an expected code: {caught}/{len(failures)}")
    out.append("")
    wrong = [r for r in runs if r.verdict not in ("ok", "unscored")]
    out.append(f"-- misclassified runs ({len(wrong)})")
    rows = []
    for r in wrong:
        expected = label_table.EXPECTATIONS[r.label]
        want = (
            "nothing >= warning" if expected.kind == "healthy" else "any of " + ",".join(expected.codes or ("(none)",))
        )
        if expected.worst != "error" and expected.kind == "failure":
            want += f", at most {expected.worst}"
        got = r.unreadable[:80] if r.unreadable else r.describe_findings()
        rows.append([r.name, r.label, r.verdict, want, got])
    out += [
        table(["run", "label", "verdict", "expected", "found (w=warning e=error i=info)"], rows) if rows else "none"
    ]
    unscored = [r for r in runs if r.verdict == "unscored"]
    if unscored:
        out += ["", f"-- not scored ({len(unscored)}): label without an expectation"]
        out += [table(["run", "label", "found"], [[r.name, r.label, r.describe_findings()] for r in unscored])]
    out.append("")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "corpus-data" / "runs", help="run folders")
    manifest_default = Path(label_table.__file__).with_name("manifest.jsonl")
    parser.add_argument("--manifest", type=Path, default=manifest_default, help="labels of the corpus runs")
    parser.add_argument("--real-logs", type=Path, default=REPO.parent / "shared" / "real-logs")
    parser.add_argument("--no-real-logs", action="store_true", help="score the corpus only")
    parser.add_argument("--json", type=Path, help="also write every run's label, findings and verdict here")
    options = parser.parse_args(argv)
    if not options.corpus.is_dir():
        parser.error(f"--corpus {options.corpus}: no such folder (make it with tools/corpus/generate.py)")
    manifest = load_manifest(options.manifest)
    print(f"dpodoctor: {Path(dpodoctor.__file__).parent}")
    print(f"labels:    {label_table.__file__}")
    print(f"manifest:  {options.manifest} ({len(manifest)} runs)")
    print(f"corpus:    {options.corpus}")
    corpus = corpus_runs(options.corpus, manifest)
    lines = render(corpus, f"corpus {options.corpus}", by_family=True)
    real: list[Scored] = []
    if not options.no_real_logs and options.real_logs.is_dir():
        real = real_log_runs(options.real_logs)
        lines += render(
            real, f"public logs {options.real_logs} (hand labels from issue 13, not induced)", by_family=False
        )
        sources = [f"  {name}: {label} ({why})" for name, (label, why) in sorted(label_table.REAL_LOGS.items())]
        lines += ["hand labels:", *sources, ""]
    print("\n".join(lines))
    if options.json:
        doc = [
            {
                "name": r.name,
                "source": r.source,
                "label": r.label,
                "verdict": r.verdict,
                "findings": r.findings,
                "unreadable": r.unreadable,
            }
            for r in corpus + real
        ]
        options.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
