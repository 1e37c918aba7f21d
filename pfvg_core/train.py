"""Training: chronological clips, forcing strategies, curriculum, stages, checkpoints, distributed.

PFVG §3.2 "Optimization Strategy" and appendix A.2:
- the clips of one video are visited in order; clip i is conditioned on the history the forcing
  strategy gives for clip i − 1 (teacher / Direct / Student), and ψ is carried across the clips
  (ψᵢ = Squeeze(ψᵢ₋₁, Memorize(history))), as at inference;
- gradients accumulate over a video's clips; the optimizer steps once per video (or per N clips);
- curriculum: videos ordered by number of clips, single-clip videos first;
- stages: stage 1 teacher forcing on the whole net, stage 2 Direct Forcing on the final norm and
  output layers (+ SemanticPack).

Loss: flow matching MSE ‖v_θ(x_t, t) − (x − ε)‖² (eq. 5), t from a configurable distribution and shift.
Every random draw comes from a generator seeded by (seed, stage, step, video, clip), so a resumed
run draws exactly what an uninterrupted one would.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from typing import Callable

import torch

from . import distributed, flow
from .atomic import atomic_dir, clean_stale, is_temp, write_json, write_text
from .checkpoint import CheckpointError, read_safetensors, save_safetensors_atomic
from .data import LatentDataset, step_order
from .forcing import make_strategy, sample_t
from .loop import Cancelled, segment_context, velocity
from .model import Conditioning, PFVGModel, stack_prompts
from .speed import compile_blocks
from .state import init_state, step

# configuration and model placement live beside the loop (re-exported: ``from pfvg_core.train import TrainConfig``)
from .train_config import (FULL_SIZE_PARAMS, PLANS, StageConfig, TrainConfig, _build, _memory_alias,  # noqa: F401,E402
                           _shared_config, load_config, paper_stages)
from .train_placement import (_check_dataset_fits, _skip_whole_net_stages, load_training_model,  # noqa: F401,E402
                              save_model, trainable_in_fp32, with_block_offload)

PARAM_GROUPS = ("all", "last-layers", "semanticpack", "dit", "encoders")


def select_parameters(model: PFVGModel, groups: str) -> list[torch.nn.Parameter]:
    """Parameter groups joined with '+': ``all`` (everything but the codec), ``dit``, ``last-layers``
    (the final norm's ``norm_out.linear`` and ``proj_out``: PFVG §4.1 stage 2), ``semanticpack``,
    ``encoders`` (text and image). Sets requires_grad accordingly; returns the selected list."""
    names = [g.strip() for g in groups.split("+") if g.strip()]
    for g in names:
        if g not in PARAM_GROUPS:
            raise ValueError(f"parameter group {g!r}: expected {' | '.join(PARAM_GROUPS)} joined with '+'")
    chosen: dict[int, torch.nn.Parameter] = {}

    def add(module):
        if module is not None:
            for p in module.parameters():
                chosen[id(p)] = p

    for g in names:
        if g in ("all", "dit"):
            add(model.dit)
        if g in ("all", "semanticpack"):
            if model.semanticpack is None and g == "semanticpack":
                raise ValueError("parameter group 'semanticpack': this model has no SemanticPack")
            add(model.semanticpack)
        if g in ("all", "encoders"):
            add(model.text_encoder)
            add(model.image_encoder)
        if g == "last-layers":
            add(model.dit.norm_out.linear)
            add(model.dit.proj_out)
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    if not chosen:
        raise ValueError(f"parameter groups {groups!r} select no parameters")
    return [p for p in model.parameters() if id(p) in chosen]


def motion_weights(clip: torch.Tensor, previous: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-location loss weights [B, 1, W, H, W] that pay for what moves: 1 + ``strength`` · d / mean(d), with
    d = |x_k − x_{k−1}| (channel mean) between each latent frame of the clip and the one before it (``previous``
    [B, C, 1, H, W]: the last frame before the clip). A plain flow loss is dominated by the still background:
    copying the last frame already scores well, so the gradient for continuing a camera pan or a sprite's path is
    a few percent of it. Weighted, the locations that change carry ``strength``× more of the loss (as the codec's
    loss weights sprite pixels). Computed from the latents alone: any dataset, no labels. Mean weight per video 1 + strength."""
    frames = torch.cat([previous.to(clip.dtype), clip], dim=2)
    d = (frames[:, :, 1:] - frames[:, :, :-1]).abs().mean(1, keepdim=True)
    return 1 + strength * d / d.mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-6)


