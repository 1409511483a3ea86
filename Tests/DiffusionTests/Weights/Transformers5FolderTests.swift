import Foundation
import TestSupport
import XCTest
@testable import Diffusion

/// Diffusers folders as today's tools save them: the tokenizer as `tokenizer.json` alone and the text
/// encoder as transformers 5 writes it (`Tests/Fixtures/models/tiny-sd15-transformers5`), a folder
/// without `tokenizer/`, and tokenizer folders that cannot be used.
///
/// Each folder is assembled in a temporary directory from the tiny model's `unet/`, `vae/`,
/// `scheduler/` and `model_index.json` and the part under test.
final class Transformers5FolderTests: XCTestCase {
    static let tiny = Fixture.tinySD15Folder
    static let transformers5 = Fixture.url("models/tiny-sd15-transformers5")

    /// A diffusers folder in a fresh temporary directory: the tiny model's UNet, VAE, scheduler and
    /// `model_index.json`, with `text_encoder/` and `tokenizer/` copied from `textEncoder` and
    /// `tokenizer` (nil: left out).
    func assembleFolder(textEncoder: URL?, tokenizer: URL?) throws -> URL {
        let fm = FileManager.default
        let folder = fm.temporaryDirectory.appendingPathComponent("sdrepl-t5folder-\(UUID().uuidString)")
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        for part in ["unet", "vae", "scheduler", "model_index.json"] {
            try fm.copyItem(at: Self.tiny.appendingPathComponent(part), to: folder.appendingPathComponent(part))
        }
        if let textEncoder { try fm.copyItem(at: textEncoder, to: folder.appendingPathComponent("text_encoder")) }
        if let tokenizer { try fm.copyItem(at: tokenizer, to: folder.appendingPathComponent("tokenizer")) }
        return folder
    }

    /// The tokenizer and text encoder saved by transformers 5 load through the pipeline, and the text
    /// encoder gives the original tiny model's output (the same weights) on a prompt.
    func testTransformers5TokenizerAndTextEncoderLoad() throws {
        let saved = try FileManager.default.contentsOfDirectory(atPath: Self.transformers5.appendingPathComponent("text_encoder").path)
        XCTAssertTrue(saved.contains("model.safetensors"), "\(saved)")
        let folder = try assembleFolder(textEncoder: Self.transformers5.appendingPathComponent("text_encoder"),
                                        tokenizer: Self.transformers5.appendingPathComponent("tokenizer"))
        // The key layout transformers 5.23's save_pretrained writes (README, tiny-sd15-transformers5):
        // no `text_model.` level.
        let stored = try SafetensorsFile(url: folder.appendingPathComponent("text_encoder/model.safetensors"))
        XCTAssertTrue(stored.names.contains("embeddings.token_embedding.weight"), "\(stored.names.prefix(5))")
        XCTAssertFalse(stored.names.contains { $0.hasPrefix("text_model.") })

        let pipeline = try StableDiffusionPipeline(url: folder)
        let original = try StableDiffusionPipeline(url: Self.tiny)
        // Every text-encoder tensor was taken (only the VAE encoder, which the pipeline does not
        // build, is left over, as with the original folder).
        XCTAssertEqual(pipeline.unexpectedKeys.filter { !$0.hasPrefix("vae.") }, [])
        XCTAssertEqual(pipeline.unexpectedKeys, original.unexpectedKeys)
        XCTAssertTrue(pipeline.checkpoint.warnings.isEmpty, "\(pipeline.checkpoint.warnings)")

        let prompt = "an astronaut riding a horse on mars, highly detailed"
        let ids = try pipeline.tokenizer.encode(prompt, paddedTo: 77)
        // tok(prompt, padding="max_length", max_length=77, truncation=True).input_ids
        // (reference/components.json, prompt 2)
        let reference = try Fixture.tensors("reference/components_fp32")
        XCTAssertEqual(ids, try reference.tensor("text/2/ids").data.map { Int($0) })
        XCTAssertEqual(ids, try original.tokenizer.encode(prompt, paddedTo: 77))
        for clipSkip in [1, 2] {
            let output = pipeline.textEncoder(tokens: ids, clipSkip: clipSkip)
            let expected = original.textEncoder(tokens: ids, clipSkip: clipSkip)
            // Same weights, same code: equal to rounding.
            assertClose(output, expected, tolerance: 1e-6, "text encoder of the transformers 5 folder, clip skip \(clipSkip)")
        }
        // te(ids).last_hidden_state of the original model (reference/components.json)
        assertParity(pipeline.textEncoder(tokens: ids, clipSkip: 1), try reference.tensor("text/2/last_hidden_state"),
                     "text encoder of the transformers 5 folder against transformers")
    }

    /// Strict loading still holds for the transformers 5 layout: a tensor of the wrong shape is named.
    func testTransformers5TextEncoderStaysStrict() throws {
        let folder = try assembleFolder(textEncoder: Self.transformers5.appendingPathComponent("text_encoder"),
                                        tokenizer: Self.transformers5.appendingPathComponent("tokenizer"))
        // The same file with a text-encoder config one layer deeper than the weights.
        let configURL = folder.appendingPathComponent("text_encoder/config.json")
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        config["num_hidden_layers"] = 4
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        XCTAssertThrowsError(try StableDiffusionPipeline(url: folder)) { error in
            guard case let .missingTensor(key, source) = error as? WeightsError else { return XCTFail("\(error)") }
            XCTAssertTrue(key.hasPrefix("text_encoder.text_model.encoder.layers.3."), key)
            XCTAssertEqual(source, folder.path)
        }
        // And a tensor of the wrong shape is named with both shapes.
        config["num_hidden_layers"] = 3
        config["intermediate_size"] = 16
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        XCTAssertThrowsError(try StableDiffusionPipeline(url: folder)) { error in
            XCTAssertEqual(error as? WeightsError, .shapeMismatch(key: "text_encoder.text_model.encoder.layers.0.mlp.fc1.weight",
                                                                     expected: [16, 8], actual: [32, 8], source: folder.path))
        }
    }

