"""Several GPUs and nodes on torch's own engine: FSDP2 under ``torchrun`` (docs/architecture.md §5).

- **Process group** from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
  / c10d rendezvous): NCCL on ``cuda:LOCAL_RANK``, gloo on the CPU. Every collective here runs on that
  device (NCCL has no CPU tensors).
- **Sharding** (``shard_model``): ``fully_shard`` on every transformer block of the packed DiT, then on the
  DiT itself (its embedders, refiner, final norm and output projection), with a bf16
  ``MixedPrecisionPolicy`` (fp32 master weights and gradient reduction) and an optional
  ``CPUOffloadPolicy``. The DiT is ~all of the 12.87 B parameters.
  The small modules (SemanticPack, text / image encoders, codec: a few million parameters) are
  **replicated**: the trainer calls their methods (``update``, ``init_memory``, the gate ``log_gate`` read
  inside the DiT's attention) outside any ``forward``, which FSDP's hooks would not see; each rank keeps
  a full copy and their gradients are summed in one flat all-reduce per optimizer step
  (``sync_replicated_grads``).
- **Loading** (``build_model``): a PFVG bundle's DiT is built on the meta device, sharded, and each rank
  reads only its own rows of each tensor from ``dit.safetensors`` (``safe_open`` slices); no rank ever
  holds the whole DiT. (``random:<config>`` models are initialised whole on the CPU first — test sizes.)
- **Equal work**: every FSDP forward is a collective, so the ranks of a step must run the same number
  of clips in the same order: ``data.step_order`` groups videos by clip count, and ``check_same``
  refuses to start when ranks disagree on the config or the data (a hash of each, all-gathered).
- **Checkpoints**: ``torch.distributed.checkpoint`` writes each rank's shards of the model and AdamW
  state into one folder (DCP resharding loads it on another number of ranks); the LR scheduler and the
  data position go into ``trainer.json``, each rank's RNG into ``rng-<rank>.json``. ``full_state_dict``
  gathers the final weights onto rank 0's CPU, one tensor at a time, for the usual bundle.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from .atomic import TMP_PREFIX, write_json

TIMEOUT_ENV = "PFVG_DIST_TIMEOUT_S"  # seconds a collective may wait for the other ranks (default 1800)


class DistributedMismatch(RuntimeError):
    """The ranks of one run disagree (config, data) and would deadlock or train different things."""


@dataclass
class Dist:
    """This process's place in the run."""

    rank: int
    world: int
    local_rank: int
    device: torch.device  # where this rank computes and where its collectives run
    mesh: object  # DeviceMesh over all ranks (1-D: full shard)


_CURRENT: Dist | None = None


def _timeout() -> datetime.timedelta:
    return datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "1800")))


