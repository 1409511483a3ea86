// Stands in for swift-crypto's `Crypto` module in the script fuzzer. That fuzzer compiles the real
// Sources/SDScript/Transcript/Transcript.swift for `ResultRecord`; the file imports Crypto only for
// `pixelHash`, which the harness never calls. Building swift-crypto (BoringSSL) with the sanitizers
// for that one unused function would cost more than the whole fuzzer.
import Foundation

public enum SHA256 {
    public static func hash<D: DataProtocol>(data: D) -> [UInt8] {
        preconditionFailure("SHA256 is a stub in the fuzz build; the harness does not hash pixels")
    }
}
