import Foundation

/// diffusers' VAE tiling (`AutoencoderKL.enable_tiling()`): an image larger than the VAE's
/// `sample_size` is encoded or decoded in tiles of that size overlapping by a quarter, each tile
/// blended linearly into the one above and the one to its left. Memory stays that of one tile
/// (a 1024×1024 decode in about what a 512×512 one takes); the pixels differ slightly from an
/// untiled run, since each tile's GroupNorms see only that tile, so it is a choice of the request.
struct VAETiling {
    /// Input and output tile sides, in the input's and the output's own units.
    let inputTile: Int
    let outputTile: Int

    /// diffusers' `tile_overlap_factor`.
    static let overlapFactor = 0.25

    /// Tiles step by three quarters of a tile; a quarter of the output tile is blended.
    var stride: Int { Int(Double(inputTile) * (1 - Self.overlapFactor)) }
    var blendExtent: Int { Int(Double(outputTile) * Self.overlapFactor) }
    var rowLimit: Int { outputTile - blendExtent }

    /// Whether an input of `height × width` is tiled at all (diffusers tiles only what is larger
    /// than a tile on some side).
    func applies(height: Int, width: Int) -> Bool { height > inputTile || width > inputTile }

    /// `body` over each tile of `input` (`[1, C, H, W]`), blended and cropped as diffusers'
    /// `tiled_decode` / `_tiled_encode`: the tiles in rows, each blended in place with the already
    /// blended tile above and then the one to its left, cropped to `rowLimit` and concatenated.
    /// - Parameter body: maps a tile `[1, C, h, w]` to its output (every tile's output has the same
    ///   channels and `outputTile / inputTile` times its sides).
    func run(_ input: Tensor, _ body: (Tensor) throws -> Tensor) rethrows -> Tensor {
        precondition(input.rank == 4 && input.shape[0] == 1, "tiling takes one image, got \(input.shape)")
        let (height, width) = (input.shape[2], input.shape[3])
        var rows: [[Tensor]] = []
        for y in Swift.stride(from: 0, to: height, by: stride) {
            var row: [Tensor] = []
            for x in Swift.stride(from: 0, to: width, by: stride) {
                let tile = input.cropped(x: x..<min(x + inputTile, width), y: y..<min(y + inputTile, height))
                row.append(try body(tile))
            }
            rows.append(row)
        }
        for i in rows.indices {
            for j in rows[i].indices {
                if i > 0 { rows[i][j].blend(below: rows[i - 1][j], extent: blendExtent, vertical: true) }
                if j > 0 { rows[i][j].blend(below: rows[i][j - 1], extent: blendExtent, vertical: false) }
            }
        }
        let kept = rows.map { row in row.map { $0.cropped(x: 0..<min(rowLimit, $0.shape[3]), y: 0..<min(rowLimit, $0.shape[2])) } }
        let outHeight = kept.reduce(0) { $0 + $1[0].shape[2] }
        let outWidth = kept[0].reduce(0) { $0 + $1.shape[3] }
        var output = Tensor(shape: [1, kept[0][0].shape[1], outHeight, outWidth])
        var top = 0
        for row in kept {
            var left = 0
            for tile in row {
                output.place(tile, from: (0, 0), size: (tile.shape[3], tile.shape[2]), at: (left, top))
                left += tile.shape[3]
            }
            top += row[0].shape[2]
        }
        return output
    }
}

extension Tensor {
    /// diffusers' `blend_v` (`vertical`) or `blend_h`: the first `extent` rows (columns) of this tile
    /// become `neighbour`'s last ones weighted `1 - k/extent` plus its own weighted `k/extent`.
    fileprivate mutating func blend(below neighbour: Tensor, extent: Int, vertical: Bool) {
        let (channels, height, width) = (shape[1], shape[2], shape[3])
        let (nHeight, nWidth) = (neighbour.shape[2], neighbour.shape[3])
        let extent = vertical ? Swift.min(nHeight, height, extent) : Swift.min(nWidth, width, extent)
        guard extent > 0 else { return }
        neighbour.data.withUnsafeBufferPointer { a in
            data.withUnsafeMutableBufferPointer { b in
                for c in 0..<channels {
                    for k in 0..<extent {
                        // torch computes `a * (1 - k / e) + b * (k / e)` with the weights as Python floats.
                        let t = Double(k) / Double(extent)
                        let (wa, wb) = (Float(1 - t), Float(t))
                        if vertical {
                            let (rowA, rowB) = ((c * nHeight + nHeight - extent + k) * nWidth, (c * height + k) * width)
                            for x in 0..<Swift.min(width, nWidth) { b[rowB + x] = a[rowA + x] * wa + b[rowB + x] * wb }
                        } else {
                            for y in 0..<Swift.min(height, nHeight) {
                                let (ia, ib) = ((c * nHeight + y) * nWidth + nWidth - extent + k, (c * height + y) * width + k)
                                b[ib] = a[ia] * wa + b[ib] * wb
                            }
                        }
                    }
                }
            }
        }
    }
}

extension VAEConfig {
    /// diffusers' tile sizes: `sample_size` pixels, `sample_size / 2^(levels − 1)` latents.
    var tiling: (decoder: VAETiling, encoder: VAETiling) {
        let latent = sampleSize / (1 << (blockOutChannels.count - 1))
        return (VAETiling(inputTile: latent, outputTile: sampleSize), VAETiling(inputTile: sampleSize, outputTile: latent))
    }
}
