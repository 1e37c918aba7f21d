"""Block offload for training a frozen DiT on a small card (the ``24gb`` plan).

Inference uses diffusers' group offload (``backbone.place_dit``), which moves a block's weights back to the
CPU as soon as its forward ends. Training with gradient checkpointing needs more: a block is recomputed in the
backward pass, and its backward reads its weights after that recomputation. Here each transformer block's
frozen weights rest in (pinned) CPU memory and are on the GPU only

- during its forward (moved back right after, when no backward will need them), and
- during its recomputation *and* its backward: they are moved in by the recomputation and moved back by a hook
  that fires once the gradients of the block's inputs are computed, i.e. when its backward is over.

So at most two blocks sit on the GPU (one finishing its backward while the next is recomputed); everything else of the DiT (embedders, output layers,
the trained layers) stays there. Frozen weights are never copied back: the CPU copy is kept and the GPU copy
dropped. Used by ``MemoryInjector.checkpoint_function`` (the recomputation path) and by forward hooks
(no-grad forwards: Direct Forcing's estimate, sampling)."""
from __future__ import annotations

import torch


class BlockOffload:
    def __init__(self, dit, device: torch.device):
        self.device = torch.device(device)
        self.blocks = list(dit.transformer_blocks) + list(dit.single_transformer_blocks)
        self.cpu: dict[int, torch.Tensor] = {}
        self.events: list[tuple[str, int]] = []  # ("on" | "off", block index): what happened, in order (tests)
        self._keep: set[int] = set()  # blocks whose backward still needs them on the GPU
        for i, b in enumerate(self.blocks):
            for p in list(b.parameters()) + list(b.buffers()):
                t = p.data.to("cpu")
                if self.device.type == "cuda":
                    t = t.pin_memory()
                self.cpu[id(p)] = t
                p.data = t
            b.register_forward_pre_hook(lambda mod, args, i=i: self.onload(i))
            b.register_forward_hook(lambda mod, args, out, i=i: self._after_forward(i))
        others = [m for name, m in dit.named_children() if name not in ("transformer_blocks", "single_transformer_blocks")]
        for m in others:
            m.to(self.device)
        dit._pfvg_onload_device = self.device  # computes there while the blocks rest on the CPU (execution_device)
        dit._pfvg_block_offload = self

    def check_frozen(self) -> None:
        """Offloaded blocks must be frozen (their weights are never copied back from the GPU)."""
        if any(p.requires_grad for b in self.blocks for p in b.parameters()):
            raise ValueError("block offload keeps frozen blocks only: a stage trains transformer blocks "
                             "(train last-layers / semanticpack with offload, or set offload = 'none')")

    def _tensors(self, i: int):
        b = self.blocks[i]
        return list(b.parameters()) + list(b.buffers())

    def onload(self, i: int) -> None:
        if self.device.type == "cpu":
            self.events.append(("on", i))
            return
        for p in self._tensors(i):
            if p.data.device != self.device:
                p.data = self.cpu[id(p)].to(self.device, non_blocking=True)
        self.events.append(("on", i))

    def offload(self, i: int) -> None:
        self._keep.discard(i)
        for p in self._tensors(i):
            p.data = self.cpu[id(p)]
        self.events.append(("off", i))

    def _after_forward(self, i: int) -> None:
        if i not in self._keep:
            self.offload(i)

    def index(self, block) -> int:
        for i, b in enumerate(self.blocks):
            if b is block:
                return i
        raise ValueError("not an offloaded block")

    def release_after_backward(self, i: int, inputs: tuple) -> None:
        """Called at a checkpointed block's forward: once the gradients of its ``inputs`` are computed (its backward,
        which follows its recomputation, is over), move block ``i`` out again."""
        needing = [t for t in inputs if torch.is_tensor(t) and t.requires_grad]
        if needing:
            torch.autograd.graph.register_multi_grad_hook(needing, lambda grads, i=i: self.offload(i), mode="all")

    def keep(self, i: int) -> None:
        """Called by the recomputation: block ``i`` stays on the GPU after it (its backward reads its weights)."""
        self._keep.add(i)


def block_offload(model) -> BlockOffload | None:
    return getattr(model.dit, "_pfvg_block_offload", None)
