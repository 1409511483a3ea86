import Foundation


/// OpenAI CLIP's byte-level BPE tokenizer, giving the ids of transformers' `CLIPTokenizer`.
///
/// The pipeline is that of transformers 5 (the `tokenizers`-backed `CLIPTokenizer`, identical to
/// `CLIPTokenizerFast` in transformers 4):
/// 1. the exact strings `<|startoftext|>` and `<|endoftext|>` in the raw text are the special
///    tokens themselves (case-sensitive, before any normalisation; a `tokenizer.json` that marks
///    them `"normalized"` also has them matched after step 2);
/// 2. each remaining piece is normalised: Unicode NFC, then every scalar lower-cased on its own
///    (full case mapping, so `İ` becomes `i̇`; no final-sigma rule); runs of white space only
///    separate words, so collapsing them changes nothing;
/// 3. it is split into words by CLIP's pattern
///    `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`,
///    white space being dropped, and each word again by GPT-2's pattern (the `ByteLevel`
///    pre-tokenizer with `use_regex`), which only cuts a lower-cased `<|ENDOFTEXT|>` into
///    `<|`, `endoftext`, `|>`;
/// 4. each word's UTF-8 bytes become the byte symbols of `bytes_to_unicode`, the last one with
///    `</w>`, and BPE merges them, lowest merge rank first.
///
/// SD1.5 encodes `BOS + ids + EOS`, padded to 77 with EOS (the pad token of SD1.x tokenizers).
///
/// The tokenizer is a value type with no cache, so it can be shared freely between threads.
public struct CLIPTokenizer: Sendable {
    /// The text encoder's context: `BOS`, 75 tokens, `EOS`.
    public static let contextLength = 77

    /// `<|startoftext|>` (49406 in CLIP's vocabulary).
    public let startToken: Int
    /// `<|endoftext|>` (49407); also the padding token of SD1.x.
    public let endToken: Int
    /// The padding token: `endToken`, as SD1.x pads.
    public var padToken: Int { endToken }
    /// The id of `,</w>` (a comma ending a word), which the prompt chunker uses to break long
    /// prompts at commas; nil if the vocabulary has none.
    public let commaToken: Int?

    /// Token string for each id.
    let tokens: [String]
    /// Id of each token string.
    let ids: [String: Int]
    /// Id of the symbol for each byte, without and with `</w>`.
    let byteSymbol: [Int]
    let byteSymbolAtEnd: [Int]
    /// For each mergeable pair of ids (`first << 32 | second`), its rank and the id of the merge.
    let merges: [UInt64: (rank: Int32, id: Int32)]
    /// The special tokens that are also matched in the normalised (lower-cased) text, with their
    /// ids: those a `tokenizer.json` marks `"normalized": true`, so that `<|ENDOFTEXT|>` is then
    /// the token too. Empty for vocab.json/merges.txt, whose specials transformers adds unnormalised.
    let normalisedSpecials: [(spelling: ArraySlice<Unicode.Scalar>, id: Int)]

    /// The number of merges CLIP uses: lines 1 ..< 49152 − 256 − 2 + 1 of the merges file, as
    /// transformers and open_clip slice them.
    static let mergeCount = 49152 - 256 - 2

    // MARK: - Loading

    /// Builds a tokenizer from a vocabulary and its merges, in rank order.
    ///
    /// - Parameters:
    ///   - vocabulary: token string → id; must contain the 512 byte symbols (with and without
    ///     `</w>`), every merge result, `<|startoftext|>` and `<|endoftext|>`.
    ///   - merges: the BPE merges, lowest rank first.
    ///   - source: a name for error messages (a file path).
    /// - Throws: `TokenizerError.badMerge` when a merge names a symbol the vocabulary lacks,
    ///   `.missingSpecialToken` when a special token or a byte symbol is missing.
    public init(vocabulary: [String: Int], merges: [(String, String)], source: String = "vocabulary") throws {
        try self.init(vocabulary: vocabulary, merges: merges, source: source, normalisedSpecials: [])
    }

