"""Walking one document's fields (beemesh.manifest.fields.Doc): mappings, unknown fields
refused or ignored with a warning, lists of strings."""

from __future__ import annotations

from typing import Any

import pytest

from beemesh.manifest.checks import ManifestError, Where
from beemesh.manifest.fields import NOT_YET, READ_ONLY, UNSUPPORTED_FIX, Doc

AT = "app.yaml (Deployment web)"
EMPTY_VALUES: list[Any] = [None, False, "", [], {}]


def doc() -> Doc:
    w = Where("app.yaml")
    w.kind, w.name = "Deployment", "web"
    return Doc(w)


def refusal(d: Doc, method: str, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ManifestError) as exc:
        getattr(d, method)(*args, **kwargs)
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- mapping --------------------------------------------------------------------------------


def test_mapping_returns_the_mapping_itself() -> None:
    value = {"replicas": 2}
    assert doc().mapping(value, "spec") is value
    assert doc().mapping({}, "spec", required=True) == {}


def test_mapping_absent_optional_is_empty() -> None:
    assert doc().mapping(None, "spec.template.metadata") == {}


def test_mapping_absent_required_is_refused() -> None:
    assert refusal(doc(), "mapping", None, "spec.template", required=True) == (
        f"{AT}: spec.template: missing; add spec.template")


@pytest.mark.parametrize(("value", "shown"), [
    ([{"a": 1}], "a list"), ("web", "string 'web'"), (0, "number 0"), (False, "boolean false"),
])
@pytest.mark.parametrize("required", [False, True])
def test_mapping_refuses_other_values(value: Any, shown: str, required: bool) -> None:
    assert refusal(doc(), "mapping", value, "spec.selector", required=required) == (
        f"{AT}: spec.selector: must be a mapping, got {shown}; check the indentation")


# --- check_fields ---------------------------------------------------------------------------


def test_check_fields_allowed_pass_silently() -> None:
    d = doc()
    d.check_fields({"replicas": 2, "selector": {}}, "spec", ("replicas", "selector", "template"))
    d.check_fields({"name": "web"}, "metadata", iter(["name"]))  # any iterable of names
    assert d.warnings == []


def test_check_fields_refuses_an_unknown_field_by_full_path() -> None:
    assert refusal(doc(), "check_fields", {"replicas": 2, "paused": True}, "spec",
                   ["replicas"]) == f"{AT}: spec.paused: not supported by beemesh; remove it"


def test_check_fields_path_of_an_odd_key() -> None:
    obj = {"app.kubernetes.io/x": "y"}
    assert refusal(doc(), "check_fields", obj, "spec.template.spec", []) == (
        f'{AT}: spec.template.spec["app.kubernetes.io/x"]: not supported by beemesh; remove it')
    assert refusal(doc(), "check_fields", {1: "y"}, "spec", []) == (
        f'{AT}: spec["1"]: not supported by beemesh; remove it')


@pytest.mark.parametrize("value", EMPTY_VALUES)
def test_check_fields_accepts_unsupported_fields_left_empty(value: Any) -> None:
    """null, {}, [], "" and false change nothing, so they are accepted without a word."""
    d = doc()
    d.check_fields({"hostNetwork": value, "volumes": value}, "spec.template.spec", ["containers"])
    assert d.warnings == []


@pytest.mark.parametrize("value", [True, 0, 0.0, "false", [None], {"a": None}, " "])
def test_check_fields_refuses_unsupported_values_that_look_empty(value: Any) -> None:
    """Only the empty or "off" values are ignored: 0 and the string "false" are settings."""
    assert refusal(doc(), "check_fields", {"schedulerName": value}, "spec.template.spec",
                   ["containers"]) == (
        f"{AT}: spec.template.spec.schedulerName: not supported by beemesh; remove it")


