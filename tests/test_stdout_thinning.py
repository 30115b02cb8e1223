"""A console log above the stdout reader's point budget is thinned in a bounded, streaming way, and says so
(issue 17, defect 7); below the budget nothing changes.

The logs are written here in the shape ``benchmarks/stdout_memory.py`` writes (a TRL console log: a tqdm redraw
every optimizer step, the 13-key metric dict every 10 steps, an eval bar and dict every 500 steps, the
end-of-training summary), small, with a small budget set through ``$DPODOCTOR_STDOUT_MAX_POINTS`` and small chunks,
so the read thins over several chunks as a huge log would.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dpodoctor import api
from dpodoctor.cli import app
from dpodoctor.errors import DpoDoctorError
from dpodoctor.readers.stdout import scan as scanning
from dpodoctor.readers.stdout.grammar import TRAIN
from dpodoctor.readers.stdout.reader import StdoutTail, read_file_runs
from dpodoctor.readers.stdout.scan import scan_file
from dpodoctor.readers.stdout.thinning import BUDGET_ENV, MAX_POINTS, RECORD_POINTS
from dpodoctor.reporters import load_schema

TRAIN_KEYS = (
    "loss",
    "grad_norm",
    "learning_rate",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logits/chosen",
    "logits/rejected",
    "epoch",
)  # as benchmarks/stdout_memory.py's, without nll_loss: a loss with an NLL term is not judged for spikes (DPO102)


def _write_log(
    path: Path,
    dicts: int,
    *,
    log_every: int = 10,
    eval_every: int = 500,
    spike: tuple[int, ...] = (),
    nan_at: tuple[int, ...] = (),
    seed: int = 0,
    runs: int = 1,
    noise: float = 0.01,
) -> None:
    """A TRL console log of ``dicts`` train dicts per run (``runs`` appended one after another), with batch noise
    on the loss; the dicts numbered in ``spike`` (1-based) have their loss raised by 0.5, those in ``nan_at`` a NaN
    loss."""
    rng = np.random.default_rng(seed)
    total = dicts * log_every
    out: list[str] = []
    for _ in range(runs):
        out.append(f"***** Running training *****\n  Num examples = 640\n  Total optimization steps = {total}\n")
        for step in range(1, total + 1):
            done = "█" * (step * 10 // total)
            bar = f"\r{step * 100 // total:3d}%|{done:<10}| {step}/{total} [00:01<00:09,  2.00it/s]"
            out.append(bar)
            if step % log_every == 0:
                k = step // log_every
                r = 1 - math.exp(-step / (total / 5))
                loss = math.log(2) - 0.4 * r + float(rng.normal(0, noise)) if noise else math.log(2) - 0.4 * r
                loss = math.nan if k in nan_at else loss + (0.5 if k in spike else 0.0)
                chosen, rejected = 0.3 * r, -0.5 * r
                values = {
                    "loss": loss,
                    "grad_norm": 1.5 - 0.5 * r + (float(rng.normal(0, 5 * noise)) if noise else 0.0),
                    "learning_rate": 5e-7,
                    "rewards/chosen": chosen,
                    "rewards/rejected": rejected,
                    "rewards/accuracies": 0.5 + 0.4 * r,
                    "rewards/margins": chosen - rejected,
                    "logps/chosen": -120.0 + 5 * r,
                    "logps/rejected": -130.0 - 10 * r,
                    "logits/chosen": -0.5,
                    "logits/rejected": -0.45,
                    "epoch": step / total,
                }
                text = ", ".join(f"'{key}': {values[key]:.6g}" for key in TRAIN_KEYS)
                out.append("\n{" + text + "}\n" + bar)
            if step % eval_every == 0:
                bars = (f"\r{p * 25:3d}%|{'█' * p:<4}| {p * 16}/64 [00:0{p}<00:00, 8.0it/s]" for p in range(5))
                out.append("".join(bars))
                out.append(
                    f"\n{{'eval_loss': {math.log(2) - 0.3:.6g}, 'eval_rewards/accuracies': 0.8, "
                    f"'eval_rewards/margins': 0.7, 'eval_runtime': 4.2, 'epoch': {step / total:.6g}}}\n"
                )
        out.append("\n{'train_runtime': 12345.6, 'train_samples_per_second': 1.0, 'train_loss': 0.4, 'epoch': 1.0}\n")
    path.write_text("".join(out), encoding="utf-8")


def _series(frame: pd.DataFrame, split: str, metric: str) -> pd.Series:
    part = frame[(frame["split"] == split) & (frame["metric"] == metric)]
    return pd.Series(part["value"].to_numpy(), index=part["step"].to_numpy())


def _read(path: Path, monkeypatch: pytest.MonkeyPatch, budget: int | None) -> list:
    if budget is None:
        monkeypatch.delenv(BUDGET_ENV, raising=False)
    else:
        monkeypatch.setenv(BUDGET_ENV, str(budget))
    return read_file_runs(path)


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 64 KB, so a log of a few MB is thinned over many chunks, as a multi-GB log is in 4 MB ones."""
    monkeypatch.setattr(scanning, "CHUNK", 64 * 1024)


