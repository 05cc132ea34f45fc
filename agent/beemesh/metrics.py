"""Counters with labels, rendered as Prometheus text or a plain dict for the CLI."""

from __future__ import annotations

from collections import Counter


class Metrics:
    """A flat set of monotonically increasing counters, keyed by (name, label value)."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._help: dict[str, tuple[str, str]] = {}

    def describe(self, name: str, help_text: str, label_name: str = "reason") -> None:
        self._help[name] = (help_text, label_name)

    def inc(self, name: str, label: str = "", n: int = 1) -> None:
        self._counts[(name, label)] += n

    def set(self, name: str, label: str, value: int) -> None:
        """Mirror a counter kept elsewhere (e.g. inside a sans-IO core)."""
        self._counts[(name, label)] = value

    def get(self, name: str, label: str = "") -> int:
        return self._counts[(name, label)]

    def as_dict(self) -> dict[str, dict[str, int] | int]:
        out: dict[str, dict[str, int] | int] = {}
        for (name, label), value in sorted(self._counts.items()):
            if label:
                bucket = out.setdefault(name, {})
                assert isinstance(bucket, dict)
                bucket[label] = value
            else:
                out[name] = value
        return out

    def prometheus(self) -> str:
        lines: list[str] = []
        seen: set[str] = set()
        for (name, label), value in sorted(self._counts.items()):
            metric = f"beemesh_{name}_total"
            help_text, label_name = self._help.get(name, (name, "reason"))
            if name not in seen:
                seen.add(name)
                lines.append(f"# HELP {metric} {help_text}")
                lines.append(f"# TYPE {metric} counter")
            labels = f'{{{label_name}="{label}"}}' if label else ""
            lines.append(f"{metric}{labels} {value}")
        return "\n".join(lines) + "\n"
