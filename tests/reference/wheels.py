"""Reference code read out of published wheels, for libraries that cannot be installed here.

torchvision has no CPU build for this machine's torch, and segmentation_models_pytorch pulls in
more than its losses need; their loss files are pure Python over torch. ``oracle`` downloads the
pinned wheel once (``pip download --no-deps`` into ``.cache/wheels``), and imports the named
files of it as modules of a private package, so that their relative imports among themselves
work; anything else they import from their own package is given by ``stubs`` (e.g. torchvision's
``_log_api_usage_once``, a no-op here). Nothing of theirs is copied into this repository.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import subprocess
import sys
import types
import zipfile
from pathlib import Path

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "wheels"
PINNED = {  # the releases the tests were written against
    "torchvision": "0.29.1",
    "segmentation_models_pytorch": "0.6.0",
}


@functools.cache
def wheel(distribution: str) -> Path:
    """The pinned wheel of ``distribution`` (downloaded once; any platform's will do: only its
    pure-Python files are read)."""
    version = PINNED[distribution]
    CACHE.mkdir(parents=True, exist_ok=True)
    stem = distribution.replace("-", "_")
    found = sorted(CACHE.glob(f"{stem}-{version}-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
             "--only-binary=:all:", "-d", str(CACHE), f"{distribution}=={version}"],
            check=True, timeout=600,
        )  # fmt: skip
        found = sorted(CACHE.glob(f"{stem}-{version}-*.whl"))
    if not found:
        raise FileNotFoundError(f"no wheel of {distribution}=={version} in {CACHE}")
    return found[0]


class _FromWheel(importlib.abc.Loader):
    def __init__(self, source: str, origin: str) -> None:
        self.source, self.origin = source, origin

    def create_module(self, spec):
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        exec(compile(self.source, self.origin, "exec"), module.__dict__)


def oracle(
    distribution: str, package: str, files: list[str], stubs: dict[str, dict] | None = None
) -> types.SimpleNamespace:
    """The modules ``files`` (paths under ``package`` in the wheel, e.g. ``"ops/giou_loss.py"``),
    imported in order as ``_oracle_<package>.<...>``; ``stubs`` maps a dotted module under the
    package (``"utils"``) to the names it must provide. Returns the modules by their file stem."""
    root = f"_oracle_{package}"
    archive = zipfile.ZipFile(wheel(distribution))
    _ensure_package(root)
    for dotted, names in (stubs or {}).items():
        module = _ensure_package(f"{root}.{dotted}")
        module.__dict__.update(names)
    loaded = {}
    for path in files:
        parts = path.removesuffix(".py").split("/")
        for depth in range(1, len(parts)):
            _ensure_package(".".join([root, *parts[:depth]]))
        name = ".".join([root, *parts])
        if name not in sys.modules:
            origin = f"{archive.filename}/{package}/{path}"
            loader = _FromWheel(archive.read(f"{package}/{path}").decode(), origin)
            spec = importlib.util.spec_from_loader(name, loader, origin=origin)
            assert spec is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            loader.exec_module(module)
        loaded[parts[-1]] = sys.modules[name]
    return types.SimpleNamespace(**loaded)


def _ensure_package(name: str) -> types.ModuleType:
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so that relative imports resolve against it
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(_ensure_package(parent), child, module)
    return module


def torchvision_ops(*files: str) -> types.SimpleNamespace:
    """torchvision's ``ops`` loss files (e.g. ``"giou_loss"``), with ``ops/_utils.py`` beside them."""
    return oracle(
        "torchvision", "torchvision", ["ops/_utils.py", *(f"ops/{f}.py" for f in files)],
        stubs={"utils": {"_log_api_usage_once": lambda *args, **kwargs: None}},
    )  # fmt: skip


def smp_losses(*files: str) -> types.SimpleNamespace:
    """segmentation_models_pytorch's ``losses`` files (e.g. ``"lovasz"``), with ``constants.py``."""
    return oracle(
        "segmentation_models_pytorch", "segmentation_models_pytorch",
        ["losses/constants.py", *(f"losses/{f}.py" for f in files)],
    )  # fmt: skip
