# One image for every service of docker-compose.yml: the Dask scheduler and
# workers, the build job and the trainer. The scheduler, the workers and the
# client that submits the build must run the same `distributed` version,
# which one image guarantees.
#
# torch: the CPU wheel by default (the build never needs a GPU). For the
# trainer on an NVIDIA GPU build the CUDA variant of the same image:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 -t harmonic-feature-store:cuda .
# (docker-compose.yml does this for the trainer service).
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC="torch>=2.4"

# libsndfile: soundfile's decoder (WAV/AU/FLAC/MP3); MP3 also decodes through
# PyAV, whose wheel bundles its own ffmpeg, so no system ffmpeg is needed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1 curl \
 && rm -rf /var/lib/apt/lists/*

# One thread per worker process: Dask parallelises across processes, and
# BLAS/OpenMP/numba threads on top would oversubscribe the cores.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    NUMBA_NUM_THREADS=1

WORKDIR /app
# torch first, in its own layer: it is the largest and changes least.
RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY stores ./stores
COPY model ./model
COPY workflows ./workflows
RUN pip install ".[s3,xarray]"

# Not root: nothing in the pipeline needs it. /data holds dataset audio,
# /runs training outputs (mount volumes there).
RUN useradd --create-home --uid 1000 hfs && mkdir -p /data /runs && chown hfs:hfs /data /runs
USER hfs
WORKDIR /home/hfs
CMD ["pipeline", "--help"]
