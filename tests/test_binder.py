"""Binder's environment (binder/, read by repo2docker) is the project's, with torch's CPU build.

repo2docker cannot run here (no Docker, no network); what can be checked without it is checked:
the files parse, the package set equals requirements.txt apart from where torch comes from,
and the launch buttons point at JupyterLab on the repository named in _config.yml.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def parse(path: Path) -> tuple[dict[str, Requirement], list[str], list[str]]:
    """(requirements by normalised name, option lines, editable installs) of a requirements file."""
    reqs, options, editables = {}, [], []
    for raw in path.read_text().splitlines():
        line = re.sub(r"\s+#.*$", "", raw).strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-e "):
            editables.append(line[3:].strip())
        elif line.startswith("-"):
            options.append(line)
        else:
            req = Requirement(line)
            name = re.sub(r"[-_.]+", "-", req.name).lower()
            assert name not in reqs, f"{path.name}: {name} listed twice"
            reqs[name] = req
    return reqs, options, editables


def test_same_packages_as_requirements_txt_apart_from_torch_source():
    main, main_options, main_editables = parse(ROOT / "requirements.txt")
    binder, binder_options, binder_editables = parse(ROOT / "binder" / "requirements.txt")
    assert set(binder) == set(main)
    for name in main:
        if name != "torch":
            assert str(binder[name].specifier) == str(main[name].specifier), name
    assert binder_editables == main_editables == ["."]  # mathkit itself
    assert main_options == []
    assert binder_options == [f"--extra-index-url {CPU_INDEX}"]
    # torch: the same release, as the CPU build (local version label +cpu) from PyTorch's index
    (main_pin,), (binder_pin,) = main["torch"].specifier, binder["torch"].specifier
    assert main_pin.operator == binder_pin.operator == "=="
    assert Version(binder_pin.version).public == Version(main_pin.version).public
    assert Version(binder_pin.version).local == "cpu"
    assert "jupyterlab-myst" in binder


def test_runtime_matches_the_python_the_project_supports():
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-3\.(\d+)", runtime)
    assert match, runtime
    requires = re.search(r'requires-python\s*=\s*">=3\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert int(match.group(1)) >= int(requires.group(1))


def test_launch_links_open_jupyterlab_on_the_configured_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["launch_buttons"]["notebook_interface"] == "jupyterlab"
    assert config["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", config["repository"]["url"])
    sys.path.insert(0, str(ROOT / ".ci"))
    from check_site import binder_link  # the link the site check requires on every chapter page

    slug = config["repository"]["url"].removeprefix("https://github.com/")
    assert binder_link("chapters/11_log_likelihood.ipynb") == (
        f"https://mybinder.org/v2/gh/{slug}/{config['repository']['branch']}"
        "?urlpath=lab/tree/chapters/11_log_likelihood.ipynb")