@pytest.fixture(scope="module")
def spiky_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 train dicts (26,000 points, ~2 MB), a three-dict loss spike late in the run, a NaN loss once."""
    path = tmp_path_factory.mktemp("thinning") / "train.log"
    _write_log(path, 2_000, spike=(1501, 1502, 1503), nan_at=(777,))
    return path


BUDGET = 8_000


def test_a_log_above_the_budget_is_read_within_it_and_says_so(spiky_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [full] = _read(spiky_log, monkeypatch, None)
    [thin] = _read(spiky_log, monkeypatch, BUDGET)
    assert len(full.frame) > 3 * BUDGET  # the full read: every point (the default budget is far above this log)
    assert len(thin.frame) <= BUDGET
    scan = scan_file(spiky_log)
    assert scan.values.size() + RECORD_POINTS * len(scan.kinds) <= BUDGET
    [note] = [n for n in thin.notes if "bound" in n]
    stride = scan.thinning.stride
    assert stride in (4, 8, 16)  # "every 4th": the note says which
    assert note.startswith(f"train.log: {scan.values.size() + scan.thinning.dropped_points:,} values in 2,041 metric")
    assert f"above the reader's bound of {BUDGET:,} points: every {stride}th train dict was kept" in note
    assert BUDGET_ENV in note
    assert not any("bound" in n for n in full.notes)
    # the steps still come from the progress bar, as in the full read
    assert full.notes[0] == thin.notes[0] and "progress bar" in thin.notes[0]
    assert thin.ended == full.ended and thin.summary == full.summary


def test_thinning_keeps_a_subset_the_first_and_last_and_every_eval(
    spiky_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [full] = _read(spiky_log, monkeypatch, None)
    [thin] = _read(spiky_log, monkeypatch, BUDGET)
    keys = ["split", "metric", "step"]
    joined = thin.frame.merge(full.frame, on=keys, how="left", suffixes=("", "_full"), validate="one_to_one")
    assert joined["value_full"].notna().sum() + joined["value"].isna().sum() >= len(joined)  # every point was read
    same = (joined["value"] == joined["value_full"]) | (joined["value"].isna() & joined["value_full"].isna())
    assert same.all()  # at its own step, with its own value
    loss, thin_loss = _series(full.frame, "train", "loss"), _series(thin.frame, "train", "loss")
    assert thin_loss.index[0] == loss.index[0] == 10 and thin_loss.index[-1] == loss.index[-1] == 20_000
    assert len(thin_loss) < len(loss) / 4
    for metric in ("loss", "accuracy", "margins", "runtime"):
        pd.testing.assert_series_equal(_series(thin.frame, "eval", metric), _series(full.frame, "eval", metric))
    # the regular stride: every stride-th train dict from the first (train dict k is logged at step 10k)
    stride = scan_file(spiky_log).thinning.stride
    assert set(range(10, 20_001, 10 * stride)) <= set(thin_loss.index.tolist())


def test_a_loss_spike_and_a_nan_survive_the_thinning(spiky_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [thin] = _read(spiky_log, monkeypatch, BUDGET)
    loss = _series(thin.frame, "train", "loss")
    assert {15_010, 15_020, 15_030} <= set(loss.index.tolist())  # the three spiking dicts, kept as outliers
    assert loss[15_020] > loss[14_000] + 0.4
    assert math.isnan(loss[7_770])
    full_report = api.check([spiky_log])
    monkeypatch.setenv(BUDGET_ENV, str(BUDGET))
    thin_report = api.check([spiky_log])
    codes = {f.code for f in full_report.runs[0].findings}
    assert {"DPO001", "DPO102"} <= codes
    assert {f.code for f in thin_report.runs[0].findings} == codes
    [spike] = [f for f in thin_report.runs[0].findings if f.code == "DPO102"]
    assert spike.first_step is not None and 15_000 <= spike.first_step <= 15_030


def test_isolated_blips_stay_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two one-dict loss blips of one stretch: the full read sees single noisy batches (no DPO102), and so must the
    thinned one. Kept without the dicts beside them, outliers of one stretch sit side by side in the thinned curve
    and can look like a sustained spike (a public SLURM log thinned to every 16th dict raised DPO102 that way), so
    each is kept with its neighbours."""
    path = tmp_path / "train.log"
    _write_log(path, 2_000, spike=(1501, 1505))
    full_report = api.check([path])
    monkeypatch.setenv(BUDGET_ENV, str(BUDGET))
    thin_report = api.check([path])
    assert "DPO102" not in {f.code for f in full_report.runs[0].findings}
    assert {f.code for f in thin_report.runs[0].findings} == {f.code for f in full_report.runs[0].findings}
    loss = _series(thin_report.runs[0].run.frame, "train", "loss")
    assert {15_000, 15_010, 15_020, 15_040, 15_050, 15_060} <= set(loss.index.tolist())  # each with its neighbours


