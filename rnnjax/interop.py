"""Exact weight conversion to and from PyTorch and Keras 3 recurrent layers and Flax cells,
and from the original implementations of rnnjax's LayerNorm LSTM (Haste), minGRU/minLSTM
(mingru-pytorch), whose gate orders differ from rnnjax's, and RG-LRU (recurrentgemma).

torch and keras are optional (``pip install "rnnjax[interop]"``): each is imported only
inside the functions that need it, as flax is.
"""

from rnnjax._src.interop.flax import from_flax as from_flax
from rnnjax._src.interop.flax import to_flax as to_flax
from rnnjax._src.interop.keras import from_keras as from_keras
from rnnjax._src.interop.keras import to_keras as to_keras
from rnnjax._src.interop.originals import (
    layer_norm_lstm_params_from_haste as layer_norm_lstm_params_from_haste,
)
from rnnjax._src.interop.originals import min_gru_params_from_mingru as min_gru_params_from_mingru
from rnnjax._src.interop.originals import (
    min_lstm_params_from_mingru as min_lstm_params_from_mingru,
)
from rnnjax._src.interop.pytorch import from_torch as from_torch
from rnnjax._src.interop.pytorch import to_torch as to_torch
from rnnjax._src.interop.recurrentgemma import (
    rg_lru_params_from_recurrentgemma as rg_lru_params_from_recurrentgemma,
)

__all__ = (
    "from_flax",
    "from_keras",
    "from_torch",
    "layer_norm_lstm_params_from_haste",
    "min_gru_params_from_mingru",
    "min_lstm_params_from_mingru",
    "rg_lru_params_from_recurrentgemma",
    "to_flax",
    "to_keras",
    "to_torch",
)
