import Foundation
import TestSupport
import XCTest

/// The model's weights are read from its files' mappings while it runs, so a file rewritten under a
/// running session must not give other weights or a bare "Bus error": between generations the
/// session loads it again, and during one sdrepl stops naming the file. Through the real binary on a
/// pseudo-terminal, with a copy of the tiny diffusers model.
final class ModelFileChangeTests: XCTestCase {
    /// The tiny model with its fp16 UNet as the main file, so that fast mode keeps the larger UNet
    /// weights in the file's mapping, as it does a real fp16 checkpoint's.
    private func copyModel(into sandbox: Sandbox) throws -> String {
        let model = sandbox.path + "/tiny"
        try FileManager.default.copyItem(atPath: FixturePaths.root.appendingPathComponent("models/tiny-sd15-diffusers").path,
                                         toPath: model)
        let unet = model + "/unet/diffusion_pytorch_model.safetensors"
        try FileManager.default.removeItem(atPath: unet)
        try FileManager.default.moveItem(atPath: model + "/unet/diffusion_pytorch_model.fp16.safetensors", toPath: unet)
        return unet
    }

    /// Writes `bytes` over the file in place: the same inode, as `cp` over it or an editor would.
    private func rewriteInPlace(_ path: String, with bytes: Data) throws {
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: bytes)
        try handle.close()
    }

    /// The short hashes the terminal showed for each image (`image N: seed S, WxH, T s, sha256 H…`).
    private func shownHashes(_ transcript: String) -> [String] {
        transcript.components(separatedBy: "sha256 ").dropFirst().map { String($0.prefix(16)) }
    }

    /// Rewritten with the same bytes, the model is loaded again and makes the same image; rewritten
    /// with garbage, the reload fails with the file's own error and the session goes on; restored, it
    /// works again.
    func testAModelFileRewrittenBetweenGenerationsIsLoadedAgain() throws {
        for memory in ["low", "fast"] {
            let sandbox = Sandbox()
            let unet = try copyModel(into: sandbox)
            let original = try Data(contentsOf: URL(fileURLWithPath: unet))
            let terminal = try PseudoTerminal(["--model", "tiny"], in: sandbox, da1Reply: "\u{1B}[?62;22c")
            terminal.expect("type 'help'")
            terminal.type("set memory \(memory)\nset size 64x64\nset steps 2\nset autosave off\nset preview off\nseed 5\ngen\n")
            terminal.expect("image 1: seed 5")

            try rewriteInPlace(unet, with: original)
            terminal.type("gen\n")
            terminal.expect("\(unet) changed on disk since the model was loaded; loading it again")
            terminal.expect("image 2: seed 5")

            try rewriteInPlace(unet, with: Data("not a model".utf8))
            terminal.type("gen\n")
            terminal.expect("changed on disk since the model was loaded; loading it again")
            terminal.expect(unet)  // the load error names the file
            try rewriteInPlace(unet, with: original)
            terminal.type("gen\n")
            terminal.expect("image 3: seed 5")
            terminal.type("quit\n")
            XCTAssertEqual(terminal.waitForExit(), 0, memory)

            let hashes = shownHashes(terminal.transcript)
            XCTAssertEqual(hashes.count, 3, "\(memory): \(terminal.transcript)")
            XCTAssertEqual(Set(hashes).count, 1, "\(memory): the reloaded model makes the same image")
        }
    }

    /// A `set vae` file (here a TAESD) rewritten in place is read again at the next generation:
    /// rewritten with garbage its error names it, restored it decodes as before.
    func testADecoderFileRewrittenBetweenGenerationsIsReadAgain() throws {
        let sandbox = Sandbox()
        _ = try copyModel(into: sandbox)
        let taesd = sandbox.path + "/taesd.safetensors"
        try FileManager.default.copyItem(atPath: FixturePaths.root.appendingPathComponent("taesd/taesd_decoder.safetensors").path, toPath: taesd)
        let original = try Data(contentsOf: URL(fileURLWithPath: taesd))
        let terminal = try PseudoTerminal(["--model", "tiny"], in: sandbox, da1Reply: "\u{1B}[?62;22c")
        terminal.expect("type 'help'")
        terminal.type("set size 64x64\nset steps 2\nset autosave off\nset preview off\nset vae \(taesd)\nseed 5\ngen\n")
        terminal.expect("image 1: seed 5")
        try rewriteInPlace(taesd, with: Data("not a TAESD".utf8))
        terminal.type("gen\n")
        terminal.expect("\(taesd) is a text file, not a weights file")  // the error of reading it again
        try rewriteInPlace(taesd, with: original)
        terminal.type("gen\n")
        terminal.expect("image 2: seed 5")
        terminal.type("quit\n")
        XCTAssertEqual(terminal.waitForExit(), 0)
        let hashes = shownHashes(terminal.transcript)
        XCTAssertEqual(hashes.count, 2, terminal.transcript)
        XCTAssertEqual(Set(hashes).count, 1, "read again, the same decoder makes the same image")
    }

    /// Truncated while a low-memory generation reads it step by step, the file ends the process with
    /// one line that names it, exit status 1; the transcript keeps the commands before.
    func testAModelFileTruncatedDuringAGenerationStopsWithAClearMessage() throws {
        let sandbox = Sandbox()
        let unet = try copyModel(into: sandbox)
        let terminal = try PseudoTerminal(["--model", "tiny"], in: sandbox, da1Reply: "\u{1B}[?62;22c")
        terminal.expect("type 'help'")
        // Low memory converts the UNet's weights from the mapping at every step; 40 steps at 256×256
        // leave seconds between the second step and the last.
        terminal.type("set memory low\nset size 256x256\nset steps 40\nset autosave off\nset preview off\nseed 9\ngen\n")
        terminal.expect("] 2/40", timeout: 60)
        try XCTUnwrap(FileHandle(forWritingAtPath: unet)).truncate(atOffset: 0)
        terminal.expect("sdrepl: stopped: \(unet) was changed on disk while sdrepl was reading it", timeout: 60)
        XCTAssertEqual(terminal.waitForExit(timeout: 30), 1)
        XCTAssertFalse(terminal.transcript.contains("Bus error"), terminal.transcript)

        let sessions = sandbox.files(in: "sessions")
        XCTAssertEqual(sessions.count, 1)
        let recorded = try String(contentsOfFile: sandbox.path + "/sessions/" + sessions[0], encoding: .utf8)
        XCTAssertTrue(recorded.contains("set steps 40\n") && recorded.contains("seed 9\n"), recorded)
    }
}
