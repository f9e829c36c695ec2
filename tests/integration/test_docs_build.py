"""`make docs`: Sphinx builds docs/ with warnings as errors, and the pages hold what
they promise: every Markdown page, the rendered OpenAPI schema, every setting, and
the Python API reference of every module, from its docstrings."""

from __future__ import annotations

import importlib.util
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tvm
from tvm.config.settings import Settings
from tvm.pyroshell import openapi

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module in ("sphinx", "myst_parser", "sphinx_rtd_theme", "sphinxcontrib.openapi"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install -e '.[dev]'")
    out = tmp_path_factory.mktemp("html")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html",
         str(DOCS), str(out), "-d", str(out / ".doctrees")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"Sphinx warned or failed:\n{done.stderr}"
    return out


def text(page: Path) -> str:
    return re.sub(r"<[^>]+>", " ", page.read_text())


def test_every_markdown_page_is_built_and_linked(html: Path) -> None:
    pages = {p.stem for p in DOCS.glob("*.md")}
    assert {"index", "install", "usage", "api", "openapi", "configuration", "isolation",
            "performance", "languages", "deploy", "kubernetes", "reference"} <= pages  # fmt: skip
    index = (html / "index.html").read_text()
    for page in pages - {"index"}:
        assert (html / f"{page}.html").is_file(), page
        assert f'href="{page}.html"' in index, f"{page} is not in the index's toctree"


def test_openapi_schema_is_rendered(html: Path) -> None:
    page = text(html / "openapi.html")
    for path in openapi.schema()["paths"]:
        assert path.split("{")[0] in page, path


def test_every_setting_is_in_the_configuration_page(html: Path) -> None:
    page = text(html / "configuration.html")
    missing = [n for n in Settings.model_fields if f"TVM_{n.upper()}" not in page]
    assert not missing


def test_api_reference_documents_every_module(html: Path) -> None:
    page = (html / "reference.html").read_text()
    modules = [m.name for m in pkgutil.walk_packages(tvm.__path__, "tvm.")]
    missing = [m for m in modules if not m.endswith("__main__") and f'id="module-{m}"' not in page]
    assert not missing, f"not in the API reference: {missing}"
    # ... from the docstrings: the seed's LimaManager API, with its arguments.
    assert "LimaManager" in page and "forwarded_ports" in page
