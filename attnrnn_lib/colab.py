"""Installing attnrnn's dependencies on Colab while keeping Colab's own TensorFlow.

The notebooks' first cell installs attnrnn with `pip install --no-deps` and then runs `python -m attnrnn_lib.colab`.
A plain `pip install` would put our pinned `tensorflow-cpu` over Colab's GPU/TPU build of TensorFlow: they are two
distributions that write the same `tensorflow` folder, so training would silently run on the CPU. It would also
replace the packages that Colab's TensorFlow was built against, and the running kernel. Those stay as Colab has
them; every other dependency is installed at the version the tests run against.

Only the standard library and `packaging` are imported here (attnrnn's other dependencies are not installed yet).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Every name TensorFlow is distributed under: any one of them installed is Colab's TensorFlow.
TENSORFLOWS = frozenset({"tensorflow", "tensorflow-cpu", "tensorflow-tpu"})
# What Colab's TensorFlow was built with (Keras, numpy's ABI, protobuf's generated code, TensorBoard) and the
# kernel the notebook is already running in: kept at Colab's versions wherever Colab has them. (ipywidgets is not
# kept: the generation panel uses ipywidgets 8, which Colab shows through its custom widget manager.)
RUNTIME = TENSORFLOWS | {"keras", "numpy", "protobuf", "tensorboard", "ipykernel"}


def installed_distributions() -> set[str]:
    """Canonical names of the distributions installed in this Python."""
    names = (d.metadata["Name"] for d in importlib.metadata.distributions())
    return {canonicalize_name(n) for n in names if n}


def requirements_to_install(installed: set[str]) -> list[str]:
    """attnrnn's pinned requirements that apply to this machine, less the runtime packages already installed.

    Args:
      installed: canonical names of the installed distributions (`installed_distributions()`).
    Returns:
      Requirement strings for pip, in the order of attnrnn's metadata, without environment markers.
    """
    wanted = []
    for text in importlib.metadata.requires("attnrnn") or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # another platform's line, or an extra (the tests' runner)
        name = canonicalize_name(req.name)
        present = bool(installed & TENSORFLOWS) if name in TENSORFLOWS else name in installed
        if name in RUNTIME and present:
            continue
        wanted.append(f"{req.name}{req.specifier}")
    return wanted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnrnn_lib.colab", description=__doc__.splitlines()[0])
    parser.add_argument("--dry_run", action="store_true", help="print the pip command instead of running it")
    args = parser.parse_args(argv)
    installed = installed_distributions()
    kept = sorted(RUNTIME & installed)
    command = [sys.executable, "-m", "pip", "install", "-q", *requirements_to_install(installed)]
    print(f"keeping this runtime's {', '.join(kept) or 'nothing'}; installing the rest at attnrnn's pins")
    if args.dry_run:
        print(" ".join(command))
        return 0
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
