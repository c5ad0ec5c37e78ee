"""ESPnet's Trainer, made safe to kill: atomic checkpoints, a safe resume, and repair of a half-saved epoch.

Where it sits: stages 3 and 4 (``bin/speechlm_train`` → ``SpeechLMTask.main`` → ``Trainer.run``). ESPnet 202506
resumes at epoch granularity: at the end of epoch E it writes ``checkpoint.pth`` (model, optimizer, scheduler and
reporter state), then ``Eepoch.pth``, then the ``latest.pth`` and ``*.best.pth`` links, and every epoch starts with
``set_all_random_seed(seed + E)`` and a batch order drawn from ``seed + E``. So a run killed anywhere in epoch
E + 1 and rerun with ``--resume true`` redoes that epoch bit for bit, and ends where an uninterrupted run ends —
provided the files of epoch E are whole. Plain ESPnet does not guarantee that:

- ``torch.save`` writes ``checkpoint.pth`` in place: a kill while writing leaves a truncated zip, and the rerun
  dies in ``torch.load``. Here every ``torch.save`` to a path during training writes a temp file and renames it.
- a kill after ``checkpoint.pth`` but before ``Eepoch.pth`` or the links leaves the epoch's model file missing
  and the best-model links pointing at an older epoch. Here the resume rewrites them from ``checkpoint.pth``.
- a checkpoint that is still unreadable (e.g. cut short by a run of plain ESPnet) is moved aside and training
  starts again from epoch 1, which — everything being seeded — ends where an uninterrupted run ends.
- ESPnet loads ``checkpoint.pth`` with ``weights_only=False`` (arbitrary code on unpickling). Here it is loaded
  with ``weights_only=True``, allowing only the plain types ESPnet's reporter stores (numpy scalars, timedelta).

Under DDP all of this is rank 0's work (ESPnet saves on rank 0 only); the other ranks wait until rank 0 has checked
the checkpoint, then every rank loads it. With ``--shard_optimizer`` (ZeRO stage 1) each epoch ends by gathering
the optimizer state on rank 0, so ``checkpoint.pth`` holds it whole, as in an unsharded run.

Use: ``SpeechLMTask.trainer = ResumableTrainer``. ESPnet's ``--init_param`` loader also unpickles with
``weights_only=False``; :func:`safe_load_pretrained_model` first proves the file holds only tensors and plain
containers (a ``weights_only=True`` load, memory-mapped so it reads little), then hands it to ESPnet's loader.
"""

import datetime
import logging
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from espnet2.train.reporter import Reporter
from espnet2.train.trainer import Trainer
from torch.distributed.optim import ZeroRedundancyOptimizer

# What ESPnet's reporter state holds besides tensors and builtins: numpy scalars (losses) and timedeltas.
_REPORTER_TYPES = [np.core.multiarray.scalar, np.dtype, datetime.timedelta] + sorted(
    {type(np.dtype(code)) for code in "?bBhHiIlLqQefdg"}, key=str
)


def load_checkpoint(path, map_location="cpu") -> Dict[str, Any]:
    """``torch.load`` of an ESPnet ``checkpoint.pth`` with ``weights_only=True``."""
    with torch.serialization.safe_globals(_REPORTER_TYPES):
        return torch.load(path, map_location=map_location, weights_only=True)


def safe_load_pretrained_model(init_param: str, model, ignore_init_mismatch: bool, map_location: str = "cpu"):
    """ESPnet's ``load_pretrained_model`` (``--init_param path[:src_key[:dst_key[:exclude]]]``) for files that
    load with ``weights_only=True``; anything else is refused with a message naming the file."""
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    path = init_param.split(":", 1)[0]
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"--init_param {path} does not exist; check the path (e.g. train stage 1 first)")
    except Exception as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f"it pickles {found.group(1)}" if found else f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        raise ValueError(
            f"--init_param {path} is not a plain PyTorch state dict (tensors and containers only), so it is not "
            f"loaded ({what}); re-save its state_dict where it was made, or convert it to safetensors"
        ) from err
    return load_pretrained_model(init_param, model, ignore_init_mismatch, map_location=map_location)


def _atomic_save_factory(save):
    def atomic_save(obj, f, *args, **kwargs):
        """torch.save to a temp file in the same directory, then rename: a kill never leaves half a file."""
        if not isinstance(f, (str, os.PathLike)):
            return save(obj, f, *args, **kwargs)
        path = Path(f)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save(obj, tmp, *args, **kwargs)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())  # the rename must not reach the disk before the data
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return atomic_save


@contextmanager
def atomic_torch_save():
    """Within the block every ``torch.save(obj, path)`` (ESPnet's trainer and n-best averaging) is atomic."""
    original = torch.save
    torch.save = _atomic_save_factory(original)
    try:
        yield
    finally:
        torch.save = original


