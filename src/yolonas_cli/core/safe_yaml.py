"""YAML read with bounds: `load(text)` is `yaml.safe_load(text)` for documents of sane size, and a
`YamlTooBig` error (a `yaml.YAMLError`) for the others, before anything is built.

Anchors and aliases let a few hundred bytes describe a structure of billions of nodes ("billion laughs":
each level lists the previous one ten times). PyYAML builds it as a graph of shared objects, so loading is
cheap, but any later walk of the result as a tree (formatting a value for a message, copying, comparing)
costs the full size. So the composed node graph is measured first, counting each alias as the whole subtree
it stands for (memoised: linear in the document), and refused past MAX_NODES. Recursive anchors, nesting
deeper than MAX_DEPTH and texts longer than MAX_CHARS are refused too.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from yolonas_cli.core.paths import read_regular_bytes

MAX_CHARS = 4 << 20
"""Longest YAML text read: a dataset YAML naming 13,000 classes (V3Det) is about 300 KB."""
MAX_NODES = 100_000
"""Most nodes once aliases are expanded: a YAML of 50,000 class names has 100,000 (a key and a value each);
the arguments of a mode are a few dozen."""
MAX_DEPTH = 64
"""Deepest nesting: the YAMLs read here nest 2 or 3 levels."""


class YamlTooBig(yaml.YAMLError):
    """A YAML document over the bounds of this module."""


def read(path: str | os.PathLike[str]) -> Any:
    """`load` of a UTF-8 file (BOM allowed), reading at most what MAX_CHARS allows. OSError when it cannot be
    read (a pipe or device included: `core.paths.SpecialFileError`), UnicodeDecodeError, or yaml.YAMLError."""
    raw = read_regular_bytes(path, max_bytes=4 * MAX_CHARS)
    if len(raw) > 4 * MAX_CHARS:
        raise YamlTooBig(f"it is longer than {MAX_CHARS:,} characters")
    return load(raw.decode("utf-8-sig"))


def load(text: str) -> Any:
    """`yaml.safe_load(text)` within MAX_CHARS, MAX_NODES (aliases expanded) and MAX_DEPTH; raises YamlTooBig
    (or another yaml.YAMLError for invalid YAML)."""
    if len(text) > MAX_CHARS:
        raise YamlTooBig(f"it is longer than {MAX_CHARS:,} characters")
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YamlTooBig(f"it nests deeper than {MAX_DEPTH} levels") from None
        if node is None:
            return None
        expanded_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def expanded_size(root: yaml.Node) -> int:
    """The number of nodes of `root` with every alias expanded, computed once per node (iteratively, so
    deep documents cannot exhaust the stack). Raises YamlTooBig past MAX_NODES or MAX_DEPTH, or for a node
    that contains itself."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # bounded: each node is opened once and closed once
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_NODES:
                raise YamlTooBig(f"it expands to more than {MAX_NODES:,} nodes (anchors and aliases counted in full)")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YamlTooBig("an anchor contains an alias of itself")
        open_nodes.add(key)
        if len(open_nodes) > MAX_DEPTH:
            raise YamlTooBig(f"it nests deeper than {MAX_DEPTH} levels")
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_nodes:
                raise YamlTooBig("an anchor contains an alias of itself")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []
