"""The precision and device policy of training: autocast dtype, loss scaling, memory format,
and the module that trains (device, channels_last, DDP, SyncBN, torch.compile).

One place for these choices: the training loop, ``pose.train`` and ``pose.eval`` ask here.
"""

from __future__ import annotations

import torch
from torch import nn

from pose.engine.distributed import DistributedContext
from pose.engine.logger import get_logger

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the forward pass for ``precision`` on ``device`` (None: float32).

    "auto": bfloat16 on CUDA (float16 on GPUs without bfloat16), float32 on the CPU. "fp32":
    None. "bf16": bfloat16; a CPU without native bfloat16 (AVX512-BF16 or AMX) would emulate
    it several times slower than float32, so there it falls back to float32 with a warning.
    "fp16": float16 (its gradients need :func:`grad_scaler_for`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision={precision!r} is not known: expected one of "
                         f"{', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if device.type == "cpu" and not (torch.cpu._is_avx512_bf16_supported()
                                     or torch.cpu._is_amx_tile_supported()):
        get_logger().warning("train.precision=bf16: this CPU has no native bfloat16 "
                             "(AVX512-BF16 or AMX), so training runs in float32")
        return None
    return torch.bfloat16


def grad_scaler_for(autocast: torch.dtype | None, device: torch.device
                    ) -> torch.amp.GradScaler | None:
    """A GradScaler for float16 autocast (float16 gradients underflow without loss scaling);
    None for float32 and bfloat16, whose exponent range is float32's."""
    if autocast is not torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


def use_channels_last(channels_last: bool | None, device: torch.device) -> bool:
    """``train.channels_last`` resolved: None means on with CUDA, off on the CPU."""
    return device.type == "cuda" if channels_last is None else bool(channels_last)


def prepare_model(model: nn.Module, context: DistributedContext, *,
                  channels_last: bool | None = None, compile_model: bool = False,
                  sync_bn: bool = False, cudnn_benchmark: bool = True) -> nn.Module:
    """Move ``model`` to ``context.device`` in place and return the module to train with.

    ``channels_last``: NHWC weights, so activations follow from the first convolution on
    (faster convolutions with tensor cores and oneDNN); None: on for CUDA, off on the CPU.
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
