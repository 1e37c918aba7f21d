"""Loading to a device / dtype / storage: per-tensor reads, fp8 storage
with layerwise casting, published fp8 single files, clear errors. CPU only (CI)."""
import pytest
import torch
from safetensors.torch import save_file

from pfvg_core import checkpoint
from pfvg_core.backbone import (CONFIGS, build_dit, compute_dtype, execution_device, load_dit, resolve_device,
                                resolve_dtype, resolve_storage, save_dit)
from pfvg_core.checkpoint import CheckpointError
from pfvg_core.model import PFVGModel, load_embedded_model, resolve_model
from test_backbone import _dit_inputs


def _cast_inputs(inputs, dtype):
    return {k: (v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in inputs.items()}


def test_device_and_dtype_names_resolve_and_bad_ones_are_named():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype("float16") is torch.float16
    assert resolve_storage("fp8_e5m2") is torch.float8_e5m2
    assert resolve_storage("auto", torch.float8_e4m3fn) is torch.float8_e4m3fn
    assert resolve_storage("auto", torch.bfloat16) is None
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("int8")
    with pytest.raises(ValueError, match="storage"):
        resolve_storage("fp4")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_single_file_loads_per_tensor_without_reading_the_whole_file(tmp_path, monkeypatch):
    m = build_dit("tiny", seed=3)
    save_dit(m, str(tmp_path / "d.safetensors"))
    # the whole-file reader must not be used: each tensor is read on its own and cast on the target device
    monkeypatch.setattr(checkpoint, "load_file", lambda *a, **k: pytest.fail("whole-file read"))
    d = load_dit(str(tmp_path / "d.safetensors"), dtype="bf16", device="cpu")
    assert all(p.dtype == torch.bfloat16 for p in d.parameters())
    assert compute_dtype(d) is torch.bfloat16 and execution_device(d) == torch.device("cpu")
    inputs = _dit_inputs(CONFIGS["tiny"])
    with torch.no_grad():
        ref = m.to(torch.bfloat16)(**_cast_inputs(inputs, torch.bfloat16))[0]
        out = d(**_cast_inputs(inputs, torch.bfloat16))[0]
    assert torch.equal(ref, out)


def test_fp8_storage_casts_layerwise_and_stays_close_to_bf16(tmp_path):
    m = build_dit("tiny", seed=3)
    save_dit(m, str(tmp_path / "d.safetensors"))
    inputs = _cast_inputs(_dit_inputs(CONFIGS["tiny"]), torch.bfloat16)
    ref_model = load_dit(str(tmp_path / "d.safetensors"), dtype="bf16")
    for name, fp8 in (("fp8_e4m3fn", torch.float8_e4m3fn), ("fp8_e5m2", torch.float8_e5m2)):
        d = load_dit(str(tmp_path / "d.safetensors"), dtype="bf16", storage=name)
        dtypes = {n: p.dtype for n, p in d.named_parameters()}
        assert dtypes["transformer_blocks.0.attn.to_q.weight"] == fp8  # big matmuls stored in fp8
        assert dtypes["x_embedder.proj.weight"] == torch.bfloat16  # embedders and norms kept (diffusers' skip list)
        assert compute_dtype(d) is torch.bfloat16
        with torch.no_grad():
            ref, out = ref_model(**inputs)[0].float(), d(**inputs)[0].float()
        assert torch.isfinite(out).all()
        assert dtypes["transformer_blocks.0.attn.to_q.weight"] == fp8  # back to storage after the forward
        rel = (out - ref).norm() / ref.norm()
        assert 0 < rel < 0.25, rel  # fp8 rounding changes the output, but not much


def test_published_fp8_single_file_loads_as_it_is(tmp_path):
    """A FramePack-F1 fp8 file as people publish it: matmul weights in float8_e4m3fn, the rest bf16,
    optionally with ComfyUI's ``model.diffusion_model.`` prefix."""
    m = build_dit("tiny", seed=4)
    sd = {}
    for k, v in m.state_dict().items():
        v = v.to(torch.float8_e4m3fn) if (v.ndim == 2 and "norm" not in k and "embedder" not in k) else v.to(torch.bfloat16)
        sd["model.diffusion_model." + k] = v.contiguous()
    path = tmp_path / "FramePack_F1_I2V_HY_20250503_fp8_e4m3fn.safetensors"
    save_file(sd, str(path))
    d = load_dit(str(path), config="tiny", dtype="bf16")  # storage "auto": keeps the file's fp8
    q = dict(d.named_parameters())["transformer_blocks.0.attn.to_q.weight"]
    assert q.dtype == torch.float8_e4m3fn
    assert torch.equal(q, sd["model.diffusion_model.transformer_blocks.0.attn.to_q.weight"])  # bits unchanged
    with torch.no_grad():
        out = d(**_cast_inputs(_dit_inputs(CONFIGS["tiny"]), torch.bfloat16))[0]
    assert torch.isfinite(out).all()
    # the same file with compute storage: upcast to bf16 at load
    d2 = load_dit(str(path), config="tiny", dtype="bf16", storage="compute")
    assert dict(d2.named_parameters())["transformer_blocks.0.attn.to_q.weight"].dtype == torch.bfloat16


def test_scaled_fp8_and_foreign_files_give_clear_errors(tmp_path):
    m = build_dit("tiny", seed=4)
    sd = {k: v.contiguous() for k, v in m.state_dict().items()}
    sd["transformer_blocks.0.attn.to_q.scale_weight"] = torch.ones(1)
    save_file(sd, str(tmp_path / "scaled.safetensors"))
    with pytest.raises(CheckpointError, match="scaled-fp8"):
        load_dit(str(tmp_path / "scaled.safetensors"), config="tiny")
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_dit(str(tmp_path / "junk.safetensors"), config="tiny")


def test_group_offload_request_on_cpu_and_model_properties(tmp_path):
    model = PFVGModel.build("tiny", seed=0)
    model.save(str(tmp_path / "m"))
    loaded = PFVGModel.load(str(tmp_path / "m"), dtype="bf16", device="cpu", storage="fp8_e4m3fn", offload="group")
    assert loaded.dtype is torch.bfloat16 and loaded.device == torch.device("cpu")
    assert loaded.semanticpack.out_proj.weight.dtype is torch.bfloat16
    with pytest.raises(ValueError, match="offload"):
        PFVGModel.load(str(tmp_path / "m"), offload="disk")


def test_embedded_default_loads_on_cpu_as_before():
    a = load_embedded_model()
    b = resolve_model("default", device="cpu")
    assert a.dtype is torch.float32 and a.device == torch.device("cpu")
    assert a.model_id == b.model_id
    assert all(p.dtype == torch.float32 for p in a.parameters())
