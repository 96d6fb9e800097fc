"""The batch runtime: partitioned state tables on changelogs (tables), the consume loop (loop) and the
checkpoint that commits each batch in order (checkpoint)."""

from services.common.partitioned.checkpoint import Checkpoint
from services.common.partitioned.loop import Batch, PartitionedWorker
from services.common.partitioned.tables import Codec, CompactTable, StructCodec, Table

__all__ = ["Batch", "Checkpoint", "Codec", "CompactTable", "PartitionedWorker", "StructCodec", "Table"]
