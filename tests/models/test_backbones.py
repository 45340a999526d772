"""Octave backbones under torchvision's detection and segmentation heads, built as a user would (docs/backbones.md)."""

from collections import OrderedDict

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.segmentation import FCN, DeepLabV3
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

import octzoo


class NamedFeatures(nn.Module):
    """A ``features_only`` body returning its maps by name: the dict torchvision's FPN and segmentation models take."""

    def __init__(self, body: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.body, self.names = body, names

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return OrderedDict(zip(self.names, self.body(x), strict=True))


def octave_grads(model: nn.Module) -> dict[str, torch.Tensor | None]:
    """The gradients of every weight on a path into or within the low branch."""
    return {n: p.grad for n, p in model.named_parameters() if ".h2l." in n or ".l2l." in n}


def test_faster_rcnn_with_fpn_trains_and_detects_on_oct_resnet18(one_thread):
    torch.manual_seed(0)
    body = timm.create_model("oct_resnet18", features_only=True, out_indices=(1, 2, 3, 4))
    assert body.feature_info.channels() == [64, 128, 256, 512]
    assert body.feature_info.reduction() == [4, 8, 16, 32]
    fpn = FeaturePyramidNetwork(body.feature_info.channels(), 64, extra_blocks=LastLevelMaxPool())
    backbone = nn.Sequential(NamedFeatures(body, ["0", "1", "2", "3"]), fpn)
    backbone.out_channels = 64  # what FasterRCNN reads
    model = FasterRCNN(backbone, num_classes=3, min_size=128, max_size=128, box_score_thresh=0.0)
    images = [torch.rand(3, 128, 96), torch.rand(3, 100, 128)]  # (C, H, W), sizes differ as in a real batch
    targets = [
        dict(boxes=torch.tensor([[10.0, 20.0, 60.0, 90.0]]), labels=torch.tensor([1])),
        dict(boxes=torch.tensor([[5.0, 5.0, 50.0, 40.0], [60.0, 50.0, 120.0, 95.0]]), labels=torch.tensor([2, 1])),
    ]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    losses = model.train()(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    grads = octave_grads(body)
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())
    name, weight = next((n, p) for n, p in model.named_parameters() if ".l2l." in n)
    before = weight.detach().clone()
    optimizer.step()
    assert not torch.equal(weight, before), f"{name} did not move"

    with torch.no_grad():
        detections = model.eval()(images)
    assert len(detections) == len(images)
    for det, image in zip(detections, images, strict=True):
        k = len(det["scores"])
        assert 0 < k <= model.roi_heads.detections_per_img
        assert det["boxes"].shape == (k, 4) and det["labels"].shape == (k,)
        assert det["labels"].min() >= 1 and det["labels"].max() < 3  # 0 is the background
        h, w = image.shape[-2:]  # boxes come back in the input image's own coordinates
        assert det["boxes"][:, 0::2].max() <= w and det["boxes"][:, 1::2].max() <= h and det["boxes"].min() >= 0


@pytest.mark.parametrize(("segmenter", "head"), [(FCN, FCNHead), (DeepLabV3, DeepLabHead)])
def test_segmentation_heads_on_octave_stages(segmenter, head, one_thread):
    torch.manual_seed(0)
    body = octzoo.create_model("oct_resnet18", alpha=0.5, features_only=True, out_indices=(3, 4))
    aux_channels, channels = body.feature_info.channels()
    model = segmenter(NamedFeatures(body, ["aux", "out"]), head(channels, 5), FCNHead(aux_channels, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, target = torch.rand(2, 3, 96, 96), torch.randint(0, 5, (2, 96, 96))

    out = model.train()(x)  # logits of the stride-32 and stride-16 maps, upsampled to the input
    assert out["out"].shape == out["aux"].shape == (2, 5, 96, 96)
    loss = F.cross_entropy(out["out"], target) + 0.5 * F.cross_entropy(out["aux"], target)
    assert torch.isfinite(loss)
    loss.backward()
    grads = octave_grads(body)
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())
    optimizer.step()


def test_octave_backbone_costs_fewer_macs_for_the_same_params(one_thread):
    """The octave backbone has its plain twin's weights, split four ways, and fewer multiply-adds the larger alpha."""
    profiles = [
        octzoo.profile(octzoo.create_model(name, features_only=True, **kw), input_size=(3, 128, 128))
        for name, kw in [("resnet18", {}), ("oct_resnet18", dict(alpha=0.25)), ("oct_resnet18", dict(alpha=0.5))]
    ]
    assert len({p.params for p in profiles}) == 1
    assert profiles[0].macs > profiles[1].macs > profiles[2].macs
