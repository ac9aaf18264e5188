"""TextNormalizer: our own transformer at the head of every text pipeline."""

from __future__ import annotations

import pandas as pd
import pytest

from models.text import TextNormalizer, as_text_list, normalize_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  What is my BALANCE?? ", "what is my balance"),
        ("send $25.50 to Anna", "send <num> to anna"),
        ("Überweisung 50€", "uberweisung <num>"),
        ("plsssss help", "pls help"),
        ("", ""),
    ],
)
def test_normalize_text_canonical_forms(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_normalize_text_options_can_be_switched_off() -> None:
    assert normalize_text("Send 25", lowercase=False, replace_numbers=False) == "Send 25"


def test_transform_accepts_lists_series_and_one_column_frames() -> None:
    normalizer = TextNormalizer()
    expected = ["hi there", "<num>"]
    assert normalizer.transform(["Hi  there!", "42"]).tolist() == expected
    assert normalizer.transform(pd.Series(["Hi  there!", "42"])).tolist() == expected
    assert normalizer.transform(pd.DataFrame({"text": ["Hi  there!", "42"]})).tolist() == expected


def test_as_text_list_refuses_a_single_string() -> None:
    with pytest.raises(TypeError, match="single string"):
        as_text_list("hello")


def test_normalizer_params_are_visible_for_logging() -> None:
    assert TextNormalizer(replace_numbers=False).get_params()["replace_numbers"] is False
