# One image for every service of docker-compose.yml: the Dask scheduler and
# workers, the upload and build jobs and the trainer. The scheduler, the
# workers and the client that submits the build must run the same
# `distributed` version, which one image guarantees.
#
#   docker build -t harmonic-feature-store:latest .
#
# torch: the CPU wheel by default (the build never needs a GPU). For the
# trainer on an NVIDIA GPU build the CUDA variant of the same image:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 -t harmonic-feature-store:cuda .
# (docker-compose.yml does this for the trainer service).
#
# BASE_IMAGE: any Debian or Ubuntu image. With Python 3.11+ and its venv
# module (the default, python:3.11-slim) that Python is used; otherwise
# Debian's python3 and python3-venv are installed (a bare Debian bookworm
# gives Python 3.11). docker/debian-base.sh makes such a base on a machine
# that reaches no image registry.
#
# docker/local/ is copied into the install stage only (never into the final
# image): a pip.conf there (a CA bundle for a TLS-intercepting proxy, a
# folder of local wheels, version constraints) is used by pip. It is empty in
# the repository; docker/prepare-local.sh fills it from this machine's own pip
# configuration (docs/deployment.md).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS runtime
# libsndfile: soundfile's decoder (WAV/AU/FLAC/MP3); MP3 also decodes through
# PyAV, whose wheel bundles its own ffmpeg, so no system ffmpeg is needed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1 curl ca-certificates \
 && if ! python3 -c 'import ensurepip, sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then \
      apt-get install -y --no-install-recommends python3 python3-venv; fi \
 && rm -rf /var/lib/apt/lists/*

# One thread per worker process: Dask parallelises across processes, and
# BLAS/OpenMP/numba threads on top would oversubscribe the cores.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    NUMBA_NUM_THREADS=1 \
    VIRTUAL_ENV=/opt/hfs \
    PATH=/opt/hfs/bin:$PATH

FROM runtime AS install
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC="torch>=2.4"
COPY docker/local/ /tmp/local/
RUN if [ -f /tmp/local/pip.conf ]; then cp /tmp/local/pip.conf /etc/pip.conf; fi \
 && python3 -m venv /opt/hfs \
 && pip install --upgrade pip
# torch first, in its own layer: it is the largest and changes least.
RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY stores ./stores
COPY model ./model
COPY bench ./bench
COPY workflows ./workflows
RUN pip install ".[s3,xarray]" && pip check

FROM runtime
COPY --from=install /opt/hfs /opt/hfs
COPY docker/upload.py /opt/hfs/bin/hfs-upload
# Not root: nothing in the pipeline needs it. /data holds dataset audio,
# /runs training outputs (mount volumes there).
RUN chmod 0755 /opt/hfs/bin/hfs-upload \
 && useradd --create-home --uid 1000 hfs && mkdir -p /data /runs && chown hfs:hfs /data /runs \
 && pipeline --help >/dev/null
USER hfs
WORKDIR /home/hfs
CMD ["pipeline", "--help"]