    /// The same, with the special tokens (`<|startoftext|>`, `<|endoftext|>`) that are also matched
    /// after normalisation.
    init(vocabulary: [String: Int], merges: [(String, String)], source: String, normalisedSpecials: [String]) throws {
        guard let start = vocabulary[Self.startOfText] else {
            throw TokenizerError.missingSpecialToken(path: source, token: Self.startOfText)
        }
        guard let end = vocabulary[Self.endOfText] else {
            throw TokenizerError.missingSpecialToken(path: source, token: Self.endOfText)
        }
        startToken = start
        endToken = end
        commaToken = vocabulary[",</w>"]
        ids = vocabulary

        // Ids must number the tokens 0..<n, as every CLIP vocabulary does; anything else (negative,
        // repeated or huge ids) is a damaged file, not something to allocate for.
        var strings = [String](repeating: "", count: vocabulary.count)
        for (token, id) in vocabulary {
            guard strings.indices.contains(id), strings[id].isEmpty else {
                throw TokenizerError.unreadable(path: source, reason: "token ids are not 0..<\(vocabulary.count) (\(token.debugDescription) has \(id))")
            }
            strings[id] = token
        }
        tokens = strings

        var plain = [Int](repeating: 0, count: 256)
        var atEnd = [Int](repeating: 0, count: 256)
        for byte in 0..<256 {
            let symbol = String(Character(Self.byteToUnicode[byte]))
            guard let id = vocabulary[symbol], let idAtEnd = vocabulary[symbol + Self.endOfWord] else {
                throw TokenizerError.missingSpecialToken(path: source, token: "byte symbol \(symbol) (byte \(byte))")
            }
            plain[byte] = id
            atEnd[byte] = idAtEnd
        }
        byteSymbol = plain
        byteSymbolAtEnd = atEnd

        var table: [UInt64: (rank: Int32, id: Int32)] = [:]
        table.reserveCapacity(merges.count)
        for (rank, (first, second)) in merges.enumerated() {
            guard let a = vocabulary[first], let b = vocabulary[second], let merged = vocabulary[first + second] else {
                throw TokenizerError.badMerge(path: source, line: rank + 2, text: "\(first) \(second)")
            }
            // A repeated pair takes its last rank, as `dict(zip(merges, range(...)))` does.
            table[UInt64(a) << 32 | UInt64(b)] = (Int32(rank), Int32(merged))
        }
        self.merges = table
        self.normalisedSpecials = normalisedSpecials.compactMap { spelling in
            vocabulary[spelling].map { (Array(spelling.unicodeScalars)[...], $0) }
        }
    }

    /// Loads a diffusers `tokenizer/` folder: `vocab.json` and `merges.txt` when both are there,
    /// else `tokenizer.json` (what transformers 5's `save_pretrained` writes alone).
    ///
    /// - Parameter directory: the `tokenizer/` folder.
    /// - Throws: `TokenizerError.noTokenizerFiles` when the folder has neither form,
    ///   `.unreadable` when a file cannot be read or is not valid JSON/UTF-8,
    ///   `.unsupportedTokenizer` when `tokenizer.json` is not CLIP's, and the errors of
    ///   `init(vocabulary:merges:source:)`.
    public init(directory: URL) throws {
        let vocabURL = directory.appendingPathComponent("vocab.json")
        let mergesURL = directory.appendingPathComponent("merges.txt")
        let jsonURL = directory.appendingPathComponent("tokenizer.json")
        let exists = { (url: URL) in FileManager.default.fileExists(atPath: url.path) }
        guard exists(vocabURL), exists(mergesURL) else {
            guard exists(jsonURL) else {
                throw TokenizerError.noTokenizerFiles(folder: directory.path, missing: [vocabURL, mergesURL, jsonURL]
                    .filter { !exists($0) }.map(\.lastPathComponent))
            }
            try self.init(tokenizerJSON: jsonURL)
            return
        }
        let vocabulary: [String: Int]
        do {
            vocabulary = try JSONDecoder().decode([String: Int].self, from: Self.contents(of: vocabURL))
        } catch let error as TokenizerError {
            throw error
        } catch {
            throw TokenizerError.unreadable(path: vocabURL.path, reason: Self.reason(error, expected: "a JSON object of token → id"))
        }
        guard let text = String(data: try Self.contents(of: mergesURL), encoding: .utf8) else {
            throw TokenizerError.unreadable(path: mergesURL.path, reason: "not UTF-8 text")
        }
        let merges = try Self.parseMerges(text, path: mergesURL.path)
        do {
            try self.init(vocabulary: vocabulary, merges: merges, source: vocabURL.path)
        } catch TokenizerError.badMerge(_, let line, let text) {
            throw TokenizerError.badMerge(path: mergesURL.path, line: line, text: text)
        }
    }

