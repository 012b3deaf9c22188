"""`featuremaps.inspect`: look inside a model without training it (summary, ...)."""
from .summary import Summary, summary
from .connectivity import connections, conv_source, fan_in, fan_out, filters_for_output, filters_from_input
from .activations import LayerActivation, activations, resolve_layer
from .receptive import ReceptiveField, receptive_field
from .explain import Explanation, Step, Term, explain
from .sources import MapSource, MapSources, map_sources
