"""A second device on a CPU-only machine: the ``meta`` device plays the GPU ("the card").

Mixing card and CPU tensors in one op raises, as cpu/cuda does — so a tensor made on the wrong device fails a
test on a CPU. The card holds no values: what a test reads back from it (``.cpu()``, ``.to('cpu')``, ``.item()``,
``.tolist()``, ``.numpy()``, ``bool``) reads as zeros of the right shape and dtype, so a pipeline runs to its end
and every device decision is exercised, not the numbers. Use::

    with FakeCard():
        model.to(CARD)           # or: the ComfyUI stand-ins below move it as ComfyUI does
        ...                      # run the engine; a cpu/card mix raises "... is not on the expected device ..."

and the ComfyUI stand-ins, modelled on ComfyUI's sources (``comfy/model_patcher.py``, ``comfy/model_management.py``):

- ``ModelPatcher.load(device_to, lowvram_model_memory, full_load)``: ``_load_list`` (every module with parameters
  of its own and no parameter of a child module without its own list), the modules that fit moved one by one
  with ``m.to(device_to)``, then on a full load ``self.model.to(device_to)``; modules that do not fit and have no
  ``comfy_cast_weights`` are left where they are (a partial load), ``model_lowvram`` counts only modules with
  ``comfy_cast_weights``; ``self.model.device = device_to`` at the end;
- ``ModelPatcher.detach`` / ``unpatch_model(offload_device)``: ``self.model.to(offload_device)``;
- ``load_models_gpu(models, force_full_load)``: ``patch_model(load_device, lowvram_model_memory)`` with the
  memory it has room for (``free_bytes``: everything by default, a number for a card that is too small);
  ``unload_all_models`` / ``/free``: ``detach`` of every loaded model.
"""
from __future__ import annotations

import contextlib
import sys
import types

import torch
from torch.overrides import TorchFunctionMode

CARD = torch.device("meta")


def _is_card(t) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type == "meta"


def _zeros_like_on_cpu(t: torch.Tensor, dtype=None) -> torch.Tensor:
    return torch.zeros(t.shape, dtype=dtype or t.dtype)


def _target_is_cpu(args, kwargs) -> tuple[bool, torch.dtype | None]:
    """Whether a ``Tensor.to`` call sends to the CPU, and the dtype it asks for."""
    dev, dtype = kwargs.get("device"), kwargs.get("dtype")
    for a in args:
        if isinstance(a, (str, torch.device)):
            dev = a
        elif isinstance(a, torch.dtype):
            dtype = a
        elif isinstance(a, torch.Tensor):
            dev, dtype = a.device, a.dtype
    return dev is not None and torch.device(dev).type == "cpu", dtype


def _unbounded(index):
    def one(i):
        if isinstance(i, slice) and any(_is_card(b) for b in (i.start, i.stop, i.step)):
            return slice(*(None if _is_card(b) else b for b in (i.start, i.stop, i.step)))
        return i
    return tuple(one(i) for i in index) if isinstance(index, tuple) else one(index)


