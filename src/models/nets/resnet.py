"""ResNet50 as checkpoints from before `model=torchvision` name it, with their frozen backbone."""

from src.compat import BatchNorm
from src.models.nets.torchvision_net import TorchvisionNet


class ResNet50(TorchvisionNet):
    """torchvision's ResNet50 with the arguments older checkpoints record.

    `model=resnet50` now builds `TorchvisionNet(name="resnet50")` (the same weights and state
    dict keys) and freezes with `model.backbone_lr_scale=0` or `model.freeze_until`; this class
    keeps checkpoints whose hyperparameters name `src.models.nets.resnet.ResNet50` loading.

    Args:
        num_classes: width of the new fully connected head.
        weights: None (random init), DEFAULT, IMAGENET1K_V1 or IMAGENET1K_V2.
        small_input_stem: a 3x3 stride-1 first conv and no max-pool, for 32x32 images.
        freeze_backbone: train only the head; the backbone's BatchNorm statistics stay fixed too.
    """

    def __init__(
        self,
        num_classes: int,
        weights: str | None = None,
        small_input_stem: bool = False,
        freeze_backbone: bool = False,
    ) -> None:
        super().__init__("resnet50", num_classes, weights, small_input_stem)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            for name, param in self.model.named_parameters():
                param.requires_grad = name.startswith("fc.")

    def train(self, mode: bool = True) -> "ResNet50":
        super().train(mode)
        if self.freeze_backbone:  # keep pretrained BatchNorm statistics as they are
            for module in self.model.modules():
                # BatchNorm: also the SyncBatchNorm that trainer=ddp turns BatchNorm2d into
                if isinstance(module, BatchNorm):
                    module.eval()
        return self
