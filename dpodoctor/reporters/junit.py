"""JUnit XML (``--format junit``): each run a ``<testsuite>``, each selected rule a ``<testcase>``.

Why JUnit: GitLab (``artifacts: reports: junit``), Jenkins, Azure Pipelines and most CI systems show it natively as
test results, so a broken run appears as a failing test with its message, without any plugin. The mapping:

* a finding at or above ``--fail-on`` is a ``<failure>``: the gate fails on exactly these;
* a finding below it passes, with its text in ``<system-out>``, so nothing found is hidden;
* a rule that could not run for lack of data is ``<skipped message="needs accuracy"/>``: a gate must not look green
  because a metric was missing;
* an input that could not be read is an ``<error>`` in a suite of its own.

ElementTree escapes ``<``, ``&`` and quotes; characters XML 1.0 cannot carry at all (most control characters, lone
surrogates) are removed first by :func:`clean`, or the file would not parse.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from dpodoctor.report import Report
from dpodoctor.reporters.common import at_or_above, clean, clean_data, details, title, where_text
from dpodoctor.results import Finding, RunReport


def _text(f: Finding) -> str:
    lines = [f.message, f"{where_text(f)}", *details(f)]
    if f.evidence:
        lines.append(f"evidence: {json.dumps(clean_data(f.evidence), ensure_ascii=False, default=str)}")
    return clean("\n".join(lines))


def _codes(rr: RunReport) -> list[str]:
    """The rules of this run's suite: those that ran and those skipped (plus any finding's code, for reports built
    without ``checked``), in code order like the rules table."""
    return sorted(set(rr.checked) | set(rr.skipped) | {f.code for f in rr.findings})


def _folded(rr: RunReport) -> dict[str, str]:
    """Symptom rules whose finding was folded into a cause: code -> the cause's code and the symptom's text."""
    out = {}
    for f in rr.findings:
        for folded in f.corroborating:
            out[folded.code] = f"folded into {title(f.code)}: {folded}"
    return out


def _suite(report: Report, rr: RunReport) -> ET.Element:
    name = clean(rr.run.name)
    suite = ET.Element("testsuite", name=name)
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("path", rr.run.path),
        ("source", rr.run.source),
        ("steps", rr.run.steps),
        ("beta", f"{rr.beta_used:g}"),
        ("ended", rr.run.ended.value),
        ("fail_on", report.fail_on),
    ):
        ET.SubElement(props, "property", name=key, value=clean(value))
    findings = {f.code: f for f in rr.findings}
    folded = _folded(rr)
    failures = skipped = 0
    codes = _codes(rr)
    for code in codes:
        case = ET.SubElement(suite, "testcase", classname=name, name=clean(title(code)))
        if code in rr.skipped:
            skipped += 1
            ET.SubElement(case, "skipped", message=clean(f"needs {', '.join(rr.skipped[code])}"))
        elif code in findings:
            f = findings[code]
            if at_or_above(report, f.severity):
                failures += 1
                failure = ET.SubElement(case, "failure", message=clean(f.message), type=f.severity.value)
                failure.text = _text(f)
            else:
                ET.SubElement(case, "system-out").text = clean(f"[{f.severity.value}] ") + _text(f)
        elif code in folded:
            ET.SubElement(case, "system-out").text = clean(folded[code])
    suite.set("tests", str(len(codes)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    return suite


def _problems(report: Report) -> ET.Element:
    suite = ET.Element("testsuite", name="dpodoctor inputs")
    for problem in report.problems:
        case = ET.SubElement(suite, "testcase", classname="dpodoctor inputs", name=clean(problem))
        ET.SubElement(case, "error", message=clean(problem), type="unreadable input")
    n = str(len(report.problems))
    for key, value in (("tests", n), ("failures", "0"), ("errors", n), ("skipped", "0")):
        suite.set(key, value)
    return suite


def render_junit(report: Report) -> str:
    """The report as a JUnit XML document with a ``<testsuites>`` root carrying the totals."""
    root = ET.Element("testsuites", name="dpodoctor")
    suites = [_suite(report, rr) for rr in report.runs]
    if report.problems:
        suites.append(_problems(report))
    root.extend(suites)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in suites)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
