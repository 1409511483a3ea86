import Foundation
@testable import ModelStore
import TestSupport
import XCTest

/// Discovery on temporary folders laid out like the HF cache and like an A1111 models folder.
final class ModelDiscoveryTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("sdrepl-discovery-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: root) }

    func touch(_ path: String, bytes: Int = 16) throws -> URL {
        let url = root.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(repeating: 1, count: bytes).write(to: url)
        return url
    }

    /// Lays out `models--owner--name` with a blob, a snapshot link and refs/main, as huggingface_hub does.
    func makeHubRepo(cache: String, repo: String, files: [String]) throws -> URL {
        let folder = root.appendingPathComponent(cache).appendingPathComponent(HubCache.folderName(repo: repo))
        let commit = "c0ffee" + String(repeating: "0", count: 34)
        for (i, file) in files.enumerated() {
            let sha = String(repeating: String(i), count: 64)
            _ = try touch("\(cache)/\(HubCache.folderName(repo: repo))/blobs/\(sha)", bytes: 100 + i)
            let link = folder.appendingPathComponent("snapshots/\(commit)/\(file)")
            try FileManager.default.createDirectory(at: link.deletingLastPathComponent(), withIntermediateDirectories: true)
            let depth = file.split(separator: "/").count
            try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: String(repeating: "../", count: depth + 1) + "blobs/\(sha)")
        }
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("refs"), withIntermediateDirectories: true)
        try Data(commit.utf8).write(to: folder.appendingPathComponent("refs/main"))
        return folder.appendingPathComponent("snapshots/\(commit)")
    }

    func discovery(_ env: [String: String] = [:]) -> ModelDiscovery {
        ModelDiscovery(environment: env, currentDirectory: root.appendingPathComponent("cwd"), homeDirectory: root.appendingPathComponent("home"))
    }

    /// A checkpoint fetched with `model download REPO FILE` from another repository is listed (not
    /// chosen); a LoRA in the cache is not a checkpoint.
    func testOtherCheckpointsInTheCacheAreListed() throws {
        func safetensors(_ key: String) -> Data {
            let header = Data(#"{"\#(key)":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}"#.utf8)
            var length = UInt64(header.count).littleEndian
            return Data(bytes: &length, count: 8) + header + Data([0, 0])
        }
        let snapshot = try makeHubRepo(cache: "home/.cache/huggingface/hub", repo: "someone/finetune", files: ["finetune.safetensors"])
        try safetensors("model.diffusion_model.input_blocks.0.0.weight").write(to: snapshot.appendingPathComponent("finetune.safetensors").resolvingSymlinksInPath())
        let lora = try makeHubRepo(cache: "home/.cache/huggingface/hub", repo: "someone/a-lora", files: ["lora.safetensors"])
        try safetensors("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight").write(to: lora.appendingPathComponent("lora.safetensors").resolvingSymlinksInPath())
        let others = discovery().otherCachedCheckpoints()
        XCTAssertEqual(others.map(\.url.lastPathComponent), ["finetune.safetensors"])
        XCTAssertEqual(others.first?.origin, .huggingFaceCache(repo: "someone/finetune"))
        XCTAssertTrue(try discovery().findAll().isEmpty, "listed, never chosen without 'model PATH'")
    }

    func testFindsADiffusersSnapshotInTheDefaultCacheWithNoConfiguration() throws {
        let snap = try makeHubRepo(cache: "home/.cache/huggingface/hub", repo: "runwayml/stable-diffusion-v1-5", files: [
            "model_index.json", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
            "text_encoder/model.safetensors",
        ])
        let found = try discovery().resolve()
        XCTAssertEqual(found.url.path, snap.path)
        XCTAssertEqual(found.layout, .diffusersFolder)
        XCTAssertEqual(found.origin, .huggingFaceCache(repo: "runwayml/stable-diffusion-v1-5"))
        XCTAssertEqual(found.sizeBytes, 101 + 102 + 103)
    }

    func testHFHomeAndTheNewRepositoryNameAreSearched() throws {
        let snap = try makeHubRepo(cache: "hfhome/hub", repo: "stable-diffusion-v1-5/stable-diffusion-v1-5",
                                   files: ["v1-5-pruned-emaonly.safetensors", "v1-5-pruned-emaonly-fp16.safetensors"])
        let all = try discovery(["HF_HOME": root.appendingPathComponent("hfhome").path]).findAll()
        XCTAssertEqual(all.map(\.url.lastPathComponent), ["v1-5-pruned-emaonly-fp16.safetensors", "v1-5-pruned-emaonly.safetensors"])
        XCTAssertEqual(all.first?.url.deletingLastPathComponent().path, snap.path)
        XCTAssertEqual(all.first?.knownSHA256, String(repeating: "1", count: 64))
    }

    func testAnA1111ModelsFolderComesBeforeTheCache() throws {
        _ = try makeHubRepo(cache: "home/.cache/huggingface/hub", repo: "runwayml/stable-diffusion-v1-5", files: ["v1-5-pruned-emaonly.safetensors"])
        let local = try touch("cwd/models/dreamshaper_8.safetensors")
        _ = try touch("cwd/models/notes.txt")
        let all = try discovery().findAll()
        XCTAssertEqual(all.first?.url.path, local.path)
        XCTAssertEqual(all.first?.origin, .modelsDirectory)
        XCTAssertEqual(all.count, 2)
    }

    /// Run from a webui folder, sdrepl finds the checkpoints A1111 uses: `models/Stable-diffusion`
    /// and the folders users sort them into, after `models/` itself and before the cache.
    func testA1111sCheckpointFolderAndItsSubFoldersAreSearched() throws {
        _ = try makeHubRepo(cache: "home/.cache/huggingface/hub", repo: "runwayml/stable-diffusion-v1-5", files: ["v1-5-pruned-emaonly.safetensors"])
        let own = try touch("cwd/models/own.safetensors")
        let a = try touch("cwd/models/Stable-diffusion/v1-5-pruned-emaonly.safetensors")
        let b = try touch("cwd/models/Stable-diffusion/anime/anything-v3.ckpt")
        let c = try touch("cwd/models/Stable-diffusion/anime/old/deeper/too-deep.safetensors")
        _ = try touch("cwd/models/Stable-diffusion/Put Stable Diffusion checkpoints here.txt")
        _ = try touch("cwd/models/Lora/style.safetensors")
        let all = try discovery().findAll()
        XCTAssertEqual(all.map(\.url.path).prefix(3), [own.path, a.path, b.path])
        XCTAssertEqual(all.map(\.origin).prefix(3), [.modelsDirectory, .a1111Directory, .a1111Directory])
        XCTAssertEqual(all.count, 4, "the cache's one follows; \(c.lastPathComponent) is past the depth searched")
        XCTAssertEqual(ModelOrigin.a1111Directory.description, "./models/Stable-diffusion")
        XCTAssertTrue(discovery().searchedLocations().contains { $0.hasSuffix("cwd/models/Stable-diffusion/ (A1111's folder, sub-folders too)") })
    }

    func testExplicitPathThenEnvironmentComeFirst() throws {
        let a = try touch("a.safetensors"), b = try touch("b.safetensors")
        _ = try touch("cwd/models/c.safetensors")
        let all = try discovery(["SDREPL_MODEL": b.path]).findAll(explicit: a.path)
        XCTAssertEqual(all.map(\.url.lastPathComponent), ["a.safetensors", "b.safetensors", "c.safetensors"])
        XCTAssertEqual(all.map(\.origin), [.explicit, .environment, .modelsDirectory])
    }

    func testAWrongExplicitPathIsAnErrorNotAFallback() throws {
        _ = try touch("cwd/models/c.safetensors")
        XCTAssertThrowsError(try discovery().findAll(explicit: root.appendingPathComponent("missing.safetensors").path)) { error in
            XCTAssertTrue("\(error)".contains("no such file or directory"), "\(error)")
        }
        let gguf = try touch("model.gguf")
        XCTAssertThrowsError(try discovery().resolve(explicit: gguf.path)) { error in
            XCTAssertTrue("\(error)".contains("sdrepl reads .safetensors and .ckpt checkpoints or diffusers folders"), "\(error)")
        }
    }

    /// Pickled checkpoints are found by name (the engine reads their first bytes and decides): given
    /// by path under any pickle name, in `models/` as `.ckpt`, and in the cache after the
    /// safetensors file beside them, as the SD1.5 repositories hold both.
    func testPickledCheckpointsAreFoundByName() throws {
        for name in ["model.ckpt", "model.pt", "model.pth", "model.bin"] {
            let pickle = try touch(name)
            XCTAssertEqual(try discovery().resolve(explicit: pickle.path).layout, .singleFile, name)
        }
        _ = try makeHubRepo(cache: "home/.cache/huggingface/hub", repo: "runwayml/stable-diffusion-v1-5",
                            files: ["v1-5-pruned-emaonly.ckpt", "v1-5-pruned-emaonly.safetensors", "v1-5-pruned.ckpt"])
        let local = try touch("cwd/models/old-model.ckpt")
        _ = try touch("cwd/models/embedding.pt")
        let all = try discovery().findAll()
        XCTAssertEqual(all.map(\.url.lastPathComponent), ["old-model.ckpt", "v1-5-pruned-emaonly.safetensors", "v1-5-pruned-emaonly.ckpt",
                                                           "v1-5-pruned.ckpt"])
        XCTAssertEqual(all.first?.url.path, local.path)
    }

    func testWithNoModelTheErrorSaysWhereItLookedAndHowToGetOne() throws {
        XCTAssertThrowsError(try discovery(["HF_HUB_CACHE": "/tmp/custom-hub"]).resolve()) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("$SDREPL_MODEL (not set)"), text)
            XCTAssertTrue(text.contains(self.root.appendingPathComponent("cwd/models").path), text)
            XCTAssertTrue(text.contains("/tmp/custom-hub/models--runwayml--stable-diffusion-v1-5"), text)
            XCTAssertTrue(text.contains("/tmp/custom-hub/models--stable-diffusion-v1-5--stable-diffusion-v1-5"), text)
            XCTAssertTrue(text.contains(self.root.appendingPathComponent("home/.cache/huggingface/hub").path), text)
            XCTAssertTrue(text.contains("model download"), text)
        }
    }

    func testAnIncompleteDiffusersSnapshotIsNotOffered() throws {
        _ = try makeHubRepo(cache: "home/.cache/huggingface/hub", repo: "runwayml/stable-diffusion-v1-5",
                            files: ["model_index.json", "unet/diffusion_pytorch_model.safetensors"])
        XCTAssertEqual(try discovery().findAll(), [])
    }

    func testAHubRepositoryFolderIsAcceptedAsAPath() throws {
        let snap = try makeHubRepo(cache: "elsewhere", repo: "someone/finetune", files: ["model.safetensors"])
        let repoFolder = snap.deletingLastPathComponent().deletingLastPathComponent()
        let found = try discovery().resolve(explicit: repoFolder.path)
        XCTAssertEqual(found.url.lastPathComponent, "model.safetensors")
        XCTAssertEqual(found.layout, .singleFile)
    }
}

