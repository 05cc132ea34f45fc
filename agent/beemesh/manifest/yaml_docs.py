"""Multi-document YAML with duplicate keys refused (PyYAML would let the last one win).

Its own module so that PyYAML loads only where YAML is read (`manifest.kube` imports it when
it parses a manifest): the agent and the work plane never do.
"""

from __future__ import annotations

from typing import Any

import yaml

from beemesh.manifest.checks import ManifestError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, which PyYAML would silently let the last win."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable key: the base class reports it properly
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r}", key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def load_documents(text: str, source: str) -> list[Any]:
    try:
        return list(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
        where = f"{source}: line {mark.line + 1}, column {mark.column + 1}" if mark else source
        fix = ("keep only one of them" if "duplicate key" in problem
               else "fix the syntax (indentation, quoting, colons)")
        raise ManifestError(f"{where}: invalid YAML: {problem}; {fix}") from None
