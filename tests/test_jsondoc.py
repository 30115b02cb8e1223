"""The JSON report's encoder writes the standard library's bytes (issue 16: the report of 600 runs was 3.5 s).

Why property tests: :func:`dpodoctor.jsondoc.dumps_indented` takes orjson's output and rewrites its floats, and
falls back to json.dumps where orjson would differ; any float, string or shape it got wrong would change a report
silently. The reference is the encoding the JSON report always had: json.dumps(strict(clean_data(value)),
indent=2, ensure_ascii=False, allow_nan=False).
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor import jsondoc
from dpodoctor.cleaning import clean_data
from dpodoctor.jsondoc import dumps_indented, strict


def reference(value: Any, clean: bool) -> str:
    return json.dumps(strict(clean_data(value) if clean else value), indent=2, ensure_ascii=False, allow_nan=False)


floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e-05, 1.5e-05, 9.99e-05, 1e-4, 1e-07, 2.5e-06, 1e16, 1e15, 1.2345678901234568e17, 5e-324, -0.0, 1e308, 1e21]
)
texts = st.text() | st.sampled_from(
    ["lr 1e-7 is", "\x1b[31mred\x1b[0m", "a\\b", "tab\there", "x\x7fy", "\ufffe", "e-5", "0.00001"]
)
scalars = st.none() | st.booleans() | st.integers() | floats | texts
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(documents, st.booleans())
def test_the_encoding_is_the_standard_librarys(value: Any, clean: bool) -> None:
    try:
        expected = reference(value, clean)
    except (UnicodeEncodeError, ValueError):  # pragma: no cover - json itself refuses
        return
    assert dumps_indented(value, clean=clean) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=1, max_size=50))
def test_every_float_of_any_magnitude_is_written_as_repr(bits: list[int]) -> None:
    values = [struct.unpack("<d", struct.pack("<Q", b))[0] for b in bits]
    document = {"values": values, "nested": [{"v": v, "e-1": [v]} for v in values]}
    assert dumps_indented(document, clean=True) == reference(document, True)


def test_orjson_takes_the_fast_path_and_agrees() -> None:
    """With orjson installed (a dependency), a plain document goes through it and its floats are Python's."""
    pytest.importorskip("orjson")
    document = {"a": [1e-05, 1e16, -2.5e-07, 0.1, math.nan, math.inf, 7, True, None], "b": {"c": "x · y"}}
    fast = jsondoc._orjson_indented(document, True)
    assert fast is not None and fast == reference(document, True)
    assert '"1e-05"' not in fast and "1e-05" in fast and "1e+16" in fast and "-2.5e-07" in fast


def test_what_orjson_cannot_take_goes_the_standard_way() -> None:
    pytest.importorskip("orjson")
    for value in ({1: 2}, [2**70], ["\ud800"], {"text": "\x1b[1mbold"}):
        assert jsondoc._orjson_indented(value, True) is None
        assert dumps_indented(value, clean=True) == reference(value, True)
