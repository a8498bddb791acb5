#!/usr/bin/env bash
# The kernel lab on a GPU host: builds every native/cuda/dev/<op>.cu program (the CMake target
# puzzle_llama_lab, in the CUDA build's folder) and runs each, or the ones named: each checks every version
# of its op against the CPU reference before timing it, and exits non-zero when a check fails.
#   bash native/cuda/dev/run.sh                 # every program, every version
#   bash native/cuda/dev/run.sh attention 4     # one program, one version
# Environment: BUILD (default build-cuda; configured by `npm run build:cuda` or gpu:check's build),
# LAB_TIMEOUT_S (seconds a program may run, default 120).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
build=${BUILD:-build-cuda}
if [[ ! -f $build/CMakeCache.txt ]]; then
  echo "lab: $build is not a configured CUDA build; run \`npm run build:cuda\` first" >&2
  exit 2
fi
cmake --build "$build" --target puzzle_llama_lab -j "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 4)}" > "$build/lab-build.log" 2>&1 \
  || { tail -40 "$build/lab-build.log"; echo "lab: the build failed" >&2; exit 2; }
programs=()
if (($# > 0)); then
  programs=("$1")
  shift
else
  for f in native/cuda/dev/*.cu; do programs+=("$(basename "$f" .cu)"); done
fi
status=0
for op in "${programs[@]}"; do
  echo "== lab_$op $*"
  timeout --kill-after=5 "${LAB_TIMEOUT_S:-120}" "$build/lab/lab_$op" "$@"
  code=$?
  ((code == 124 || code == 137)) && echo "== lab_$op: timed out after ${LAB_TIMEOUT_S:-120}s"
  ((code != 0)) && status=1
done
exit $status
