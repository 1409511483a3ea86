/// Halves the spatial size with a strided 3×3 convolution (diffusers `Downsample2D` with
/// `use_conv=True`, `padding=1`; key `conv`). An odd side `n` becomes `(n + 1) / 2`.
public struct Downsample2D: Sendable {
    public let conv: Conv2d

    public init(_ weights: Weights, channels: Int) throws {
        conv = try Conv2d(weights.scoped("conv"), inChannels: channels, outChannels: channels, kernel: 3, stride: 2)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { conv(x) }
}

/// Halves the spatial size as diffusers' `Downsample2D` with `use_conv=True`, `padding=0` (the VAE
/// encoder's): one row and one column of zeros at the bottom and right, then a 3×3 stride-2
/// convolution without padding (key `conv`). A side `n` becomes `n / 2` rounded down after the pad.
public struct PaddedDownsample2D: Sendable {
    public let conv: Conv2d

    public init(_ weights: Weights, channels: Int) throws {
        conv = try Conv2d(weights.scoped("conv"), inChannels: channels, outChannels: channels, kernel: 3, stride: 2, padding: 0)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { conv(x.paddedBottomRight()) }
}

/// Nearest-neighbour upsampling followed by a 3×3 convolution (diffusers `Upsample2D` with
/// `use_conv=True`; key `conv`).
public struct Upsample2D: Sendable {
    public let conv: Conv2d

    public init(_ weights: Weights, channels: Int) throws {
        conv = try Conv2d(weights.scoped("conv"), inChannels: channels, outChannels: channels, kernel: 3)
    }

    /// - Parameter size: the output's `(height, width)`; nil for exactly twice the input. The UNet
    ///   passes the size of the skip connection it meets next, because downsampling rounds odd
    ///   sides up (3 → 2) and doubling would not give them back (2 → 4, not 3); diffusers does the
    ///   same with `upsample_size`.
    ///
    /// `x` is taken as `consuming`, so a caller that hands it over has it freed before the
    /// convolution allocates its output (the VAE's last upsampler holds a 256 MB input and a 256
    /// MB output, not also the 64 MB map before upsampling).
    public func callAsFunction(_ x: consuming Tensor, size: (height: Int, width: Int)? = nil) -> Tensor {
        let (height, width) = (x.shape[2], x.shape[3])
        let target = size ?? (2 * height, 2 * width)
        let upsampled = target == (2 * height, 2 * width)
            ? x.upsampleNearest2x() : x.resizedNearest(height: target.height, width: target.width)
        _ = consume x
        return conv(upsampled)
    }
}

extension Tensor {
    /// Nearest-neighbour resize of NCHW to any size, picking source index `⌊dst · in / out⌋` as
    /// torch's `F.interpolate(mode="nearest", size=…)` does. Used only on the UNet's odd-size path
    /// (small latents), so it is written plainly; the doubling case goes through `upsampleNearest2x`.
    public func resizedNearest(height: Int, width: Int) -> Tensor {
        precondition(rank == 4, "resizedNearest expects NCHW, got \(shape)")
        let (planes, inHeight, inWidth) = (shape[0] * shape[1], shape[2], shape[3])
        // torch computes the scale in float: in / out, then floor(dst * scale), clamped.
        let rowScale = Float(inHeight) / Float(height), columnScale = Float(inWidth) / Float(width)
        let rows = (0..<height).map { min(Int((Float($0) * rowScale).rounded(.down)), inHeight - 1) }
        let columns = (0..<width).map { min(Int((Float($0) * columnScale).rounded(.down)), inWidth - 1) }
        var out = [Float](repeating: 0, count: planes * height * width)
        data.withUnsafeBufferPointer { source in
            out.withUnsafeMutableBufferPointer { target in
                for plane in 0..<planes {
                    for (y, sourceY) in rows.enumerated() {
                        let sourceRow = (plane * inHeight + sourceY) * inWidth
                        let targetRow = (plane * height + y) * width
                        for (x, sourceX) in columns.enumerated() {
                            target[targetRow + x] = source[sourceRow + sourceX]
                        }
                    }
                }
            }
        }
        return Tensor(shape: [shape[0], shape[1], height, width], data: out)
    }
}

extension Tensor {
    /// `F.pad(x, (0, 1, 0, 1))` on NCHW: one zero column on the right and one zero row at the bottom.
    public func paddedBottomRight() -> Tensor {
        precondition(rank == 4, "expected NCHW, got \(shape)")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        var out = Tensor(shape: [n, c, h + 1, w + 1])
        data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for plane in 0..<(n * c) {
                    for y in 0..<h {
                        let from = plane * h * w + y * w, to = plane * (h + 1) * (w + 1) + y * (w + 1)
                        for x in 0..<w { dst[to + x] = src[from + x] }
                    }
                }
            }
        }
        return out
    }
}
