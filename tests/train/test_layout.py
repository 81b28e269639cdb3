"""Channels-last training on CPU (issue #22): ``auto`` trains the model and feeds its batches
in channels-last on CPU and keeps the default layout elsewhere; the layout changes strides,
not values, so the checkpoint loads into a default-layout model with the same outputs."""

from __future__ import annotations

import pytest
import torch

from damo_core.models import build_model
from damo_core.models.checkpoint import load_checkpoint
from damo_core.settings import ConfigError
from damo_core.train import Trainer, load_train_config
from damo_core.train.layout import resolve_memory_format

TINY = dict(epochs=1, batch=4, img_size=64, warmup_epochs=1, no_aug_epochs=0, workers=0,
            precise_bn_batches=1, ema_tau=10.0)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _weight(model: torch.nn.Module) -> torch.Tensor:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).weight


def test_auto_is_channels_last_on_cpu_only() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_memory_format(cpu, "auto") == torch.channels_last
    assert resolve_memory_format(cuda, "auto") == torch.contiguous_format
    assert resolve_memory_format(cuda, "channels_last") == torch.channels_last
    assert resolve_memory_format(cpu, "contiguous") == torch.contiguous_format


@pytest.mark.parametrize("setting", ["auto", "contiguous"])
def test_trainer_trains_in_the_resolved_layout(tiny_data, tmp_path, setting: str) -> None:
    cfg = load_train_config(overrides={**TINY, "memory_format": setting})
    trainer = Trainer("damoyolo_ns", tiny_data, tmp_path / "run", cfg, progress=False)
    seen: list[bool] = []
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    handle = conv.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    result = trainer.fit()
    handle.remove()
    channels_last = setting == "auto"  # this is a CPU run
    assert _weight(trainer.model).is_contiguous(memory_format=torch.channels_last) \
        == channels_last
    assert seen and set(seen) == {channels_last}  # every training batch arrived that way

    plain = load_checkpoint(result.best, build_model("damoyolo_ns", num_classes=2)).eval()
    nhwc = build_model("damoyolo_ns", num_classes=2).to(memory_format=torch.channels_last)
    nhwc = load_checkpoint(result.best, nhwc).eval()
    assert _weight(plain).is_contiguous()
    assert _weight(nhwc).is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():  # same values in either layout (up to summation order)
        for a, b in zip(plain(images), nhwc(images.contiguous(
                memory_format=torch.channels_last)), strict=True):
            torch.testing.assert_close(a.cls_logits, b.cls_logits, rtol=1e-3, atol=2e-3)
            torch.testing.assert_close(a.reg_logits, b.reg_logits, rtol=1e-3, atol=2e-3)


def test_a_bad_layout_is_refused_naming_field_and_value() -> None:
    with pytest.raises(ConfigError, match="memory_format.*nhwc"):
        load_train_config(overrides={**TINY, "memory_format": "nhwc"})
