"""Config keys added to Detectron2's ``CfgNode`` for self-supervised pretraining."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from detectron2.config import CfgNode as CN


def add_soco_config(cfg: CN) -> None:
    """Add every key soco's pretraining uses to a Detectron2 config.

    Namespaces: ``SOLVER.*`` / ``MODEL.*`` (engine additions), ``PRETRAIN.*`` (data and momentum, shared by
    every method), ``SOCO.*``, ``MOCO.*``, ``SWAV.*``, ``DENSECL.*`` (what belongs to one method only).
    """
    _add_engine_config(cfg)
    _add_pretrain_config(cfg)
    _add_soco_model_config(cfg)
    _add_baselines_config(cfg)
    _register_renamed_keys(cfg)


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
    # Images per process (GPU); > 0: the global batch is IMS_PER_GPU x world size (0: IMS_PER_BATCH is it).
    # The other rule is Detectron2's SOLVER.REFERENCE_WORLD_SIZE: the world size IMS_PER_BATCH is meant for.
    cfg.SOLVER.IMS_PER_GPU = 0
    # Computation precision under AMP: "float16" (with a gradient scaler) or "bfloat16".
    cfg.SOLVER.AMP.PRECISION = "float16"
    # Let DDP tolerate parameters that get no gradient in a step (e.g. an FPN level without boxes).
    cfg.MODEL.DDP_FIND_UNUSED_PARAMETERS = True
    # Unpickle any Python object in MODEL.WEIGHTS and resumed checkpoints (trusted files only). False: .pkl
    # files may hold only numpy arrays and torch files only tensors, so a crafted file cannot run code.
    cfg.MODEL.TRUST_PICKLE = False
    # Store conv weights (backbone, FPN, RoI heads; online and target) in channels_last order (fast with AMP).
    cfg.MODEL.CHANNELS_LAST = False
    # torch.compile the backbones (online and target) with this backend, e.g. "inductor" ("": eager).
    cfg.MODEL.BACKBONE.COMPILE = ""
    # torch.compile mode of MODEL.BACKBONE.COMPILE: "default", "reduce-overhead" or "max-autotune".
    cfg.MODEL.BACKBONE.COMPILE_MODE = "default"
    # LARS with torch._foreach_* kernels (True), one parameter at a time (False), or None: foreach on CUDA.
    cfg.SOLVER.LARS.FOREACH = None
    # Periodic checkpoints kept on disk (older ones are deleted; 0 keeps all). model_final.pth is always kept.
    cfg.SOLVER.CHECKPOINT_MAX_TO_KEEP = 0
    # The scheduler's warning signal: every process stops after the same iteration, process 0 saves it and
    # the job is requeued (soco.engine.preemption). "": submitit's (SIGUSR2) in a submitit job, else SIGTERM.
    cfg.SOLVER.PREEMPTION_SIGNAL = ""
    # Period (iterations) of the console / metrics.json / TensorBoard writers.
    cfg.SOLVER.LOG_PERIOD = 20


def _add_pretrain_config(cfg: CN) -> None:
    """Toolbox-wide keys shared by every method: the unlabeled data and the target network's momentum."""
    cfg.PRETRAIN = CN()
    cfg.PRETRAIN.DATA = CN()
    # Unlabeled images: an image folder, an ImageNet-style tree, a train_map.txt file or a train.zip (the
    # original SoCo's layout: class folders at the zip's root, train_map.txt beside it lists the images).
    cfg.PRETRAIN.DATA.IMAGE_ROOT = ""
    # Corpus index (a train_map.txt-like list with a header): written once by rank 0 when missing (or by
    # tools/build_corpus_index.py), then read by every rank and run instead of listing IMAGE_ROOT; a stale
    # one (root, layout or a listed folder changed) is an error. "": list IMAGE_ROOT in every process.
    cfg.PRETRAIN.DATA.CORPUS_INDEX = ""
    # Leave out the images proposal generation failed on, listed next to PROPOSALS (failed_images.txt).
    cfg.PRETRAIN.DATA.EXCLUDE_FAILED = True
    # A file of image keys (or paths) to leave out, one per line ("": none), on top of EXCLUDE_FAILED.
    cfg.PRETRAIN.DATA.EXCLUDE_LIST = ""
    # Selective-search proposals: a SoCo JSON file or a compact proposal store ("" for image-level methods).
    cfg.PRETRAIN.DATA.PROPOSALS = ""
    # Name of the view generator (soco.data.VIEW_GENERATOR_REGISTRY) that turns an image into the model input.
    cfg.PRETRAIN.DATA.VIEW_GENERATOR = "SoCoFPNViews"
    # Approximate the two costliest colour steps (hue shift, Gaussian blur) with OpenCV: same random draws,
    # pixels within a few levels of PIL's, about a third less CPU per SoCo sample. False: PIL, exact.
    cfg.PRETRAIN.DATA.FAST_PHOTOMETRIC = False
    # Mean and std (RGB, [0, 1] scale) used to normalize the views.
    cfg.PRETRAIN.DATA.PIXEL_MEAN = [0.485, 0.456, 0.406]
    cfg.PRETRAIN.DATA.PIXEL_STD = [0.229, 0.224, 0.225]
    # Target-network momentum: tau rises from BASE to 1 on a cosine ("cosine") or stays ("constant").
    cfg.PRETRAIN.MOMENTUM = CN()
    cfg.PRETRAIN.MOMENTUM.BASE = 0.99
    cfg.PRETRAIN.MOMENTUM.SCHEDULE = "cosine"
    _add_probes_config(cfg)


