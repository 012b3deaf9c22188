"""`featuremaps.pictures`: PNG figures of kernels, feature maps, connectivity, receptive fields and
training curves.

Needs the optional extra `plot` (matplotlib), imported only when a picture is drawn:
`pip install 'featuremaps[plot]'`. Every function saves a PNG when given a path (and returns the
Path) or returns a matplotlib Figure when the path is None. Figures are rendered with Agg; no window
ever opens and pyplot's global state is untouched.
"""
from .kernels import kernel_grid
from .maps import feature_maps
from .connectivity import connectivity_diagram
from .receptive import receptive_field_overlay
from .curves import curves, load_metrics

__all__ = ["kernel_grid", "feature_maps", "connectivity_diagram", "receptive_field_overlay", "curves",
           "load_metrics"]
