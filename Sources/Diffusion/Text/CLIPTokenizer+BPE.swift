import Foundation

// How CLIP turns text into ids: normalisation, the word regex, byte-level symbols, BPE merges.
extension CLIPTokenizer {
    // MARK: - Normalisation and words

    static let startOfText = "<|startoftext|>"
    static let endOfText = "<|endoftext|>"
    static let endOfWord = "</w>"
    private static let specialScalars: [(ArraySlice<Unicode.Scalar>, Bool)] = [
        (Array(startOfText.unicodeScalars)[...], true), (Array(endOfText.unicodeScalars)[...], false),
    ]

    /// The special token spelled at the start of `scalars`, and its length in scalars.
    func specialToken(at scalars: ArraySlice<Unicode.Scalar>) -> (Int, Int)? {
        for (spelling, isStart) in Self.specialScalars where scalars.starts(with: spelling) {
            return (isStart ? startToken : endToken, spelling.count)
        }
        return nil
    }

    /// Normalises one piece of text (NFC, then per-scalar lower case) and appends the BPE ids of its
    /// words.
    func appendWords(of piece: [Unicode.Scalar], to result: inout [Int]) {
        guard !piece.isEmpty else { return }
        var string = String()
        string.unicodeScalars.append(contentsOf: piece)
        var normalised: [Unicode.Scalar] = []
        for scalar in string.precomposedStringWithCanonicalMapping.unicodeScalars {
            // `tokenizers`' Lowercase maps each char with Rust's `char::to_lowercase`: the full
            // mapping of SpecialCasing without its context-dependent rules (final sigma).
            if scalar.properties.changesWhenLowercased {
                normalised.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
            } else {
                normalised.append(scalar)
            }
        }
        guard !normalisedSpecials.isEmpty else {
            for word in Self.words(normalised) { bpe(word, into: &result) }
            return
        }
        // Specials marked "normalized" are matched again in the normalised text, the text between
        // them tokenised on its own, as the added-token splitter of `tokenizers` does.
        var start = 0
        var i = 0
        while i < normalised.count {
            if normalised[i] == "<", let special = normalisedSpecials.first(where: { normalised[i...].starts(with: $0.spelling) }) {
                for word in Self.words(Array(normalised[start..<i])) { bpe(word, into: &result) }
                result.append(special.id)
                i += special.spelling.count
                start = i
            } else {
                i += 1
            }
        }
        for word in Self.words(Array(normalised[start...])) { bpe(word, into: &result) }
    }

    /// CLIP's word pattern, matched left to right with the alternatives in order:
    /// `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`,
    /// followed by GPT-2's pattern on each match. White space between matches is dropped.
    static func words(_ s: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var words: [ArraySlice<Unicode.Scalar>] = []
        var i = 0
        let n = s.count
        while i < n {
            let c = s[i]
            var end = i + 1
            if let special = specialScalars.first(where: { s[i...].starts(with: $0.0) }) {
                // A lower-cased `<|ENDOFTEXT|>` matches the pattern's first alternatives, but the
                // ByteLevel pre-tokenizer that follows re-splits every piece with GPT-2's pattern,
                // which cuts it into `<|`, `endoftext`, `|>`. Every other match passes through it
                // unchanged (letter runs, one digit, punctuation runs and contractions are GPT-2
                // words already).
                end = i + special.0.count
                words += [s[i..<(i + 2)], s[(i + 2)..<(end - 2)], s[(end - 2)..<end]]
                i = end
                continue
            } else if c == "'", let length = contraction(after: s[(i + 1)...]) {
                end = i + 1 + length
            } else if isLetter(c) {
                while end < n, isLetter(s[end]) { end += 1 }
            } else if isNumber(c) {
                // one digit per word
            } else if c.properties.isWhitespace {
                i += 1
                continue
            } else {
                while end < n, !isLetter(s[end]), !isNumber(s[end]), !s[end].properties.isWhitespace { end += 1 }
            }
            words.append(s[i..<end])
            i = end
        }
        return words
    }

    /// The length of `s|t|re|ve|m|ll|d` at the start of `rest`, in that order of preference.
    static func contraction(after rest: ArraySlice<Unicode.Scalar>) -> Int? {
        guard let first = rest.first else { return nil }
        switch first {
        case "s", "t", "m", "d": return 1
        case "r", "v":
            return rest.dropFirst().first == "e" ? 2 : nil
        case "l":
            return rest.dropFirst().first == "l" ? 2 : nil
        default: return nil
        }
    }

    /// `\p{L}`: general category Lu, Ll, Lt, Lm or Lo.
    static func isLetter(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// `\p{N}`: general category Nd, Nl or No.
    static func isNumber(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    // MARK: - BPE

    /// Appends the ids of one word: its UTF-8 bytes as byte symbols (the last with `</w>`), merged
    /// by BPE. Each round merges every occurrence, left to right, of the adjacent pair with the
    /// lowest rank, until no adjacent pair has a merge (transformers' `CLIPTokenizer.bpe`).
    func bpe(_ word: ArraySlice<Unicode.Scalar>, into result: inout [Int]) {
        var string = String()
        string.unicodeScalars.append(contentsOf: word)
        let bytes = Array(string.utf8)
        guard !bytes.isEmpty else { return }
        var symbols = bytes.map { byteSymbol[Int($0)] }
        symbols[symbols.count - 1] = byteSymbolAtEnd[Int(bytes[bytes.count - 1])]

        while symbols.count > 1 {
            var best: (rank: Int32, id: Int32)? = nil
            var bestPair: UInt64 = 0
            for i in 0..<(symbols.count - 1) {
                let pair = UInt64(symbols[i]) << 32 | UInt64(symbols[i + 1])
                if let merge = merges[pair], merge.rank < best?.rank ?? .max {
                    best = merge
                    bestPair = pair
                }
            }
            guard let merge = best else { break }
            let first = Int(bestPair >> 32)
            let second = Int(bestPair & 0xFFFF_FFFF)
            var merged: [Int] = []
            merged.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i + 1 < symbols.count, symbols[i] == first, symbols[i + 1] == second {
                    merged.append(Int(merge.id))
                    i += 2
                } else {
                    merged.append(symbols[i])
                    i += 1
                }
            }
            symbols = merged
        }
        result += symbols
    }

    // MARK: - Byte symbols

    /// The bytes in the order `bytes_to_unicode` lists them: the printable ranges `!`…`~`,
    /// `¡`…`¬`, `®`…`ÿ` first, then the rest in byte order.
    static let byteToUnicodeOrder: [Int] = {
        let printable = Array(33...126) + Array(161...172) + Array(174...255)
        let printableSet = Set(printable)
        return printable + (0..<256).filter { !printableSet.contains($0) }
    }()

    /// `bytes_to_unicode`: printable bytes stand for themselves; the others, in byte order, map to
    /// U+0100, U+0101, …, so that no symbol is white space or a control character.
    static let byteToUnicode: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var next: UInt32 = 256
        for byte in byteToUnicodeOrder {
            if (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte) {
                table[byte] = Unicode.Scalar(UInt8(byte))
            } else {
                table[byte] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    static let unicodeToByte: [Unicode.Scalar: UInt8] = {
        var table: [Unicode.Scalar: UInt8] = [:]
        for (byte, scalar) in byteToUnicode.enumerated() { table[scalar] = UInt8(byte) }
        return table
    }()
}