def _add_probes_config(cfg: CN) -> None:
    """Probes of the representation during pretraining (soco.evaluation, soco.engine.probe_hook)."""
    # Evaluate the probes before training, after every EVAL_PERIOD-th iteration and after the last (0: off).
    cfg.PRETRAIN.EVAL_PERIOD = 0
    cfg.PRETRAIN.PROBES = CN()
    # Image-level kNN: an image folder with <root>/train/<class>/* and <root>/val/<class>/* ("": off).
    cfg.PRETRAIN.PROBES.IMAGE_ROOT = ""
    # Object-level kNN and linear probe: registered COCO-format datasets (train / test) of labelled boxes.
    cfg.PRETRAIN.PROBES.BOX_TRAIN = ""
    cfg.PRETRAIN.PROBES.BOX_TEST = ""
    # Weighted kNN: neighbours and the temperature of their weights exp(cosine / T) (InstDisc / DINO).
    cfg.PRETRAIN.PROBES.KNN_K = 20
    cfg.PRETRAIN.PROBES.KNN_TEMPERATURE = 0.07
    # kNN features: "centered" (minus the training mean, then L2: post-ReLU box features share an offset that
    # makes every cosine ~0.9), "cosine" (L2 only, InstDisc/DINO) or "standardized" (centred, per-dim std).
    cfg.PRETRAIN.PROBES.KNN_NORMALIZATION = "centered"
    # Image kNN: short side resized to IMAGE_SIZE / 0.875, then the centre IMAGE_SIZE x IMAGE_SIZE crop.
    cfg.PRETRAIN.PROBES.IMAGE_SIZE = 224
    # Box probes: images resized as the detector's test transform,
    # ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST).
    cfg.PRETRAIN.PROBES.MIN_SIZE_TEST = 800
    cfg.PRETRAIN.PROBES.MAX_SIZE_TEST = 1333
    # Images per forward pass of the frozen encoder (per process).
    cfg.PRETRAIN.PROBES.BATCH_SIZE = 16
    # Linear probe (logistic regression on standardised box features): Adam steps, lr, L2 weight decay.
    cfg.PRETRAIN.PROBES.LINEAR_STEPS = 300
    cfg.PRETRAIN.PROBES.LINEAR_LR = 0.01
    cfg.PRETRAIN.PROBES.LINEAR_WEIGHT_DECAY = 1e-3
    # Seed of the linear probe's mini-batch order.
    cfg.PRETRAIN.PROBES.SEED = 0


#: Keys that moved to the PRETRAIN namespace; an old name in a YAML or on the command line is an error naming
#: the new one (yacs' renamed-key mechanism). Whole old sections are listed too, for YAML files.
RENAMED_KEYS = {
    "SOCO.DATA": "PRETRAIN.DATA",
    **{
        f"SOCO.DATA.{key}": f"PRETRAIN.DATA.{key}"
        for key in ("IMAGE_ROOT", "PROPOSALS", "VIEW_GENERATOR", "PIXEL_MEAN", "PIXEL_STD")
    },
    "SOCO.MOMENTUM": "PRETRAIN.MOMENTUM",
    "SOCO.MOMENTUM.BASE": "PRETRAIN.MOMENTUM.BASE",
    "SOCO.MOMENTUM.SCHEDULE": "PRETRAIN.MOMENTUM.SCHEDULE",
}