def launched() -> bool:
    """True under torchrun (or any launcher that sets WORLD_SIZE and RANK)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_from_env(device: str = "auto") -> Dist:
    """Join the process group torchrun describes. ``device`` (the training config's): ``auto`` / ``cuda``:
    ``cuda:LOCAL_RANK`` with NCCL; ``cpu`` (or no CUDA): gloo on the CPU. A ``cuda:N`` naming one GPU is
    refused for more than one rank (every rank would use the same GPU)."""
    global _CURRENT
    local = int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    name = str(device or "auto").strip().lower()
    if name.startswith("cuda:") and world > 1:
        raise ValueError(f"device {device!r} names one GPU, but {world} processes run: use device = 'auto' or 'cuda' "
                         "(each process takes cuda:LOCAL_RANK)")
    use_cuda = name != "cpu" and torch.cuda.is_available()
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available in this torch ({torch.__version__})")
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local} but this node has {torch.cuda.device_count()} GPUs: "
                             "give torchrun --nproc_per_node ≤ the GPU count")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=_timeout(),
                                **({"device_id": dev} if use_cuda else {}))
    _CURRENT = _make(dev, local)
    return _CURRENT


def _make(dev: torch.device, local: int) -> Dist:
    from torch.distributed.device_mesh import init_device_mesh

    world = dist.get_world_size()
    return Dist(dist.get_rank(), world, local, dev, init_device_mesh(dev.type, (world,)))


def current(device: str = "auto") -> Dist | None:
    """The run's ``Dist`` when a process group is up (made from it if another caller initialised it), else None."""
    global _CURRENT
    if not dist.is_initialized():
        return None
    if _CURRENT is None:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = str(device) != "cpu" and torch.cuda.is_available() and dist.get_backend() == "nccl"
        _CURRENT = _make(torch.device("cuda", local) if use_cuda else torch.device("cpu"), local)
    return _CURRENT


def barrier(ctx: Dist) -> None:
    """Wait for every rank (the process group is bound to ``ctx.device``)."""
    dist.barrier()


def shutdown() -> None:
    global _CURRENT
    _CURRENT = None
    if dist.is_initialized():
        dist.destroy_process_group()


# --- agreement and equal work --------------------------------------------------------------------
def digest(obj) -> str:
    """A stable hash of JSON-able data (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def check_same(ctx: Dist, named: dict[str, str]) -> None:
    """All-gather a hash of each named thing (config, data, …) and raise ``DistributedMismatch`` on every
    rank, naming what differs and on which ranks, if any rank's differs from rank 0's. Called before the
    first forward: ranks that disagree never reach a collective the others are not in."""
    keys = sorted(named)
    mine = torch.tensor([int(digest(named[k])[:15], 16) for k in keys], dtype=torch.int64, device=ctx.device)
    got = [torch.empty_like(mine) for _ in range(ctx.world)]
    dist.all_gather(got, mine)
    rows = torch.stack(got).cpu()
    bad = []
    for j, k in enumerate(keys):
        ranks = [r for r in range(ctx.world) if rows[r, j] != rows[0, j]]
        if ranks:
            bad.append(f"{k} differs from rank 0's on rank(s) {ranks[:8]}")
    if bad:
        raise DistributedMismatch(f"rank {ctx.rank}: the {ctx.world} processes disagree: " + "; ".join(bad)
                                  + " — every rank must read the same training config and the same dataset "
                                    "(same files, same frame counts)")


def mean_over_ranks(ctx: Dist, total: float, count: int) -> float:
    """Σ total / Σ count over the ranks (one all-reduce on the rank's device)."""
    t = torch.tensor([float(total), float(count)], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t[0] / t[1].clamp(min=1))


# --- sharding ------------------------------------------------------------------------------------
def dit_blocks(dit) -> list[torch.nn.Module]:
    """The packed DiT's transformer blocks (the FSDP units): dual-stream, then single-stream."""
    return list(dit.transformer_blocks) + list(dit.single_transformer_blocks)


def _policies(ctx: Dist, bf16: bool, cpu_offload: bool) -> dict:
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy

    kw = {"mesh": ctx.mesh}
    if bf16:  # bf16 all-gathered weights and compute; fp32 master weights, optimizer and gradient reduction
        kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if cpu_offload:  # sharded weights, gradients and AdamW state rest in (pinned) host memory
        kw["offload_policy"] = CPUOffloadPolicy(pin_memory=ctx.device.type == "cuda")
    return kw


def shard_dit(dit, ctx: Dist, bf16: bool = False, cpu_offload: bool = False):
    """``fully_shard`` every block, then the DiT (root). Gradients are *summed* over the ranks (divide
    factor 1): the trainer already scales each video's loss by 1 / (global videos per step)."""
    import warnings

    from torch.distributed.fsdp import fully_shard

    # diffusers' blocks return slices of one tensor; nothing downstream changes them in place (the 1 vs 2
    # process test holds the gradients equal), so FSDP's warning about views is noise for every block class
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    kw = _policies(ctx, bf16, cpu_offload)
    for block in dit_blocks(dit):
        fully_shard(block, **kw)
    fully_shard(dit, **kw)
    for unit in [dit, *dit_blocks(dit)]:  # a plain SUM (gloo has no pre-multiplied sum), divided by 1
        unit.set_gradient_divide_factor(1.0)
        unit.set_force_sum_reduction_for_comms(True)
    dit._pfvg_onload_device = ctx.device  # FSDP owns the placement: where it computes (with CPU offload its weights rest on the CPU)
    dit._pfvg_compute_dtype = torch.float32  # inputs go in fp32; the mixed-precision policy casts them
    return dit


def shard_model(model, ctx: Dist, bf16: bool = False, cpu_offload: bool = False):
    """Shard the DiT of a built ``PFVGModel`` (weights on the CPU or the device) and put the replicated
    small modules on the rank's device."""
    shard_dit(model.dit, ctx, bf16, cpu_offload)
    for m in (model.semanticpack, model.text_encoder, model.image_encoder, model.codec):
        if m is not None:
            m.to(ctx.device)
    return model


def _rows(n: int, ctx: Dist) -> tuple[int, int]:
    """The rows [a, b) of a dim-0 size ``n`` tensor this rank holds under ``Shard(0)`` (torch.chunk's split)."""
    c = -(-n // ctx.world)
    a = min(ctx.rank * c, n)
    return a, min(a + c, n)


def load_sharded(module: torch.nn.Module, path: str, ctx: Dist, what: str = "packed DiT",
                 prefixes: tuple[str, ...] = ()) -> None:
    """Fill a sharded module (built on the meta device, then ``to_empty``) from a safetensors file: each rank
    reads only its own rows of each sharded tensor (``safe_open(...).get_slice``), so no rank ever holds the
    whole file. Keys and shapes are checked first (``checkpoint.check_keys``)."""
    from .backbone import _strip
    from .checkpoint import check_keys, open_safetensors

    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    expected = {k: v for k, v in module.state_dict().items()}
    with open_safetensors(path, what, "cpu") as f:
        rename = {_strip(n, prefixes): n for n in f.keys()}
        check_keys(path, {k: tuple(f.get_slice(n).get_shape()) for k, n in rename.items()}, expected, what)
        with torch.no_grad():
            for key, name in rename.items():
                target = params.get(key, buffers.get(key))
                if isinstance(target, DTensor):
                    local = target.to_local()
                    a, b = _rows(target.shape[0], ctx)
                    rows = f.get_slice(name)[a:b]
                    if tuple(rows.shape) != tuple(local.shape):  # another placement: take it from the full tensor
                        from torch.distributed.tensor import distribute_tensor

                        full = f.get_tensor(name).to(local.dtype)
                        rows = distribute_tensor(full, target.device_mesh, target.placements, src_data_rank=None).to_local()
                    local.copy_(rows.to(local.dtype))
                else:
                    target.copy_(f.get_tensor(name).to(target.dtype))


def build_model(spec: str, ctx: Dist, bf16: bool = False, cpu_offload: bool = False):
    """The ``PFVGModel`` a training config names, sharded over the ranks.

    - a PFVG bundle folder: the DiT is built on the meta device, sharded, then each rank reads its own rows
      of ``dit.safetensors`` (``load_sharded``); the small modules load whole (replicated);
    - ``random:<config>``: built and seeded exactly as in one process (on the CPU), then sharded."""
    from .backbone import build_dit
    from .model import BUNDLE_FILE, PFVGModel, check_bundle_config, resolve_model

    if spec.startswith("random:") or spec == "default":
        return shard_model(resolve_model(spec, device="cpu"), ctx, bf16, cpu_offload)
    from .checkpoint import CheckpointError

    cfg_path = os.path.join(spec, BUNDLE_FILE)
    if not os.path.isfile(cfg_path):
        raise CheckpointError(f"{spec}: not a PFVG model folder (no {BUNDLE_FILE})")
    with open(cfg_path) as f:
        cfg = json.load(f)
    check_bundle_config(cfg, cfg_path)
    dit = build_dit(cfg["dit"], device="meta")
    shard_dit(dit, ctx, bf16, cpu_offload)
    dit.to_empty(device="cpu" if cpu_offload else ctx.device)
    load_sharded(dit, os.path.join(spec, "dit.safetensors"), ctx)
    small = PFVGModel.load_parts(spec, cfg, torch.float32, ctx.device)
    model = PFVGModel(dit, *small, cfg.get("meta"))
    return model.eval()


# --- the optimizer step --------------------------------------------------------------------------
def sync_replicated_grads(ctx: Dist, params: list[torch.nn.Parameter]) -> None:
    """Sum the gradients of the replicated (not sharded) trainable parameters over the ranks, in one flat
    all-reduce (FSDP already reduce-scattered the DiT's during backward). A parameter no rank used keeps
    ``grad = None`` (AdamW then skips it, as in one process)."""
    plain = [p for p in params if not isinstance(p, DTensor)]
    if not plain:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float().to(ctx.device)
                      for p in plain] + [torch.tensor([float(p.grad is not None) for p in plain], device=ctx.device)])
    dist.all_reduce(flat)
    used = flat[-len(plain):].cpu().tolist()
    i = 0
    for p, u in zip(plain, used):
        n = p.numel()
        p.grad = flat[i : i + n].view_as(p).to(p.dtype).to(p.device) if u else None
        i += n


def adamw(params: list[torch.nn.Parameter], **kw) -> torch.optim.AdamW:
    """AdamW with the sharded (DTensor) and the replicated parameters in two groups: the foreach kernels
    (the default on CUDA, forced here so the CPU tests run the same code) refuse lists that mix both."""
    sharded = [p for p in params if isinstance(p, DTensor)]
    plain = [p for p in params if not isinstance(p, DTensor)]
    return torch.optim.AdamW([{"params": g} for g in (sharded, plain) if g], foreach=True, **kw)


def clip_grad_norm_(ctx: Dist, params: list[torch.nn.Parameter], max_norm: float) -> float:
    """``torch.nn.utils.clip_grad_norm_`` over sharded (DTensor) and replicated gradients: the squared norms
    of the local shards are summed over the ranks, the replicated ones (equal on every rank) added once."""
    sharded = [p.grad.to_local() for p in params if p.grad is not None and isinstance(p.grad, DTensor)]
    plain = [p.grad for p in params if p.grad is not None and not isinstance(p.grad, DTensor)]
    sq = torch.zeros((), dtype=torch.float64, device=ctx.device)
    for g in sharded:
        sq += g.double().pow(2).sum().to(ctx.device)
    dist.all_reduce(sq)
    for g in plain:
        sq += g.double().pow(2).sum().to(ctx.device)
    total = float(sq.sqrt())
    coef = min(1.0, max_norm / (total + 1e-6))
    if coef < 1.0:
        for g in sharded + plain:
            g.mul_(coef)
    return total


# --- checkpoints ---------------------------------------------------------------------------------
def _state(model, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    out = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        out["optim"] = get_optimizer_state_dict(model, optimizer)
    return out


def temp_folder(ctx: Dist, root: str, name: str) -> str:
    """A temporary checkpoint folder every rank agrees on (``atomic`` naming with rank 0's pid)."""
    pid = torch.tensor([os.getpid()], dtype=torch.int64, device=ctx.device)
    dist.broadcast(pid, 0)
    return os.path.join(root, f"{TMP_PREFIX}{int(pid)}-dcp-{name}")


def save_checkpoint(ctx: Dist, root: str, name: str, model, optimizer, meta: dict) -> str:
    """Every rank writes its shards of the model and optimizer state (``torch.distributed.checkpoint``) and
    its RNG into a temporary folder; rank 0 adds ``trainer.json`` (``meta``) and renames the folder to
    ``root/name``. Returns that folder (on every rank). ``root`` must be one folder all ranks see (on several
    nodes: a shared file system)."""
    import torch.distributed.checkpoint as dcp

    tmp = temp_folder(ctx, root, name)
    if ctx.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    dist.barrier()
    dcp.save(_state(model, optimizer), checkpoint_id=os.path.join(tmp, "dcp"))
    write_json(os.path.join(tmp, f"rng-{ctx.rank}.json"), {"torch": torch.get_rng_state().tolist()})
    dist.barrier()
    final = os.path.join(root, name)
    if ctx.rank == 0:
        write_json(os.path.join(tmp, "trainer.json"), {**meta, "format": "dcp", "world": ctx.world})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    dist.barrier()
    return final


def load_checkpoint(ctx: Dist, folder: str, model, optimizer=None) -> None:
    """Load a ``save_checkpoint`` folder into the (sharded) model and optimizer, whatever number of ranks
    wrote it (DCP reshards), and this rank's RNG (rank 0's when the run had fewer ranks)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    from .checkpoint import CheckpointError

    state = _state(model, optimizer)
    path = os.path.join(folder, "dcp")
    try:
        if optimizer is not None:  # parameters that had no gradient yet have no AdamW state: leave them without
            saved = set(dcp.FileSystemReader(path).read_metadata().state_dict_metadata)
            opt = state["optim"]["state"]
            for fqn in [k for k in opt if f"optim.state.{k}.step" not in saved]:
                del opt[fqn]
        dcp.load(state, checkpoint_id=path)
    except Exception as e:  # DCP raises many kinds (missing files, other keys or shapes)
        raise CheckpointError(f"{folder}/dcp: cannot load the sharded checkpoint into this model: "
                              f"{str(e).splitlines()[0][:300] if str(e) else type(e).__name__}") from e
    set_model_state_dict(model, state["model"])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, state["optim"], options=StateDictOptions(strict=False))
    rng = os.path.join(folder, f"rng-{ctx.rank}.json")
    if not os.path.isfile(rng):
        rng = os.path.join(folder, "rng-0.json")
    with open(rng) as f:
        torch.set_rng_state(torch.tensor(json.load(f)["torch"], dtype=torch.uint8))


def full_state_dict(model) -> dict[str, torch.Tensor]:
    """The whole model's weights gathered onto rank 0's CPU one tensor at a time (other ranks get {}):
    what the consolidated export writes. Every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
