import Crypto
import Diffusion
import Foundation
import Imaging
@testable import SDScript

// TEST DOUBLES. None of this is an image model: it lets the language, transcripts and replay be tested
// in-process in milliseconds. The real parts on the fixture model are tested in sdreplTests.EndToEndTests.

/// Deterministic "pixels" from a SHA-256 of the request, so equal requests give equal images and any
/// change of prompt, seed, size or sampler gives different ones.
final class HashImageGenerator: ImageGenerator {
    var requests: [GenerationSettings] = []

    func generate(_ settings: GenerationSettings, progress: (StepProgress) -> Void,
                  isCancelled: () -> Bool) throws -> GeneratedImage {
        for step in 1...settings.steps {
            if isCancelled() { throw CancellationError() }
            progress(StepProgress(step: step, total: settings.steps, elapsed: Double(step) * 0.01))
        }
        requests.append(settings)
        let key = "\(settings.prompt)|\(settings.negative)|\(settings.seed)|\(settings.steps)|\(settings.cfg)|\(settings.sampler)|\(settings.clipSkip)"
        let digest = Array(SHA256.hash(data: Data(key.utf8)))
        let count = settings.width * settings.height * 3
        let rgb = (0..<count).map { digest[$0 % digest.count] &+ UInt8(truncatingIfNeeded: $0 / digest.count) }
        return GeneratedImage(pixels: try RGBImage(width: settings.width, height: settings.height, pixels: rgb),
                              recipe: "\(settings.prompt)\nSteps: \(settings.steps), Seed: \(settings.seed)")
    }

    var loadWarnings: [String] { [] }

    func tokenReport(prompt: String, steps: Int) throws -> String {
        "\(prompt.split(separator: " ").count) tokens (test double)"
    }
}

struct CancellationError: Error {}

/// Hands out one shared `HashImageGenerator` and counts loads.
final class CountingLoader: GeneratorLoader {
    let generator = HashImageGenerator()
    var loads = 0
    func load(model: ModelLocation, memory: MemoryMode) throws -> ImageGenerator {
        loads += 1
        return generator
    }
}

/// A catalog that always finds the same (nonexistent) file: no disk is looked at.
struct FixedModelCatalog: ModelCatalog {
    func locate(explicit: String?) throws -> ModelLocation {
        ModelLocation(path: explicit ?? "/test/double.safetensors", source: "test")
    }
    func listing(explicit: String?, note: (String) -> Void) -> [String] { ["/test/double.safetensors"] }
    func download(arguments: [String], status: @escaping (String) -> Void,
                  isCancelled: @escaping () -> Bool) throws -> String { "/test/downloaded" }
}

/// Records what `save` was asked to write; writes nothing.
final class RecordingSaver: ImageSaver {
    var saved: [(GenerationSettings, String?)] = []
    func save(_ image: GeneratedImage, settings: GenerationSettings, to path: String?, directory: String,
              jpegQuality: Int) throws -> [String] {
        saved.append((settings, path))
        return [path ?? "\(directory)/\(settings.seed).png"]
    }
}

/// Output captured in memory; can press Ctrl-C after a given number of progress calls.
final class BufferIO: SessionIO {
    var lines: [String] = []
    var diagnostics: [String] = []
    var progressCalls = 0
    var displayed = 0
    /// Set the interrupt flag once this many progress calls have happened.
    var interruptAfter: Int?
    private var interrupted = false

    func output(_ line: String) { lines.append(line) }
    func diagnostic(_ line: String) { diagnostics.append(line) }
    func progress(_ progress: StepProgress, index: Int, count: Int, mode: PreviewMode) {
        progressCalls += 1
        if let interruptAfter, progressCalls >= interruptAfter {
            interrupted = true
            self.interruptAfter = nil
        }
    }
    var statuses: [String] = []
    func status(_ line: String) { statuses.append(line) }
    func progressDone() {}
    func display(_ image: RGBImage, mode: PreviewMode) -> Bool {
        displayed += 1
        return false
    }
    func previewStatus(_ mode: PreviewMode) -> String { mode.rawValue }
    var isInterrupted: Bool { interrupted }
    func clearInterrupt() { interrupted = false }
}

/// A temporary folder, removed at deinit.
final class TemporaryFolder {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "sdscript-tests-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    @discardableResult
    func write(_ name: String, _ text: String) -> String {
        let file = path + "/" + name
        try? FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent,
                                                 withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: file, contents: Data(text.utf8))
        return file
    }
}

/// A session on the test doubles, with seeds drawn from a fixed list.
func makeSession(io: BufferIO = BufferIO(), transcript: TranscriptRecorder? = nil, seeds: [UInt64] = [1234, 98765],
                 saver: ImageSaver? = nil, loader: CountingLoader = CountingLoader()) -> Session {
    var remaining = seeds
    let components = Components(generatorLoader: loader, models: FixedModelCatalog(), styles: StyleBook(environment: [:]),
                                saver: saver)
    return Session(components: components, io: io, transcript: transcript, drawSeed: {
        remaining.isEmpty ? 7 : remaining.removeFirst()
    })
}