def _register_renamed_keys(cfg: CN) -> None:
    for old, new in RENAMED_KEYS.items():
        cfg.register_renamed_key(old, new, message="keys shared by every method live under PRETRAIN.*")


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
    cfg.SOCO = CN()
    cfg.SOCO.POOL_ALL_LEVELS = True
    # Batch-norm batches of the RoI head, projector and predictor: "per_level" (original SoCo) runs them once
    # per (box set, pyramid level); "per_box_set" once per box set on all its levels' RoIs together.
    cfg.SOCO.HEAD_BATCHING = "per_level"
    # Zero-initialise the last norm's scale (gamma) of every residual block, as SoCo's torchvision ResNet.
    cfg.SOCO.ZERO_INIT_RESIDUAL = True
    cfg.SOCO.HEAD = CN()
    # Projector/predictor MLPs: in -> MLP_HIDDEN_DIM -> MLP_NORM -> ReLU -> MLP_OUT_DIM; the norm is "", "BN",
    # "SyncBN" or "naiveSyncBN" (which also synchronizes CPU processes).
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
    """Keys of the image-level baselines (MoCo v2, SwAV, DenseCL) and their view generators.

    Their backbones are Detectron2's (MODEL.BACKBONE.NAME, MODEL.RESNETS.*) with OUT_FEATURES ["res5"].
    """
    cfg.MOCO = CN()
    # Hidden width of the projection MLP on pooled res5 (res5 -> hidden -> norm -> ReLU -> embedding).
    cfg.MOCO.MLP_HIDDEN_DIM = 2048
    # Dimension of the L2-normalised embedding the projection MLP outputs.
    cfg.MOCO.EMBED_DIM = 128
    # Norm of the MLP's hidden layer: "" (none, MoCo v2), "BN", "SyncBN" or "naiveSyncBN" (CPU processes).
    cfg.MOCO.MLP_NORM = ""
    # Keys in the queue of negatives, a multiple of SOLVER.IMS_PER_BATCH (DenseCL: also its dense queue).
    cfg.MOCO.QUEUE_LENGTH = 65536
    # Softmax temperature of the InfoNCE loss (MoCo v1: 0.07, v2: 0.2).
    cfg.MOCO.TEMPERATURE = 0.2
    cfg.MOCO.VIEWS = CN()
    # MoCoV2Views (MoCo v2 and DenseCL): side in pixels of both random-resized crops.
    cfg.MOCO.VIEWS.SIZE = 224
    # MoCoV2Views: area range of the random-resized crops, as fractions of the image area.
    cfg.MOCO.VIEWS.CROP_SCALE = (0.2, 1.0)

    cfg.DENSECL = CN()
    # Weight lambda of the dense loss: loss = (1 - lambda) * global InfoNCE + lambda * dense InfoNCE.
    cfg.DENSECL.LOSS_WEIGHT = 0.5

    cfg.SWAV = CN()
    # Hidden width of the projection MLP on pooled res5 (res5 -> hidden -> norm -> ReLU -> embedding).
    cfg.SWAV.MLP_HIDDEN_DIM = 2048
    # Dimension of the L2-normalised embedding the projection MLP outputs.
    cfg.SWAV.EMBED_DIM = 128
    # Norm of the MLP's hidden layer: "" (none), "BN", "SyncBN" or "naiveSyncBN" (CPU processes).
    cfg.SWAV.MLP_NORM = "SyncBN"
    # Number of prototypes (rows of the bias-free linear layer "prototypes").
    cfg.SWAV.NUM_PROTOTYPES = 3000
    # Softmax temperature of the swapped prediction.
    cfg.SWAV.TEMPERATURE = 0.1
    # Sinkhorn-Knopp: entropy regularisation epsilon.
    cfg.SWAV.SINKHORN_EPSILON = 0.05
    # Sinkhorn-Knopp: number of row/column normalisation rounds.
    cfg.SWAV.SINKHORN_ITERS = 3
    # Indices (in crop order: the crops of SWAV.VIEWS group 0 first) of the crops whose codes are predicted.
    cfg.SWAV.CROPS_FOR_ASSIGN = [0, 1]
    # Queue length per assigned crop (0: no queue), rounded down to a multiple of SOLVER.IMS_PER_BATCH.
    cfg.SWAV.QUEUE_LENGTH = 0
    # Queue start (filling begins; used once full) in epochs, for runs scheduled by SOLVER.EPOCHS.
    cfg.SWAV.QUEUE_START_EPOCHS = 15.0
    # Queue start in iterations, for runs scheduled by SOLVER.MAX_ITER (SOLVER.EPOCHS 0).
    cfg.SWAV.QUEUE_START_ITER = 0
    # Prototype gradients are dropped for this many epochs (runs scheduled by SOLVER.EPOCHS) ...
    cfg.SWAV.FREEZE_PROTOTYPES_EPOCHS = 1.0
    # ... or for this many iterations (runs scheduled by SOLVER.MAX_ITER, SOLVER.EPOCHS 0).
    cfg.SWAV.FREEZE_PROTOTYPES_ITERS = 0
    cfg.SWAV.VIEWS = CN()
    # MultiCropViews: side in pixels of the crops of each group (the crops are ordered group by group).
    cfg.SWAV.VIEWS.SIZES = [224, 96]
    # MultiCropViews: number of crops of each group.
    cfg.SWAV.VIEWS.NUM_CROPS = [2, 6]
    # MultiCropViews: smallest area of each group's random-resized crops, as a fraction of the image area.
    cfg.SWAV.VIEWS.MIN_SCALES = [0.14, 0.05]
    # MultiCropViews: largest area of each group's random-resized crops, as a fraction of the image area.
    cfg.SWAV.VIEWS.MAX_SCALES = [1.0, 0.14]


def leaf_keys(tree: Mapping, prefix: str = "") -> Iterator[str]:
    """Dotted full keys (``SOLVER.MAX_ITER``) of the leaves of a nested config mapping (a loaded YAML)."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"
