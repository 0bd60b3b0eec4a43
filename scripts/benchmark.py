"""Training speed of the template against a hand-written loop, measured side by side in one run.

    python scripts/benchmark.py            # or: make benchmark
    python scripts/benchmark.py --quick    # fewer epochs and batches, for a smoke test

Prints the machine and one table, and appends both to docs/benchmarks.md (--no-append: don't).
Rows: images/s of training for a hand-written loop (the same net and data, whole split in memory, no
augmentation), the template's default path (batched, augmentation on) and its per-sample path;
the augmentation alone, batched against per-sample, on CIFAR-shaped and 224x224 batches; seconds
from `python src/train.py` to its first training step; on CUDA also ResNet50 in bf16 and
channels-last against a hand-written AMP loop, and `model.compile=true` against not.
"""

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

import src.cli.resolvers  # noqa: E402, F401  (registers the resolvers the configs use)
from src.data.augmentation import parse_augmentation, per_sample_train_transform  # noqa: E402
from src.data.batch_augment import BatchAugmentation  # noqa: E402

Row = tuple[str, str, str]  # what, figure, note


def machine() -> str:
    """CPU, cores, GPU and versions, one line."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [line for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    cuda = f", CUDA {torch.version.cuda}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores, {torch.get_num_threads()} torch threads; "
        f"{gpu}; torch {torch.__version__}{cuda}, lightning {L.__version__}"
    )


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train.yaml", overrides=overrides)


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule]:
    """The data module and model of a composed config, as src/train.py builds them."""
    datamodule = instantiate(cfg.data)
    with open_dict(cfg):
        cfg.data.task, cfg.data.num_classes = datamodule.task, datamodule.num_classes
        cfg.data.class_names = list(datamodule.class_names)
    model = instantiate(cfg.model, optimizer=cfg.optimizer, scheduler=None, _recursive_=False)
    return datamodule, model


class ImagesPerSecond(L.Callback):
    """Training images per second of each epoch after the first (which warms up)."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.images, self.start = 0, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.images += len(batch[0])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.rates.append(self.images / (time.perf_counter() - self.start))

    @property
    def rate(self) -> float:
        later = self.rates[1:] or self.rates
        return sum(later) / len(later)


def template_rate(overrides: list[str], epochs: int) -> float:
    """Images/s of trainer.fit on a composed config; validation, logging and checkpoints off."""
    cfg = compose_train(overrides)
    datamodule, model = build(cfg)
    counter = ImagesPerSecond()
    trainer = instantiate(
        cfg.trainer,
        max_epochs=epochs,
        min_epochs=epochs,
        logger=False,
        default_root_dir=str(ROOT / "logs" / "benchmark"),
        callbacks=[counter],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=datamodule)
    return counter.rate


