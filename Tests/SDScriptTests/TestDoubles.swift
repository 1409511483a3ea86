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
    /// Every image's request (one per seed), in order.
    var requests: [GenerationRequest] = []
    /// The batches asked for, one per `generate` call.
    var batches: [GenerationRequest] = []
    let identity: ModelIdentity? = nil
    /// As a pipeline says which memory mode it was loaded in.
    var memoryMode: MemoryMode?

    func generate(_ request: GenerationRequest, folders: ResourceFolders, progress: (GenerationProgress) -> Void,
                  isCancelled: () -> Bool, image: (GenerationResult) throws -> Void) throws {
        batches.append(request)
        for index in 0..<request.batchCount {
            var single = request
            single.seed = request.seed + UInt64(index)
            single.batchCount = 1
            for step in 1...single.steps {
                if isCancelled() { throw CancellationError() }
                progress(GenerationProgress(image: index, images: request.batchCount, step: step, total: single.steps,
                                            elapsed: Double(step) * 0.01))
            }
            requests.append(single)
            let key = "\(single.prompt)|\(single.negativePrompt)|\(single.seed)|\(single.steps)|\(single.guidanceScale)|\(single.sampler)|\(single.clipSkip)"
            let digest = Array(SHA256.hash(data: Data(key.utf8)))
            // The engine's picture is the hires fix's size when there is one.
            let (width, height) = single.hires.map { ($0.width, $0.height) } ?? (single.width, single.height)
            let count = width * height * 3
            let rgb = (0..<count).map { digest[$0 % digest.count] &+ UInt8(truncatingIfNeeded: $0 / digest.count) }
            try image(GenerationResult(image: PixelImage(width: width, height: height, rgb: rgb), request: single,
                                       model: URL(fileURLWithPath: "/test/double.safetensors"), seconds: 0.25 * Double(single.steps)))
            if isCancelled() && index + 1 < request.batchCount { throw CancellationError() }
        }
    }

    var loadWarnings: [String] { [] }

    func tokenReport(prompt: String, steps: Int, folders: ResourceFolders) throws -> String {
        "\(prompt.split(separator: " ").count) tokens (test double)"
    }
}

struct CancellationError: Error {}

/// Hands out one shared `HashImageGenerator` and counts loads.
final class CountingLoader: GeneratorLoader {
    let generator = HashImageGenerator()
    var loads = 0
    /// The models asked for, in order.
    var loaded: [String] = []
    func load(model: ModelLocation, memory: MemoryMode) throws -> ImageGenerator {
        loads += 1
        loaded.append(model.path)
        return generator
    }
}

/// A catalog that always finds the same (nonexistent) file: no disk is looked at.
struct FixedModelCatalog: ModelCatalog {
    func locate(explicit: String?) throws -> ModelLocation {
        ModelLocation(path: explicit ?? "/test/double.safetensors", source: "test")
    }
    func listing(explicit: String?, note: (String) -> Void) -> [String] { ["/test/double.safetensors"] }
    func shortHash(explicit: String?) -> String? { "0123456789" }
    func download(arguments: [String], status: @escaping (String) -> Void,
                  isCancelled: @escaping () -> Bool) throws -> String { "/test/downloaded" }
}

/// Records what `save` was asked to write; writes nothing.
final class RecordingSaver: ImageSaver {
    var saved: [(StyledRequest, String?)] = []
    func save(_ image: SessionImage, to path: String?, output: OutputSettings) throws -> SavedFiles {
        saved.append((image.request, path))
        return SavedFiles(paths: [path ?? "\(output.outdir)/\(image.request.engine.seed).png"])
    }
}

/// Events captured in memory as the plain-text front end would print them; can press Ctrl-C after
/// a given number of progress events.
final class BufferIO: SessionIO {
    /// The terminal width the session is told (nil: not a terminal).
    var outputColumns: Int?
    var lines: [String] = []
    var diagnostics: [String] = []
    var events: [SessionEvent] = []
    var progressCalls = 0
    var displayed = 0
    var statuses: [String] = []
    /// Set the interrupt flag once this many progress calls have happened.
    var interruptAfter: Int?
    private var interrupted = false

    func emit(_ event: SessionEvent) {
        events.append(event)
        switch event {
        case .progress, .upscaleProgress:
            progressCalls += 1
            if let interruptAfter, progressCalls >= interruptAfter {
                interrupted = true
                self.interruptAfter = nil
            }
        case .status(let line): statuses.append(line)
        case .image, .shown: displayed += 1
        default: break
        }
        if let text = event.text {
            if text.isDiagnostic { diagnostics += text.lines } else { lines += text.lines }
        }
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
