"""The authors' implementation (a checkout of Keep-Passion/GACN, not shipped here) as a baseline,
timed through its own ``GACN_Fuse().fuse``, also on a machine without CUDA.

Its code pins the device: ``self.device = "cuda:0"``, ``torch.load(map_location={'cuda:3':
'cuda:0'})`` and ``.cuda(device)`` for its gradient and box kernels. Without CUDA, its
``nets/gacn_net.py`` is loaded with exactly those three spellings replaced by the CPU (nothing else
changes; the replacement is checked). It imports torchvision only for
``transforms.Compose([transforms.ToTensor()])``; where torchvision cannot be imported (PyPI's
wheels need the CUDA build of torch), a stand-in with torchvision's definitions of those two is
used. Both are said in the log.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import types
from pathlib import Path

import numpy as np

log = logging.getLogger("latency.authors")

CPU_PATCH = (('self.device = "cuda:0"', 'self.device = "cpu"'),
             ("map_location={'cuda:3': 'cuda:0'}", 'map_location="cpu"'),
             (".cuda(device)", ".to(device)"))


def _transforms_stand_in() -> None:
    """torchvision.transforms.Compose and ToTensor as torchvision 0.2x defines them for numpy
    arrays and PIL images (uint8 scaled by 1/255; float images, mode F, kept)."""
    import torch

    class Compose:
        def __init__(self, transforms):
            self.transforms = transforms

        def __call__(self, x):
            for t in self.transforms:
                x = t(x)
            return x

    class ToTensor:
        def __call__(self, pic):
            if isinstance(pic, np.ndarray):
                img = torch.from_numpy((pic[:, :, None] if pic.ndim == 2 else pic).transpose((2, 0, 1))).contiguous()
            else:
                dtype = {"I": np.int32, "I;16": np.int16, "F": np.float32}.get(pic.mode, np.uint8)
                img = torch.from_numpy(np.array(pic, dtype, copy=True))
                img = img.view(pic.size[1], pic.size[0], len(pic.getbands())).permute((2, 0, 1)).contiguous()
            return img.to(torch.get_default_dtype()).div(255) if img.dtype == torch.uint8 else img

    tv = types.ModuleType("torchvision")
    tv.transforms = types.ModuleType("torchvision.transforms")
    tv.transforms.Compose, tv.transforms.ToTensor = Compose, ToTensor
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms})


class Authors:
    """``fuse(a, b)``: the authors' ``GACN_Fuse().fuse`` on two RGB uint8 frames."""

    def __init__(self, root: Path):
        import torch
        self.root = Path(root).resolve()
        try:
            import torchvision.transforms  # noqa: F401
        except Exception as e:  # noqa: BLE001 - missing, or built for another torch
            log.warning("torchvision cannot be imported (%s): the authors' code gets a stand-in of "
                        "transforms.Compose/ToTensor", e)
            _transforms_stand_in()
        sys.path.insert(0, str(self.root))
        source = (self.root / "nets" / "gacn_net.py").read_text()
        if not torch.cuda.is_available():
            for old, new in CPU_PATCH:
                if old not in source:
                    raise RuntimeError(f"{self.root}: nets/gacn_net.py has no {old!r}; not the expected checkout")
                source = source.replace(old, new)
            log.warning("no CUDA: the authors' nets/gacn_net.py runs with its device set to the CPU")
        module = types.ModuleType("nets.gacn_net")
        module.__file__ = str(self.root / "nets" / "gacn_net.py")
        importlib.import_module("nets")
        sys.modules["nets.gacn_net"] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        cwd = os.getcwd()
        os.chdir(self.root)  # it reads nets/parameters/GACN.pkl relative to the working directory
        try:
            self.net = module.GACN_Fuse()
        finally:
            os.chdir(cwd)

    def fuse(self, a, b):
        return self.net.fuse(a, b)
