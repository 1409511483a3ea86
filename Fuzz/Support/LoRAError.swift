// Stands in for `LoRAError` (Sources/Diffusion/Weights/LoRA.swift) in the script fuzzer: the real
// file also holds the LoRA loader, which needs tensors, safetensors and the key table, none of
// which the prompt parsers use. Only the cases `ExtraNetworks` throws are here; if it starts
// throwing another, this build fails to compile rather than going out of step silently.
public enum LoRAError: Error, Equatable {
    case badTag(tag: String, reason: String)
    case unsupportedNetwork(tag: String, kind: String)
}