def flow_matching_loss(model: PFVGModel, ctx, clip: torch.Tensor, cond: Conditioning, generator: torch.Generator,
                       t_dist: str, shift: float, guidance: float | None, return_forward: bool = False,
                       motion_weight: float = 0.0, previous: torch.Tensor | None = None):
    """Eq. 5: E‖v_θ(x_t, t) − (x − ε)‖² for one clip [B, C, W, H, W] in its context.
    ``motion_weight`` > 0 (with ``previous``, the latent frame before the clip): the squared error weighted by
    ``motion_weights`` and normalised by the weights' sum (0: the paper's plain MSE).
    ``return_forward``: also return (x_t, t, v_θ) — Direct Forcing's eq. 7 reuses them."""
    b = clip.shape[0]
    t = sample_t(b, generator, t_dist, shift).to(clip.device)
    noise = torch.randn(clip.shape, generator=generator).to(clip.device)
    x_t = flow.interpolate(clip, noise, t)
    v = velocity(model, ctx, x_t, t, cond, guidance)
    target = flow.target_velocity(clip, noise).float()
    if motion_weight > 0:
        if previous is None:
            raise ValueError("motion_weight > 0 needs the latent frame before the clip (previous)")
        w = motion_weights(clip.float(), previous.float(), motion_weight).expand_as(target)
        loss = ((v.float() - target) ** 2 * w).sum() / w.sum()
    else:
        loss = torch.nn.functional.mse_loss(v, target)
    return (loss, (x_t, t, v)) if return_forward else loss


# --- the trainer -------------------------------------------------------------------------------
@dataclass
class Position:
    """Where training is: stage, optimizer steps done in it, next video in the curriculum cycle."""

    stage: int = 0
    step: int = 0
    cursor: int = 0
    global_step: int = 0


def _seed(*parts: int) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") & (2**63 - 1)