    /// The bytes of a tokenizer file.
    /// - Throws: `TokenizerError.unreadable` saying whether the file is missing or unreadable.
    static func contents(of url: URL) throws -> Data {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TokenizerError.unreadable(path: url.path, reason: "no such file")
        }
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw TokenizerError.unreadable(path: url.path, reason: "the file cannot be read (permissions, or a folder)")
        }
        return data
    }

    /// A one-line reason for a JSON parsing or decoding error, without Foundation's error dump
    /// (`Error Domain=NSCocoaErrorDomain Code=3840 …`), which says nothing to a user.
    static func reason(_ error: Error, expected: String) -> String {
        var detail: String?
        switch error {
        case DecodingError.dataCorrupted(let context):
            detail = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String ?? context.debugDescription
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            // Swift's text names its own types ("Expected to decode Int …"): the path says where.
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? "\"\($0.stringValue)\"" }.joined(separator: " ")
            return "not \(expected) (the value " + (path.isEmpty ? "" : "at \(path) ") + "has the wrong type)"
        case DecodingError.keyNotFound(let key, _):
            return "not \(expected) (no \"\(key.stringValue)\")"
        default:
            detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String
        }
        // Foundation's generic sentence adds nothing to "not valid JSON"; its specific ones say where.
        let oneLine = detail?.split(whereSeparator: \.isNewline).joined(separator: " ")
            .replacingOccurrences(of: "The given data was not valid JSON.", with: "").trimmingCharacters(in: .whitespaces)
        return "not valid JSON" + (oneLine.flatMap { $0.isEmpty ? nil : " (\($0))" } ?? "")
    }

    /// The tokenizer built from the vocabulary bundled with the engine (OpenAI's
    /// `bpe_simple_vocab_16e6.txt.gz`), for checkpoints that carry no tokenizer files.
    ///
    /// The vocabulary is built as CLIP builds it: the 256 byte symbols of `bytes_to_unicode`, the
    /// same with `</w>`, each merge joined, then `<|startoftext|>` (49406) and `<|endoftext|>`
    /// (49407). It is loaded once per process; later calls return the same tokenizer.
    ///
    /// - Throws: `TokenizerError.bundledVocabularyMissing` when the resource bundle is incomplete,
    ///   `.unreadable` when the file is damaged.
    public static func bundled() throws -> CLIPTokenizer {
        try bundledResult.get()
    }

    static let bundledName = "bpe_simple_vocab_16e6.txt.gz"

    /// Where the bundled vocabulary is: `Resources/` inside the Diffusion resource bundle.
    static var bundledVocabularyURL: URL? {
        Bundle.module.url(forResource: "bpe_simple_vocab_16e6.txt", withExtension: "gz", subdirectory: "Resources")
    }

    static let bundledResult: Result<CLIPTokenizer, TokenizerError> = {
        guard let url = bundledVocabularyURL else { return .failure(.bundledVocabularyMissing(bundledName)) }
        do {
            return .success(try load(bpeFile: url))
        } catch let error as TokenizerError {
            return .failure(error)
        } catch {
            return .failure(.unreadable(path: url.path, reason: "\(error)"))
        }
    }()

    /// Loads an open_clip / OpenAI `bpe_simple_vocab_16e6.txt.gz` file.
    static func load(bpeFile url: URL) throws -> CLIPTokenizer {
        let text: String
        do {
            let bytes = try Gzip.decompress([UInt8](Data(contentsOf: url)))
            guard let decoded = String(bytes: bytes, encoding: .utf8) else {
                throw TokenizerError.unreadable(path: url.path, reason: "not UTF-8 text")
            }
            text = decoded
        } catch let error as TokenizerError {
            throw error
        } catch {
            throw TokenizerError.unreadable(path: url.path, reason: "\(error)")
        }
        let merges = try parseMerges(text, path: url.path)

        // CLIP's vocabulary order: byte symbols, byte symbols + </w>, merges, specials.
        let byteSymbols = Self.byteToUnicodeOrder.map { String(Character(Self.byteToUnicode[$0])) }
        var list = byteSymbols + byteSymbols.map { $0 + endOfWord }
        list += merges.map { $0.0 + $0.1 }
        list += [startOfText, endOfText]
        var vocabulary: [String: Int] = [:]
        vocabulary.reserveCapacity(list.count)
        for (id, token) in list.enumerated() { vocabulary[token] = id }
        return try CLIPTokenizer(vocabulary: vocabulary, merges: merges, source: url.path)
    }

    /// The merges of a merges file, sliced as transformers does:
    /// `text.strip().split("\n")[1 : 49152 - 256 - 2 + 1]`. The first line is a header.
    static func parseMerges(_ text: String, path: String) throws -> [(String, String)] {
        // "\r\n" is one Character in Swift, so a file with Windows line ends (a checkout with
        // core.autocrlf) would not split on "\n"; Python's split("\n") leaves the "\r", which the
        // whitespace split below drops, as transformers' `merge.split()` does.
        let lines = text.trimmingCharacters(in: .whitespacesAndNewlines)
            .split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        var merges: [(String, String)] = []
        merges.reserveCapacity(mergeCount)
        for (index, line) in lines.enumerated().dropFirst().prefix(mergeCount) {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard parts.count == 2 else {
                throw TokenizerError.badMerge(path: path, line: index + 1, text: String(line))
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
        return merges
    }

    // MARK: - Encoding

    /// The ids of `text`, without `BOS`/`EOS`, however long it is.
    ///
    /// - Parameter text: any text; the empty string gives no ids.
    /// - Returns: the BPE ids, in order.
    public func tokenize(_ text: String) -> [Int] {
        var result: [Int] = []
        // Special tokens are matched in the raw text before normalisation, as the added-token
        // splitter of `tokenizers` does; the pieces between them are normalised separately.
        var piece: [Unicode.Scalar] = []
        var scalars = Array(text.unicodeScalars)[...]
        while let first = scalars.first {
            if first == "<", let (special, length) = specialToken(at: scalars) {
                appendWords(of: piece, to: &result)
                piece.removeAll()
                result.append(special)
                scalars = scalars.dropFirst(length)
            } else {
                piece.append(first)
                scalars = scalars.dropFirst()
            }
        }
        appendWords(of: piece, to: &result)
        return result
    }

    /// `BOS + tokenize(text) + EOS`, unpadded: transformers' `tokenizer(text).input_ids`.
    public func encode(_ text: String) -> [Int] {
        [startToken] + tokenize(text) + [endToken]
    }

    /// `BOS + ids + EOS` padded with EOS to `length`: what diffusers feeds the text encoder.
    ///
    /// - Parameters:
    ///   - text: the prompt, without weighting syntax.
    ///   - length: the padded length, 77 for SD1.x.
    ///   - truncating: when true, a longer text keeps its first `length − 2` ids and then `EOS`, as
    ///     transformers does with `truncation=True`; when false (the default) it is an error.
    /// - Throws: `TokenizerError.tooLong` when the text does not fit and `truncating` is false.
    public func encode(_ text: String, paddedTo length: Int, truncating: Bool = false) throws -> [Int] {
        precondition(length >= 2, "a padded sequence holds at least BOS and EOS")
        var ids = tokenize(text)
        if ids.count > length - 2 {
            guard truncating else { throw TokenizerError.tooLong(tokens: ids.count, limit: length - 2) }
            ids.removeLast(ids.count - (length - 2))
        }
        return [startToken] + ids + [endToken] + Array(repeating: padToken, count: length - 2 - ids.count)
    }

    /// The text of `ids`: token strings joined, byte symbols turned back into UTF-8 (invalid
    /// sequences become U+FFFD), `</w>` into a space, trimmed.
    ///
    /// - Parameters:
    ///   - ids: token ids; ids outside the vocabulary are skipped.
    ///   - skippingSpecialTokens: leave out `BOS`, `EOS` and padding (the default).
    public func decode(_ ids: [Int], skippingSpecialTokens: Bool = true) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            if skippingSpecialTokens, id == startToken || id == endToken { continue }
            guard let token = self.token(id) else { continue }
            if id == startToken || id == endToken {
                bytes += Array(token.utf8)
                continue
            }
            for scalar in token.unicodeScalars {
                if let byte = Self.unicodeToByte[scalar] { bytes.append(byte) } else { bytes += Array(String(scalar).utf8) }
            }
        }
        return String(decoding: bytes, as: UTF8.self)
            .replacingOccurrences(of: Self.endOfWord, with: " ")
            .trimmingCharacters(in: .whitespaces)
    }

    /// The vocabulary string of `id` (e.g. `"cat</w>"`), or nil when `id` is not in the vocabulary.
    public func token(_ id: Int) -> String? {
        id >= 0 && id < tokens.count && !tokens[id].isEmpty ? tokens[id] : nil
    }

    /// The id of a vocabulary string, or nil.
    public func id(of token: String) -> Int? { ids[token] }

    /// The number of ids in the vocabulary (49408 for CLIP).
    public var vocabularySize: Int { tokens.count }
}
