#!/usr/bin/env bash
# Build llama.cpp's llama-server and the tiny model once, into a cache outside the repository,
# so that a rerun of the bench (or of tests/test_llamacpp_engine.py) does not compile again.
#
#   bench/real_engine/build.sh          # ~/.cache/litellm-failover/llama-cpp (or $LITELLM_FAILOVER_LLAMA_CPP_DIR)
#
# The machine is shared: everything runs under `nice -n 19` with at most 2 compile jobs
# (JOBS=... to change). C++ is compiled at -O0: the model is tiny, so compile time is what
# counts, and the server answers in milliseconds all the same.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${LITELLM_FAILOVER_LLAMA_CPP_DIR:-$HOME/.cache/litellm-failover/llama-cpp}"
VENV="${LITELLM_FAILOVER_LLAMA_VENV:-$HOME/.cache/litellm-failover/llama-venv}"
JOBS="${JOBS:-2}"
VERSION=0.3.36
mkdir -p "$CACHE"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# The model writer's needs (bench/requirements-real-engine.txt); llama-cpp-python is only fetched
# as source below, for the llama.cpp it vendors, and never installed.
"$VENV/bin/pip" install -q gguf==0.19.0 tokenizers==0.23.3 "numpy>=1.26"

SRC="$CACHE/llama_cpp_python-$VERSION/vendor/llama.cpp"
if [ ! -d "$SRC" ]; then
  "$VENV/bin/pip" download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$CACHE/sdist"
  tar xzf "$CACHE/sdist/llama_cpp_python-$VERSION.tar.gz" -C "$CACHE"
fi

if [ ! -x "$CACHE/build/bin/llama-server" ]; then
  nice -n 19 cmake -S "$SRC" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_C_FLAGS_RELEASE=-O1 -DNDEBUG" "-DCMAKE_CXX_FLAGS_RELEASE=-O0 -DNDEBUG" \
    -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
    -DGGML_CCACHE=OFF >"$CACHE/cmake.log"
  nice -n 19 cmake --build "$CACHE/build" --target llama-server -j "$JOBS" >"$CACHE/build.log"
fi

if [ ! -f "$CACHE/model/tiny.gguf" ]; then
  "$VENV/bin/python" "$HERE/make_model.py" --out "$CACHE/model/tiny.gguf" --kind random
fi
if [ ! -f "$CACHE/model/tiny-bigram.gguf" ]; then
  "$VENV/bin/python" "$HERE/make_model.py" --out "$CACHE/model/tiny-bigram.gguf" --kind bigram
fi
echo "ready: $CACHE/build/bin/llama-server $CACHE/model/tiny.gguf"