class Trainer:
    def __init__(self, config: TrainConfig, model: PFVGModel | None = None, dataset: LatentDataset | None = None):
        self.cfg = config
        self.dist = distributed.current(config.device)  # None in one process; under torchrun the DiT is FSDP-sharded
        self.rank = self.dist.rank if self.dist else 0
        self.world = self.dist.world if self.dist else 1
        if config.videos_per_step % (self.world * config.video_batch):
            raise ValueError(f"videos_per_step {config.videos_per_step} must be a multiple of the {self.world} processes "
                             f"× video_batch {config.video_batch}")
        if self.world > 1 and config.accumulate != "video":
            raise ValueError("distributed training accumulates per video (accumulate = 'video')")
        if self.dist is not None:  # FSDP2: sharded (meta init + sharded loading for a model folder), bf16 policy with amp
            self.device = self.dist.device
            bf16 = config.amp == "bf16" or (config.amp == "auto" and self.device.type == "cuda")
            self.model = (distributed.shard_model(model, self.dist, bf16, config.cpu_offload) if model is not None
                          else distributed.build_model(config.model, self.dist, bf16, config.cpu_offload))
        else:
            self.device = config.torch_device()
            if model is None:
                model = load_training_model(config, self.device)
            elif config.offload == "none" and model.device != self.device:  # (a block-offloaded DiT stays as placed)
                model = model.to(self.device)
            self.model = model
        model = self.model
        if self.dist is not None and (config.plan != "none" or config.offload != "none" or config.base_storage != "compute"):
            raise ValueError("plan, offload and base_storage are single-GPU memory plans: under torchrun FSDP shards the "
                             "model instead (cpu_offload moves its shards to the host); remove them from the config")
        if any(getattr(m, "_diffusers_hook", None) is not None and m._diffusers_hook.get_hook("group_offloading") is not None
               for m in model.dit.modules()):
            raise ValueError("this model uses diffusers' group offload (Load Packed DiT offload = group), which moves a block "
                             "out right after its forward; training recomputes blocks in the backward pass: load it with "
                             "offload none, or use the training config's offload = 'group' (a block offload made for training)")
        self.full_size = sum(p.numel() for p in model.dit.parameters()) >= FULL_SIZE_PARAMS
        config = self.cfg = _skip_whole_net_stages(config, self.full_size, self.world)
        on = config.gradient_checkpointing == "on" or (config.gradient_checkpointing == "auto" and self.full_size)
        if getattr(model.dit, "_pfvg_block_offload", None) is not None and not on:
            raise ValueError("offload = 'group' needs gradient_checkpointing (a block's backward runs after its "
                             "recomputation, which brings its weights back): set gradient_checkpointing = 'on'")
        model.set_gradient_checkpointing(on)
        self.checkpointing = on
        if config.compile != "off":  # launch-bound small models: fused kernels, fewer launches
            # a video's clips backpropagate through graphs kept across clips (the encoders' features, ψ's truncated
            # BPTT: retain_graph), which compiled backwards with donated buffers refuse: keep the buffers
            import torch._functorch.config as functorch_config

            functorch_config.donated_buffer = False
            compile_blocks(model, config.compile)
        self.data = dataset if dataset is not None else LatentDataset(config.data)
        _check_dataset_fits(model, self.data)
        if "latent_scale" in (self.data.meta(0) if len(self.data) else {}):
            model.meta.setdefault("window", config.window)  # generation then uses the trained segment length
        if "rope" in model.meta:  # the bundle records the RoPE layout it was trained with (F1 as published: local)
            model.meta["rope"] = config.rope
        self.order = step_order(self.data, config.window, config.videos_per_step, config.max_clips)
        if not self.order:
            raise ValueError(f"no video in {config.data} has a complete clip of {config.window} latent frames after the start frame")
        if self.dist is not None:  # ranks that disagree would hang in FSDP's collectives: refuse before the first one
            distributed.check_same(self.dist, {"config": _shared_config(config), "data": self._data_listing()})
        self.memory_config = config.memory_config()  # the memory layout of every video's state
        self.pos = Position()
        self.optimizer = None
        self.scheduler = None
        self._saved_step = -1  # global step of the last checkpoint written or resumed
        self._consistent = True  # False while the optimizer updates the weights
        if self.rank == 0:  # temporary files of a killed run (atomic.py) are skipped and removed
            for d in (config.out, self._ckpt_root(), os.path.join(config.out, "model")):
                clean_stale(d)
        self._setup_stage()

    # stage setup -------------------------------------------------------------------------------
    @property
    def stage(self) -> StageConfig:
        return self.cfg.stages[self.pos.stage]

    def _setup_stage(self) -> None:
        st = self.stage
        params = select_parameters(self.model, st.params)
        offload = getattr(self.model.dit, "_pfvg_block_offload", None)
        if offload is not None:
            offload.check_frozen()
        trainable_in_fp32(self.model, params)
        base = self.model.meta.get("base")
        if isinstance(base, dict):  # a DiT on referenced base weights: remember which of its tensors train
            names = {n for n, p in self.model.dit.named_parameters() if p.requires_grad}
            base["trained_dit"] = sorted(names | set(base.get("trained_dit") or ()))
        self.amp = self.cfg.autocast(self.device, force=self.model.dtype != torch.float32)
        sp = self.model.semanticpack
        self.train_psi = sp is not None and any(p.requires_grad for p in sp.parameters())
        if self.train_psi and not sp.gate_open:
            sp.open_gate(self.cfg.open_gate)
        self.model.train()
        lr = st.lr if st.lr is not None else self.cfg.lr
        if self.dist is not None:  # sharded and replicated parameters in separate groups (foreach kernels)
            self.optimizer = distributed.adamw(params, lr=lr, weight_decay=self.cfg.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=self.cfg.weight_decay)
        w = self.cfg.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / w) if w else 1.0)
        self.strategy = make_strategy(st.forcing, st.student_steps)

    # one video ---------------------------------------------------------------------------------
    def _conditioning(self, prompts: list[str], start: torch.Tensor, videos=None, clip: int = 0) -> Conditioning:
        """The clip's conditioning: the dataset's cached features when it has them (F1: the prompt line active
        at the clip's start time), else the model's own encoders on the prompts and start latent."""
        if videos is not None and videos[0].features is not None:
            return cached_conditioning(videos, clip * self.cfg.window)
        m = self.model
        enc_train = any(p.requires_grad for mod in (m.text_encoder, m.image_encoder) if mod is not None for p in mod.parameters())
        if not enc_train:
            return m.conditioning(prompts[0] if len(prompts) == 1 else prompts, start)
        emb, mask, pooled = m.encode_prompt(prompts)
        return Conditioning(emb, mask, pooled, m.image_encoder(start))

    def train_video(self, vid: int | list[int], scale: float, step_every: int | None = None) -> list[float]:
        """Chronological clips of one video (or of a batch of videos, stacked as [B, ...] and cut to the
        shortest): loss on each clip, backward (accumulated), and the forcing strategy's history → the
        next clip's context. Returns the clip losses (each the mean over the batch)."""
        cfg, m = self.cfg, self.model
        vids = [vid] if isinstance(vid, int) else list(vid)
        videos = [self.data[v] for v in vids]
        n = min(v.num_clips(cfg.window) for v in videos)
        if cfg.max_clips:
            n = min(n, cfg.max_clips)
        start = torch.cat([v.start() for v in videos]).to(m.device)
        prompts = [v.prompt for v in videos]
        cond = self._conditioning(prompts, start, videos)
        state = init_state(m, start, cond, seed=0, config=self.memory_config, grad=self.train_psi)
        losses = []  # detached loss tensors: the host waits for the device once per video batch, not per clip
        amp = self.amp
        scheduled = videos[0].features is not None and any(len(v.prompts) > 1 for v in videos)
        k = cfg.psi_bptt if self.train_psi and state.psi is not None else 1
        previous = start  # the latent frame before clip i (the true one: the loss weights follow the data)
        for i in range(n):
            gen = torch.Generator().manual_seed(_seed(cfg.seed, self.pos.stage, self.pos.global_step, vids[0], i))
            clip = torch.cat([v.clip(i, cfg.window) for v in videos]).to(m.device)
            if scheduled and i > 0:
                cond = self._conditioning(prompts, start, videos, i)
            with amp:
                ctx = segment_context(m, state)
                loss, fwd = flow_matching_loss(m, ctx, clip, cond, gen, cfg.t_dist, cfg.shift, cfg.guidance, return_forward=True,
                                               motion_weight=cfg.motion_weight, previous=previous)
            # with truncated BPTT, later losses of the block backpropagate through this clip's ψ update again
            chained = k > 1 and (i + 1) % k != 0
            (loss * scale).backward(retain_graph=self._needs_retain(i, n) or (chained and i + 1 < n))
            losses.append(loss.detach())
            previous = clip[:, :, -1:]
            if step_every and (i + 1) % step_every == 0 and i + 1 < n:
                self._optimizer_step()
                # graphs built before the update refer to the old weights: rebuild / cut them
                cond = self._conditioning(prompts, start, videos, i)
                state = state.replace(psi=None if state.psi is None else state.psi.detach())
            if i + 1 < n:  # the context clip i was made from is also the one its stand-in is made from
                with amp:
                    hist = self.strategy.history(m, ctx, clip, cond, gen, cfg.guidance, cfg.t_dist, cfg.shift, forward=fwd)
                    new = step(m, state, hist, grad=self.train_psi)
                    if chained and state.psi is not None and state.psi.requires_grad:
                        # ψᵢ₊₁ = Squeeze(ψᵢ, Memorize(x̃ᵢ)) keeping ψᵢ's graph (``step`` cuts it): up to k updates deep
                        psi = m.semanticpack.update(state.psi, hist.detach().float().to(m.dtype), state.psi_mask)
                        new = new.replace(psi=psi)
                state = new
        return torch.stack(losses).float().tolist()

    def _needs_retain(self, i: int, n: int) -> bool:
        # encoder features are shared by every clip of the video: keep their graph until the last clip
        return any(p.requires_grad for mod in (self.model.text_encoder, self.model.image_encoder) if mod is not None
                   for p in mod.parameters()) and i + 1 < n

    def _optimizer_step(self) -> None:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.dist is not None:  # FSDP summed the DiT's gradients in backward; the replicated modules' now
            distributed.sync_replicated_grads(self.dist, params)
            if self.cfg.grad_clip:
                distributed.clip_grad_norm_(self.dist, params, self.cfg.grad_clip)
        elif self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self._consistent = False
        self.optimizer.step()
        self.scheduler.step()
        self._consistent = True
        self.optimizer.zero_grad(set_to_none=True)

    # the run -----------------------------------------------------------------------------------
    def total_steps(self) -> int:
        return sum(s.steps for s in self.cfg.stages)

    def run(self, on_step: Callable[[dict], None] | None = None, cancel: Callable[[], bool] | None = None,
            max_steps: int | None = None) -> Position:
        """Train from the current position to the end of the last stage (or ``max_steps`` more steps).

        Nothing finished is lost: when ``cancel`` returns True, or anything is raised (an interrupt
        raised inside ``on_step``, Ctrl-C, an error), the last finished optimizer step is saved as a
        checkpoint before the exception goes on (unless the weights were caught mid-update)."""
        try:
            return self._run(on_step, cancel, max_steps)
        except BaseException:
            # (under torchrun a save is a collective the other ranks may never join: rely on save_every there)
            if self.dist is None and self._consistent and self.pos.global_step > max(0, self._saved_step):
                try:
                    self.save_checkpoint()
                except Exception:  # e.g. disk full: the original error is the one to report
                    pass
            raise

    def _run(self, on_step, cancel, max_steps) -> Position:
        cfg = self.cfg
        done = 0
        g_local = cfg.videos_per_step // self.world
        step_every = cfg.accumulate if cfg.accumulate != "video" else None
        while self.pos.stage < len(cfg.stages):
            while self.pos.step < self.stage.steps:
                if max_steps is not None and done >= max_steps:
                    return self.pos
                if cancel is not None and cancel():
                    raise Cancelled(f"training cancelled at step {self.pos.global_step}")
                t0 = time.perf_counter()
                batch = [self.order[(self.pos.cursor + k) % len(self.order)] for k in range(cfg.videos_per_step)]
                mine = batch[self.rank * g_local : (self.rank + 1) * g_local]
                losses = []
                nb = cfg.video_batch
                for k in range(0, len(mine), nb):
                    chunk = mine[k : k + nb]
                    losses += self.train_video(chunk[0] if nb == 1 else chunk, nb / cfg.videos_per_step, step_every)
                self._optimizer_step()
                self.pos.cursor = (self.pos.cursor + cfg.videos_per_step) % len(self.order)
                self.pos.step += 1
                self.pos.global_step += 1
                done += 1
                mean = self._mean_loss(losses)
                rec = {"global_step": self.pos.global_step, "stage": self.stage.name, "step": self.pos.step,
                       "loss": mean, "clips": len(losses) * self.world * cfg.video_batch, "videos": [self.data.names[v] for v in batch],
                       "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 4)}
                self._log(rec)
                if self.pos.global_step % cfg.save_every == 0:
                    self.save_checkpoint()
                if on_step is not None:  # may raise (ComfyUI's interrupt): the step is logged, run() saves it
                    on_step(rec)
            self.pos.stage += 1
            self.pos.step = 0
            if self.pos.stage < len(cfg.stages):
                self._setup_stage()
        self.model.eval()
        self.model.refresh_id()
        state = distributed.full_state_dict(self.model) if self.dist is not None else None  # every rank gathers
        if self.rank == 0:
            with atomic_dir(os.path.join(cfg.out, "model")) as tmp:  # never half an old, half a new model
                save_model(self.model, tmp, state)
        if self.dist is not None:
            distributed.barrier(self.dist)  # every rank returns once the model is written
        self._saved_step = self.pos.global_step  # the finished model holds this step
        return self.pos

    def _mean_loss(self, losses: list[float]) -> float:
        if self.dist is None:
            return sum(losses) / max(1, len(losses))
        return distributed.mean_over_ranks(self.dist, sum(losses), len(losses))

    def _data_listing(self) -> list:
        """What decides every rank's work: the videos (name, latent frames) and the step order."""
        return [[(n, self.data.frames(i)) for i, n in enumerate(self.data.names)], self.order]

    def _log(self, rec: dict) -> None:
        if self.rank == 0:  # one line per write; a line cut by a kill is skipped by read_log
            os.makedirs(self.cfg.out, exist_ok=True)
            with open(os.path.join(self.cfg.out, self.cfg.log), "a") as f:
                f.write(json.dumps(rec) + "\n")

    # checkpoints -------------------------------------------------------------------------------
    def _ckpt_root(self) -> str:
        return os.path.join(self.cfg.out, "checkpoints")

    def save_checkpoint(self) -> str | None:
        """Model, SemanticPack, optimizer, LR scheduler, RNG and data position, written to a new
        folder and published by an atomic rename of the ``latest`` pointer."""
        if self.dist is not None:
            return self._save_sharded_checkpoint()
        if self.rank != 0:
            return None
        root = self._ckpt_root()
        os.makedirs(root, exist_ok=True)
        clean_stale(root)
        name = f"step-{self.pos.global_step:08d}"
        tmp = os.path.join(root, f".tmp-{os.getpid()}-{name}")
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save(os.path.join(tmp, "model"))
        opt = self.optimizer.state_dict()
        tensors = {f"state.{k}.{n}": v for k, s in opt["state"].items() for n, v in s.items() if torch.is_tensor(v)}
        save_safetensors_atomic(tensors or {"_empty": torch.zeros(1)}, os.path.join(tmp, "optimizer.safetensors"))
        meta = {
            "position": dataclasses.asdict(self.pos),
            "optimizer_groups": opt["param_groups"],
            "optimizer_scalars": {str(k): {n: v for n, v in s.items() if not torch.is_tensor(v)} for k, s in opt["state"].items()},
            "scheduler": {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"},
            "rng": {"torch": torch.get_rng_state().tolist()},
            "config": self.cfg.to_dict(),
        }
        write_json(os.path.join(tmp, "trainer.json"), meta)
        final = os.path.join(root, name)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_text(os.path.join(root, "latest"), name)
        self._saved_step = self.pos.global_step
        self._prune(root, name)
        return final

    def _save_sharded_checkpoint(self) -> str:
        """Under torchrun: every rank writes its shards (``distributed.save_checkpoint``, DCP); same folder
        naming, ``latest`` pointer and pruning as in one process."""
        root = self._ckpt_root()
        if self.rank == 0:
            os.makedirs(root, exist_ok=True)
            clean_stale(root)
        name = f"step-{self.pos.global_step:08d}"
        meta = {"position": dataclasses.asdict(self.pos), "config": self.cfg.to_dict(),
                "scheduler": {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"}}
        final = distributed.save_checkpoint(self.dist, root, name, self.model, self.optimizer, meta)
        if self.rank == 0:
            write_text(os.path.join(root, "latest"), name)
            self._prune(root, name)
        self._saved_step = self.pos.global_step
        return final

    def _prune(self, root: str, latest: str) -> None:
        """Keep ``keep_checkpoints`` checkpoints by step number, always the one ``latest`` names;
        folders of later steps than ``latest`` (left by an older run) are removed."""
        def step_of(d):
            return int(d[5:]) if d[5:].isdigit() else -1

        cur = step_of(latest)
        older = sorted((d for d in os.listdir(root) if d.startswith("step-") and d != latest and 0 <= step_of(d) < cur),
                       key=step_of)
        later = [d for d in os.listdir(root) if d.startswith("step-") and d != latest and step_of(d) > cur]
        drop = later + (older[: len(older) - (self.cfg.keep_checkpoints - 1)] if self.cfg.keep_checkpoints > 1 else older)
        for d in drop:
            shutil.rmtree(os.path.join(root, d), ignore_errors=True)

    def existing_run(self) -> list[str]:
        """What an earlier run left in ``out``: its log, model and checkpoints (those present)."""
        return [n for n in (self.cfg.log, "model", "checkpoints") if os.path.exists(os.path.join(self.cfg.out, n))]

    def start_fresh(self) -> str | None:
        """Begin a clean run in ``out``: the previous run's log, model and checkpoints are moved into
        ``out/previous/<time>`` (nothing is deleted, nothing is mixed in). Returns that folder, or None."""
        if self.rank != 0:
            return None
        out = self.cfg.out
        old = self.existing_run()
        if not old:
            return None
        dest = os.path.join(out, "previous", time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
        k = 1
        while os.path.exists(dest):
            dest = os.path.join(out, "previous", time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{k}")
            k += 1
        os.makedirs(dest)
        for n in old:
            os.replace(os.path.join(out, n), os.path.join(dest, n))
        return dest

    def _latest_folder(self) -> str | None:
        """The folder ``latest`` names if it is complete, else the newest complete checkpoint."""
        root = self._ckpt_root()
        ptr = os.path.join(root, "latest")
        if not os.path.isfile(ptr):
            return None
        with open(ptr) as f:
            name = f.read().strip()
        complete = sorted(d for d in os.listdir(root) if d.startswith("step-") and not is_temp(d)
                          and os.path.isfile(os.path.join(root, d, "trainer.json")))
        if name in complete:
            return os.path.join(root, name)
        if complete:
            return os.path.join(root, complete[-1])
        raise CheckpointError(f"{ptr} names {name[:80]!r}, but no complete checkpoint is in {root}: "
                              "start over with --fresh (the old files are kept aside)")

    def resume(self) -> bool:
        """Continue from the latest checkpoint under ``out``, if any. The log is cut back to it."""
        folder = self._latest_folder()
        if self.dist is not None:  # every rank resumes the same checkpoint (one shared `out`) or none
            distributed.check_same(self.dist, {"checkpoint": os.path.basename(folder) if folder else None})
        if folder is None:
            return False
        try:
            with open(os.path.join(folder, "trainer.json")) as f:
                meta = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{folder}/trainer.json: unreadable checkpoint state: {e}") from e
        if (meta.get("format") == "dcp") != (self.dist is not None):
            raise CheckpointError(f"{folder}: a {'sharded (torchrun)' if meta.get('format') == 'dcp' else 'single-process'} "
                                  f"checkpoint, but this run is {'distributed' if self.dist else 'one process'}: resume it "
                                  "the way it was written, or start over with --fresh (the old run is kept aside)")
        if self.dist is not None:
            return self._resume_sharded(folder, meta)
        self.model.load_weights(os.path.join(folder, "model"))  # in place: a frozen base is not read again
        with open(os.path.join(folder, "model", "pfvg.json")) as f:  # what earlier stages trained stays recorded
            saved = ((json.load(f).get("meta") or {}).get("base") or {}).get("trained_dit")
        base = self.model.meta.get("base")
        if saved and isinstance(base, dict):
            base["trained_dit"] = sorted(set(saved) | set(base.get("trained_dit") or ()))
        self.pos = Position(**meta["position"])
        self._saved_step = self.pos.global_step
        if self.pos.stage >= len(self.cfg.stages):
            return True
        self._setup_stage()
        tensors = read_safetensors(os.path.join(folder, "optimizer.safetensors"), "optimizer state")
        state: dict = {}
        for k, scalars in meta["optimizer_scalars"].items():
            state[int(k)] = dict(scalars)
        for key, v in tensors.items():
            if key == "_empty":
                continue
            _, k, n = key.split(".", 2)
            state.setdefault(int(k), {})[n] = v
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_groups"]})
        sched = self.scheduler.state_dict()
        sched.update(meta["scheduler"])
        self.scheduler.load_state_dict(sched)
        torch.set_rng_state(torch.tensor(meta["rng"]["torch"], dtype=torch.uint8))
        self._truncate_log(self.pos.global_step)
        return True

    def _resume_sharded(self, folder: str, meta: dict) -> bool:
        """DCP load into the sharded model and the stage's optimizer (any number of ranks; DCP reshards)."""
        self.pos = Position(**meta["position"])
        self._saved_step = self.pos.global_step
        if self.pos.stage >= len(self.cfg.stages):
            distributed.load_checkpoint(self.dist, folder, self.model)
            return True
        self._setup_stage()
        distributed.load_checkpoint(self.dist, folder, self.model, self.optimizer)
        sched = self.scheduler.state_dict()
        sched.update(meta["scheduler"])
        self.scheduler.load_state_dict(sched)
        self._truncate_log(self.pos.global_step)
        return True

    def _truncate_log(self, upto: int) -> None:
        path = os.path.join(self.cfg.out, self.cfg.log)
        if self.rank != 0 or not os.path.isfile(path):
            return
        keep = [json.dumps(r) + "\n" for r in read_log(self.cfg.out, self.cfg.log) if r["global_step"] <= upto]
        write_text(path, "".join(keep))


def cached_conditioning(videos, latent_offset: int) -> Conditioning:
    """Conditioning of a batch of cached-feature videos at the clip starting ``latent_offset`` latent frames after
    the start frame: each video's prompt line active at that time, its start frame's SigLIP features."""
    rows = []
    for v in videos:
        k = v.prompt_line(latent_offset * v.temporal_factor / v.fps)
        f = v.features
        rows.append((f[f"prompt_embeds.{k}"], f[f"prompt_mask.{k}"].bool(), f[f"pooled.{k}"], f["image_embeds"]))
    emb, mask = stack_prompts([r[0] for r in rows], [r[1] for r in rows])  # other lengths: padded, masked out
    pooled, image = torch.stack([r[2] for r in rows]), torch.stack([r[3] for r in rows])
    return Conditioning(emb, mask, pooled, image)


def read_log(out: str, log: str = "train_log.jsonl") -> list[dict]:
    """The training log's records; a line cut short by a kill mid-write is skipped."""
    records = []
    with open(os.path.join(out, log)) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "global_step" in rec:
                records.append(rec)
    return records
