{
  # CPU build of the addon, used by `npm install` (node-gyp-build) and by prebuildify.
  # CMakeLists.txt builds the same target, adding CUDA; test/build-files.test.ts keeps their
  # source lists identical.
  "targets": [
    {
      "target_name": "edpo",
      "sources": [
        "csrc/addon.cc",
        "csrc/js_common.cc",
        "csrc/js_dist.cc",
        "csrc/js_io.cc",
        "csrc/js_memory.cc",
        "csrc/js_model.cc",
        "csrc/js_op_binding.cc",
        "csrc/js_op_table.cc",
        "csrc/js_op_table_kernels.cc",
        "csrc/js_op_table_loss.cc",
        "csrc/js_optim.cc",
        "csrc/js_profiler.cc",
        "csrc/js_runtime.cc",
        "csrc/js_tensor.cc",
        "csrc/js_tensor_ops.cc",
        "csrc/dist/grad_reducer.cc",
        "csrc/dist/layer_shards.cc",
        "csrc/dist/process_group.cc",
        "csrc/models/causal_lm.cc",
        "csrc/models/checkpoint.cc",
        "csrc/models/lora.cc",
        "csrc/models/generate.cc",
        "csrc/models/layers.cc",
        "csrc/models/layer_kernels.cc",
        "csrc/ops/cpu/row_kernels_avx2.cc",
        "csrc/ops/cpu/row_kernels_avx512.cc",
        "csrc/ops/adamw.cc",
        "csrc/ops/bf16_criterion.cc",
        "csrc/ops/chunked_linear.cc",
        "csrc/ops/cpu/optimizer_kernels.cc",
        "csrc/ops/cpu/row_kernels_base.cc",
        "csrc/ops/epsilon_dpo.cc",
        "csrc/ops/host_sync.cc",
        "csrc/ops/pair_loss.cc",
        "csrc/ops/backend.cc",
        "csrc/ops/cpu/cpu_backend.cc",
        "csrc/ops/cpu/cpu_isa.cc",
        "csrc/ops/sequence_stats.cc"
      ],
      "include_dirs": [
        "<!@(node -p \"require('node-addon-api').include\")",
        "<!@(node scripts/torch-paths.js include)"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "USE_C10D_GLOO",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_CPP_EXCEPTIONS_ALL",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "EDPO_BUILD_SYSTEM=\"node-gyp\"",
        "_GLIBCXX_USE_CXX11_ABI=<!(node scripts/torch-paths.js abi)"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-O3", "-fopenmp-simd", "-fno-math-errno", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": [
        "-L<!(node scripts/torch-paths.js libdir)",
        "-Wl,-rpath,<!(node scripts/torch-paths.js libdir)",
        "-ltorch",
        "-ltorch_cpu",
        "-lc10"
      ]
    }
  ]
}
