"""note-seq's parsing modules without its heavy package import.

``import note_seq`` runs its ``__init__``, which pulls in bokeh, pandas and librosa (about 0.8 s) for
plotting and audio that the data pipeline never uses. Here the package is registered as a lazy module: the
submodules we need load at once, and the real ``__init__`` runs the first time anything else is asked of
the package (``note_seq.Melody`` in a notebook, say), so other code sees the ordinary note_seq.
"""

import importlib
import importlib.util
import sys
import types

_NAMES = ("constants", "midi_io", "sequences_lib", "abc_parser", "musicxml_reader", "protobuf.music_pb2",
          "protobuf.generator_pb2")


class _LazyPackage(types.ModuleType):
    def __getattr__(self, name):
        # While our submodules load, "from note_seq import x" probes attributes first: answer "no" so
        # the import system loads the submodule instead of running the whole package __init__.
        if name.startswith("__") or self.__dict__.get("_attnrnn_initialised") or self.__dict__.get("_loading"):
            raise AttributeError(f"module 'note_seq' has no attribute {name!r}")
        self.__dict__["_attnrnn_initialised"] = True
        self.__spec__.loader.exec_module(self)  # the real __init__, into this same module object
        return getattr(self, name)


def _load():
    if "note_seq" not in sys.modules:
        spec = importlib.util.find_spec("note_seq")
        pkg = _LazyPackage("note_seq")
        pkg.__spec__, pkg.__loader__, pkg.__file__ = spec, spec.loader, spec.origin
        pkg.__path__, pkg.__package__ = list(spec.submodule_search_locations), "note_seq"
        sys.modules["note_seq"] = pkg
    pkg = sys.modules["note_seq"]
    pkg.__dict__["_loading"] = True
    try:
        return [importlib.import_module(f"note_seq.{n}") for n in _NAMES]
    finally:
        pkg.__dict__.pop("_loading", None)


constants, midi_io, sequences_lib, abc_parser, musicxml_reader, music_pb2, generator_pb2 = _load()
