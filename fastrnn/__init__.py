"""fastrnn: drop-in torch.nn.LSTM / LSTMCell on fused kernels (C++ on CPU, Triton on GPU)."""

from fastrnn.backends import BACKEND_NAMES, available_backends, resolve_backend
from fastrnn.convert import convert
from fastrnn.weight_cache import clear_weight_cache, trust_version_counters
from fastrnn.workspace import clear_workspace
from fastrnn.modules import LSTM, LSTMCell

__all__ = ["LSTM", "LSTMCell", "convert", "clear_weight_cache", "clear_workspace", "trust_version_counters", "available_backends", "resolve_backend", "BACKEND_NAMES"]
__version__ = "0.1.0"
