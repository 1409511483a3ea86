import Foundation

/// A textual-inversion embedding: learned vectors that stand in for a word, used by writing its
/// name in a prompt (A1111's `embeddings/NAME.safetensors` or `NAME.pt`, `modules/textual_inversion`).
public struct TextualInversion: Equatable, Sendable {
    /// The file's name without extension: the word that calls it.
    public let name: String
    /// `count × width` values, one row per vector.
    public let vectors: [Float]
    public let count: Int

    /// Reads an embedding: A1111's safetensors layout (`emb_params` `[n, C]`), its `.pt` layout
    /// (`string_to_param` `{"*": [n, C]}`, read without running anything), or any file whose one
    /// tensor is `[n, C]` or `[C]` (diffusers' `learned_embeds.safetensors` or `.bin`, `{"<token>": [C]}`).
    /// - Parameter width: the text encoder's hidden size (768 for SD1.x).
    /// - Throws: `EmbeddingError` naming the file and what does not fit; `WeightsError.notFloat` for
    ///   vectors stored as anything but floats.
    public init(url: URL, width: Int) throws {
        name = url.deletingPathExtension().lastPathComponent
        let file: any TensorFile
        do {
            file = try openTensorFile(url)
        } catch {
            throw EmbeddingError.unreadable(path: url.path, reason: "\(error)")
        }
        let tensors = file.tensorInfos
        let candidates = tensors.filter { $0.name == "emb_params" || $0.name.hasPrefix("string_to_param") }
        guard let info = candidates.first ?? (tensors.count == 1 ? tensors.first : nil) else {
            let found = file.names.prefix(3).joined(separator: ", ")
            throw EmbeddingError.unsupported(path: url.path, reason: "it has no 'emb_params' tensor (found \(found)); SDXL embeddings ('clip_l'/'clip_g') are not for SD1.5")
        }
        guard info.elementCount > 0 else {
            throw EmbeddingError.unsupported(path: url.path, reason: "'\(info.name)' holds no vectors; the file is damaged")
        }
        guard info.shape.last == width, info.shape.count <= 2 else {
            throw EmbeddingError.unsupported(path: url.path, reason: "'\(info.name)' has shape \(info.shape), but SD1.5's text encoder needs [n, \(width)]; it is for another model")
        }
        count = info.elementCount / width
        // Checked before the values are read: a pickled view can claim far more elements than its
        // file holds (stride 0), and no usable embedding is longer than a chunk.
        guard count <= PromptChunker.chunkLength else { throw EmbeddingError.tooLong(name: name, count: count) }
        // Integers would convert, but are not the vectors.
        try file.requireWeightType(info.name)
        vectors = try file.tensor(info.name).data
    }

    public init(name: String, vectors: [Float], count: Int) {
        self.name = name
        self.vectors = vectors
        self.count = count
    }
}

/// What can go wrong with an embedding.
public enum EmbeddingError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case unsupported(path: String, reason: String)
    /// The prompt uses an embedding whose file could not be used.
    case unusable(name: String, reason: String)
    /// More vectors than one 75-token chunk holds.
    case tooLong(name: String, count: Int)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "cannot read the embedding \(path): \(reason)"
        case let .unsupported(path, reason): return "the embedding \(path) does not fit: \(reason)"
        case let .tooLong(name, count):
            return "the embedding '\(name)' has \(count) vectors, more than a 75-token chunk holds; it is damaged or not an SD1.5 embedding"
        case let .unusable(name, reason): return "the prompt uses the embedding '\(name)', but \(reason)"
        }
    }
}

extension EmbeddingError {
    var isTooLong: Bool { if case .tooLong = self { return true } else { return false } }
}

/// Where one embedding's vectors go in a chunk: `count` positions from `offset` (after `BOS`).
public struct EmbeddingFix: Equatable, Sendable {
    public var name: String
    /// The position among the chunk's 75 prompt tokens (0-based, `BOS` not counted).
    public var offset: Int
    public var vectors: [Float]
    public var count: Int
}

/// The embeddings a prompt can call, found by the token ids of their names as A1111's
/// `EmbeddingDatabase.find_embedding_at_position` does: at each position, the longest name whose
/// tokens follow.
public struct EmbeddingLibrary: Sendable {
    struct Entry: Sendable {
        let name: String
        let ids: [Int]
        let embedding: TextualInversion?
        /// Why a file of that name cannot be used (a refused pickle, another model's embedding):
        /// calling it is then an error, not plain text.
        let problem: EmbeddingError?
    }
    private let byFirstToken: [Int: [Entry]]
    public let names: [String]

    public static let empty = EmbeddingLibrary(byFirstToken: [:], names: [])

    private init(byFirstToken: [Int: [Entry]], names: [String]) {
        self.byFirstToken = byFirstToken
        self.names = names
    }

    /// Every `*.safetensors`, `*.pt` and `*.bin` embedding in `directories` (sub-folders too; the
    /// first of a name wins). Files that cannot be used (refused pickles, other models' embeddings,
    /// other files) are kept by name only: a prompt that uses one is refused with the reason, and one
    /// that does not is unaffected, so a stray file never stops every generation.
    public init(directories: [URL], tokenizer: CLIPTokenizer, width: Int) {
        var entries: [Int: [Entry]] = [:]
        var names: [String] = []
        var seen = Set<String>()
        for directory in directories {
            let walker = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil)
            for url in ((walker?.allObjects as? [URL]) ?? []).sorted(by: { $0.path < $1.path }) {
                let ext = url.pathExtension.lowercased()
                guard ["safetensors", "pt", "bin"].contains(ext) else { continue }
                let name = url.deletingPathExtension().lastPathComponent
                guard seen.insert(name).inserted else { continue }
                let ids = tokenizer.tokenize(name)
                guard let first = ids.first else { continue }
                let entry: Entry
                do {
                    entry = Entry(name: name, ids: ids, embedding: try TextualInversion(url: url, width: width), problem: nil)
                } catch let error as EmbeddingError where error.isTooLong {
                    entry = Entry(name: name, ids: ids, embedding: nil, problem: error)
                } catch {
                    entry = Entry(name: name, ids: ids, embedding: nil, problem: .unusable(name: name, reason: "\(error)"))
                }
                entries[first, default: []].append(entry)
                names.append(name)
            }
        }
        for key in entries.keys { entries[key]?.sort { $0.ids.count > $1.ids.count } }
        self.init(byFirstToken: entries, names: names.sorted())
    }

    /// The embedding whose name's tokens start at `position`, and how many tokens the name takes.
    /// - Throws: the `EmbeddingError` of a file that cannot be used, when the name is its.
    func match(_ tokens: [Int], at position: Int) throws -> (TextualInversion, Int)? {
        guard let candidates = byFirstToken[tokens[position]] else { return nil }
        for entry in candidates where tokens.count - position >= entry.ids.count
            && Array(tokens[position..<(position + entry.ids.count)]) == entry.ids {
            if let embedding = entry.embedding { return (embedding, entry.ids.count) }
            throw entry.problem ?? EmbeddingError.unusable(name: entry.name, reason: "it could not be read")
        }
        return nil
    }
}