/// A folder that looks like a diffusers folder but is not one is described by what it lacks, not as
/// "no model_index.json".
final class BrokenDiffusersFolderTests: XCTestCase {
    private func reason(_ setUp: (URL) throws -> Void) throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("broken-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        try setUp(root)
        let discovery = ModelDiscovery(environment: [:], currentDirectory: root, homeDirectory: root)
        do {
            _ = try discovery.model(atUserPath: root.path, origin: .explicit)
            XCTFail("accepted \(root.path)")
            return ""
        } catch ModelStoreError.notAModel(_, let reason) {
            return reason
        }
    }

    func testAModelIndexAloneNamesEveryMissingPart() throws {
        let text = try reason { root in
            try Data(#"{"_class_name": "StableDiffusionPipeline"}"#.utf8).write(to: root.appendingPathComponent("model_index.json"))
        }
        XCTAssertEqual(text, "it is not a complete diffusers folder: it has no unet/ folder; it has no vae/ folder; "
                       + "it has no text_encoder/ folder; fetch the missing parts, or the whole model again")
    }

    func testAMalformedModelIndexIsNamedAndAPickledPartCounts() throws {
        let text = try reason { root in
            try Data("{not json".utf8).write(to: root.appendingPathComponent("model_index.json"))
            for part in ["unet", "vae", "text_encoder"] {
                try FileManager.default.createDirectory(at: root.appendingPathComponent(part), withIntermediateDirectories: true)
            }
            try Data([0]).write(to: root.appendingPathComponent("unet/diffusion_pytorch_model.safetensors"))
            try Data([0]).write(to: root.appendingPathComponent("text_encoder/pytorch_model.bin"))
        }
        XCTAssertTrue(text.contains("its model_index.json is not a JSON object"), text)
        XCTAssertTrue(text.contains("vae/ has no .safetensors or .bin weights"), text)
        // torch.save's .bin weights count (the engine reads them, or says why not).
        XCTAssertFalse(text.contains("text_encoder/"), text)
        XCTAssertFalse(text.contains("unet/"), text)
    }
}
