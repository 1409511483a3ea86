#!/usr/bin/env bash
# Builds one libFuzzer target with AddressSanitizer and runs it for SECONDS on its corpus.
#
#   Fuzz/run.sh TARGET SECONDS [libFuzzer options...]      (or: make fuzz FUZZ=TARGET SECONDS=n)
#
# TARGET is one of
#   script       .sdscript lines (ScriptLine, ResultRecord, CommandText) and the prompt parsers
#                (ExtraNetworks, PromptComposition, PromptSchedule, PromptParser)
#   safetensors  the safetensors header parser, and reading each tensor of a header that validates
#   pickle       PyTorch zip files (TorchFile: the stored-zip reader, the weights-only pickle machine,
#                the tensor listing), and reading each tensor of a file that opens
#   image        the PNG/JPEG recipe reader over libpng/libjpeg (C shim), EXIF, the infotext
#
# The harness is compiled with swiftc over the real source files it needs (no SwiftPM), into
# .build-fuzz/TARGET/. libFuzzer reads the committed seeds in Fuzz/corpus/TARGET and writes what it
# learns to .build-fuzz/TARGET/corpus; a crashing, leaking or hanging input is kept in
# .build-fuzz/TARGET/artifacts/ (replay one with: .build-fuzz/TARGET/fuzz-TARGET ARTIFACT).
# Extra options go to libFuzzer, e.g. -jobs=1 -workers=1 (then its log is .build-fuzz/TARGET/fuzz-0.log).
set -euo pipefail

