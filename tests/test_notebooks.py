"""The notebooks: paired .py <-> .ipynb in sync, no committed outputs, Colab badges, and every one executes."""

import os
import pathlib
import re
import sys
import tomllib

import jupytext
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
REPOSITORY = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def test_the_six_numbered_notebooks_exist():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_is_in_sync_without_outputs_and_with_a_colab_badge(path):
    ipynb = path.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run jupytext --sync {path}"
    from_py, from_ipynb = jupytext.read(path), nbformat.read(ipynb, as_version=4)
    assert [(c.cell_type, c.source) for c in from_py.cells] == \
        [(c.cell_type, c.source) for c in from_ipynb.cells], f"out of sync: jupytext --sync {path}"
    for cell in from_ipynb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{ipynb.name} has outputs committed"
    repo = REPOSITORY.removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{ipynb.name}"
    assert badge in from_ipynb.cells[0].source
    setup = from_ipynb.cells[1].source
    assert 'if "google.colab" in sys.modules' in setup and 'os.environ.get("ATTNRNN_SMOKE")' in setup
    # attnrnn without its dependencies, then the rest through attnrnn_lib.colab: a plain install would put
    # tensorflow-cpu over Colab's GPU/TPU TensorFlow.
    assert '"--no-deps",' in setup and '"-m", "attnrnn_lib.colab"' in setup


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_in_smoke_mode(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    nb = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
    monkeypatch.setenv("ATTNRNN_SMOKE", "1")
    client = NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(tmp_path)}},
                            kernel_name="python3")
    client.km = client.create_kernel_manager()
    client.km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "every notebook draws at least one picture"
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "error:" not in text
