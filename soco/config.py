"""Config keys added to Detectron2's ``CfgNode`` for self-supervised pretraining."""

from __future__ import annotations

from detectron2.config import CfgNode as CN


def add_soco_config(cfg: CN) -> None:
    """Add every key soco's pretraining uses (engine, data, SoCo, baselines) to a Detectron2 config."""
    _add_engine_config(cfg)
    _add_data_config(cfg)
    _add_soco_model_config(cfg)
    _add_baselines_config(cfg)


def _add_engine_config(cfg: CN) -> None:
    # Optimizer, picked by name from soco.solver.OPTIMIZER_REGISTRY ("LARS" or "SGD").
    cfg.SOLVER.OPTIMIZER = "LARS"
    # LARS trust coefficient (eta) and the epsilon added to the gradient norm.
    cfg.SOLVER.LARS = CN()
    cfg.SOLVER.LARS.TRUST_COEFFICIENT = 0.001
    cfg.SOLVER.LARS.EPS = 1e-8
    # Apply LARS adaptation (and weight decay) to 1-D parameters (biases, norms) too; SoCo/BYOL: False.
    cfg.SOLVER.LARS.ADAPT_1D_PARAMS = False
    # Weight decay of 1-D parameters (biases and norm affine parameters) for every optimizer.
    cfg.SOLVER.WEIGHT_DECAY_1D = 0.0
    # Linear scaling rule: lr = BASE_LR * IMS_PER_BATCH / LR_REFERENCE_BATCH (0: no scaling).
    cfg.SOLVER.LR_REFERENCE_BATCH = 256
    # Epoch-based schedules: when EPOCHS > 0, MAX_ITER = EPOCHS * (number of images // IMS_PER_BATCH)
    # and WARMUP_ITERS = WARMUP_EPOCHS * (number of images // IMS_PER_BATCH).
    cfg.SOLVER.EPOCHS = 0
    cfg.SOLVER.WARMUP_EPOCHS = 0
    # Iterations per epoch, filled in when the schedule is resolved from EPOCHS (0: unknown).
    cfg.SOLVER.ITERS_PER_EPOCH = 0
    # Computation precision under AMP: "float16" (with a gradient scaler) or "bfloat16".
    cfg.SOLVER.AMP.PRECISION = "float16"
    # Let DDP tolerate parameters that get no gradient in a step (e.g. an FPN level without boxes).
    cfg.MODEL.DDP_FIND_UNUSED_PARAMETERS = True
    # Period (iterations) of the console / metrics.json / TensorBoard writers.
    cfg.SOLVER.LOG_PERIOD = 20


def _add_data_config(cfg: CN) -> None:
    cfg.SOCO = CN()
    cfg.SOCO.DATA = CN()
    # Unlabeled images: an image folder, an ImageNet-style tree or a train_map.txt file.
    cfg.SOCO.DATA.IMAGE_ROOT = ""
    # Selective-search proposals: a SoCo JSON file or a compact proposal store ("" for image-level methods).
    cfg.SOCO.DATA.PROPOSALS = ""
    # Name of the view generator (soco.data.VIEW_GENERATOR_REGISTRY) that turns an image into the model input.
    cfg.SOCO.DATA.VIEW_GENERATOR = "SoCoFPNViews"
    # Mean and std (RGB, [0, 1] scale) used to normalize the views.
    cfg.SOCO.DATA.PIXEL_MEAN = [0.485, 0.456, 0.406]
    cfg.SOCO.DATA.PIXEL_STD = [0.229, 0.224, 0.225]
    # Target-network momentum: tau rises from BASE to 1 on a cosine ("cosine") or stays ("constant").
    cfg.SOCO.MOMENTUM = CN()
    cfg.SOCO.MOMENTUM.BASE = 0.99
    cfg.SOCO.MOMENTUM.SCHEDULE = "cosine"


