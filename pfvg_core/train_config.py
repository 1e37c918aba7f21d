"""Training configuration (PFVG §4.1): the stages, every option of a run with its checks, the single-GPU memory plans
for a full-size DiT (``PLANS``), and the TOML reader (``load_config``). The loop that uses them is ``train.py``."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from dataclasses import InitVar, dataclass, field

import torch

from .backbone import resolve_device
from .forcing import make_strategy
from .framepack import Schedule
from .speed import COMPILE_MODES
from .state import MemoryConfig
from .validate import STAGE, TRAINING, check_fields, number


@dataclass
class StageConfig:
    name: str
    forcing: str = "teacher"
    params: str = "all"
    steps: int = 100  # optimizer steps
    lr: float | None = None  # default: TrainConfig.lr
    student_steps: int = 5

    def __post_init__(self):
        make_strategy(self.forcing)
        for k, lim in STAGE.items():  # finite, bounded (validate.py)
            setattr(self, k, number(f"stage {str(self.name)[:40]!r} option {k}", getattr(self, k), lim))


def paper_stages(stage1_steps: int = 100, stage2_steps: int = 50) -> list[StageConfig]:
    """PFVG §4.1: stage 1 teacher forcing on the whole net; stage 2 Direct Forcing on the output layers."""
    return [StageConfig("stage1-teacher", "teacher", "all", stage1_steps),
            StageConfig("stage2-direct", "direct", "last-layers+semanticpack", stage2_steps)]


@dataclass
class TrainConfig:
    model: str = "random:tiny"  # a PFVG model folder, or random:<config>
    data: str = "data"
    out: str = "runs/train"
    stages: list[StageConfig] = field(default_factory=paper_stages)
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0
    seed: int = 0
    t_dist: str = "logit_normal"
    shift: float = 1.0
    motion_weight: float = 0.0  # > 0: the flow loss weighted to the latents that change (``train.motion_weights``)
    guidance: float = 10.0
    window: int = 9
    schedule: str = "td_f16k4f2k2f1k1"
    rope: str = "video"
    memory_mode: str = "on"  # on | off | zero (MemoryConfig.memory_mode)
    accumulate: str | int = "video"  # "video" or every N clips
    videos_per_step: int = 1  # global batch of videos per optimizer step
    video_batch: int = 1  # videos stacked in one forward pass ([B, ...]; clips cut to the shortest of them)
    max_clips: int | None = None  # cap clips per video (None: all)
    save_every: int = 50  # optimizer steps between checkpoints
    keep_checkpoints: int = 2
    open_gate: float = 0.0  # log-weight a closed SemanticPack gate opens to when it trains (0: plain context, as the paper)
    log: str = "train_log.jsonl"
    device: str = "auto"  # auto (CUDA when there is one) | cpu | cuda | cuda:N
    amp: str = "off"  # off | bf16 (autocast on the forward passes) | auto (bf16 on CUDA, off on CPU)
    compile: str = "off"  # off | blocks: torch.compile of the DiT's repeated blocks (``speed.compile_blocks``)
    psi_bptt: int = 1  # ψ updates a loss backpropagates through (1: only the last, as PFVG A.2; k: truncated BPTT)
    # memory plan for big models (FramePack-F1; docs/training.md):
    plan: str = "none"  # none | 80gb | 24gb: presets of the four options below (PLANS)
    base_dtype: str = "auto"  # frozen weights: auto (bf16 for a full-size DiT, else float32) | float32 | bfloat16
    base_storage: str = "compute"  # compute | fp8_e4m3fn | fp8_e5m2: frozen matmul weights stored in fp8
    offload: str = "none"  # none | group: DiT blocks rest on the CPU, moved in for each forward and recomputation
    gradient_checkpointing: str = "auto"  # auto (on for a full-size DiT) | on | off
    whole_net_stages: str = "auto"  # auto: stages training the whole DiT are skipped for a full-size DiT in one process
    cpu_offload: bool = False  # under torchrun: FSDP keeps the sharded weights, gradients and AdamW state in host memory
    memory: InitVar[str | None] = None  # deprecated alias of memory_mode (same values)

    def __post_init__(self, memory: str | None = None):
        if memory is not None:
            self.memory_mode = _memory_alias(memory, self.memory_mode, "TrainConfig")
        for k, lim in TRAINING.items():  # finite, bounded (validate.py)
            setattr(self, k, number(f"training option {k}", getattr(self, k), lim))
        if not isinstance(self.stages, list):
            raise ValueError(f"stages: expected a list of stages ([[stage]] tables), got {type(self.stages).__name__}")
        self.stages = [s if isinstance(s, StageConfig) else _build(StageConfig, s, "stage") for s in self.stages]
        if not self.stages:
            raise ValueError("at least one stage is needed")
        if self.t_dist not in ("uniform", "logit_normal"):
            raise ValueError(f"t_dist must be 'uniform' or 'logit_normal', got {self.t_dist!r}")
        if not (isinstance(self.accumulate, int) and self.accumulate >= 1) and self.accumulate != "video":
            raise ValueError(f"accumulate must be 'video' or a positive number of clips, got {self.accumulate!r}")
        if self.videos_per_step < 1 or self.save_every < 1:
            raise ValueError("videos_per_step and save_every must be ≥ 1")
        if self.video_batch < 1 or self.videos_per_step % self.video_batch:
            raise ValueError(f"video_batch must be ≥ 1 and divide videos_per_step ({self.videos_per_step}), got {self.video_batch}")
        if self.accumulate != "video" and self.videos_per_step != self.video_batch:
            raise ValueError("accumulate by clips needs videos_per_step = video_batch (one forward batch per step)")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.amp not in ("off", "bf16", "auto"):
            raise ValueError(f"amp must be 'off', 'bf16' or 'auto', got {self.amp!r}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")
        if self.psi_bptt < 1:
            raise ValueError(f"psi_bptt must be ≥ 1, got {self.psi_bptt}")
        if self.plan not in PLANS:
            raise ValueError(f"plan must be one of {sorted(PLANS)}, got {self.plan!r}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for k, v in PLANS[self.plan].items():
            if getattr(self, k) not in (v, defaults[k]):
                raise ValueError(f"plan {self.plan!r} sets {k} = {v!r}, but the config gives {getattr(self, k)!r}: "
                                 "drop one of them (docs/training.md: memory plans)")
            setattr(self, k, v)
        for k, allowed in (("base_dtype", ("auto", "float32", "bfloat16")), ("base_storage", ("compute", "fp8_e4m3fn", "fp8_e5m2")),
                           ("offload", ("none", "group")), ("gradient_checkpointing", ("auto", "on", "off")),
                           ("whole_net_stages", ("auto", "on"))):
            if getattr(self, k) not in allowed:
                raise ValueError(f"{k} must be one of {allowed}, got {getattr(self, k)!r}")
        self.memory_config()  # validates window, schedule, rope, memory_mode

    def memory_config(self) -> MemoryConfig:
        return MemoryConfig(window=self.window, schedule=Schedule.parse(self.schedule), rope=self.rope, memory_mode=self.memory_mode)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def torch_device(self) -> torch.device:
        """``auto``: the first CUDA device when there is one, else the CPU (``backbone.resolve_device``)."""
        return resolve_device(self.device)

    def autocast(self, device: torch.device, force: bool = False):
        """bf16 autocast of the forward passes when asked (``auto``: on CUDA only; ``force``: a bf16 base with
        fp32 trainable weights needs it); the loss stays fp32."""
        on = force or self.amp == "bf16" or (self.amp == "auto" and device.type == "cuda")
        return torch.autocast(device.type, dtype=torch.bfloat16) if on else contextlib.nullcontext()


# Single-GPU memory plans for stage 2 of a full-size DiT (figures: docs/training.md, ``bench train-f1``).
PLANS = {
    "none": {},
    "80gb": dict(base_dtype="bfloat16", base_storage="compute", offload="none", gradient_checkpointing="on"),
    "24gb": dict(base_dtype="bfloat16", base_storage="fp8_e4m3fn", offload="group", gradient_checkpointing="on"),
}
FULL_SIZE_PARAMS = 1_000_000_000  # a DiT this big is "full size": bf16 base, checkpointing, no whole-net stage alone


def _memory_alias(memory, memory_mode, where: str):
    """The old option name ``memory`` (a memory *mode*: on, off, zero) maps to ``memory_mode``."""
    if memory_mode not in (None, "on") and memory != memory_mode:
        raise ValueError(f"{where}: give memory_mode only (memory is its deprecated alias), got memory={memory!r} "
                         f"and memory_mode={memory_mode!r}")
    warnings.warn(f"{where}: option 'memory' is deprecated, use 'memory_mode' (same values: on, off, zero)",
                  DeprecationWarning, stacklevel=3)
    return memory


def _build(cls, data: dict, what: str):
    check_fields(cls, data, what)  # known names and annotated types (validate.py)
    try:
        return cls(**data)
    except TypeError as e:
        raise ValueError(f"invalid {what} options: {e}") from e


def load_config(path: str) -> TrainConfig:
    """Read a TOML (or YAML, if PyYAML is installed) training config; unknown options are errors."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"training config not found: {path}")
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError as e:
            raise ValueError(f"{path}: YAML configs need PyYAML (pip install pyyaml), or use TOML") from e
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        with open(path, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"{path}: invalid TOML: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a table of options, got {type(data).__name__}")
    if "stage" in data:  # [[stage]] tables
        data["stages"] = data.pop("stage")
    if "memory" in data:  # configs written before memory_mode
        data["memory_mode"] = _memory_alias(data.pop("memory"), data.get("memory_mode"), path)
    check_fields(TrainConfig, data, "training")
    base = os.path.dirname(os.path.abspath(path))
    for key in ("data", "out"):
        if key in data and not os.path.isabs(data[key]):
            data[key] = os.path.join(base, data[key])
    if "model" in data and not data["model"].startswith("random:") and not os.path.isabs(data["model"]):
        data["model"] = os.path.join(base, data["model"])
    return _build(TrainConfig, data, "training")


def _shared_config(config: TrainConfig) -> dict:
    """The options every rank must agree on: all but the paths, which may differ from node to node
    (the data itself is compared separately)."""
    return {k: v for k, v in config.to_dict().items() if k not in ("data", "out") and not (k == "model" and os.path.isdir(v))}
