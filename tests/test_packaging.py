"""The repository's promises: layout, environment.yml agreeing with pyproject, the CI command."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def conda_requirements(text):
    """The top-level '  - name[spec]' entries of environment.yml's dependencies."""
    body = text.split("dependencies:", 1)[1]
    reqs = {}
    for line in body.splitlines():
        m = re.fullmatch(r"  - ([A-Za-z0-9_.\-]+)\s*(\S*)", line.rstrip())
        if m:
            reqs[m.group(1).lower()] = m.group(2)
    return reqs


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_reqs = {}
    for req in project["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", req)
        pip_reqs[m.group(1).lower()] = m.group(2).replace(" ", "")
    conda = conda_requirements((ROOT / "environment.yml").read_text())
    python = project["requires-python"]
    assert conda.pop("python") == python
    conda.pop("pip", None)
    assert conda == pip_reqs


def test_layout_of_the_product_brief():
    for name in ("speckle", "notebooks", "hub_config", "extensions", "tests", "benchmarks",
                 "environment.yml", "pyproject.toml", "README.md", "Makefile"):
        assert (ROOT / name).exists(), name


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make hub" in readme
    assert re.search(r"^make test\b", (ROOT / ".ci/run").read_text(), re.M)


def test_every_module_imports_on_its_own():
    """No import cycles: each module of the library imports first in a fresh interpreter."""
    import subprocess
    import sys

    package = ROOT / "speckle"
    modules = sorted("speckle." + ".".join(p.relative_to(package).with_suffix("").parts)
                     for p in package.rglob("*.py") if p.name != "__main__.py")
    # speckle.ui's modules import the heavy widget stack: its package stands for them
    modules = [m.removesuffix(".__init__") for m in modules if not m.startswith("speckle.ui.")
               or m == "speckle.ui.__init__"]
    from concurrent.futures import ThreadPoolExecutor

    def fails(module):
        return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                              text=True, timeout=300).returncode != 0

    with ThreadPoolExecutor(4) as pool:
        bad = [m for m, failed in zip(modules, pool.map(fails, modules)) if failed]
    assert bad == []
