"""DiagnoseSettings: the one typed value that carries a check's settings from the CLI/API to the rules, the
workers and the cache key."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from dpodoctor import api
from dpodoctor.checks import diagnose_run
from dpodoctor.settings import DiagnoseSettings
from tests.synthetic import curves, make_run


def test_settings_are_frozen_and_copy_what_they_are_given() -> None:
    params = {"DPO101": {"min_rise": 0.5}}
    settings = DiagnoseSettings(beta=0.2, select=["DPO1"], ignore="DPO102", params=params)
    params["DPO101"]["min_rise"] = 9.0  # the caller's dict changing later changes nothing
    assert settings.select == ("DPO1",) and settings.ignore == ("DPO102",)
    assert settings.params == {"DPO101": {"min_rise": 0.5}}
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.beta = 0.3  # type: ignore[misc]


def test_settings_pickle_for_workers_and_hash_by_value() -> None:
    settings = DiagnoseSettings(beta=0.1, select=("DPO1",), params={"DPO101": {"min_rise": 0.5}})
    back = pickle.loads(pickle.dumps(settings))
    assert back == settings and hash(back) == hash(settings)
    assert settings.to_dict() == {
        "beta": 0.1,
        "select": ["DPO1"],
        "ignore": None,
        "params": {"DPO101": {"min_rise": 0.5}},
    }


def test_check_settings_resolve_to_the_diagnosis_the_rules_apply(tmp_path) -> None:  # type: ignore[no-untyped-def]
    resolved = api.CheckSettings.resolve([tmp_path], beta=0.5, select="DPO4", use_config=False)
    assert resolved.diagnosis == DiagnoseSettings(beta=0.5, select=("DPO4",))
    run = make_run(curves(seed=4), beta=None)
    by_settings = diagnose_run(run, settings=resolved.diagnosis)
    by_keywords = diagnose_run(run, beta=0.5, select=["DPO4"])
    assert by_settings.beta_note == "given by the user"
    assert [f.to_dict() for f in by_settings.findings] == [f.to_dict() for f in by_keywords.findings]
    assert by_settings.checked == by_keywords.checked and all(c.startswith("DPO4") for c in by_settings.checked)
