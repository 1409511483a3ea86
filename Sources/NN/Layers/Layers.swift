/// The primitive layers every model is built from, each a thin holder of its `Parameter`s over one
/// tensor op. Each takes the `Weights` scope of its own module (e.g. `…resnets.0.conv1`) and its
/// sizes; a missing tensor or a wrong shape throws from `init`, naming the tensor.

/// `y = x·Wᵀ + b` over the last dimension (torch `nn.Linear`; keys `weight` [out, in], `bias` [out]).
public struct Linear: Sendable {
    public let weight: Parameter
    public let bias: Parameter?

    public init(_ weights: Weights, inputs: Int, outputs: Int, bias: Bool = true) throws {
        weight = try weights.parameter("weight", shape: [outputs, inputs])
        self.bias = bias ? try weights.parameter("bias", shape: [outputs]) : nil
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let w = weight.value, b = bias?.value
        return Profiler.measure(.linear, flops: 2 * Double(x.count) * Double(w.shape[0])) { x.linear(weight: w, bias: b) }
    }
}

/// A square 2-D convolution over NCHW with "same" padding for odd kernels (torch `nn.Conv2d`;
/// keys `weight` [out, in, k, k], `bias` [out]).
public struct Conv2d: Sendable {
    public let weight: Parameter
    public let bias: Parameter?
    public let stride: Int
    public let padding: Int

    /// - Parameters:
    ///   - padding: zeros added on every side; `kernel / 2` ("same") when nil.
    ///   - bias: whether the layer has a `bias` (torch's `bias=False` leaves it out).
    public init(_ weights: Weights, inChannels: Int, outChannels: Int, kernel: Int, stride: Int = 1, padding: Int? = nil,
                bias: Bool = true) throws {
        weight = try weights.parameter("weight", shape: [outChannels, inChannels, kernel, kernel])
        self.bias = bias ? try weights.parameter("bias", shape: [outChannels]) : nil
        self.stride = stride
        self.padding = padding ?? kernel / 2
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let w = weight.value, b = bias?.value
        let k = w.shape[2], outH = (x.shape[2] + 2 * padding - k) / stride + 1, outW = (x.shape[3] + 2 * padding - k) / stride + 1
        let flops = 2 * Double(x.shape[0] * w.count) * Double(outH * outW)
        return Profiler.measure(k == 1 ? .conv1x1 : .conv3x3, flops: flops) {
            x.conv2d(weight: w, bias: b, stride: stride, padding: padding)
        }
    }
}

/// Group normalisation over NCHW (torch `nn.GroupNorm` with affine; keys `weight`, `bias` [C]).
public struct GroupNorm: Sendable {
    public let groups: Int
    public let eps: Float
    public let weight: Parameter
    public let bias: Parameter

    public init(_ weights: Weights, groups: Int, channels: Int, eps: Float) throws {
        precondition(channels % groups == 0, "\(channels) channels in \(groups) groups (configs are validated before this)")
        self.groups = groups
        self.eps = eps
        weight = try weights.parameter("weight", shape: [channels])
        bias = try weights.parameter("bias", shape: [channels])
    }

    /// - Parameter silu: apply SiLU to the result in the same pass (every GroupNorm in the UNet and
    ///   VAE except the attention blocks' is followed by one).
    public func callAsFunction(_ x: Tensor, silu: Bool = false) -> Tensor {
        let w = weight.value, b = bias.value
        return Profiler.measure(.groupNorm) { x.groupNorm(groups: groups, weight: w, bias: b, eps: eps, fusedSiLU: silu) }
    }

    /// The same, written over `x`'s own buffer: for a caller that hands over a feature map it no
    /// longer needs (`norm.normalizing(consume h)`), so no second map of its size is allocated.
    public func normalizing(_ x: consuming Tensor, silu: Bool = false) -> Tensor {
        let w = weight.value, b = bias.value
        var y = consume x
        Profiler.measure(.groupNorm) { y.formGroupNorm(groups: groups, weight: w, bias: b, eps: eps, fusedSiLU: silu) }
        return y
    }
}

/// Layer normalisation over the last dimension (torch `nn.LayerNorm`; keys `weight`, `bias` [C]).
public struct LayerNorm: Sendable {
    public let eps: Float
    public let weight: Parameter
    public let bias: Parameter

    public init(_ weights: Weights, dim: Int, eps: Float) throws {
        self.eps = eps
        weight = try weights.parameter("weight", shape: [dim])
        bias = try weights.parameter("bias", shape: [dim])
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let w = weight.value, b = bias.value
        return Profiler.measure(.layerNorm) { x.layerNorm(weight: w, bias: b, eps: eps) }
    }
}

/// A lookup table of row vectors (torch `nn.Embedding`; key `weight` [count, dim]).
public struct Embedding: Sendable {
    public let weight: Parameter
    public let count: Int
    public let dim: Int

    public init(_ weights: Weights, count: Int, dim: Int) throws {
        weight = try weights.parameter("weight", shape: [count, dim])
        self.count = count
        self.dim = dim
    }

    /// The rows `ids`, as `[ids.count, dim]`.
    /// - Precondition: every id is in `0..<count` (ids come from the tokenizer, not the user).
    public func callAsFunction(_ ids: [Int]) -> Tensor {
        for id in ids { precondition((0..<count).contains(id), "token id \(id) outside the embedding table of \(count)") }
        // Only these rows are converted where the table is not kept (49408 × 768 in SD1.5).
        return Tensor(shape: [ids.count, dim], data: weight.rows(ids))
    }
}
