"""The precision and device policy of training: autocast dtype, loss scaling, memory format,
and the module that trains (device, channels_last, DDP, SyncBN, torch.compile).

One place for these choices: the training loop, ``pose.train`` and ``pose.eval`` ask here.

The CPU defaults (``train.precision=auto``, ``train.channels_last=null``) follow measurements
(README, "Speed on the CPU"): bfloat16 autocast halves HRNet's training step where the CPU
computes bfloat16 natively (AMX or AVX512-BF16) and is several times slower than float32 where
it is emulated; channels_last (oneDNN's NHWC convolutions) is as fast or faster in both.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from pose.engine.distributed import DistributedContext
from pose.engine.logger import get_logger

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA) under which it has no bfloat16
# dot products: it then emulates bfloat16 convolutions in float32 after conversions.
_ONEDNN_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                             "AVX512_CORE_VNNI")
# Models that train faster in float32 than in bfloat16 even on a CPU with AMX: Lite-HRNet's
# depthwise convolutions and channel shuffles (README, "Training throughput": 9.9 img/s in
# float32 against 8.3 in bfloat16 on two AMX cores).
CPU_FLOAT32_MODELS = ("lite_hrnet",)


def cpu_bfloat16_support() -> tuple[bool, str]:
    """Whether this process computes bfloat16 natively on the CPU, and the reason in words.

    Native means: the CPU has AMX or AVX512-BF16, ATen dispatches its AVX-512 kernels (not
    capped by ``ATEN_CPU_CAPABILITY``, e.g. ``avx2`` to emulate an AVX2 CPU) and oneDNN is not
    capped below its bfloat16 ISAs by ``ONEDNN_MAX_CPU_ISA``.
    """
    has_amx, has_avx512_bf16 = torch.cpu._is_amx_tile_supported(), (
        torch.cpu._is_avx512_bf16_supported())
    if not (has_amx or has_avx512_bf16):
        return False, "this CPU has no native bfloat16 (AVX512-BF16 or AMX)"
    hardware = "AMX" if has_amx else "AVX512-BF16"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX512":
        return False, (f"the CPU has {hardware}, but ATen runs its {capability} kernels "
                       "(ATEN_CPU_CAPABILITY)")
    onednn_isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
                  or "").upper()
    if onednn_isa in _ONEDNN_ISAS_WITHOUT_BF16:
        return False, f"the CPU has {hardware}, but oneDNN is capped at {onednn_isa}"
    return True, f"the CPU has {hardware}"


def autocast_choice(precision: str, device: torch.device, model_name: str | None = None
                    ) -> tuple[torch.dtype | None, str]:
    """The autocast dtype of the forward pass for ``precision`` on ``device`` (None: float32),
    and why, in words (for the log).

    "auto": bfloat16 on CUDA (float16 on GPUs without bfloat16); on the CPU bfloat16 where it
    is native (:func:`cpu_bfloat16_support`) unless ``model_name`` starts with one of
    :data:`CPU_FLOAT32_MODELS`, else float32. "fp32": None. "bf16": bfloat16; a CPU without
    native bfloat16 would emulate it several times slower than float32, so there it falls back
    to float32. "fp16": float16 (its gradients need :func:`grad_scaler_for`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision={precision!r} is not known: expected one of "
                         f"{', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None, "train.precision=fp32"
    if precision == "fp16":
        return torch.float16, "train.precision=fp16"
    if device.type == "cuda":
        if precision == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16, f"train.precision={precision} on CUDA"
        return torch.float16, "train.precision=auto on a GPU without bfloat16"
    if device.type != "cpu":
        return (torch.bfloat16, "train.precision=bf16") if precision == "bf16" else (
            None, f"train.precision=auto on {device.type}")
    native, reason = cpu_bfloat16_support()
    if native and precision == "auto" and (model_name or "").startswith(CPU_FLOAT32_MODELS):
        return None, (f"train.precision=auto: float32, because {model_name} trains faster in "
                      f"float32 than in bfloat16 on the CPU (though {reason.removeprefix('the ')})")
    if native:
        return torch.bfloat16, f"train.precision={precision}: {reason}"
    return None, f"train.precision={precision}: float32, because {reason}"


def autocast_dtype(precision: str, device: torch.device, model_name: str | None = None
                   ) -> torch.dtype | None:
    """:func:`autocast_choice`'s dtype; warns when ``bf16`` was asked and falls back."""
    dtype, reason = autocast_choice(precision, device, model_name)
    if precision == "bf16" and dtype is None:
        get_logger().warning("%s (no native bfloat16), so training runs in float32", reason)
    return dtype


def grad_scaler_for(autocast: torch.dtype | None, device: torch.device
                    ) -> torch.amp.GradScaler | None:
    """A GradScaler for float16 autocast (float16 gradients underflow without loss scaling);
    None for float32 and bfloat16, whose exponent range is float32's."""
    if autocast is not torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


def channels_last_choice(channels_last: bool | None, device: torch.device) -> tuple[bool, str]:
    """``train.channels_last`` resolved, and why in words: None means on with CUDA (tensor
    cores) and on the CPU (oneDNN's NHWC convolutions trained HRNet and Lite-HRNet as fast or
    faster than NCHW, in float32 on AVX2 and AVX-512 and in bfloat16 on AMX), off elsewhere."""
    if channels_last is not None:
        return bool(channels_last), f"train.channels_last={str(bool(channels_last)).lower()}"
    chosen = device.type in ("cuda", "cpu")
    return chosen, f"train.channels_last=null: {'on' if chosen else 'off'} on {device.type}"


def use_channels_last(channels_last: bool | None, device: torch.device) -> bool:
    """``train.channels_last`` resolved (:func:`channels_last_choice`)."""
    return channels_last_choice(channels_last, device)[0]


def prepare_model(model: nn.Module, context: DistributedContext, *,
                  channels_last: bool | None = None, compile_model: bool = False,
                  sync_bn: bool = False, cudnn_benchmark: bool = True) -> nn.Module:
    """Move ``model`` to ``context.device`` in place and return the module to train with.

    ``channels_last``: NHWC weights, so activations follow from the first convolution on
    (faster convolutions with tensor cores and oneDNN); None: :func:`channels_last_choice`.
    ``sync_bn``: BatchNorm statistics over the whole distributed batch (CUDA only; ignored in a
    single process). Under DDP the returned module is the DistributedDataParallel wrapper;
    ``compile_model`` wraps it in ``torch.compile`` last. ``model`` itself stays the plain
    module: its state dict is what checkpoints hold, and it is what evaluation runs.
    ``cudnn_benchmark``: let cuDNN time its convolution algorithms for the shapes it meets (a
    process-wide setting; CUDA only).
    """
    device = context.device
    torch.backends.cudnn.benchmark = cudnn_benchmark
    model.to(device)
    if use_channels_last(channels_last, device):
        model.to(memory_format=torch.channels_last)
    train_model = model
    if context.enabled:
        if sync_bn:
            if device.type != "cuda":
                raise ValueError("train.sync_bn=true needs CUDA: torch's SyncBatchNorm does not "
                                 "run on the CPU")
            train_model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        train_model = nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile_model:
        train_model = torch.compile(train_model)
    return train_model
