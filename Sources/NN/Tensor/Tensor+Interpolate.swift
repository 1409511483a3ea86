import Foundation

/// The modes of `torch.nn.functional.interpolate` that resize latents (A1111's "Latent" upscalers).
public enum InterpolationMode: String, CaseIterable, Sendable, Codable {
    case nearest
    case nearestExact = "nearest-exact"
    /// `align_corners=False`, no antialias.
    case bilinear
    /// `align_corners=False`, A = −0.75, indices clamped at the edges.
    case bicubic
}

extension Tensor {
    /// An NCHW tensor resized to `height` x `width` as `F.interpolate(x, size=(height, width), mode=…)`
    /// computes it on the CPU in Float32: the scale is `in / out`, source positions are
    /// `scale · (dst + 0.5) − 0.5` for the linear modes, `floor(dst · scale)` for nearest and
    /// `floor((dst + 0.5) · scale)` for nearest-exact.
    public func interpolated(height: Int, width: Int, mode: InterpolationMode) -> Tensor {
        precondition(rank == 4 && height > 0 && width > 0, "interpolated takes NCHW and a positive size, got \(shape)")
        let (planes, inH, inW) = (shape[0] * shape[1], shape[2], shape[3])
        let rows = Self.taps(inSize: inH, outSize: height, mode: mode)
        let columns = Self.taps(inSize: inW, outSize: width, mode: mode)
        var out = Tensor(shape: [shape[0], shape[1], height, width])
        data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for p in 0..<planes {
                    let plane = p * inH * inW
                    for (y, row) in rows.enumerated() {
                        for (x, column) in columns.enumerated() {
                            var sum: Float = 0
                            for (sy, wy) in row {
                                var line: Float = 0
                                for (sx, wx) in column { line += wx * src[plane + sy * inW + sx] }
                                sum += wy * line
                            }
                            dst[(p * height + y) * width + x] = sum
                        }
                    }
                }
            }
        }
        return out
    }

    /// For each output index along one axis, the input indices it reads and their weights.
    static func taps(inSize: Int, outSize: Int, mode: InterpolationMode) -> [[(Int, Float)]] {
        let scale = Float(inSize) / Float(outSize)
        let last = inSize - 1
        return (0..<outSize).map { dst -> [(Int, Float)] in
            switch mode {
            case .nearest:
                return [(min(Int((Float(dst) * scale).rounded(.down)), last), 1)]
            case .nearestExact:
                return [(min(Int(((Float(dst) + 0.5) * scale).rounded(.down)), last), 1)]
            case .bilinear:
                let source = max(scale * (Float(dst) + 0.5) - 0.5, 0)
                let i0 = Int(source)
                let i1 = i0 < last ? i0 + 1 : i0
                let l1 = source - Float(i0)
                return [(i0, 1 - l1), (i1, l1)]
            case .bicubic:
                let source = scale * (Float(dst) + 0.5) - 0.5
                let i = Int(source.rounded(.down))
                let t = source - Float(i)
                let a: Float = -0.75
                func near(_ x: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }
                func far(_ x: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
                let weights = [far(t + 1), near(t), near(1 - t), far(2 - t)]
                return (0..<4).map { k in (min(max(i - 1 + k, 0), last), weights[k]) }
            }
        }
    }
}
