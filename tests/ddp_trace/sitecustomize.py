"""What each process of a multi-process training run did, for tests/test_ddp.py (tests only).

Python imports ``sitecustomize`` at start-up from the path, so a test that puts this directory first on PYTHONPATH
and sets DDP_TRACE_DIR sees into every process the launchers start (torchrun, the stand-in srun, the recipe).
Each process appends JSON lines to ``$DDP_TRACE_DIR/<rank>.<pid>.jsonl`` (rank from RANK or SLURM_PROCID):

- ``{"batch": [utt, ...], "train": true|false}`` for each batch SpeechLM.forward is given;
- ``{"write": path, "event": ...}`` for each file opened for writing, renamed, linked, removed or made under
  $DDP_TRACE_WATCH (Python's audit hooks; a file torch saves is seen through the temp file of the atomic save).

Without DDP_TRACE_DIR nothing is done.
"""

import os

if os.environ.get("DDP_TRACE_DIR"):
    import importlib.abc
    import importlib.util
    import json
    import sys

    _rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "launcher"))
    _path = os.path.join(os.environ["DDP_TRACE_DIR"], f"{_rank}.{os.getpid()}.jsonl")
    _watch = os.path.realpath(os.environ.get("DDP_TRACE_WATCH", "/nonexistent"))
    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def _record(entry):
        with open(_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def _watched(path):
        try:
            return os.path.realpath(os.fsdecode(path)).startswith(_watch)
        except (TypeError, ValueError):
            return False  # a file descriptor, not a path

    def _audit(event, args):
        if event == "open":
            path, mode, flags = args
            writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & _WRITE_FLAGS)
            if writing and path is not None and _watched(path) and os.fsdecode(path) != _path:
                _record({"write": os.fsdecode(path), "event": event})
        elif event in ("os.rename", "os.symlink", "os.remove", "os.link", "os.mkdir", "os.rmdir", "os.truncate",
                       "shutil.rmtree"):
            paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
            if any(_watched(p) for p in paths):
                _record({"write": os.fsdecode(paths[-1]), "event": event})

    sys.addaudithook(_audit)

    class _AfterImport(importlib.abc.MetaPathFinder):
        """Wraps SpeechLM.forward once espnet_speechlm_plugin.model.speechlm is imported."""

        name = "espnet_speechlm_plugin.model.speechlm"

        def find_spec(self, fullname, path, target=None):
            if fullname != self.name:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                forward = module.SpeechLM.forward

                def traced(model, *args, **kwargs):
                    if kwargs.get("utt_id") is not None:
                        _record({"batch": list(kwargs["utt_id"]), "train": model.training})
                    return forward(model, *args, **kwargs)

                module.SpeechLM.forward = traced

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _AfterImport())
