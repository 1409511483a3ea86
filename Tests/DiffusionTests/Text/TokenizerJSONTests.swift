import Foundation
import TestSupport
import XCTest
@testable import Diffusion

/// The CLIP tokenizer read from a `tokenizers` JSON file (`tokenizer.json`), as transformers 5's
/// `save_pretrained` writes it without `vocab.json` and `merges.txt`
/// (`Tests/Fixtures/models/tiny-sd15-transformers5`, made by `make_transformers5_fixtures.py`).
final class TokenizerJSONTests: XCTestCase {
    static let folder = Fixture.url("models/tiny-sd15-transformers5/tokenizer")

    /// The whole corpus, ids exactly as transformers gives them. The corpus was recorded with the
    /// tiny model's vocab.json/merges.txt; `make_transformers5_fixtures.py` checks that
    /// `CLIPTokenizerFast.from_pretrained("Tests/Fixtures/models/tiny-sd15-transformers5/tokenizer")`
    /// gives the same `tok(p).input_ids` and `tok(p, padding="max_length", max_length=77, truncation=True).input_ids`
    /// for every prompt, so the expected ids are reused.
    func testCorpusFromTokenizerJSON() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.folder.path)
        XCTAssertTrue(files.contains("tokenizer.json"), "\(files)")
        XCTAssertFalse(files.contains("vocab.json"), "the fixture must exercise tokenizer.json alone")
        XCTAssertFalse(files.contains("merges.txt"), "the fixture must exercise tokenizer.json alone")

        let tokenizer = try CLIPTokenizer(directory: Self.folder)
        XCTAssertEqual(tokenizer.vocabularySize, 49408)
        XCTAssertEqual(tokenizer.startToken, 49406)
        XCTAssertEqual(tokenizer.endToken, 49407)
        XCTAssertEqual(tokenizer.commaToken, 267)

        let corpus = try Fixture.tokenizerCorpus()
        XCTAssertGreaterThanOrEqual(corpus.entries.count, 200)
        var mismatches: [String] = []
        for entry in corpus.entries {
            let ids = tokenizer.encode(entry.prompt)
            if ids != entry.ids { mismatches.append("\(entry.prompt.debugDescription): got \(ids), transformers gives \(entry.ids)") }
            let padded = try tokenizer.encode(entry.prompt, paddedTo: 77, truncating: true)
            if padded != entry.ids77 { mismatches.append("\(entry.prompt.debugDescription) padded: got \(padded), transformers gives \(entry.ids77)") }
        }
        XCTAssertTrue(mismatches.isEmpty, mismatches.joined(separator: "\n"))
    }

    /// `model.merges` as a list of `"a b"` strings (tokenizers < 0.20) or of `["a", "b"]` pairs
    /// (what tokenizers 0.20 and later write) gives the same tokenizer.
    func testMergesAsStringsOrPairs() throws {
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.folder.appendingPathComponent("tokenizer.json")))
        var root = try XCTUnwrap(original as? [String: Any])
        var model = try XCTUnwrap(root["model"] as? [String: Any])
        let merges = try XCTUnwrap(model["merges"] as? [Any])
        XCTAssertEqual(merges.count, 48894)
        let asPairs = merges.map { entry -> [String] in
            if let pair = entry as? [String] { return pair }
            return (entry as? String ?? "").split(separator: " ").map(String.init)
        }
        let bundled = try CLIPTokenizer.bundled()
        let prompts = ["a photo of a cat", "masterpiece, (best quality:1.2), 猫, café, it's 🐱👍🏽", "<|ENDOFTEXT|>x<|endoftext|>"]
        for form in ["strings", "pairs"] {
            model["merges"] = form == "pairs" ? asPairs : asPairs.map { $0.joined(separator: " ") } as [Any]
            root["model"] = model
            let folder = try temporaryFolder()
            try JSONSerialization.data(withJSONObject: root).write(to: folder.appendingPathComponent("tokenizer.json"))
            let tokenizer = try CLIPTokenizer(directory: folder)
            for prompt in prompts { XCTAssertEqual(tokenizer.encode(prompt), bundled.encode(prompt), "\(form): \(prompt)") }
        }
    }

    /// A tokenizer.json that is not CLIP's (another normaliser, another word suffix, a merge of
    /// three symbols) is refused with the file and the reason, never used with other ids.
    func testForeignTokenizerJSONIsRefused() throws {
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.folder.appendingPathComponent("tokenizer.json")))
        let root = try XCTUnwrap(original as? [String: Any])
        func refusal(_ change: (inout [String: Any]) -> Void) throws -> String {
            var changed = root
            change(&changed)
            let folder = try temporaryFolder()
            let file = folder.appendingPathComponent("tokenizer.json")
            try JSONSerialization.data(withJSONObject: changed).write(to: file)
            do {
                _ = try CLIPTokenizer(directory: folder)
                XCTFail("a changed tokenizer.json was accepted")
                return ""
            } catch let error as TokenizerError {
                let message = error.description
                XCTAssertTrue(message.contains(file.path), message)
                return message
            }
        }
        // No Lowercase: "Cat" would get other ids than CLIP's.
        let noLowercase = try refusal { $0["normalizer"] = ["type": "Sequence", "normalizers": [["type": "NFC"]]] }
        XCTAssertTrue(noLowercase.contains("normaliz"), noLowercase)
        let suffix = try refusal { root in
            var model = root["model"] as? [String: Any] ?? [:]
            model["end_of_word_suffix"] = "##"
            root["model"] = model
        }
        XCTAssertTrue(suffix.contains("##"), suffix)
        let wordPiece = try refusal { root in
            var model = root["model"] as? [String: Any] ?? [:]
            model["type"] = "WordPiece"
            root["model"] = model
        }
        XCTAssertTrue(wordPiece.contains("WordPiece"), wordPiece)
        let badMerge = try refusal { root in
            var model = root["model"] as? [String: Any] ?? [:]
            var merges = model["merges"] as? [Any] ?? []
            merges[3] = ["a", "b", "c"]
            model["merges"] = merges
            root["model"] = model
        }
        XCTAssertTrue(badMerge.contains("model.merges[3]"), badMerge)
        // GPT-2's pre-tokenizer alone (no CLIP word pattern).
        let preTokenizer = try refusal { $0["pre_tokenizer"] = ["type": "ByteLevel", "add_prefix_space": true, "use_regex": true] }
        XCTAssertTrue(preTokenizer.contains("pre_tokenizer"), preTokenizer)
        // A token added by a textual-inversion save.
        let extra = try refusal { root in
            var added = root["added_tokens"] as? [[String: Any]] ?? []
            added.append(["id": 49408, "content": "<tinyneg>", "single_word": false, "lstrip": false, "rstrip": false,
                          "normalized": true, "special": false])
            root["added_tokens"] = added
        }
        XCTAssertTrue(extra.contains("<tinyneg>"), extra)
        let singleWord = try refusal { root in
            var added = root["added_tokens"] as? [[String: Any]] ?? []
            added[0]["single_word"] = true
            root["added_tokens"] = added
        }
        XCTAssertTrue(singleWord.contains("single word"), singleWord)
    }

    /// A special token marked `"normalized": true` also matches its lower-cased spellings (older
    /// saves mark CLIP's specials so); unmarked, as transformers 5 writes them, only the exact one.
    func testNormalizedSpecialTokens() throws {
        // t = CLIPTokenizerFast.from_pretrained(<the fixture folder, added_tokens[1]["normalized"] = True>)
        // t("<|StartOfText|>x <|ENDOFTEXT|>y<|endoftext|>").input_ids   (transformers 5.23, tokenizers 0.23.3)
        let text = "<|StartOfText|>x <|ENDOFTEXT|>y<|endoftext|>"
        let endNormalised = try tokenizer(changing: { root in
            var added = root["added_tokens"] as? [[String: Any]] ?? []
            added[1]["normalized"] = true
            root["added_tokens"] = added
        })
        XCTAssertEqual(endNormalised.encode(text), [49406, 27, 347, 993, 6659, 4160, 91, 285, 343, 49407, 344, 49407, 49407])
        // the same with the fixture as saved
        XCTAssertEqual(try CLIPTokenizer(directory: Self.folder).encode(text),
                       [49406, 27, 347, 993, 6659, 4160, 91, 285, 343, 27, 347, 40786, 4160, 91, 285, 344, 49407, 49407])
        // both marked: t("<|ENDOFTEXT|>a<|endoftext|>b<|startoftext|> <|Endoftext|>!").input_ids
        let bothNormalised = try tokenizer(changing: { root in
            root["added_tokens"] = (root["added_tokens"] as? [[String: Any]] ?? []).map { token in
                var token = token
                token["normalized"] = true
                return token
            }
        })
        XCTAssertEqual(bothNormalised.encode("<|ENDOFTEXT|>a<|endoftext|>b<|startoftext|> <|Endoftext|>!"),
                       [49406, 49407, 320, 49407, 321, 49406, 49407, 256, 49407])
    }

    /// The fixture's tokenizer.json with `change` applied, written to a temporary folder and loaded.
    func tokenizer(changing change: (inout [String: Any]) -> Void) throws -> CLIPTokenizer {
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.folder.appendingPathComponent("tokenizer.json")))
        var root = try XCTUnwrap(original as? [String: Any])
        change(&root)
        let folder = try temporaryFolder()
        try JSONSerialization.data(withJSONObject: root).write(to: folder.appendingPathComponent("tokenizer.json"))
        return try CLIPTokenizer(directory: folder)
    }

    func temporaryFolder() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sdrepl-tokjson-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        return folder
    }
}
