"""Training utilities: a clipped, jitted train step, a resumable loop, batches (shuffled, or
bucketed by length), data parallelism.

``fit`` needs ``tqdm`` and ``orbax-checkpoint`` (``pip install "rnnjax[examples]"``), imported
only when used.
"""

from rnnjax._src.training.bucketing import bucket_batches as bucket_batches
from rnnjax._src.training.distributed import data_parallel_mesh as data_parallel_mesh
from rnnjax._src.training.distributed import global_batch as global_batch
from rnnjax._src.training.distributed import replicate as replicate
from rnnjax._src.training.distributed import shard_batch as shard_batch
from rnnjax._src.training.loop import fit as fit
from rnnjax._src.training.step import KeepBest as KeepBest
from rnnjax._src.training.step import Trainer as Trainer
from rnnjax._src.training.step import TrainState as TrainState
from rnnjax._src.training.step import epoch_batches as epoch_batches
from rnnjax._src.training.step import make_trainer as make_trainer

__all__ = (
    "KeepBest",
    "TrainState",
    "Trainer",
    "bucket_batches",
    "data_parallel_mesh",
    "epoch_batches",
    "fit",
    "global_batch",
    "make_trainer",
    "replicate",
    "shard_batch",
)