def test_a_curve_without_noise_keeps_no_outliers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's log has no batch noise: its last printed digit must not make outliers of every stretch
    (it once kept 60k extra dicts of 314k at 300 MB)."""
    path = tmp_path / "train.log"
    _write_log(path, 3_000, noise=0.0)
    [thin] = _read(path, monkeypatch, BUDGET)
    stride = scan_file(path).thinning.stride
    loss = _series(thin.frame, "train", "loss")
    evals = len(_series(thin.frame, "eval", "loss"))
    assert len(loss) <= 3_000 // stride + evals + 2  # the regular dicts, the one before each eval, first and last


def test_the_json_report_carries_the_note(spiky_log: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        app, ["check", str(spiky_log), "--no-cache", "-f", "json", "-o", str(out)], env={BUDGET_ENV: str(BUDGET)}
    )
    assert result.exit_code == 1, result.output  # DPO001: the NaN loss, an error
    document = json.loads(out.read_text())
    jsonschema.validate(document, load_schema())
    [run] = document["runs"]
    assert run["thinned"].startswith("train.log: ") and "above the reader's bound of 8,000 points" in run["thinned"]
    text = CliRunner().invoke(app, ["check", str(spiky_log), "--no-cache"], env={BUDGET_ENV: str(BUDGET)}).stdout
    assert "note: train.log: " in text  # the text report's run header shows it among the reader's notes
    plain = CliRunner().invoke(app, ["check", str(spiky_log), "--no-cache", "-f", "json"], env={BUDGET_ENV: ""})
    assert "thinned" not in json.loads(plain.stdout)["runs"][0]  # below the bound: the report is as before


def test_a_bad_budget_is_a_one_line_error(spiky_log: Path) -> None:
    result = CliRunner().invoke(app, ["check", str(spiky_log), "--no-cache"], env={BUDGET_ENV: "lots"})
    assert result.exit_code == 2
    assert f"{BUDGET_ENV} must be a whole number of points of at least 100, not 'lots'" in result.stderr
    assert "Traceback" not in result.output


def test_below_the_budget_nothing_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "train.log"
    _write_log(path, 300)
    scan = scan_file(path)
    cost = scan.values.size() + RECORD_POINTS * len(scan.kinds)
    assert cost < MAX_POINTS
    [default] = _read(path, monkeypatch, None)
    [exact] = _read(path, monkeypatch, cost)  # the budget met exactly: not above it
    pd.testing.assert_frame_equal(exact.frame, default.frame)
    assert exact.notes == default.notes
    [thinned] = _read(path, monkeypatch, cost - 1)
    assert len(thinned.frame) < len(default.frame)


def test_each_run_of_a_file_keeps_its_first_and_last_dict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "train.log"
    _write_log(path, 600, runs=2)
    full = _read(path, monkeypatch, None)
    thin = _read(path, monkeypatch, 4_000)
    assert [r.label for r in thin] == [r.label for r in full] == ["run1", "run2"]
    for a, b in zip(full, thin, strict=True):
        loss_a, loss_b = _series(a.frame, "train", "loss"), _series(b.frame, "train", "loss")
        assert loss_b.index[0] == loss_a.index[0] and loss_b.index[-1] == loss_a.index[-1]
        assert len(loss_b) < len(loss_a) and a.ended == b.ended
        assert any("above the reader's bound" in n for n in b.notes)


def test_a_live_tail_thins_as_the_whole_file_read_does(spiky_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BUDGET_ENV, str(BUDGET))
    tail = StdoutTail(spiky_log)
    tail.poll()
    [followed] = tail.results()
    [read] = read_file_runs(spiky_log)
    assert len(followed.frame) <= BUDGET
    assert any("above the reader's bound" in n for n in followed.notes)
    loss = _series(followed.frame, "train", "loss")
    assert loss.index[0] == 10 and loss.index[-1] == 20_000 and 15_020 in loss.index
    assert len(read.frame) <= BUDGET
    pd.testing.assert_frame_equal(followed.frame, read.frame)  # fed the same chunks: the same points


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dicts=st.integers(20, 300),
    log_every=st.integers(1, 3),
    eval_every=st.integers(7, 90),
    budget=st.integers(600, 6_000),
    spikes=st.lists(st.integers(1, 400), max_size=6),
    seed=st.integers(0, 2**16),
)
def test_thinned_points_are_read_points_in_order_within_the_budget(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    dicts: int,
    log_every: int,
    eval_every: int,
    budget: int,
    spikes: list[int],
    seed: int,
) -> None:
    monkeypatch.setattr(scanning, "CHUNK", 4 * 1024)
    path = tmp_path_factory.mktemp("prop") / "train.log"
    _write_log(path, dicts, log_every=log_every, eval_every=eval_every, spike=tuple(spikes), seed=seed)
    [full] = _read(path, monkeypatch, None)
    [thin] = _read(path, monkeypatch, budget)
    keys = ["split", "metric", "step"]
    joined = thin.frame.merge(full.frame, on=keys, how="left", suffixes=("", "_full"), validate="one_to_one")
    assert joined["value_full"].notna().all()  # kept ⊆ read, each at its own step
    # An eval dict's epoch shares its step with the train dict after it, whose epoch wins in the full read; when
    # that train dict was dropped, the eval dict's (the epoch of an earlier step, as logged) is the point.
    epoch = joined["metric"] == "epoch"
    assert (joined["value"] == joined["value_full"])[~epoch].all()
    assert (joined["value"] <= joined["value_full"])[epoch].all()
    for (split, metric), part in thin.frame.groupby(["split", "metric"], observed=True):
        steps = part["step"].to_numpy()
        assert (np.diff(steps) > 0).all()  # in step order, one point a step
        full_steps = _series(full.frame, split, metric).index
        assert steps[0] == full_steps[0] and steps[-1] == full_steps[-1]
    pd.testing.assert_series_equal(_series(thin.frame, "eval", "loss"), _series(full.frame, "eval", "loss"))
    scan = scan_file(path)
    held = scan.values.size() + RECORD_POINTS * len(scan.kinds)
    # within the budget, unless what is never dropped (eval dicts and the train dict before each, the first and
    # last, the summary) and the outliers of one stretch (up to three, each with the dicts beside it) pass half of
    # it: then within twice that
    kinds = np.array(scan_file(path, budget=10**9).kinds)
    train = kinds == TRAIN
    never = ~train
    never[:-1] |= ~train[1:]
    never[[0, -1]] = True
    costs = np.where(train, len(TRAIN_KEYS), 5) + RECORD_POINTS  # an eval dict: 4 metrics and its epoch
    assert held <= max(budget, 2 * (int(costs[never].sum()) + 9 * (len(TRAIN_KEYS) + RECORD_POINTS)))
    if scan.thinning.active:
        assert any("above the reader's bound" in n for n in thin.notes)
    else:
        pd.testing.assert_frame_equal(thin.frame, full.frame)


def test_the_budget_must_be_a_number() -> None:
    from dpodoctor.readers.stdout.thinning import budget_from_env

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(BUDGET_ENV, "50")
        with pytest.raises(DpoDoctorError, match="at least 100"):
            budget_from_env()
        patch.setenv(BUDGET_ENV, "1_000_000")
        assert budget_from_env() == 1_000_000
