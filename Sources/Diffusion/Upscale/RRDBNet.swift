import Foundation

/// ESRGAN's generator (Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial
/// Networks", 2018; basicsr `RRDBNet`, which Real-ESRGAN reuses):
///
///     [pixel-unshuffle] → conv_first → (blocks × RRDB → conv_body) + skip
///       → per upsampling: nearest 2× → conv → LeakyReLU(0.2) → conv_hr → LeakyReLU(0.2) → conv_last
///
/// Every convolution is 3×3 with padding 1 and a bias. The output is the image in [0, 1] (not
/// clamped here: `Upscaler` clamps, as RealESRGANer does).
public struct RRDBNet: Sendable {
    public let config: RRDBNetConfig
    public let layout: RRDBNetLayout
    let convFirst: Conv2d
    let body: [RRDB]
    let convBody: Conv2d
    let upConvs: [Conv2d]
    let convHR: Conv2d
    let convLast: Conv2d

    /// - Parameters:
    ///   - weights: scoped at the network's root (where `conv_first` or `model.0` is).
    /// - Throws: `WeightsError` naming the first tensor that is absent or shaped differently.
    public init(weights: Weights, config: RRDBNetConfig, layout: RRDBNetLayout) throws {
        self.config = config
        self.layout = layout
        let f = config.features, u = config.upsamplings
        func conv(_ scope: String, _ cin: Int, _ cout: Int) throws -> Conv2d {
            try Conv2d(weights.scoped(scope), inChannels: cin, outChannels: cout, kernel: 3)
        }
        convFirst = try conv(layout.firstConv, config.inputChannels, f)
        body = try (0..<config.blocks).map { block in
            try RRDB(features: f, growth: config.growth) { dense, index, cin, cout in
                try conv(layout.denseConv(block: block, dense: dense, conv: index), cin, cout)
            }
        }
        convBody = try conv(layout.bodyConv(blocks: config.blocks), f, f)
        upConvs = try (0..<u).map { try conv(layout.upConv($0 + 1), f, f) }
        convHR = try conv(layout.hrConv(upsamplings: u), f, f)
        convLast = try conv(layout.lastConv(upsamplings: u), f, config.imageChannels)
    }

    /// The stages `callAsFunction` reports: each block, each upsampling and the last convolutions.
    public var stages: Int { config.blocks + config.upsamplings + 1 }

    /// The network on `x`, `[1, 3, H, W]` in [0, 1] (one image: the dense blocks grow their input in
    /// place); H and W divisible by `config.unshuffle`.
    /// - Parameter progress: called with the stages done (1…`stages`) after each.
    /// - Returns: `[1, 3, scale·H, scale·W]`.
    /// - Throws: `PipelineError.cancelled` when `cancellation` is set (checked between stages).
    public func callAsFunction(_ x: Tensor, cancellation: CancellationToken? = nil, progress: (Int) -> Void = { _ in }) throws -> Tensor {
        precondition(x.rank == 4 && x.shape[0] == 1 && x.shape[1] == config.imageChannels,
                     "RRDBNet takes [1, \(config.imageChannels), H, W], got \(x.shape)")
        // trunk, at 1/unshuffle of the image's size
        let input = config.unshuffle > 1 ? x.pixelUnshuffled(by: config.unshuffle) : x  // [1, 3·r², H/r, W/r]
        let first = convFirst(input)
        var h = first
        for (done, block) in body.enumerated() {
            try cancellation?.check()
            h = block(h)
            progress(done + 1)
        }
        h = first + convBody(h)
        // upsampling
        // In place: at full resolution each map is the largest tensor of the pass.
        for (done, conv) in upConvs.enumerated() {
            try cancellation?.check()
            h = conv(h.upsampleNearest2x())  // [1, F, 2H, 2W]
            h.formLeakyReLU(slope: 0.2)
            progress(body.count + done + 1)
        }
        h = convHR(h)
        h.formLeakyReLU(slope: 0.2)
        h = convLast(h)
        progress(stages)
        return h
    }
}

/// Residual in residual dense block: three dense blocks, their result scaled by 0.2 and added to
/// the input.
struct RRDB: Sendable {
    let dense: [ResidualDenseBlock]

    /// - Parameter conv: makes convolution `index` (1…5) of dense block `dense` (1…3) from its sizes.
    init(features: Int, growth: Int, conv: (_ dense: Int, _ index: Int, _ cin: Int, _ cout: Int) throws -> Conv2d) throws {
        dense = try (1...3).map { d in
            try ResidualDenseBlock(features: features, growth: growth) { index, cin, cout in try conv(d, index, cin, cout) }
        }
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = dense[2](dense[1](dense[0](x)))
        h.formScaledSum(0.2, plus: x)
        return h
    }
}

/// Five 3×3 convolutions, each taking the input and every earlier output concatenated; the first
/// four add `growth` channels through LeakyReLU(0.2), the fifth maps back to `features`, scaled by
/// 0.2 and added to the input.
struct ResidualDenseBlock: Sendable {
    let convs: [Conv2d]

    init(features: Int, growth: Int, conv: (_ index: Int, _ cin: Int, _ cout: Int) throws -> Conv2d) throws {
        convs = try (1...5).map { k in try conv(k, features + (k - 1) * growth, k == 5 ? features : growth) }
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        // [1, F + k·G, H, W]: the input and the k outputs so far, grown in place in one buffer
        var features = x
        features.reserveChannels(x.shape[1] + 4 * convs[0].weight.shape[0])
        for conv in convs.prefix(4) {
            var grown = conv(features)
            grown.formLeakyReLU(slope: 0.2)
            features.appendChannels(grown)
        }
        var out = convs[4](features)
        out.formScaledSum(0.2, plus: x)
        return out
    }
}

extension Tensor {
    /// `pixel_unshuffle(x, scale: r)` as basicsr writes it: `[N, C, H, W]` → `[N, C·r², H/r, W/r]`,
    /// output channel `c·r² + i·r + j` holding `x[c, y·r + i, x·r + j]`.
    /// - Precondition: H and W are multiples of `r`.
    public func pixelUnshuffled(by r: Int) -> Tensor {
        precondition(rank == 4 && shape[2] % r == 0 && shape[3] % r == 0, "pixel unshuffle by \(r) of \(shape)")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let (oh, ow) = (h / r, w / r)
        var out = Tensor(shape: [n, c * r * r, oh, ow])
        data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                var o = 0
                for b in 0..<n {
                    for ch in 0..<c {
                        let plane = (b * c + ch) * h * w
                        for i in 0..<r {
                            for j in 0..<r {
                                for y in 0..<oh {
                                    let row = plane + (y * r + i) * w + j
                                    for x in 0..<ow {
                                        dst[o] = src[row + x * r]
                                        o += 1
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
