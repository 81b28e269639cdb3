#!/bin/sh
# /usr/local/bin/tritonserver in docker/Dockerfile.triton: the nvidia-pytriton wheel's server
# with the recipe of damo_core/serve/local_server.py: the wheel's bundled libraries
# (/opt/tritonserver/lib) and Python's LIBDIR (libpython, for the backend stub, which inherits
# this environment) on the library path. The backends are in /opt/tritonserver/backends, the
# server's default --backend-directory.
libdir=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
LD_LIBRARY_PATH="/opt/tritonserver/lib${libdir:+:$libdir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec /opt/tritonserver/bin/tritonserver "$@"
