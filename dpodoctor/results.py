"""What a diagnosis produces: findings per run, the severity scale and the gate's threshold.

Why separate from rules and reporters: rules create findings, reporters present them, and the CLI's exit code is
computed from them. Keeping the plain data types here lets each of those depend on this module and not on each other.
The report across runs, whose JSON document includes each run's table, is :class:`dpodoctor.report.Report` (above
the table, which reads these types).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import TYPE_CHECKING, Any

from dpodoctor.model import Run

if TYPE_CHECKING:
    from dpodoctor.curve import CurveSummary
    from dpodoctor.expectations import Expectations


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return {"info": 1, "warning": 2, "error": 3}[self.value]


# The JSON document's schema version: "version" stays 1 (only additive changes, as the README promises), and this
# minor number says which additions a document carries (1.1: per-metric table, curve summaries, β source).
SCHEMA_VERSION = "1.1"

# `--fail-on` values: a severity, or "never".
FAIL_ON_CHOICES = ("error", "warning", "info", "never")


def gate_threshold(fail_on: str) -> int | None:
    """The severity rank a finding must reach to fail the gate (None for ``never``): the one definition the exit
    code, ``watch --fail-fast`` and the reporters' "fails the gate" marks all use."""
    return None if fail_on == "never" else Severity(fail_on).rank


def trips_gate(severity: Severity, fail_on: str) -> bool:
    """Whether a finding of this severity fails the gate under ``fail_on`` (never with ``never``)."""
    threshold = gate_threshold(fail_on)
    return threshold is not None and severity.rank >= threshold


@dataclass(frozen=True)
class Corroboration:
    """A finding of another rule folded into a finding because the same cause explains it: the symptom's code, rule
    name and message, kept apart so reporters need not split a sentence to learn which rule it was."""

    code: str
    name: str
    message: str

    def __str__(self) -> str:
        """The form the JSON report (``corroborating``) and the text reports show: ``"DPO301 acc-at-chance: ..."``."""
        return f"{self.code} {self.name}: {self.message}"

    @classmethod
    def parse(cls, text: str) -> Corroboration:
        """The inverse of :meth:`__str__` (reading a JSON report or a cache entry back). Raises ValueError for text
        that is not in that form, or would not give the same text back."""
        head, sep, message = text.partition(": ")
        code, space, name = head.partition(" ")
        folded = cls(code, name, message)
        if not (sep and space and code and name) or " " in name or str(folded) != text:
            raise ValueError(f"not a corroborating finding: {text[:80]!r}")
        return folded


