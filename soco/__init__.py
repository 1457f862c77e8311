"""soco: detection-aligned self-supervised pretraining (SoCo) and baselines on Detectron2.

``import soco`` registers everything a config can name, as Detectron2's projects do:

* meta-architectures (``MODEL.META_ARCHITECTURE``): ``SoCoFPN``, ``SoCoC4``, ``MoCo``, ``SwAV``, ``DenseCL``;
* view generators (``PRETRAIN.DATA.VIEW_GENERATOR``): ``SoCoFPNViews``, ``SoCoFPNStarViews``,
  ``SoCoC4Views``, ``MoCoV2Views``, ``MultiCropViews``;
* optimizers (``SOLVER.OPTIMIZER``): ``LARS``, ``SGD``;
* fine-tuning RoI heads (``MODEL.ROI_HEADS.NAME``): ``Res5ROIHeadsExtraNorm``.

The CPU-only proposal tools live in the torch-free package :mod:`soco_proposals` instead: Python runs a
package's ``__init__`` for every import of one of its submodules, so a proposal worker importing anything
under ``soco`` would load torch and Detectron2.
"""

import warnings

with warnings.catch_warnings():
    # fvcore (imported by Detectron2's engine) compiles its focal loss with torch.jit.script at import time,
    # which torch >= 2.10 deprecates with a FutureWarning on every start; nothing a user can act on.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    from . import data, detection, modeling, solver  # noqa: F401  (registration)

__version__ = "0.1.0"
