"""YAML read with bounds (`core.safe_yaml`); its use by the dataset YAML reader and `cfg=` is tested in
test_datasets.py and test_cli_grammar.py, and by the real CLI in test_bad_inputs.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from hostile import yaml_laughs
from yolonas_cli.core import safe_yaml


def test_an_alias_bomb_is_refused_before_it_is_built() -> None:
    text = yaml_laughs(9)  # 10**9 strings when expanded
    assert len(text) < 1000
    started = time.monotonic()
    with pytest.raises(safe_yaml.YamlTooBig, match=r"more than 100,000 nodes"):
        safe_yaml.load(text)
    assert time.monotonic() - started < 2


def test_anchors_within_the_bound_load_as_plain_yaml() -> None:
    text = yaml_laughs(3) + "defaults: &d {conf: 0.25, iou: 0.7}\npredict: {<<: *d, imgsz: 320}\n"
    assert safe_yaml.load(text) == yaml.safe_load(text)
    assert safe_yaml.expanded_size(yaml.compose(yaml_laughs(3))) > 1000  # aliases counted in full
    assert safe_yaml.load("") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &a [1, *a]\n", "alias of itself"),
        ("[" * 100 + "]" * 100, "deeper than 64"),
        ("x: " + "[" * 5000 + "]" * 5000, "deeper than 64"),
    ],
)
def test_recursive_and_deep_documents_are_refused(text: str, expected: str) -> None:
    with pytest.raises(safe_yaml.YamlTooBig, match=expected):
        safe_yaml.load(text)


def test_long_texts_are_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * (4 * safe_yaml.MAX_CHARS + 10))
    with pytest.raises(safe_yaml.YamlTooBig, match="longer than"):
        safe_yaml.read(path)
    with pytest.raises(safe_yaml.YamlTooBig, match="longer than"):
        safe_yaml.load("x" * (safe_yaml.MAX_CHARS + 1))
