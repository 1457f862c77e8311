"""SoCo's data side: box geometry, cutout in boxes and the registered view generators."""

from .views import SoCoC4Views, SoCoFPNStarViews, SoCoFPNViews, SoCoViews

__all__ = ["SoCoC4Views", "SoCoFPNStarViews", "SoCoFPNViews", "SoCoViews"]
