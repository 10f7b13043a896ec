"""The Colab install: attnrnn's pins, except Colab's own TensorFlow and what it was built with (`colab.py`)."""

import platform
import subprocess
import sys
import tomllib

from attnrnn_lib import colab
from tests.conftest import ROOT

DEPENDENCIES = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def names(requirements):
    return {r.split("==")[0].lower().replace("_", "-") for r in requirements}


def test_colabs_tensorflow_and_its_companions_are_kept_and_the_rest_installed_at_our_pins():
    # What a Colab GPU runtime has: a GPU build of TensorFlow, its Keras/numpy/protobuf/TensorBoard, its kernel,
    # and older music21, matplotlib and ipywidgets that must give way to ours.
    colab_runtime = {"tensorflow", "keras", "numpy", "protobuf", "tensorboard", "ipykernel", "ipywidgets",
                     "matplotlib", "music21"}
    wanted = colab.requirements_to_install(colab_runtime)
    assert not names(wanted) & (colab.RUNTIME | {"tensorflow-cpu"}), wanted   # no tensorflow-cpu over the GPU build
    for pin in ("music21==10.5.1", "matplotlib==3.11.2", "ipywidgets==8.1.9", "note-seq==0.0.5",
                "pretty-midi==0.2.11.post0", "tqdm==4.70.1", "jupytext==1.19.6"):
        assert pin in wanted and pin in DEPENDENCIES, pin
    assert not {"pytest", "nbclient"} & names(wanted)                          # the tests' extra is not for Colab


def test_a_python_without_tensorflow_gets_every_pin_and_this_platforms_tensorflow():
    wanted = colab.requirements_to_install(set())
    linux_x86 = platform.system() == "Linux" and platform.machine() == "x86_64"
    assert ("tensorflow-cpu==2.21.0" if linux_x86 else "tensorflow==2.21.0") in wanted
    assert len(wanted) == len(DEPENDENCIES) - 1                                 # one of the two TensorFlow lines
    assert set(wanted) - {"tensorflow-cpu==2.21.0", "tensorflow==2.21.0"} == \
        {d for d in DEPENDENCIES if not d.startswith("tensorflow")}


def test_the_command_keeps_what_this_venv_has_installed():
    """Run as the notebooks run it (dry run): this venv has tensorflow-cpu, so no TensorFlow is installed again."""
    r = subprocess.run([sys.executable, "-m", "attnrnn_lib.colab", "--dry_run"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    kept, command = r.stdout.strip().splitlines()
    assert "tensorflow-cpu" in kept and "keras" in kept
    assert command.split()[1:5] == ["-m", "pip", "install", "-q"]
    assert names(command.split()[5:]) == {"note-seq", "pretty-midi", "music21", "tqdm", "matplotlib", "jupytext",
                                          "ipywidgets"}