def _add_soco_model_config(cfg: CN) -> None:
    """Keys of the SoCo meta-architectures and their views.

    The RoI parts reuse Detectron2's keys: MODEL.ROI_HEADS.IN_FEATURES (p2..p5, or res4 for C4),
    MODEL.ROI_BOX_HEAD.{NAME, POOLER_*, NUM_CONV, CONV_DIM, NUM_FC, FC_DIM, NORM}, MODEL.RESNETS.*,
    MODEL.FPN.*.
    """
    # True (original SoCo): every box is pooled on every pyramid level and all of them go through the head,
    # projector and predictor; the correspondence keeps only the assigned level, so the extra crops get no
    # loss weight but enter the batch-norm statistics. False: only the assigned level is pooled (same loss
    # terms, different BN statistics, a 4x cheaper head).
    cfg.SOCO.POOL_ALL_LEVELS = True
    # Zero-initialise the last norm's scale (gamma) of every residual block, as SoCo's torchvision ResNet.
    cfg.SOCO.ZERO_INIT_RESIDUAL = True
    cfg.SOCO.HEAD = CN()
    # Projector/predictor MLPs: in -> MLP_HIDDEN_DIM -> MLP_NORM -> ReLU -> MLP_OUT_DIM ("", "BN", "SyncBN").
    cfg.SOCO.HEAD.MLP_HIDDEN_DIM = 4096
    cfg.SOCO.HEAD.MLP_OUT_DIM = 256
    cfg.SOCO.HEAD.MLP_NORM = "SyncBN"
    cfg.SOCO.VIEWS = CN()
    # Side in pixels of each square view: V1 (whole image), V2 (random-resized crop), V3 [, V4 = V2 resized].
    cfg.SOCO.VIEWS.SIZES = [224, 224, 112]
    # Random-resized crops (V2, V3): area range as a fraction of the image, and aspect-ratio range.
    cfg.SOCO.VIEWS.CROP_SCALE = (0.5, 1.0)
    cfg.SOCO.VIEWS.CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
    # Probability of flipping each view horizontally (its boxes are flipped with it).
    cfg.SOCO.VIEWS.FLIP_PROB = 0.5
    # Colour jitter (brightness, contrast, saturation, hue) and the probability of applying it, every view.
    cfg.SOCO.VIEWS.COLOR_JITTER = (0.4, 0.4, 0.2, 0.1)
    cfg.SOCO.VIEWS.COLOR_JITTER_PROB = 0.8
    # Probability of converting a view to grayscale.
    cfg.SOCO.VIEWS.GRAYSCALE_PROB = 0.2
    # Probability of a PIL Gaussian blur on (V1, the other views): BYOL's asymmetric recipe.
    cfg.SOCO.VIEWS.BLUR_PROB = (1.0, 0.1)
    # Range of the blur radius sigma, drawn uniformly.
    cfg.SOCO.VIEWS.BLUR_SIGMA = (0.1, 2.0)
    # Probability of solarizing (V1, the other views).
    cfg.SOCO.VIEWS.SOLARIZE_PROB = (0.0, 0.2)
    # Solarize threshold on 0-255 pixel values (PIL's default).
    cfg.SOCO.VIEWS.SOLARIZE_THRESHOLD = 128
    cfg.SOCO.BOXES = CN()
    # K: proposals per view pair, drawn without replacement among those overlapping both views, padded to K.
    cfg.SOCO.BOXES.NUM_PER_PAIR = 4
    # Crops re-drawn at most this many times to find enough proposals in common.
    cfg.SOCO.BOXES.MAX_TRIES = 5
    # Probability of jittering each of V1's boxes (0 for C4).
    cfg.SOCO.BOXES.JITTER_PROB = 0.5
    # Jitter magnitude: shifts and size changes up to this fraction of the box's width/height.
    cfg.SOCO.BOXES.JITTER_RATIO = 0.1
    # Upper bounds of sqrt(box area) in view pixels for each level of MODEL.ROI_HEADS.IN_FEATURES (P2..P5).
    cfg.SOCO.BOXES.LEVEL_THRESHOLDS = [48, 96, 192, 224]
    cfg.SOCO.CUTOUT = CN()
    # Cut out a square inside the boxes of the views other than V1.
    cfg.SOCO.CUTOUT.ENABLED = False
    # Probability of a cutout in each box.
    cfg.SOCO.CUTOUT.PROB = 0.5
    # Area range of the cut-out square, as a fraction of the box area.
    cfg.SOCO.CUTOUT.AREA = (0.1, 0.3)


def _add_baselines_config(cfg: CN) -> None:
    """Keys of the image-level baselines (MoCo v2, SwAV, DenseCL)."""