class FakeCard(TorchFunctionMode):
    """While active, reading a card tensor back to the CPU gives zeros (the card has no values)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self_t = args[0] if args else None
        if _is_card(self_t):
            name = getattr(func, "__name__", "")
            if name == "cpu" or (name == "to" and _target_is_cpu(args[1:], kwargs)[0]):
                return _zeros_like_on_cpu(self_t, _target_is_cpu(args[1:], kwargs)[1] if name == "to" else None)
            if name == "numpy":
                return _zeros_like_on_cpu(self_t).numpy()
            if name == "item":
                return _zeros_like_on_cpu(self_t).item()
            if name == "tolist":
                return _zeros_like_on_cpu(self_t).tolist()
            if name in ("__bool__", "__float__", "__int__", "__index__"):
                return getattr(_zeros_like_on_cpu(self_t), name)()
            if name in ("isfinite", "isnan", "isinf"):  # value checks read the card: zeros are finite
                return func(_zeros_like_on_cpu(self_t), *args[1:], **kwargs)
            if name == "__getitem__":  # a slice bound read from the card (e.g. a mask's length): the whole axis
                return func(self_t, _unbounded(args[1]), **kwargs)
            if name in ("nonzero", "argwhere", "unique"):  # data-dependent shapes: as on a card of zeros
                return func(*([_zeros_like_on_cpu(self_t)] + list(args[1:])), **kwargs).to(CARD)
        return func(*args, **kwargs)


def register_card_backend(monkeypatch) -> None:
    """``torch.get_device_module('meta')``: what diffusers' group offload asks of the card's backend (no streams: the
    pack turns them on for CUDA only)."""
    real = torch.get_device_module
    backend = types.SimpleNamespace(synchronize=lambda *a, **k: None, empty_cache=lambda: None, is_available=lambda: True)
    monkeypatch.setattr(torch, "get_device_module", lambda d=None: backend if d is not None and torch.device(d).type == "meta"
                        else real(d))
    real_autocast = torch.autocast  # autocast has no meta backend: on the card it is the plain computation
    monkeypatch.setattr(torch, "autocast", lambda device_type, *a, **k: contextlib.nullcontext() if device_type == "meta"
                        else real_autocast(device_type, *a, **k))


def read_files_to_the_card(monkeypatch) -> None:
    """safetensors reads straight onto a CUDA card (``safe_open(device='cuda')``) but knows no meta device: read on the
    CPU and move, which is what a read onto the card amounts to here."""
    import pfvg_core.checkpoint as checkpoint

    real = checkpoint.safe_open

    class OnCard:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            self.f = self.handle.__enter__()
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

        def get_tensor(self, name):
            return self.f.get_tensor(name).to(CARD)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(checkpoint, "safe_open", lambda path, framework, device="cpu": (
        OnCard(real(path, framework=framework, device="cpu")) if torch.device(device).type == "meta"
        else real(path, framework=framework, device=device)))


def devices_of(module: torch.nn.Module) -> set[str]:
    return {t.device.type for t in list(module.parameters()) + list(module.buffers())}


# --- ComfyUI stand-ins ------------------------------------------------------------------------------
def module_size(m: torch.nn.Module) -> int:
    """``comfy.model_management.module_size``: bytes of the module's state dict (its own and its children's)."""
    return sum(t.nelement() * t.element_size() for t in m.state_dict().values())


class ModelPatcher:
    """``comfy.model_patcher.ModelPatcher``'s loading and unloading, as far as they move weights."""

    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model, self.load_device, self.offload_device = model, torch.device(load_device), torch.device(offload_device)
        self.attachments, self.parent, self.patches = {}, None, {}
        model.model_lowvram = False
        model.model_loaded_weight_memory = 0
        self.loads: list[tuple] = []

    def clone(self):
        n = ModelPatcher.__new__(ModelPatcher)
        n.__dict__.update(self.__dict__)
        n.attachments, n.parent = dict(self.attachments), self
        return n

    def is_clone(self, other) -> bool:
        return getattr(other, "model", None) is self.model

    def model_size(self) -> int:
        return module_size(self.model)

    def _load_list(self):
        loading = []
        for n, m in self.model.named_modules():
            own = [name for name, _ in m.named_parameters(recurse=False)]
            if any(name not in own for name, _ in m.named_parameters(recurse=True)):
                continue  # (ComfyUI: "skip random weights in non leaf modules")
            if hasattr(m, "comfy_cast_weights") or own:
                loading.append((module_size(m), n, m, own))
        return loading

    def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
        self.loads.append((device_to, lowvram_model_memory, full_load))
        mem, lowvram, completely = 0, 0, []
        loading = self._load_list()
        loading.sort(key=lambda x: x[0], reverse=True)
        for size, n, m, own in loading:
            if not full_load and hasattr(m, "comfy_cast_weights") and mem + size >= lowvram_model_memory:
                lowvram += 1
                continue
            if full_load or mem + size < lowvram_model_memory:
                mem += size
                completely.append(m)
        for m in completely:
            m.to(device_to)
        if lowvram > 0:
            self.model.model_lowvram = True
        else:
            self.model.model_lowvram = False
            if full_load:
                self.model.to(device_to)
                mem = self.model_size()
        self.model.device = device_to
        self.model.model_loaded_weight_memory = mem

    def patch_model(self, device_to=None, lowvram_model_memory=0, load_weights=True, force_patch_weights=False):
        if load_weights:
            self.load(device_to, lowvram_model_memory, force_patch_weights, full_load=lowvram_model_memory == 0)
        return self.model

    def unpatch_model(self, device_to=None, unpatch_weights=True):
        if device_to is not None:
            self.model.to(device_to)
            self.model.device = device_to
        self.model.model_loaded_weight_memory = 0

    def detach(self, unpatch_all=True):
        self.unpatch_model(self.offload_device, unpatch_weights=unpatch_all)
        return self.model


def install_comfy(monkeypatch, card=CARD, offload=torch.device("cpu"), free_bytes=None):
    """ComfyUI's loader on the card: stand-ins for ``comfy.model_patcher`` and the loading part of
    ``comfy.model_management`` (added to the stand-in modules a test already installed, else new ones).
    ``free_bytes``: what the card has room for (None: everything). Returns the call log and the stand-ins."""
    calls, loaded = [], []
    pkg = sys.modules.get("comfy") if isinstance(sys.modules.get("comfy"), types.ModuleType) else None
    pkg = pkg if pkg is not None and getattr(pkg, "__file__", None) is None else types.ModuleType("comfy")
    mm = getattr(pkg, "model_management", None) or types.ModuleType("comfy.model_management")
    mp = types.ModuleType("comfy.model_patcher")
    mp.ModelPatcher = ModelPatcher

    def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                        force_full_load=False):
        calls.append(("load_models_gpu", list(models), force_full_load))
        for m in models:
            room = 0 if (free_bytes is None or force_full_load or m.load_device == m.offload_device) else int(free_bytes)
            m.patch_model(m.load_device, room)
            if m not in loaded:
                loaded.append(m)

    def unload_all_models():
        calls.append(("unload_all_models",))
        while loaded:
            loaded.pop().detach()

    for name, value in dict(get_torch_device=lambda: card, unet_offload_device=lambda: offload, module_size=module_size,
                            load_models_gpu=load_models_gpu, unload_all_models=unload_all_models).items():
        monkeypatch.setattr(mm, name, value, raising=False)
    for name, value in dict(free_memory=lambda *a, **k: calls.append(("free_memory",)), soft_empty_cache=lambda *a, **k: None,
                            processing_interrupted=lambda: False, throw_exception_if_processing_interrupted=lambda: None).items():
        if not hasattr(mm, name):
            monkeypatch.setattr(mm, name, value, raising=False)
    monkeypatch.setattr(pkg, "model_patcher", mp, raising=False)
    monkeypatch.setattr(pkg, "model_management", mm, raising=False)
    for name, mod in {"comfy": pkg, "comfy.model_patcher": mp, "comfy.model_management": mm}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    register_card_backend(monkeypatch)
    return types.SimpleNamespace(calls=calls, loaded=loaded, ModelPatcher=ModelPatcher, mm=mm)
