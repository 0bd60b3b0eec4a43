"""GPU self-check: the template's GPU paths, each run for real and reported PASS, FAIL or SKIP.

    python scripts/gpu_check.py          # or: make gpu-check
    python scripts/gpu_check.py --list   # the checks and their commands, without running them

On a machine with CUDA, in a few minutes: training with trainer=gpu in 16-mixed and bf16-mixed,
model.compile=true with channels_last, trainer=ddp over the visible GPUs (and with a frozen
backbone), eval and predict of a GPU checkpoint on the CPU, predict on the GPU, the batched
augmentation on the device, training steps that never wait for the GPU, and the benchmark.
Without CUDA it says so and exits 0. Exit status 1 when a check fails.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
MIN_ACCURACY = 0.9  # the digits reach 0.95 or more in two epochs on any of these paths
QUIET = ["extras.print_config=false", "logger=csv", "callbacks.rich_progress_bar.min_interval=5"]


@dataclass
class Check:
    """One check: a command run from the project root, and what its outputs must show."""

    name: str
    command: list[str]
    verify: Callable[[], str | None] = lambda: None  # a failure reason, or None
    needs: Callable[[], str | None] = lambda: None  # why it cannot run here, or None
    after: list[str] = field(default_factory=list)  # checks whose outputs it reads


class SyncDebugMode(L.Callback):
    """Training steps under torch.cuda.set_sync_debug_mode("error"): any operation in them that
    makes the host wait for the GPU raises. From the end of each epoch's first step (which may
    make one-time copies) to the end of its last, so validation, epoch ends and checkpoints,
    which may wait, run as usual."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        more = i + 1 < trainer.num_training_batches and not trainer.should_stop
        torch.cuda.set_sync_debug_mode("error" if more else "default")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.cuda.set_sync_debug_mode("default")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.cuda.set_sync_debug_mode("default")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exc: Exception
    ) -> None:
        torch.cuda.set_sync_debug_mode("default")


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def needs_bf16() -> str | None:
    ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return None if ok else "this GPU has no bfloat16"


def run_folder(logs: Path) -> Path:
    """The newest run folder under logs."""
    folders = sorted(p.parent for p in logs.glob("**/.hydra"))
    if not folders:
        raise FileNotFoundError(f"no run folder under {logs}")
    return folders[-1]


def test_accuracy(logs: Path) -> str | None:
    """None when the run's test/acc reached MIN_ACCURACY, else why not."""
    with open(next(run_folder(logs).glob("**/metrics.csv"))) as file:
        values = [float(r["test/acc"]) for r in csv.DictReader(file) if r.get("test/acc")]
    if not values:
        return "no test/acc in metrics.csv"
    return None if values[-1] >= MIN_ACCURACY else f"test/acc {values[-1]:.3f} < {MIN_ACCURACY}"