@pytest.mark.parametrize(("key", "fix"), sorted(UNSUPPORTED_FIX.items()))
def test_check_fields_gives_the_better_fix_for_common_fields(key: str, fix: str) -> None:
    assert refusal(doc(), "check_fields", {key: ["x"]}, "spec.template.spec.containers[0]",
                   ["name"]) == (
        f"{AT}: spec.template.spec.containers[0].{key}: not supported by beemesh; {fix}")


def test_the_fix_hints_are_specific() -> None:
    assert UNSUPPORTED_FIX["matchExpressions"] == "select with matchLabels instead"
    assert all(fix and fix != "remove it" for fix in UNSUPPORTED_FIX.values())


def test_check_fields_warns_for_ignored_fields_with_a_value() -> None:
    d = doc()
    warn = {"minReadySeconds": NOT_YET, "uid": READ_ONLY}
    d.check_fields({"replicas": 2, "minReadySeconds": 5}, "spec", ["replicas"], warn)
    d.check_fields({"name": "web", "uid": "1234"}, "metadata", ["name"], warn)
    assert d.warnings == [
        f"spec.minReadySeconds: {NOT_YET}",
        f"metadata.uid: {READ_ONLY}",
    ]


@pytest.mark.parametrize("value", EMPTY_VALUES)
def test_check_fields_no_warning_for_an_empty_ignored_field(value: Any) -> None:
    d = doc()
    d.check_fields({"minReadySeconds": value}, "spec", [], {"minReadySeconds": NOT_YET})
    assert d.warnings == []


def test_check_fields_warned_field_is_never_refused() -> None:
    """Even a field that has a fix hint is only warned about when listed as ignorable."""
    d = doc()
    d.check_fields({"volumes": [{"name": "v"}]}, "spec.template.spec", [],
                   {"volumes": "ignored here"})
    assert d.warnings == ["spec.template.spec.volumes: ignored here"]


def test_check_fields_allowed_wins_over_warn() -> None:
    d = doc()
    d.check_fields({"paused": True}, "spec", ["paused"], {"paused": NOT_YET})
    assert d.warnings == []


def test_check_fields_warn_does_not_excuse_other_fields() -> None:
    d = doc()
    message = refusal(d, "check_fields", {"paused": True, "strategy": {"type": "Recreate"}},
                      "spec", [], {"paused": NOT_YET})
    assert message == f"{AT}: spec.strategy: not supported by beemesh; remove it"
    assert d.warnings == [f"spec.paused: {NOT_YET}"]  # collected before the refusal


# --- strings --------------------------------------------------------------------------------


def test_strings_absent_is_empty() -> None:
    assert doc().strings(None, "spec.template.spec.containers[0].args") == ()


@pytest.mark.parametrize("value", [[], ["a"], ["/bin/sh", "-c", ""]])
def test_strings_returns_a_tuple(value: list[str]) -> None:
    assert doc().strings(value, "args") == tuple(value)


@pytest.mark.parametrize(("value", "shown"), [
    ("sleep 1", "string 'sleep 1'"), ({"a": "b"}, "a mapping"), (("a",), "tuple"),
    (3, "number 3"), (False, "boolean false"),
])
def test_strings_refuses_other_values(value: Any, shown: str) -> None:
    assert refusal(doc(), "strings", value, "spec.template.spec.containers[0].command") == (
        f"{AT}: spec.template.spec.containers[0].command: must be a list of strings, got "
        f'{shown}; write it as ["a", "b"] or one "- item" per line')


@pytest.mark.parametrize(("value", "index", "shown"), [
    ([1], 0, "number 1"),
    (["sleep", 10], 1, "number 10"),
    (["a", "b", None], 2, "null"),
    (["a", True, 3], 1, "boolean true"),  # the first bad item is the one reported
    ([["a"]], 0, "a list"),
])
def test_strings_refuses_non_string_items(value: list[Any], index: int, shown: str) -> None:
    assert refusal(doc(), "strings", value, "spec.template.spec.containers[0].args") == (
        f"{AT}: spec.template.spec.containers[0].args[{index}]: must be a string, got {shown}; "
        "quote it")
