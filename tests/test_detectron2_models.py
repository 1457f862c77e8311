"""Detectron2 itself works here: Mask R-CNN R50-FPN / R50-C4 (COCO) and R50-FPN (LVIS) on CPU."""

import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

CONFIGS = [
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml",
    "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.yaml",
    "LVISv1-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml",
]


def _instances(height: int, width: int, num_classes: int) -> Instances:
    boxes = torch.tensor([[10.0, 12.0, 60.0, 70.0], [40.0, 30.0, 110.0, 100.0]])
    masks = torch.zeros(2, height, width, dtype=torch.bool)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist(), strict=True):
        mask[y0:y1, x0:x1] = True
    inst = Instances((height, width))
    inst.gt_boxes = Boxes(boxes)
    inst.gt_classes = torch.tensor([0, num_classes - 1])
    inst.gt_masks = BitMasks(masks)
    return inst


@pytest.mark.parametrize("config", CONFIGS)
def test_mask_rcnn_train_step_and_inference_on_cpu(config):
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(config))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 64
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    torch.manual_seed(0)
    model = build_model(cfg)
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    image = torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8).float()
    batch = [{"image": image, "instances": _instances(128, 128, num_classes), "height": 128, "width": 128}]

    model.train()
    with EventStorage():
        losses = model(batch)
    assert {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"} <= losses.keys()
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())

    model.eval()
    with torch.no_grad():
        (output,) = model([{"image": image, "height": 128, "width": 128}])
    instances = output["instances"]
    assert instances.image_size == (128, 128)
    assert instances.pred_boxes.tensor.shape[1] == 4