@dataclass
class Finding:
    """One diagnosed problem in one run, with the steps where it shows and the numbers behind it."""

    code: str
    name: str
    severity: Severity
    split: str
    metric: str
    first_step: int | None
    last_step: int | None
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    cause: str = ""
    fix: str = ""
    # Findings of other rules folded into this one because the same cause explains them.
    corroborating: list[Corroboration] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The finding as the JSON report writes it (and the cache stores it): plain JSON types only."""
        return {
            "code": self.code,
            "name": self.name,
            "severity": self.severity.value,
            "split": self.split,
            "metric": self.metric,
            "first_step": self.first_step,
            "last_step": self.last_step,
            "message": self.message,
            "evidence": self.evidence,
            "cause": self.cause,
            "fix": self.fix,
            "corroborating": [str(c) for c in self.corroborating],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        """The finding :meth:`to_dict` wrote. Every field's type is checked (a cache folder is not trusted): raises
        ValueError or TypeError for anything else."""
        if type(data) is not dict or set(data) != _FINDING_KEYS:
            raise ValueError("not a finding")
        texts = ("code", "name", "severity", "split", "metric", "message", "cause", "fix")
        if not all(type(data[k]) is str for k in texts):
            raise TypeError("finding: a text field is not a string")
        if not all(data[k] is None or type(data[k]) is int for k in ("first_step", "last_step")):
            raise TypeError("finding: a step is not an integer")
        if type(data["evidence"]) is not dict or not _strings(data["corroborating"]):
            raise TypeError("finding: evidence or corroborating")
        return cls(
            **{k: data[k] for k in texts if k != "severity"},
            severity=Severity(data["severity"]),
            first_step=data["first_step"],
            last_step=data["last_step"],
            evidence=data["evidence"],
            corroborating=[Corroboration.parse(text) for text in data["corroborating"]],
        )


_FINDING_KEYS = frozenset(f.name for f in fields(Finding))


def _strings(value: Any) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


@dataclass
class RunReport:
    """A run with its findings, and the rules that could not run for lack of data."""

    run: Run
    findings: list[Finding]
    skipped: dict[str, list[str]] = field(default_factory=dict)  # code -> missing metrics
    checked: list[str] = field(default_factory=list)  # codes of the rules that ran (passed or found something)
    beta_used: float = 0.1
    beta_note: str = ""
    # per core metric, what its curve did ("loss fell from 0.693 to 0.49 and levelled off")
    health: dict[str, str] = field(default_factory=dict)

    @property
    def curves(self) -> dict[tuple[str, str], CurveSummary]:
        """Every logged curve summarised once, keyed by (split, metric): what the table, the messages and the JSON
        all quote. The rules' own summaries when this report came from :func:`~dpodoctor.rules.diagnose_run`;
        computed on first use otherwise (a report read back from the cache). Not a dataclass field, so the cache's
        record of a report keeps its shape: the summaries are derived from the run, never stored."""
        cached = self.__dict__.get("_curves")
        if cached is None:
            from dpodoctor.curve import summarize_run

            cached = self.__dict__["_curves"] = summarize_run(self.run)
        return cached

    @property
    def expectations(self) -> Expectations:
        """What this run was judged against (loss family, phase, noise), derived from the run and the β used."""
        cached = self.__dict__.get("_expectations")
        if cached is None:
            from dpodoctor.expectations import expect

            cached = self.__dict__["_expectations"] = expect(self.run, self.beta_used)
        return cached

    @property
    def beta_source(self) -> str:
        """Where the β used came from: ``user`` (``--beta``/``beta=``), ``log`` (the run's own logs or config) or
        ``assumed`` (TRL's default, because neither says)."""
        if self.beta_note == "given by the user":
            return "user"
        if self.run.beta is not None and self.run.beta > 0 and self.run.beta == self.beta_used:
            return "log"
        return "assumed"

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def to_dict(self) -> dict[str, Any]:
        """The diagnosis (every field but the run it is about) in plain JSON types: what the cache stores, with
        each finding as the JSON report writes it."""
        return {
            "findings": [f.to_dict() for f in self.findings],
            "skipped": self.skipped,
            "checked": self.checked,
            "beta_used": self.beta_used,
            "beta_note": self.beta_note,
            "health": self.health,
        }

    @classmethod
    def from_dict(cls, run: Run, data: dict[str, Any]) -> RunReport:
        """The report of ``run`` that :meth:`to_dict` wrote; types checked as :meth:`Finding.from_dict` does."""
        if type(data) is not dict or set(data) != _RUN_REPORT_KEYS - {"run"}:
            raise ValueError("not a run report")
        skipped, health, findings = data["skipped"], data["health"], data["findings"]
        if not (
            type(findings) is list
            and type(skipped) is dict
            and all(_strings(v) for v in skipped.values())
            and _strings(data["checked"])
            and type(data["beta_used"]) in (int, float)
            and type(data["beta_note"]) is str
            and type(health) is dict
            and all(type(v) is str for v in health.values())
        ):
            raise TypeError("run report: a field has the wrong type")
        return cls(
            run=run,
            findings=[Finding.from_dict(f) for f in findings],
            skipped=skipped,
            checked=data["checked"],
            beta_used=data["beta_used"],
            beta_note=data["beta_note"],
            health=health,
        )

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)


_RUN_REPORT_KEYS = frozenset(f.name for f in fields(RunReport))