usage() { echo "usage: $0 script|safetensors|pickle|image SECONDS [libFuzzer options...]" >&2; exit 2; }
[ $# -ge 2 ] || usage
target=$1 seconds=$2
shift 2
[[ $seconds =~ ^[0-9]+$ ]] || usage

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/.build-fuzz/$target
modules=$build/modules
SWIFTC=${SWIFTC:-swiftc}
# The clang that comes with swiftc, so both link against the same sanitizer runtimes.
CLANG=${CLANG:-$(dirname "$(command -v "$SWIFTC")")/clang}
swift_flags=(-O -sanitize=fuzzer,address -parse-as-library)
mkdir -p "$modules" "$build/corpus" "$build/artifacts"

# A library module: every file at once (-wmo), one object, its .swiftmodule in $modules.
# Instrumented like the harness, so the fuzzer sees its coverage.
swift_module() {
    local name=$1
    shift
    "$SWIFTC" "${swift_flags[@]}" -wmo -c -module-name "$name" -I "$modules" \
        -emit-module -emit-module-path "$modules/$name.swiftmodule" -o "$build/$name.o" "$@"
}

# The Imaging module as SwiftPM builds it: Sources/Imaging over the C shim, libpng, libjpeg and
# libsixel (module maps from Sources/C*, and Fuzz/Support's for the shim, whose map SwiftPM
# generates). The shim is compiled with clang, instrumented too.
# Header paths come from pkg-config, as Package.swift's system libraries get them.
read -r -a c_flags <<<"$(pkg-config --cflags libpng libjpeg libsixel zlib)"
imaging_includes=(-I "$root/Fuzz/Support/CImagingShim" -I "$root/Sources/CPNG" -I "$root/Sources/CJPEG" -I "$root/Sources/CSixel")
for flag in "${c_flags[@]}"; do imaging_includes+=(-Xcc "$flag"); done
imaging_module() {
    for c in png_shim jpeg_shim; do
        "$CLANG" -O1 -g -fsanitize=fuzzer-no-link,address "${c_flags[@]}" -I "$root/Sources/CImagingShim/include" \
            -c "$root/Sources/CImagingShim/$c.c" -o "$build/$c.o"
    done
    swift_module FileErrors "$root"/Sources/FileErrors/*.swift
    swift_module Imaging "${imaging_includes[@]}" "$root"/Sources/Imaging/*.swift
}

case $target in
script)
    # Transcript.swift imports Crypto (for pixelHash, unused here: Fuzz/Support/Crypto.swift says
    # why it is a stub) and Imaging, of which it needs RGBImage and so ImagingError: those two real
    # files make up the Imaging module of this build.
    swift_module Crypto "$root/Fuzz/Support/Crypto.swift"
    swift_module FileErrors "$root"/Sources/FileErrors/*.swift
    swift_module Imaging "$root/Sources/Imaging/RGBImage.swift" "$root/Sources/Imaging/ImagingError.swift"
    "$SWIFTC" "${swift_flags[@]}" -module-name ScriptFuzzer -I "$modules" \
        "$root/Fuzz/ScriptFuzzer.swift" \
        "$root/Sources/SDScript/Language/ScriptLine.swift" \
        "$root/Sources/SDScript/Language/ScriptError.swift" \
        "$root/Sources/SDScript/Transcript/Transcript.swift" \
        "$root/Sources/Diffusion/Text/ExtraNetworks.swift" \
        "$root/Sources/Diffusion/Text/PromptComposition.swift" \
        "$root/Sources/Diffusion/Text/PromptSchedule.swift" \
        "$root/Sources/Diffusion/Text/PromptParser.swift" \
        "$root/Fuzz/Support/LoRAError.swift" \
        "$build/Crypto.o" "$build/FileErrors.o" "$build/Imaging.o" -o "$build/fuzz-script"
    ;;
safetensors)
    nn=$root/Sources/NN
    "$SWIFTC" "${swift_flags[@]}" -module-name SafetensorsFuzzer \
        "$root/Fuzz/SafetensorsFuzzer.swift" \
        "$nn/Weights/Safetensors.swift" "$nn/Weights/MappedFile.swift" "$nn/Weights/HeaderJSON.swift" "$nn/Weights/SafetensorsError.swift" \
        "$nn/Weights/FloatConversion.swift" "$nn/Weights/Parameter.swift" "$nn/Weights/ShapeRecorder.swift" \
        "$nn/Weights/WeightsError.swift" "$nn/Tensor/Tensor.swift" "$nn/Tensor/Profiler.swift" \
        -o "$build/fuzz-safetensors"
    ;;
pickle)
    nn=$root/Sources/NN
    "$SWIFTC" "${swift_flags[@]}" -module-name PickleFuzzer \
        "$root/Fuzz/PickleFuzzer.swift" "$nn"/Weights/Torch/*.swift \
        "$nn/Weights/TensorFile.swift" "$nn/Weights/MappedFile.swift" "$nn/Weights/Safetensors.swift" \
        "$nn/Weights/HeaderJSON.swift" "$nn/Weights/SafetensorsError.swift" "$nn/Weights/FloatConversion.swift" \
        "$nn/Weights/Parameter.swift" "$nn/Weights/ShapeRecorder.swift" "$nn/Weights/WeightsError.swift" \
        "$nn/Tensor/Tensor.swift" "$nn/Tensor/Profiler.swift" \
        -o "$build/fuzz-pickle"
    ;;
image)
    imaging_module
    "$SWIFTC" "${swift_flags[@]}" -module-name ImageFuzzer -I "$modules" "${imaging_includes[@]}" -I "$root/Sources/CZlib" \
        "$root/Fuzz/ImageFuzzer.swift" "$build/FileErrors.o" "$build/Imaging.o" "$build/png_shim.o" "$build/jpeg_shim.o" \
        -lpng16 -ljpeg -lsixel -lz -o "$build/fuzz-image"
    ;;
*)
    usage
    ;;
esac

dict=()
[ -f "$root/Fuzz/$target.dict" ] && dict=(-dict="$root/Fuzz/$target.dict")
# Swift's own crash backtracer, under AddressSanitizer, can hang after a trap instead of exiting;
# libFuzzer prints the stack and keeps the input anyway.
export SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no}
# With -jobs, libFuzzer writes its log (fuzz-N.log) to the working directory: keep it in the build folder.
cd "$build"
exec "$build/fuzz-$target" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/" "${dict[@]}" "$@" "$build/corpus" "$root/Fuzz/corpus/$target"