    /// A diffusers folder without `tokenizer/` uses the bundled CLIP vocabulary and says so once.
    func testFolderWithoutTokenizerUsesBundledVocabularyWithAWarning() throws {
        let folder = try assembleFolder(textEncoder: Self.tiny.appendingPathComponent("text_encoder"), tokenizer: nil)
        let pipeline = try StableDiffusionPipeline(url: folder)
        let prompt = "a photo of a cat, café 🐱"
        XCTAssertEqual(pipeline.tokenizer.encode(prompt), try CLIPTokenizer.bundled().encode(prompt))
        XCTAssertEqual(pipeline.checkpoint.warnings, [.noTokenizerFolder(folder: folder.path)])
        let message = try XCTUnwrap(pipeline.checkpoint.warnings.first).description
        XCTAssertTrue(message.contains(folder.path) && message.contains("built-in"), message)

        // With its tokenizer/ the same folder loads without the warning.
        let complete = try assembleFolder(textEncoder: Self.tiny.appendingPathComponent("text_encoder"),
                                          tokenizer: Self.tiny.appendingPathComponent("tokenizer"))
        XCTAssertEqual(try Checkpoint(url: complete).warnings, [])
        // A single file never has a tokenizer: nothing to warn about.
        XCTAssertEqual(try Checkpoint(url: Fixture.tinySD15SingleFile).warnings, [])
    }

    /// A broken tokenizer.json is one clean line naming the file, never a Foundation error dump.
    func testBrokenTokenizerJSONIsACleanError() throws {
        let folder = try assembleFolder(textEncoder: Self.tiny.appendingPathComponent("text_encoder"),
                                        tokenizer: Self.transformers5.appendingPathComponent("tokenizer"))
        let file = folder.appendingPathComponent("tokenizer/tokenizer.json")
        let whole = try Data(contentsOf: file)
        try whole.prefix(4000).write(to: file)  // cut off, as by an interrupted download
        XCTAssertThrowsError(try StableDiffusionPipeline(url: folder)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains(file.path), message)
            XCTAssertTrue(message.contains("not valid JSON"), message)
            XCTAssertFalse(message.contains("NSCocoaErrorDomain") || message.contains("Error Domain"), message)
            XCTAssertFalse(message.contains("\n"), message)
        }
    }

    /// A tokenizer folder with neither vocab.json + merges.txt nor tokenizer.json names the folder
    /// and what is missing.
    func testTokenizerFolderWithoutFilesIsACleanError() throws {
        let folder = try assembleFolder(textEncoder: Self.tiny.appendingPathComponent("text_encoder"), tokenizer: nil)
        let tokenizer = folder.appendingPathComponent("tokenizer")
        try FileManager.default.createDirectory(at: tokenizer, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.tiny.appendingPathComponent("tokenizer/tokenizer_config.json"),
                                         to: tokenizer.appendingPathComponent("tokenizer_config.json"))
        XCTAssertThrowsError(try StableDiffusionPipeline(url: folder)) { error in
            XCTAssertEqual(error as? TokenizerError, .noTokenizerFiles(folder: tokenizer.path, missing: ["vocab.json", "merges.txt", "tokenizer.json"]))
            let message = "\(error)"
            XCTAssertTrue(message.contains(tokenizer.path) && message.contains("tokenizer.json") && message.contains("vocab.json"), message)
            XCTAssertFalse(message.contains("NSCocoaErrorDomain") || message.contains("\n"), message)
        }
        // Half of the pair: the message names the half that is missing.
        try FileManager.default.copyItem(at: Self.tiny.appendingPathComponent("tokenizer/vocab.json"),
                                         to: tokenizer.appendingPathComponent("vocab.json"))
        XCTAssertThrowsError(try CLIPTokenizer(directory: tokenizer)) { error in
            XCTAssertEqual(error as? TokenizerError, .noTokenizerFiles(folder: tokenizer.path, missing: ["merges.txt", "tokenizer.json"]))
        }
        // Both files, but vocab.json cut off: the file and a one-line reason.
        try FileManager.default.copyItem(at: Self.tiny.appendingPathComponent("tokenizer/merges.txt"),
                                         to: tokenizer.appendingPathComponent("merges.txt"))
        let vocab = tokenizer.appendingPathComponent("vocab.json")
        try Data(try Data(contentsOf: vocab).prefix(1000)).write(to: vocab)
        XCTAssertThrowsError(try CLIPTokenizer(directory: tokenizer)) { error in
            guard case let .unreadable(path, reason) = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, vocab.path)
            XCTAssertTrue(reason.hasPrefix("not valid JSON"), reason)
            XCTAssertFalse("\(error)".contains("Error Domain") || "\(error)".contains("\n"), "\(error)")
        }
    }
}
