import Foundation

extension ShapeRecorder {
    /// The tensors of an SD1.x checkpoint as `Checkpoint` names them (`unet.…`, `vae.…`,
    /// `text_encoder.text_model.…`), from the models built with the given configs (SD1.5's by
    /// default). The VAE encoder is listed only when asked for: text to image builds only the decoder.
    /// - Throws: `ModelConfigError` for an invalid config.
    public static func checkpointTensors(text: CLIPTextConfig = CLIPTextConfig(), unet: UNetConfig = UNetConfig(),
                                         vae: VAEConfig = VAEConfig(), vaeEncoder: Bool = false) throws -> [(key: String, shape: [Int])] {
        let recorder = ShapeRecorder()
        func weights(_ c: CheckpointComponent) -> Weights { Weights(source: recorder, prefix: c.modelPrefix, keepConverted: false) }
        _ = try CLIPTextModel(config: text, weights: weights(.textEncoder))
        _ = try UNet2DConditionModel(config: unet, weights: weights(.unet))
        _ = try AutoencoderDecoder(config: vae, weights: weights(.vae))
        if vaeEncoder { _ = try AutoencoderEncoder(config: vae, weights: weights(.vae)) }
        return recorder.tensors
    }

    /// The name and shape a `Checkpoint` key has in the original LDM single-file layout, found by
    /// inverting `KeyMap`'s own table (every candidate is checked by mapping it forward again), so
    /// the two directions cannot disagree. Nil when no single-file name maps to `key`.
    /// - Parameters:
    ///   - key: a `Checkpoint` key (`unet.down_blocks.0.resnets.0.conv1.weight`).
    ///   - shape: its shape as the models see it; 1×1-convolution weights that LDM stores as
    ///     `[C, C, 1, 1]` get that shape back.
    public static func singleFileName(for key: String, shape: [Int]) -> (name: String, shape: [Int])? {
        KeyMap.shared.ldmNames(for: key).first.map { ($0.name, $0.flatten ? shape + [1, 1] : shape) }
    }

    /// `singleFileName` for a whole checkpoint, resolving the names the table reads both ways: the
    /// UNet's upsampler is `output_blocks.N.1.conv` at a level without attention and
    /// `output_blocks.N.2.conv` where slot 1 holds the attention, and `KeyMap` accepts either. The
    /// slot that no other tensor occupies is the one LDM uses.
    /// - Returns: the names in the order of `tensors`, or nil when one has no single-file name.
    public static func singleFileNames(for tensors: [(key: String, shape: [Int])]) -> [(name: String, shape: [Int])]? {
        let candidates = tensors.map { KeyMap.shared.ldmNames(for: $0.key) }
        guard candidates.allSatisfy({ !$0.isEmpty }) else { return nil }
        // A module is the name without its last component (`….output_blocks.5.1.norm`).
        func module(_ name: String) -> Substring { name[..<(name.lastIndex(of: ".") ?? name.endIndex)] }
        let taken = Set(candidates.filter { $0.count == 1 }.map { module($0[0].name) })
        func occupied(_ name: String) -> Bool {
            let m = module(name)  // ….output_blocks.5.1.conv: is ….output_blocks.5.1.* someone else's?
            let slot = m[..<(m.lastIndex(of: ".") ?? m.endIndex)]
            return taken.contains { $0.hasPrefix(slot + ".") }
        }
        return zip(tensors, candidates).map { tensor, options in
            let chosen = options.count == 1 ? options[0] : options.first { !occupied($0.name) } ?? options[0]
            return (chosen.name, chosen.flatten ? tensor.shape + [1, 1] : tensor.shape)
        }
    }
}

extension KeyMap {
    static let shared = KeyMap()

    /// Inverts the single-file rules: tries every rule with block indices below 16 and keeps the
    /// candidates that `mapLDM` maps back to `key`, in rule order.
    func ldmNames(for key: String) -> [(name: String, flatten: Bool)] {
        var found: [(name: String, flatten: Bool)] = []
        for (ldmPrefix, component) in Self.ldmComponents where key.hasPrefix(component.prefix) {
            let rest = String(key.dropFirst(component.prefix.count))
            let rules: [Rule]
            switch component {
            case .unet: rules = unetRules
            case .vae: rules = vaeRules
            case .textEncoder: rules = Self.textEncoderRules
            }
            for rule in rules {
                let slots = rule.from.filter { $0 == "#" }.count
                for indices in Self.indexTuples(count: slots, below: 16) {
                    guard let target = rule.to(indices), rest.hasPrefix(target) else { continue }
                    var tail = String(rest.dropFirst(target.count))
                    let flatten = rule.flatten.contains(tail)
                    for (from, to) in rule.inner where tail.hasPrefix(to) {
                        tail = from + tail.dropFirst(to.count)
                        break
                    }
                    var pattern = rule.from
                    for index in indices { pattern = pattern.replacingOccurrences(of: "#", with: String(index), range: pattern.range(of: "#")) }
                    let candidate = ldmPrefix + pattern + tail
                    if case let .tensor(mapped, reshape) = mapLDM(candidate), mapped == key, reshape == flatten,
                       !found.contains(where: { $0.name == candidate }) {
                        found.append((candidate, flatten))
                    }
                }
            }
        }
        return found
    }

    private static func indexTuples(count: Int, below n: Int) -> [[Int]] {
        var tuples: [[Int]] = [[]]
        for _ in 0..<count { tuples = tuples.flatMap { t in (0..<n).map { t + [$0] } } }
        return tuples
    }
}
