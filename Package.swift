// swift-tools-version:6.0
import PackageDescription

// System libraries come from Debian (see the Makefile's `deps` target, which installs them).
func systemLibrary(_ name: String, pkgConfig: String, apt: String) -> Target {
    .systemLibrary(name: name, pkgConfig: pkgConfig, providers: [.apt([apt])])
}

// Release builds of the engine on x86-64 target AVX2 + FMA (Intel Haswell, 2013; AMD Zen): the
// SIMD8 kernels (exp, softmax, GELU, the fused attention tiles) run at twice the width of the SSE2
// baseline and use FMA. On a CPU without AVX2 the engine would die of SIGILL, so the executables
// should check the CPU before calling into it. (`x86-64-v3` names the same level, but this Swift's
// clang importer does not accept it.) The manifest is compiled for the host, so `arch` is the
// build machine's: right for native builds.
#if arch(x86_64)
let engineCodegen: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"], .when(configuration: .release))]
#else
let engineCodegen: [SwiftSetting] = []
#endif

let package = Package(
    name: "sdrepl",
    products: [
        .executable(name: "sdrepl", targets: ["sdrepl"]),
        .executable(name: "sdbench", targets: ["sdbench"]),
        .library(name: "NN", targets: ["NN"]),
        .library(name: "Diffusion", targets: ["Diffusion"]),
        .library(name: "Imaging", targets: ["Imaging"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        systemLibrary("COpenBLAS", pkgConfig: "openblas", apt: "libopenblas-dev"),
        systemLibrary("CEditline", pkgConfig: "libedit", apt: "libedit-dev"),
        systemLibrary("CPNG", pkgConfig: "libpng", apt: "libpng-dev"),
        systemLibrary("CJPEG", pkgConfig: "libjpeg", apt: "libjpeg-dev"),
        systemLibrary("CSixel", pkgConfig: "libsixel", apt: "libsixel-dev"),
        systemLibrary("CZlib", pkgConfig: "zlib", apt: "zlib1g-dev"),
        systemLibrary("CFreeType", pkgConfig: "freetype2", apt: "libfreetype-dev"),

        // The network core every model shares: Tensor and its kernels on OpenBLAS, safetensors and
        // weight scopes, the generic layers (linear, conv, norms, attention, resnet, transformer).
        .target(name: "NN", dependencies: ["COpenBLAS", "CBF16", "CKernels", "FileErrors"], swiftSettings: engineCodegen),
        // The engine's own matrix product in C with AVX2 intrinsics: Winograd's 36 products per block.
        .target(name: "CKernels"),
        // bf16 rounding, and oneDNN's bf16 matmul opened at run time on CPUs that have bf16 instructions.
        .target(name: "CBF16"),
        // Stable Diffusion 1.x on NN: checkpoint layouts and the key table, LoRA and embeddings, the
        // tokenizer and text encoder, UNet, VAE, samplers and the staged pipeline.
        .target(
            name: "Diffusion",
            dependencies: ["NN", "HubLayout", "CZlib"],
            resources: [.copy("Resources")],
            swiftSettings: engineCodegen
        ),
        // One phrase for a failed file operation ("is a folder, not a file"), for every module's messages.
        .target(name: "FileErrors"),
        // libpng/libjpeg calls wrapped in C so their setjmp/longjmp error handling never crosses Swift frames.
        .target(name: "CImagingShim", dependencies: ["CPNG", "CJPEG"]),
        // RGB images, PNG/JPEG with metadata, sixel, text drawn with FreeType (labelled sheets).
        .target(name: "Imaging", dependencies: ["CImagingShim", "CPNG", "CJPEG", "CSixel", "CFreeType", "FileErrors"]),
        // The Hugging Face cache layout, read by ModelStore, the engine's checkpoint opener and the session.
        .target(name: "HubLayout"),
        // Finding, listing, downloading and verifying checkpoints.
        .target(name: "ModelStore", dependencies: ["HubLayout", "FileErrors", .product(name: "Crypto", package: "swift-crypto")]),
        // The command language, session state, transcripts, replay.
        .target(
            name: "SDScript",
            dependencies: ["Diffusion", "Imaging", "ModelStore", "HubLayout", "FileErrors", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // Runs before the engine: refuses a CPU without the instructions the engine is built for.
        .target(name: "HostCheck"),
        .executableTarget(
            name: "sdrepl",
            dependencies: ["HostCheck", "SDScript", "Diffusion", "ModelStore", "Imaging", "FileErrors", "CEditline", "CSixel", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "sdbench",
            dependencies: ["HostCheck", "Diffusion", "NN", "ModelStore", "COpenBLAS", "CBF16", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        // Shared by every test target: fixture paths and the reference-data reader.
        .target(name: "TestSupport", dependencies: ["Diffusion", "NN", .product(name: "Crypto", package: "swift-crypto")], path: "Tests/TestSupport"),
        .testTarget(name: "NNTests", dependencies: ["NN", "Diffusion", "TestSupport"]),
        .testTarget(name: "DiffusionTests", dependencies: ["Diffusion", "NN", "TestSupport"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "Diffusion", "TestSupport"]),
        .testTarget(name: "FileErrorsTests", dependencies: ["FileErrors"]),
        .testTarget(name: "ModelStoreTests", dependencies: ["ModelStore", "TestSupport"]),
        .testTarget(name: "SDScriptTests", dependencies: ["SDScript", "Diffusion", "Imaging", "ModelStore", "TestSupport"]),
        .testTarget(name: "sdreplTests", dependencies: ["TestSupport", "Diffusion", "Imaging", "HostCheck"]),
    ],
    swiftLanguageModes: [.v5]
)
