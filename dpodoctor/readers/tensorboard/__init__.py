"""TensorBoard event files (``events.out.tfevents.*``): one package, one module per job.

* :mod:`.crc` — CRC-32C, the one implementation (C from ``google-crc32c`` when installed, else a table in Python
  and numpy);
* :mod:`.framing` — the TFRecord framing: the fast walk and the reference walk that resynchronises past damage;
* :mod:`.proto` — what protobuf says a record holds (tensors, plugins, the ``args`` summary);
* :mod:`.decode` — the vectorised decode of a file into columns, in bounded chunks;
* :mod:`.assemble` — the one assembler: a run's result from its files' decodes (read, reference read, live);
* :mod:`.reader` — the registered reader, its live follower, and the bounded ``args`` lookup for β.
"""

from __future__ import annotations

from dpodoctor.readers.tensorboard.assemble import assemble
from dpodoctor.readers.tensorboard.crc import crc32c, masked_crc32c
from dpodoctor.readers.tensorboard.decode import FileDecode, decode_event_bytes, decode_file, decode_reference
from dpodoctor.readers.tensorboard.framing import RecordScan, next_header, scan_records
from dpodoctor.readers.tensorboard.proto import ARGS_TAG, SCALARS_PLUGIN, scalar_value, tensor_scalar
from dpodoctor.readers.tensorboard.reader import TensorBoardFollower, TensorBoardReader, order_key, read_args_config

__all__ = [
    "ARGS_TAG",
    "SCALARS_PLUGIN",
    "FileDecode",
    "RecordScan",
    "TensorBoardFollower",
    "TensorBoardReader",
    "assemble",
    "crc32c",
    "decode_event_bytes",
    "decode_file",
    "decode_reference",
    "masked_crc32c",
    "next_header",
    "order_key",
    "read_args_config",
    "scalar_value",
    "scan_records",
    "tensor_scalar",
]
