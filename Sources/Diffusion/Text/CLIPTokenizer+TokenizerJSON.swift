import Foundation

/// Reading CLIP's tokenizer from a Hugging Face `tokenizers` JSON file (`tokenizer.json`).
///
/// transformers 5's `save_pretrained` writes only this file (with `tokenizer_config.json`), no
/// `vocab.json` or `merges.txt`. The file describes the whole pipeline; the engine implements one
/// pipeline, CLIP's (see `CLIPTokenizer`), so the file's vocabulary and merges are used and the rest
/// is checked to be CLIP's. A file that describes another pipeline is refused rather than run with
/// CLIP's rules, which would give ids the text encoder was not trained on.
extension CLIPTokenizer {
    /// Loads a `tokenizer.json` in the format of the `tokenizers` library.
    ///
    /// Read from the file: `model.vocab`; `model.merges`, either `"a b"` strings (tokenizers before
    /// 0.20) or `["a", "b"]` pairs (0.20 and later), all of them in order, as `CLIPTokenizerFast` uses
    /// them; `model.end_of_word_suffix`, which must be `</w>`; `added_tokens`, which must be CLIP's
    /// `<|startoftext|>` and `<|endoftext|>` (added to the vocabulary when `model.vocab` lacks them;
    /// one marked `"normalized": true` also matches its lower-cased spellings, as in `tokenizers`);
    /// `normalizer`, which must be CLIP's: NFC, optionally runs of white space made one space (a
    /// no-op here, as white space only separates words), then lower case; and `pre_tokenizer`, which
    /// must be CLIP's word pattern followed by `ByteLevel`. The post-processor is not read: `encode`
    /// always adds `<|startoftext|>` and `<|endoftext|>`, as SD1.x needs.
    ///
    /// - Parameter url: the `tokenizer.json` file.
    /// - Throws: `TokenizerError.unreadable` (missing file, not JSON, a field of the wrong type),
    ///   `.unsupportedTokenizer` (not CLIP's pipeline), `.badMergeEntry` naming the index of a bad
    ///   merge, `.missingSpecialToken`.
    public init(tokenizerJSON url: URL) throws {
        let path = url.path
        let root: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: Self.contents(of: url)) as? [String: Any] else {
                throw TokenizerError.unreadable(path: path, reason: "the file is JSON but not an object")
            }
            root = object
        } catch let error as TokenizerError {
            throw error
        } catch {
            throw TokenizerError.unreadable(path: path, reason: Self.reason(error, expected: "a tokenizer.json object"))
        }
        func malformed(_ field: String, _ expected: String) -> TokenizerError {
            .unreadable(path: path, reason: "\(field) is not \(expected)")
        }

        // model: BPE with CLIP's word suffix
        guard let model = root["model"] as? [String: Any] else { throw malformed("\"model\"", "an object") }
        if let type = model["type"] as? String, type != "BPE" {
            throw TokenizerError.unsupportedTokenizer(path: path, reason: "its model is \(type), not CLIP's BPE")
        }
        let suffix = model["end_of_word_suffix"] as? String
        guard suffix == Self.endOfWord else {
            throw TokenizerError.unsupportedTokenizer(path: path, reason: "its end-of-word suffix is "
                + (suffix.map { "\"\($0)\"" } ?? "not set") + ", not CLIP's \"\(Self.endOfWord)\"")
        }
        if let prefix = model["continuing_subword_prefix"] as? String, !prefix.isEmpty {
            throw TokenizerError.unsupportedTokenizer(path: path, reason: "it marks word continuations with \"\(prefix)\", which CLIP does not")
        }

        guard let vocab = model["vocab"] as? [String: Any] else { throw malformed("model.vocab", "an object of token → id") }
        var vocabulary: [String: Int] = [:]
        vocabulary.reserveCapacity(vocab.count + 2)
        for (token, value) in vocab {
            guard let id = Self.integer(value) else { throw malformed("the id of \(token.debugDescription) in model.vocab", "an integer") }
            vocabulary[token] = id
        }

        guard let mergeList = model["merges"] as? [Any] else { throw malformed("model.merges", "a list") }
        var merges: [(String, String)] = []
        merges.reserveCapacity(mergeList.count)
        for (index, entry) in mergeList.enumerated() {
            // "a b" (split on single spaces, as tokenizers does) or ["a", "b"].
            var parts: [String] = []
            if let line = entry as? String {
                parts = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else if let pair = entry as? [Any], pair.count == 2 {
                parts = pair.compactMap { $0 as? String }
            }
            guard parts.count == 2 else {
                throw TokenizerError.badMergeEntry(path: path, index: index, text: Self.describe(entry))
            }
            merges.append((parts[0], parts[1]))
        }

        // added tokens: CLIP's two special tokens, matched in the raw text and, when "normalized",
        // in the normalised text too
        let added = root["added_tokens"] as? [Any] ?? []
        var unsupported: [String] = []
        var normalisedSpecials: [String] = []
        for entry in added {
            guard let token = entry as? [String: Any], let content = token["content"] as? String,
                  let id = token["id"].flatMap(Self.integer) else { throw malformed("an entry of added_tokens", "an object with an id and a content") }
            guard content == Self.startOfText || content == Self.endOfText else {
                unsupported.append(content.debugDescription)
                continue
            }
            // lstrip/rstrip only move white space into the token, and CLIP drops white space between
            // words anyway; single_word would stop matches inside words, which this tokenizer does not model.
            if token["single_word"] as? Bool == true {
                throw TokenizerError.unsupportedTokenizer(path: path, reason: "its \(content) matches only as a single word")
            }
            if token["normalized"] as? Bool == true { normalisedSpecials.append(content) }
            if let known = vocabulary[content], known != id {
                throw TokenizerError.unsupportedTokenizer(path: path, reason: "added_tokens gives \(content) the id \(id), model.vocab \(known)")
            }
            vocabulary[content] = id
        }
        if !unsupported.isEmpty {
            throw TokenizerError.unsupportedTokenizer(path: path, reason: "it adds tokens besides CLIP's (\(unsupported.joined(separator: ", "))), "
                + "as a textual-inversion or fine-tuning save does; load such embeddings as embedding files instead")
        }

        try Self.checkNormalizer(root["normalizer"], path: path)
        try Self.checkPreTokenizer(root["pre_tokenizer"], path: path)

        do {
            try self.init(vocabulary: vocabulary, merges: merges, source: path, normalisedSpecials: normalisedSpecials)
        } catch TokenizerError.badMerge(_, let line, let text) {
            // init numbers merges as lines of merges.txt, after its header line.
            throw TokenizerError.badMergeEntry(path: path, index: line - 2, text: text)
        }
    }

    /// Checks that `normalizer` (a `tokenizers` normaliser, nested in `Sequence`s) is CLIP's:
    /// `NFC`, optionally `Replace(Regex("\s+"), " ")`, then `Lowercase`.
    private static func checkNormalizer(_ normalizer: Any?, path: String) throws {
        func flatten(_ value: Any?) -> [[String: Any]] {
            guard let object = value as? [String: Any] else { return [] }
            if object["type"] as? String == "Sequence" { return (object["normalizers"] as? [Any] ?? []).flatMap(flatten) }
            return [object]
        }
        let steps = flatten(normalizer)
        let kept = steps.filter { step in
            // Collapsing white space to one space changes nothing for CLIP's word pattern, which
            // drops white space between words.
            let pattern = step["pattern"] as? [String: Any]
            return !(step["type"] as? String == "Replace" && pattern?["Regex"] as? String == #"\s+"# && step["content"] as? String == " ")
        }
        let types = kept.map { $0["type"] as? String ?? "?" }
        guard types == ["NFC", "Lowercase"] else {
            let found = steps.map { describe($0["type"] ?? $0) }.joined(separator: ", ")
            throw TokenizerError.unsupportedTokenizer(path: path, reason: "its normalizer is [\(found.isEmpty ? "none" : found)], "
                + "not CLIP's [NFC, Replace, Lowercase]")
        }
    }

    /// Checks that `pre_tokenizer` is CLIP's: `Split` on CLIP's word pattern (the words are kept,
    /// `invert`, and the rest removed), then `ByteLevel` without a prefix space, re-splitting each
    /// word with GPT-2's pattern (`use_regex`, true when absent).
    private static func checkPreTokenizer(_ preTokenizer: Any?, path: String) throws {
        let steps: [[String: Any]]
        if let object = preTokenizer as? [String: Any], object["type"] as? String == "Sequence" {
            steps = (object["pretokenizers"] as? [Any] ?? []).compactMap { $0 as? [String: Any] }
        } else {
            steps = (preTokenizer as? [String: Any]).map { [$0] } ?? []
        }
        let isCLIP = steps.count == 2
            && steps[0]["type"] as? String == "Split"
            && (steps[0]["pattern"] as? [String: Any])?["Regex"] as? String == wordPattern
            && steps[0]["behavior"] as? String == "Removed" && steps[0]["invert"] as? Bool == true
            && steps[1]["type"] as? String == "ByteLevel"
            && steps[1]["add_prefix_space"] as? Bool == false && steps[1]["use_regex"] as? Bool != false
        guard isCLIP else {
            let found = steps.map { describe($0["type"] ?? "?") }.joined(separator: ", ")
            throw TokenizerError.unsupportedTokenizer(path: path, reason: "its pre_tokenizer [\(found.isEmpty ? "none" : found)] "
                + "is not CLIP's (Split on CLIP's word pattern, then ByteLevel)")
        }
    }

    /// CLIP's word pattern, as `tokenizers` spells it in the `Split` pre-tokenizer.
    static let wordPattern = #"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"#

    /// An integer JSON value (JSONSerialization gives numbers as `NSNumber` or `Int`); nil for
    /// anything else, including fractions.
    private static func integer(_ value: Any) -> Int? {
        if let int = value as? Int { return int }
        if let number = value as? NSNumber, let exact = Int(exactly: number.doubleValue) { return exact }
        return nil
    }

    /// A short rendering of a JSON value for an error message.
    private static func describe(_ value: Any) -> String {
        if let string = value as? String { return string.debugDescription }
        if let list = value as? [Any] { return "[" + list.map(describe).joined(separator: ", ") + "]" }
        return "\(value)"
    }
}
