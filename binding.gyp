# The CPU-only addon, built by node-gyp (`npm install` runs it through node-gyp-build).
# CMakeLists.txt builds the same sources plus native/cuda when nvcc is present. Gloo (native/comm's CPU
# collectives) is compiled in when native/find-gloo.cjs finds Debian's libgloo-dev.
{
  "targets": [
    {
      "target_name": "puzzle_llama_cpu",
      "sources": ["<!@(node native/list-sources.cjs)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-math-errno", "-fexceptions", "-Wall", "-Wextra"],
      "ldflags": ["-pthread"],
      "conditions": [
        ["'<!(node native/find-gloo.cjs)'=='1'", {
          "defines": ["PUZZLE_LLAMA_GLOO"],
          "libraries": ["-lgloo"]
        }]
      ],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CPLUSPLUSFLAGS": ["-O3", "-fno-math-errno"]
      }
    }
  ]
}
