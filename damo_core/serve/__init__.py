"""Serving on Triton: model repository writer, local server, deploy with rollback, client.

* :mod:`~damo_core.serve.repository` writes the repository (ensemble of preprocess →
  detector → postprocess), ``native`` for the cluster's Triton image or ``python`` for the
  CPU-only server of the ``nvidia-pytriton`` wheel;
* :mod:`~damo_core.serve.local_server` runs that server on 127.0.0.1 (:class:`LocalTriton`);
* :mod:`~damo_core.serve.deploy` loads a new version through the repository API and rolls
  back when it does not load or answer (repository in a directory or, through
  :mod:`~damo_core.serve.remote_repo`, on S3/MinIO);
* :mod:`~damo_core.serve.admin` keeps the repository API (which can run code sent to the
  server) behind a key: the header, env var and flags shared by server, clients and manifests;
* :mod:`~damo_core.serve.client` is ``damo infer``; :mod:`~damo_core.serve.bench` is
  ``damo serve-bench``.

Import the submodules directly; this package imports nothing heavy (no gRPC, no server).
"""