def frozen_backbone_unchanged(logs: Path) -> str | None:
    """The frozen ResNet50's batch-norm statistics must still be their initial zeros."""
    checkpoint = torch.load(
        run_folder(logs) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    state = checkpoint["state_dict"]
    means = [v for k, v in state.items() if "bn" in k and k.endswith("running_mean")]
    if not means or any(m.abs().max() > 0 for m in means):
        return "the frozen backbone's batch-norm running means moved"
    return None


def checks(work: Path) -> list[Check]:
    """Every check, writing under `work`."""
    train = [sys.executable, "src/train.py", "trainer.max_epochs=2", *QUIET]

    def logs(name: str) -> str:
        return f"paths.log_dir={work / name}"

    images = work / "images"
    # every batched op, a policy, MixUp/CutMix and EMA; bf16 (16-mixed's GradScaler reads its
    # inf check back every step by design)
    sync_free = [
        *train,
        "trainer=gpu",
        "trainer.precision=bf16-mixed",
        "+callbacks.sync_debug._target_=scripts.gpu_check.SyncDebugMode",
    ]
    every_op = [
        "augment=randaugment",
        "data.augment.resized_crop_scale=[0.35,1]",
        "data.augment.crop_padding=2",
        "data.augment.hflip=0.5",
        "data.augment.vflip=0.5",
        "data.augment.brightness=0.2",
        "data.augment.contrast=0.2",
        "data.augment.saturation=0.2",
        "data.augment.hue=0.05",
        "data.augment.mixup_alpha=0.2",
        "data.augment.cutmix_alpha=1.0",
    ]
    gpu_ckpt = f"ckpt_path={work / 'fp16' / 'train' / 'runs'}/*/checkpoints/best.ckpt"
    ddp = [f"trainer.devices={max(1, gpu_count())}"]
    return [
        Check("train, trainer=gpu, 16-mixed", [*train, "trainer=gpu", "trainer.precision=16-mixed", logs("fp16")], lambda: test_accuracy(work / "fp16")),  # noqa: E501
        Check("train, trainer=gpu, bf16-mixed", [*train, "trainer=gpu", "trainer.precision=bf16-mixed", logs("bf16")], lambda: test_accuracy(work / "bf16"), needs_bf16),  # noqa: E501
        Check("train, model.compile=true + model.channels_last=true", [*train, "trainer=gpu", "model.compile=true", "model.channels_last=true", logs("compile")], lambda: test_accuracy(work / "compile")),  # noqa: E501
        Check(f"train, trainer=ddp over {max(1, gpu_count())} GPU(s)", [*train, "trainer=ddp", *ddp, logs("ddp")], lambda: test_accuracy(work / "ddp")),  # noqa: E501
        Check("train, trainer=ddp, ResNet50 with a frozen backbone", [sys.executable, "src/train.py", "trainer.max_epochs=1", *QUIET, "trainer=ddp", *ddp, "model=resnet50", "model.backbone_lr_scale=0", logs("frozen")], lambda: frozen_backbone_unchanged(work / "frozen")),  # noqa: E501
        Check("eval of the 16-mixed GPU checkpoint on the CPU", [sys.executable, "src/eval.py", gpu_ckpt, "trainer.accelerator=cpu", "extras.print_config=false", "logger=csv", logs("eval")], lambda: test_accuracy(work / "eval"), after=["train, trainer=gpu, 16-mixed"]),  # noqa: E501
        Check("predict with the GPU checkpoint on the CPU", [sys.executable, "src/predict.py", gpu_ckpt, f"input={images}", "trainer.accelerator=cpu", "extras.print_config=false", logs("predict_cpu")], lambda: predictions_written(work / "predict_cpu"), after=["train, trainer=gpu, 16-mixed"]),  # noqa: E501
        Check("predict on the GPU", [sys.executable, "src/predict.py", gpu_ckpt, f"input={images}", "trainer=gpu", "extras.print_config=false", logs("predict_gpu")], lambda: predictions_written(work / "predict_gpu"), after=["train, trainer=gpu, 16-mixed"]),  # noqa: E501
        Check("batched augmentation on the GPU draws as on the CPU", [sys.executable, "-c", BATCHED_ON_DEVICE]),  # noqa: E501
        Check("training steps never wait for the GPU (sync debug mode: error)", [*sync_free, *every_op, "callbacks=[default,ema]", logs("sync")], needs=needs_bf16),  # noqa: E501
        Check("multi-label training steps never wait for the GPU", [*sync_free, "data=digits_multilabel", "data.augment.mixup_alpha=0.2", logs("sync_multilabel")], needs=needs_bf16),  # noqa: E501
        Check("benchmark", [sys.executable, "scripts/benchmark.py"]),
    ]  # fmt: skip


# The batched pipeline on the GPU: the same augmentation statistics as on the CPU, and the
# evaluation normalisation equal to the CPU's.
BATCHED_ON_DEVICE = """
import torch
from src.data.augmentation import parse_augmentation
from src.data.batch_augment import BatchAugmentation
spec = parse_augmentation({"resized_crop_scale": [0.35, 1], "crop_padding": 4, "hflip": 0.5,
                           "vflip": 0.5, "degrees": 10, "translate": [0.1, 0.1], "brightness": 0.2,
                           "contrast": 0.2, "saturation": 0.2, "hue": 0.05, "erasing": 0.25})
aug = BatchAugmentation(spec, [0.5] * 3, [0.25] * 3)
images = torch.randint(0, 256, (4096, 3, 32, 32), dtype=torch.uint8)
cpu = aug(images, torch.Generator().manual_seed(0))
gpu = aug(images.cuda(), torch.Generator("cuda").manual_seed(0))
assert gpu.device.type == "cuda" and gpu.dtype == torch.float32 and gpu.isfinite().all()
assert abs(cpu.mean() - gpu.mean().cpu()) < 0.02 and abs(cpu.std() / gpu.std().cpu() - 1) < 0.02
assert torch.allclose(aug.normalize(images), aug.normalize(images.cuda()).cpu(), atol=1e-5)
print("batched augmentation on", torch.cuda.get_device_name())
"""


def predictions_written(logs: Path) -> str | None:
    rows = list(csv.reader(open(run_folder(logs) / "predictions.csv")))
    return None if len(rows) == 1 + 10 else f"{len(rows) - 1} predictions for 10 images"


def write_images(folder: Path) -> None:
    """Ten digit images as PNG files, for predict."""
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from src.data.digits import load_digit_images

    folder.mkdir(parents=True, exist_ok=True)
    images, _ = load_digit_images()
    for i in range(10):
        Image.fromarray(images[i].permute(1, 2, 0).numpy()).save(folder / f"{i}.png")


def expand(command: list[str]) -> list[str]:
    """Expand a glob in a ckpt_path= argument (the run folder's timestamp is known only later)."""
    out = []
    for arg in command:
        if arg.startswith("ckpt_path=") and "*" in arg:
            matches = sorted(Path("/").glob(arg.split("=", 1)[1].lstrip("/")))
            arg = f"ckpt_path={matches[-1]}" if matches else arg
        out.append(arg)
    return out


def run(check: Check, failed: set[str]) -> tuple[str, str]:
    """PASS, FAIL or SKIP, and a short note."""
    if reason := check.needs():
        return "SKIP", reason
    if blocked := [name for name in check.after if name in failed]:
        return "SKIP", f"needs '{blocked[0]}'"
    start = time.perf_counter()
    try:
        result = subprocess.run(
            expand(check.command),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONPATH": str(ROOT)},  # scripts.gpu_check.SyncDebugMode
        )
    except subprocess.TimeoutExpired:
        return "FAIL", "timed out after 600 s"
    seconds = f"{time.perf_counter() - start:.0f} s"
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        return "FAIL", f"exit {result.returncode}: {lines[-1] if lines else ''}"[:300]
    try:
        problem = check.verify()
    except (OSError, StopIteration, KeyError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if check.name == "benchmark" and not problem:
        print(result.stdout)
    return ("FAIL", problem) if problem else ("PASS", seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the checks, run nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        if args.list:
            for check in checks(work):
                print(f"{check.name}\n    {' '.join(check.command[1:])}")
            return 0
        if not torch.cuda.is_available():
            print(
                "gpu-check: no CUDA GPU here (torch.cuda.is_available() is False): nothing to check"
            )
            return 0
        gpus = f"{gpu_count()} x {torch.cuda.get_device_name()}"
        print(f"gpu-check on {gpus}, torch {torch.__version__}, CUDA {torch.version.cuda}")
        write_images(work / "images")
        failed: set[str] = set()
        results = []
        for check in checks(work):
            status, note = run(check, failed)
            if status == "FAIL":
                failed.add(check.name)
            results.append((status, check.name, note))
            print(f"{status:4}  {check.name}  ({note})", flush=True)
        print(f"\n{sum(s == 'PASS' for s, _, _ in results)} passed, {len(failed)} failed, "
              f"{sum(s == 'SKIP' for s, _, _ in results)} skipped")  # fmt: skip
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
