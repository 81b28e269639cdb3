"""Storage for datasets, manifests and models: a local directory or an S3/MinIO bucket.

``open_store("s3://bucket/prefix")`` or ``open_store("/data/out")`` returns a
:class:`Store` with ``read_bytes``, ``write_bytes`` (atomic), ``put_file``, ``get_file``,
``list``, ``exists``, ``delete`` and ``open_read`` (streaming). See :mod:`.s3` for the
environment variables that select the endpoint and credentials.
"""

from damo_core.storage.base import StorageError, StorageNotFoundError, Store
from damo_core.storage.factory import is_remote, open_store, split_uri

__all__ = ["Store", "StorageError", "StorageNotFoundError", "is_remote", "open_store",
           "split_uri"]
