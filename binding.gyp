{
  "targets": [
    {
      "target_name": "kiln",
      "sources": [
        "native/addon.cc", "native/decode.cc", "native/errors.cc", "native/functional.cc", "native/module.cc", "native/ops.cc",
        "native/optim.cc", "native/tensor.cc", "native/workers.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native",
        "<!@(node scripts/find-libtorch.js --no-install --include-dirs)"
      ],
      "libraries": ["<!@(node scripts/find-libtorch.js --no-install --libs)", "<!@(node scripts/image-libs.js --libs)", "-ldl"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "<!@(node scripts/find-libtorch.js --no-install --defines)", "<!@(node scripts/image-libs.js --defines)"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14", "-std=gnu++20"],
      "cflags_cc": ["<!@(node scripts/find-libtorch.js --no-install --cxx-std)", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter", "-Wno-unused-variable"]
    }
  ]
}
