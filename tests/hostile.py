"""Small hostile inputs shared by several test files (standard library only)."""

from __future__ import annotations


def yaml_laughs(levels: int, width: int = 10) -> str:
    """The YAML "billion laughs": anchors `l0`..`l<levels>`, each level listing the previous one `width` times,
    so `*l<levels>` stands for `width**levels` strings written in a few hundred bytes."""
    lines = ['l0: &l0 "lol"']
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"