def hand_written_rate(overrides: list[str], epochs: int, amp: bool = False) -> float:
    """Images/s of a plain loop: the template's net and optimizer settings, the training split
    normalised once and held on the device, no augmentation."""
    cfg = compose_train(overrides)
    datamodule, model = build(cfg)
    datamodule.setup("fit")
    device = "cuda" if torch.cuda.is_available() and amp else "cpu"
    split = datamodule.train_set
    images = datamodule.on_device.normalize(split.images.to(device))
    targets = split.targets.to(device)
    net = model.net.to(device)
    if amp:
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    batch, rates = cfg.data.batch_size, []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(targets), device=device)
        for i in range(0, len(order), batch):
            index = order[i : i + batch]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(net(images[index]), targets[index])
            loss.backward()
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        rates.append(len(targets) / (time.perf_counter() - start))
    later = rates[1:] or rates
    return sum(later) / len(later)


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Seconds per call, after one warm-up call."""
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def augmentation_rates(size: int, batch: int, spec: dict, repeats: int) -> tuple[float, float]:
    """Images/s of the augmentation alone: batched on the best device here, and per sample."""
    aug = parse_augmentation(spec)
    mean, std = [0.5] * 3, [0.25] * 3
    device = "cuda" if torch.cuda.is_available() else "cpu"
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    on_device = images.to(device)
    batched = BatchAugmentation(aug, mean, std)
    generator = torch.Generator(device=device).manual_seed(0)
    per_sample = per_sample_train_transform(aug, mean, std, (size, size))
    batched_s = timed(lambda: batched(on_device, generator), repeats)
    per_sample_s = timed(lambda: torch.stack([per_sample(image) for image in images]), repeats)
    return batch / batched_s, batch / per_sample_s


def kornia_rate(size: int, batch: int, spec: dict, repeats: int) -> float | None:
    """Images/s of kornia.augmentation doing the same steps, where kornia is installed (it is not
    a dependency: the template's own kernels replace it), else None."""
    try:
        import kornia.augmentation as K
    except ImportError:
        return None
    aug = parse_augmentation(spec)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps = []
    if aug.crop_padding:
        steps.append(K.RandomCrop((size, size), padding=aug.crop_padding))
    if aug.hflip:
        steps.append(K.RandomHorizontalFlip(p=aug.hflip))
    if aug.color_jitter:
        steps.append(K.ColorJitter(aug.brightness, aug.contrast, aug.saturation, p=1.0))
    steps.append(K.Normalize(torch.full((3,), 0.5), torch.full((3,), 0.25)))
    pipeline = K.AugmentationSequential(*steps).to(device)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    return batch / timed(lambda: pipeline(images.float().div(255)), repeats)


class FirstStepTime(L.Callback):
    """Print the wall-clock time at the start of the first training step."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step == 0 and batch_idx == 0:
            print("FIRST_STEP", time.time(), flush=True)


def startup_seconds() -> float:
    """Seconds from launching `python src/train.py` to the start of its first training step."""
    start = time.time()
    result = subprocess.run(
        [
            sys.executable,
            "src/train.py",
            "+callbacks.first_step._target_=scripts.benchmark.FirstStepTime",
            "trainer.max_steps=1",
            "test=false",
            "logger=none",
            "extras.print_config=false",
            f"paths.log_dir={ROOT / 'logs' / 'benchmark'}",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    marks = [line for line in result.stdout.splitlines() if line.startswith("FIRST_STEP")]
    if not marks:
        output = (result.stdout + result.stderr)[-2000:]
        raise RuntimeError(f"src/train.py did not reach a training step:\n{output}")
    return float(marks[0].split()[1]) - start


def speed_row(what: str, rate: float, reference: float) -> Row:
    return what, f"{rate:,.0f} img/s", f"{rate / reference:.2f}x"


def measure(args: argparse.Namespace) -> list[Row]:
    digits = [f"data.batch_size={args.batch}", "seed=0", "trainer.accelerator=cpu"]
    rows: list[Row] = []
    hand = hand_written_rate(digits, args.epochs)
    default = template_rate(digits, args.epochs)
    per_sample = template_rate([*digits, "data.pipeline=per_sample"], args.epochs)
    rows += [
        speed_row("CPU, digits: hand-written loop, in memory, no augmentation", hand, hand),
        speed_row("CPU, digits: template default (batched, augmentation on)", default, hand),
        speed_row("CPU, digits: template, data.pipeline=per_sample", per_sample, hand),
    ]
    device = "GPU" if torch.cuda.is_available() else "CPU"
    shapes = [
        ("32x32, batch 256, CIFAR's crop + flip", 32, 256, {"crop_padding": 4, "hflip": 0.5}),
        (
            "224x224, batch 64, crop + flip + colour jitter",
            224,
            64,
            {
                "crop_padding": 28,
                "hflip": 0.5,
                "brightness": 0.2,
                "contrast": 0.2,
                "saturation": 0.2,
            },
        ),
    ]
    for name, size, batch, spec in shapes:
        batched, one_by_one = augmentation_rates(size, batch, spec, args.repeats)
        rows.append(
            (f"augmentation alone, {name}: batched on the {device} vs per-sample (CPU, 1 process)",
             f"{batched:,.0f} vs {one_by_one:,.0f} img/s", f"{batched / one_by_one:.1f}x")
        )  # fmt: skip
        if (kornia := kornia_rate(size, batch, spec, args.repeats)) is not None:
            rows.append(
                (f"augmentation alone, {name}: batched vs kornia.augmentation, on the {device}",
                 f"{batched:,.0f} vs {kornia:,.0f} img/s", f"{batched / kornia:.1f}x")
            )  # fmt: skip
    rows.append(
        ("start-up: `python src/train.py` to its first step", f"{startup_seconds():.1f} s", "")
    )
    if torch.cuda.is_available():
        rows += cuda_rows(args)
    return rows


def cuda_rows(args: argparse.Namespace) -> list[Row]:
    """ResNet50 on 224x224 digits in bf16 + channels-last: template vs hand-written; compile."""
    gpu = [
        "model=resnet50",
        "model.net.small_input_stem=false",
        "data.image_size=224",
        f"data.batch_size={args.gpu_batch}",
        "trainer=gpu",
        "trainer.precision=bf16-mixed",
        "model.channels_last=true",
        "seed=0",
    ]
    epochs = max(2, args.epochs // 2)
    hand = hand_written_rate(gpu, epochs, amp=True)
    template = template_rate(gpu, epochs)
    compiled = template_rate([*gpu, "model.compile=true"], epochs + 1)
    return [
        speed_row("GPU, ResNet50 224x224 bf16 channels-last: hand-written AMP loop", hand, hand),
        speed_row("GPU, the same in the template", template, hand),
        speed_row("GPU, the template with model.compile=true", compiled, hand),
    ]


def table(rows: list[Row]) -> str:
    lines = ["| measurement | figure | ratio |", "|---|---|---|"]
    return "\n".join(lines + [f"| {what} | {figure} | {ratio} |" for what, figure, ratio in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per training measurement")
    parser.add_argument("--batch", type=int, default=128, help="batch size of the digits runs")
    parser.add_argument("--gpu-batch", type=int, default=128, help="batch size of ResNet50 runs")
    parser.add_argument("--repeats", type=int, default=10, help="batches per augmentation timing")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 2 repeats: a smoke test")
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.repeats = 2, 2
    about = machine()
    print(about, flush=True)
    report = table(measure(args))
    print(report)
    if not args.no_append:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
        command = " ".join(["python scripts/benchmark.py", *sys.argv[1:]])
        with open(args.output, "a") as file:
            file.write(f"\n## {stamp}: {about}\n\n`{command}`\n\n{report}\n")
        print(f"appended to {args.output}")


if __name__ == "__main__":
    main()
