"""Training throughput of hpo-cls's engine vs a minimal plain PyTorch loop, side by side in one run.

    python bench/throughput.py                       # CPU, embedded CIFAR-10 subset, resnet18 at 32 px
    python bench/throughput.py --device cuda --image-size 224 --backbone resnet50   # on a GPU

Both loops train the same architecture on the same DataLoader; epochs alternate (engine, plain, engine, ...)
so machine noise hits both alike. On CUDA the plain loop uses the reference fast settings (bf16 autocast,
channels_last, cudnn.benchmark) and the engine its own equivalent defaults. Prints one summary line:
``engine_vs_plain=<engine images/s ÷ plain images/s>`` (target ≥ 0.97 on CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from hpo_cls.data.loaders import build_loaders
from hpo_cls.models.classifier import build_model
from hpo_cls.spec import DataConfig, TrialConfig
from hpo_cls.train.engine import resolve_precision, train_one_epoch, use_channels_last
from hpo_cls.train.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]


def plain_epoch(model, loader, optimizer, device, bf16: bool, channels_last: bool) -> float:
    """The loop everyone writes first; returns images/s."""
    model.train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    seen, start = 0, time.perf_counter()
    for images, targets in loader:
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += images.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "cifar10-mini")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4, help="engine/plain epoch pairs measured")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    cfg = TrialConfig(backbone=args.backbone, batch_size=args.batch_size, lr=0.05, weight_decay=5e-4)
    data_cfg = DataConfig(root=args.data, image_size=args.image_size, workers=0)
    loaders = build_loaders(data_cfg, cfg, device_is_cuda=device.type == "cuda")
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    channels_last = use_channels_last(device.type, True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    def fresh_model():
        torch.manual_seed(0)
        model = build_model(cfg, loaders.num_classes).to(device)
        return model.to(memory_format=torch.channels_last) if channels_last else model

    engine_model, plain_model = fresh_model(), fresh_model()
    engine_opt = build_optimizer(engine_model, cfg)
    plain_opt = torch.optim.SGD(plain_model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    precision = resolve_precision(device.type, True, bf16)
    criterion = nn.CrossEntropyLoss()

    def engine_epoch() -> float:
        metrics = train_one_epoch(engine_model, loaders.train, engine_opt, criterion, device,
                                  precision=precision, channels_last=channels_last)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return metrics["images_per_s"]

    engine_epoch(), plain_epoch(plain_model, loaders.train, plain_opt, device, bf16, channels_last)  # warm-up
    engine_rates, plain_rates = [], []
    for _ in range(args.rounds):
        engine_rates.append(engine_epoch())
        plain_rates.append(plain_epoch(plain_model, loaders.train, plain_opt, device, bf16, channels_last))
    engine, plain = statistics.median(engine_rates), statistics.median(plain_rates)
    print(f"device={device.type} backbone={args.backbone} image_size={args.image_size} batch={args.batch_size} "
          f"engine={engine:.0f} img/s plain={plain:.0f} img/s engine_vs_plain={engine / plain:.3f}")


if __name__ == "__main__":
    main()
