"""The release workflow is never run here, so check what can be checked: it is valid YAML (with
PyYAML, which the dev environment has through langchain-core), it has the jobs the release
needs, wired as a release needs them, and it names only real actions at real versions (read
from the text itself, so this half runs without PyYAML too)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from .pages import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"

#: The actions the workflow may use, at the versions it pins.
ACTIONS = {
    "actions/checkout": "v6",
    "actions/setup-python": "v6",
    "actions/upload-artifact": "v6",
    "actions/download-artifact": "v7",
    "PyO3/maturin-action": "v1",
    "pypa/gh-action-pypi-publish": "release/v1",
}
BUILDS = ("linux", "macos", "windows")


def uses_lines() -> list[str]:
    return re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)\s*$", WORKFLOW.read_text(), re.MULTILINE)


def test_only_known_actions_at_pinned_versions() -> None:
    found = uses_lines()
    assert found
    for ref in found:
        action, _, version = ref.partition("@")
        assert ACTIONS.get(action) == version, ref
    assert {ref.partition("@")[0] for ref in found} == set(ACTIONS)


def test_every_job_is_a_top_level_key_of_jobs() -> None:
    text = WORKFLOW.read_text()
    jobs = text[text.index("\njobs:\n") :]
    assert re.findall(r"^  ([a-z][\w-]*):$", jobs, re.MULTILINE) == [
        *BUILDS,
        "sdist",
        "smoke",
        "publish",
    ]


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(action + "@")]


def test_it_runs_on_version_tags(workflow: dict[Any, Any]) -> None:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert isinstance(on, dict)
    assert on["push"]["tags"] == ["v*"]
    assert "workflow_dispatch" in on
    assert workflow["permissions"] == {"contents": "read"}


@pytest.mark.parametrize("name", BUILDS)
def test_each_platform_builds_per_version_and_abi3_wheels(
    workflow: dict[Any, Any], name: str
) -> None:
    job = workflow["jobs"][name]
    pythons = job["strategy"]["matrix"]["python"]
    assert pythons == ["3.10", "3.11", "3.12", "3.13", "abi3"]  # requires-python >= 3.10
    builds = steps_using(job, "PyO3/maturin-action")
    args = [b["with"]["args"] for b in builds]
    assert all("--release" in a and "--out dist" in a for a in args), args
    assert sum("--features abi3" in a for a in args) == 1, args
    assert all(b.get("if") for b in builds), "each build step runs for its matrix entry only"
    (upload,) = steps_using(job, "actions/upload-artifact")
    assert upload["with"]["path"] == "dist"
    assert upload["with"]["name"].startswith(f"wheels-{name}-")
    assert "matrix.python" in upload["with"]["name"]  # one artifact per matrix entry


def test_the_sdist(workflow: dict[Any, Any]) -> None:
    job = workflow["jobs"]["sdist"]
    (build,) = steps_using(job, "PyO3/maturin-action")
    assert build["with"]["command"] == "sdist"
    (upload,) = steps_using(job, "actions/upload-artifact")
    assert upload["with"]["name"] == "wheels-sdist"


def test_the_platforms(workflow: dict[Any, Any]) -> None:
    jobs = workflow["jobs"]
    linux = {p["target"] for p in jobs["linux"]["strategy"]["matrix"]["platform"]}
    macos = {p["target"] for p in jobs["macos"]["strategy"]["matrix"]["platform"]}
    assert linux == {"x86_64", "aarch64"}
    assert macos == {"x86_64", "aarch64"}
    assert jobs["windows"]["runs-on"].startswith("windows")
    smoke = jobs["smoke"]
    assert set(smoke["needs"]) == set(BUILDS)
    assert len(smoke["strategy"]["matrix"]["os"]) == 5  # every platform a wheel is built for


def test_publishing_waits_for_everything_and_only_on_a_tag(workflow: dict[Any, Any]) -> None:
    job = workflow["jobs"]["publish"]
    assert set(job["needs"]) == {*BUILDS, "sdist", "smoke"}
    assert job["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert job["permissions"] == {"id-token": "write"}  # trusted publishing, no token
    assert job["environment"]["name"] == "pypi"
    (download,) = steps_using(job, "actions/download-artifact")
    assert download["with"] == {"pattern": "wheels-*", "merge-multiple": True, "path": "dist"}
    (publish,) = steps_using(job, "pypa/gh-action-pypi-publish")
    assert "with" not in publish  # dist/ is its default
    assert job["steps"][-1] is publish
