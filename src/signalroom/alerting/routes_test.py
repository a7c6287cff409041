"""``amtool config routes test``: which receivers a label set is routed to.

:func:`routes_test` returns exactly what amtool (Alertmanager 0.25) prints and its exit code,
so the CLI can write the text and exit with the code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from signalroom.alerting.config import AlertmanagerConfigError, load_alertmanager_config
from signalroom.alerting.matchers import MatcherError, MatchType, parse_matcher
from signalroom.alerting.route import RouteNode

__all__ = ["matching_tree", "parse_label_args", "routes_test"]

_WARNING = "WARNING: Expected receivers did not match resolved receivers.\n"


class _Fatal(Exception):
    """amtool's ``kingpin.Fatalf``: message on stderr, exit code 1."""


def parse_label_args(args: Sequence[str]) -> dict[str, str]:
    """``name=value`` arguments (value may be quoted) into a label set; later ones win."""
    labels: dict[str, str] = {}
    for arg in args:
        try:
            matcher = parse_matcher(arg, "classic")
        except MatcherError as exc:
            raise _Fatal(f"Failed to parse labels: {exc}") from None
        if matcher.type is not MatchType.EQUAL:
            raise _Fatal("Labels must be specified as key=value pairs")
        labels[matcher.name] = matcher.value
    return labels


def routes_test(
    config_path: Path | str,
    labels: Sequence[str] | Mapping[str, str],
    *,
    tree: bool = False,
    verify_receivers: str | None = None,
) -> tuple[str, int]:
    """Route a label set through the config's tree; returns (amtool's output, exit code).

    ``labels`` is either amtool's arguments (``["severity=critical", 'team="db"']``) or a
    mapping. ``tree`` adds the matching-routes tree; ``verify_receivers`` is the expected
    comma-separated receiver list, a mismatch exits 1.
    """
    try:
        config = load_alertmanager_config(config_path)
    except AlertmanagerConfigError as exc:
        return _fatal(str(exc)), 1
    root = RouteNode.build(config.root_route)
    try:
        label_set = dict(labels) if isinstance(labels, Mapping) else parse_label_args(labels)
    except _Fatal as exc:
        return _fatal(str(exc)), 1

    out: list[str] = []
    if tree:
        out.append("Matching routes:\n")
        out.append(matching_tree(root, label_set))
        out.append("\n\n")
    receivers = ",".join(root.receivers_for(label_set))
    out.append(receivers + "\n")
    if verify_receivers and verify_receivers != receivers:
        out.append(_WARNING)
        return "".join(out), 1
    return "".join(out), 0


def _fatal(message: str) -> str:
    # kingpin prints "<app>: error: " + the format ("%v\n") + "\n"
    return f"amtool: error: {message}\n\n"


def _slug(node: RouteNode, show_continue: bool, show_receiver: bool) -> str:
    parts = ["default-route" if not node.matchers else _matchers_text(node)]
    if node.continue_ and show_continue:
        parts.append("continue: true")
    if show_receiver:
        parts.append(f"receiver: {node.opts.receiver}")
        if node.opts.group_by:
            parts.append("grouping: [" + ",".join(node.opts.group_by) + "]")
    return "  ".join(parts)


def _matchers_text(node: RouteNode) -> str:
    return "{" + ",".join(str(m) for m in node.matchers) + "}"


class _TreeNode:
    def __init__(self, value: str) -> None:
        self.value = value
        self.children: list[_TreeNode] = []


def _matching_branch(node: RouteNode, labels: Mapping[str, str]) -> _TreeNode:
    branch = _TreeNode(_slug(node, False, False))
    final = True
    for child in node.routes:
        if child.matches_self(labels):
            branch.children.append(_matching_branch(child, labels))
            final = False
            if not child.continue_:
                break
    if final:
        branch.value = _slug(node, False, True)
    return branch


def matching_tree(root: RouteNode, labels: Mapping[str, str]) -> str:
    """The ``--tree`` drawing (treeprint's format), ending with a newline."""
    lines = ["."]

    def draw(nodes: list[_TreeNode], prefix: str) -> None:
        for i, n in enumerate(nodes):
            last = i == len(nodes) - 1
            lines.append(f"{prefix}{'└──' if last else '├──'} {n.value}")
            draw(n.children, prefix + ("    " if last else "│   "))

    draw([_matching_branch(root, labels)], "")
    return "\n".join(lines) + "\n"