def _relink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` (a name in the same directory) by renaming a new link over it."""
    tmp = link.with_name(f".{link.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)


def repair_epoch_outputs(output_dir: Path, states: Dict[str, Any], best_model_criterion, keep_nbest_models) -> list:
    """Finish what a kill between ``checkpoint.pth`` and the end of the epoch left undone; returns what was fixed.

    Mirrors ESPnet's order of writes: ``Eepoch.pth`` (from the checkpoint's model, the same tensors ESPnet saves),
    ``latest.pth``, the ``<phase>.<key>.best.pth`` links, and removal of model files outside the n-best.
    """
    reporter = Reporter()
    reporter.load_state_dict(states["reporter"])
    epoch = reporter.get_epoch()
    fixed = []
    if epoch < 1:
        return fixed
    model_file = output_dir / f"{epoch}epoch.pth"
    if not model_file.exists():
        torch.save(states["model"], model_file)  # atomic: called inside atomic_torch_save()
        fixed.append(model_file.name)
    latest = output_dir / "latest.pth"
    if not latest.is_symlink() or os.readlink(latest) != model_file.name:
        _relink(latest, model_file.name)
        fixed.append(latest.name)
    for phase, key, mode in best_model_criterion:
        if not reporter.has(phase, key):
            continue
        best = reporter.get_best_epoch(phase, key, mode)
        link, target = output_dir / f"{phase}.{key}.best.pth", f"{best}epoch.pth"
        if (output_dir / target).exists() and (not link.is_symlink() or os.readlink(link) != target):
            _relink(link, target)
            fixed.append(link.name)
    keep = max(keep_nbest_models) if isinstance(keep_nbest_models, (list, tuple)) else keep_nbest_models
    nbests = set().union(*[set(reporter.sort_epochs(ph, k, m)[:keep])
                           for ph, k, m in best_model_criterion if reporter.has(ph, k)])
    for e in range(1, epoch):
        stale = output_dir / f"{e}epoch.pth"
        if stale.exists() and e not in nbests:
            stale.unlink()
            fixed.append(f"removed {stale.name}")
    return fixed


class ResumableTrainer(Trainer):
    """ESPnet's Trainer with atomic saves, a ``weights_only`` resume and repair of a half-saved epoch."""

    @staticmethod
    def resume(checkpoint, model, reporter, optimizers, schedulers, scaler, ngpu: int = 0, strict: bool = True):
        states = load_checkpoint(checkpoint, f"cuda:{torch.cuda.current_device()}" if ngpu > 0 else "cpu")
        model.load_state_dict(states["model"], strict=strict)
        reporter.load_state_dict(states["reporter"])
        for optimizer, state in zip(optimizers, states["optimizers"]):
            optimizer.load_state_dict(state)
        for scheduler, state in zip(schedulers, states["schedulers"]):
            if scheduler is not None:
                scheduler.load_state_dict(state)
        if scaler is not None and states.get("scaler") is not None:
            scaler.load_state_dict(states["scaler"])
        logging.info(f"The training was resumed using {checkpoint} (epoch {reporter.get_epoch()} done)")

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory, plot_attention_iter_factory,
            trainer_options, distributed_option) -> None:
        output_dir = Path(trainer_options.output_dir)
        with atomic_torch_save():
            if _is_main(distributed_option):
                for leftover in output_dir.glob(".*.pth.*tmp"):  # temp files of saves a kill interrupted
                    leftover.unlink()
                if trainer_options.resume and (output_dir / "checkpoint.pth").exists():
                    cls.check_and_repair(output_dir, trainer_options)
            if distributed_option.distributed:
                # every rank loads checkpoint.pth: none may look before rank 0 has repaired it or moved it aside
                torch.distributed.barrier()
            super().run(model=model, optimizers=optimizers, schedulers=schedulers,
                        train_iter_factory=train_iter_factory, valid_iter_factory=valid_iter_factory,
                        plot_attention_iter_factory=plot_attention_iter_factory, trainer_options=trainer_options,
                        distributed_option=distributed_option)

    @classmethod
    def train_one_epoch(cls, *args, **kwargs) -> bool:
        """ESPnet's epoch of training; with ``--shard_optimizer`` every rank then sends its share of the optimizer
        state to rank 0, which saves the whole state in ``checkpoint.pth`` after validation (all ranks must take
        part, and ESPnet's save runs on rank 0 alone)."""
        sharded = [o for o in kwargs["optimizers"] if isinstance(o, ZeroRedundancyOptimizer)]
        for optimizer in sharded:
            # the copy gathered for the previous checkpoint: not needed any more, and as large as the whole state
            optimizer._all_state_dicts = []
        all_steps_are_invalid = super().train_one_epoch(*args, **kwargs)
        for optimizer in sharded:
            optimizer.consolidate_state_dict(to=0)
        return all_steps_are_invalid

    @staticmethod
    def check_and_repair(output_dir: Path, trainer_options) -> Optional[Path]:
        """Before resuming: move an unreadable checkpoint aside (returns where), or complete its epoch's files."""
        checkpoint = output_dir / "checkpoint.pth"
        try:
            states = load_checkpoint(checkpoint)
        except Exception as err:  # a truncated zip raises RuntimeError; other damage other errors
            aside = checkpoint.with_name(f"checkpoint.pth.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(checkpoint, aside)
            logging.warning(
                f"{checkpoint} cannot be read ({type(err).__name__}: {str(err).splitlines()[0][:200]}), probably "
                f"cut short by a kill while it was written; moved it to {aside.name} and training starts again "
                "from epoch 1 (with the same seeds it ends where an uninterrupted run ends)"
            )
            return aside
        fixed = repair_epoch_outputs(output_dir, states, trainer_options.best_model_criterion,
                                     trainer_options.keep_nbest_models)
        if fixed:
            logging.warning(f"the previous run was killed while saving its last epoch; completed: {', '.join(fixed)}")
        return None


def _is_main(distributed_option) -> bool:
    return not distributed_option.distributed or distributed_option.dist_rank == 0
