import Crypto
import Foundation
@testable import ModelStore
import XCTest

/// Download tests against `LoopbackHub`, a hub-like server on 127.0.0.1 started by each test.
final class HubDownloaderTests: XCTestCase {
    var hub: LoopbackHub!
    var cacheRoot: URL!
    let repo = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    let file = "v1-5-pruned-emaonly-fp16.safetensors"

    override func setUpWithError() throws {
        hub = LoopbackHub()
        try hub.start()
        cacheRoot = FileManager.default.temporaryDirectory.appendingPathComponent("sdrepl-hub-\(UUID().uuidString)")
    }

    override func tearDown() {
        hub.stop()
        try? FileManager.default.removeItem(at: cacheRoot)
    }

    /// Deterministic content: bytes of a simple LCG, so a corruption is never accidentally equal.
    func payload(_ n: Int, seed: UInt32 = 7) -> Data {
        var x = seed
        return Data((0..<n).map { _ in x = x &* 1_664_525 &+ 1_013_904_223; return UInt8(truncatingIfNeeded: x >> 24) })
    }

    func sha(_ d: Data) -> String { SHA256.hash(data: d).map { String(format: "%02x", $0) }.joined() }

    func downloader(timeout: TimeInterval = 10, token: String? = nil) -> HubDownloader {
        var env = ["HF_ENDPOINT": hub.endpoint]
        if let token { env["HF_TOKEN"] = token }
        return HubDownloader(environment: env, cacheRoot: cacheRoot, stallTimeout: timeout)
    }

    var folder: URL { cacheRoot.appendingPathComponent("models--stable-diffusion-v1-5--stable-diffusion-v1-5") }

    func testSmallFileLandsInTheHubCacheLayout() throws {
        let data = payload(200_000)
        hub.host(repo: repo, file: file, data: data, sha256: sha(data))
        var reports: [DownloadProgress] = []
        let path = try downloader().download(repo: repo, file: file, progress: { reports.append($0) })

        XCTAssertEqual(path.path, folder.appendingPathComponent("snapshots/\(hub.commit)/\(file)").path)
        XCTAssertEqual(try Data(contentsOf: path), data)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: path.path), "../../blobs/\(sha(data))")
        XCTAssertEqual(try String(contentsOf: folder.appendingPathComponent("refs/main"), encoding: .utf8), hub.commit)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("blobs/\(sha(data)).incomplete").path))
        XCTAssertEqual(reports.last?.receivedBytes, Int64(data.count))
        XCTAssertEqual(reports.last?.totalBytes, Int64(data.count))

        // Discovery finds it with no configuration, and knows its hash from the blob name.
        let discovery = ModelDiscovery(environment: ["HF_HUB_CACHE": cacheRoot.path], currentDirectory: cacheRoot,
                                       homeDirectory: cacheRoot)
        let found = try discovery.resolve()
        XCTAssertEqual(found.url.path, path.path)
        XCTAssertEqual(found.knownSHA256, sha(data))
    }

    func testACachedFileIsNotFetchedAgain() throws {
        let data = payload(10_000)
        hub.host(repo: repo, file: file, data: data, sha256: sha(data))
        try downloader().download(repo: repo, file: file)
        try downloader().download(repo: repo, file: file)
        XCTAssertEqual(hub.recorded().filter { $0.method == "GET" }.count, 1)
    }

    func testAnInterruptedTransferResumesWithRange() throws {
        let data = payload(300_000)
        hub.host(repo: repo, file: file, data: data, sha256: sha(data), behaviour: .interruptOnce(after: 120_000))
        XCTAssertThrowsError(try downloader().download(repo: repo, file: file)) { error in
            guard case ModelStoreError.transport = error else { return XCTFail("expected a transport error, got \(error)") }
        }
        let partial = folder.appendingPathComponent("blobs/\(sha(data)).incomplete")
        XCTAssertEqual(ModelDiscovery.fileSize(partial), 120_000, "the partial download is kept for resuming")

        let path = try downloader().download(repo: repo, file: file)
        XCTAssertEqual(try Data(contentsOf: path), data)
        let gets = hub.recorded().filter { $0.method == "GET" }
        XCTAssertEqual(gets.count, 2)
        XCTAssertEqual(gets.last?.headers["range"], "bytes=120000-")
    }

    func testCorruptContentIsRejectedAndNothingIsLeftInPlace() throws {
        let data = payload(50_000)
        var bad = data
        bad[1234] ^= 0xFF
        hub.host(repo: repo, file: file, data: data, sha256: sha(data), behaviour: .corrupt(bad))
        XCTAssertThrowsError(try downloader().download(repo: repo, file: file)) { error in
            guard case let ModelStoreError.checksumMismatch(_, expected, actual) = error else { return XCTFail("got \(error)") }
            XCTAssertEqual(expected, self.sha(data))
            XCTAssertEqual(actual, self.sha(bad))
            XCTAssertTrue("\(error)".contains("corrupt"))
        }
        let blobs = (try? FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("blobs").path)) ?? []
        XCTAssertEqual(blobs, [], "neither the blob nor the partial file may remain")
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("snapshots/\(hub.commit)/\(file)").path))
    }

    func testA404SaysWhatToCheck() throws {
        XCTAssertThrowsError(try downloader().download(repo: repo, file: "nope.safetensors")) { error in
            XCTAssertEqual(error as? ModelStoreError, .http(status: 404, url: "\(self.hub.endpoint)/\(self.repo)/resolve/main/nope.safetensors"))
            XCTAssertTrue("\(error)".contains("check the repository and file name"))
        }
    }

    func testAStalledServerTimesOutWithAClearError() throws {
        let data = payload(100_000)
        hub.host(repo: repo, file: file, data: data, sha256: sha(data), behaviour: .stall(after: 1000))
        let start = Date()
        XCTAssertThrowsError(try downloader(timeout: 1).download(repo: repo, file: file)) { error in
            guard case ModelStoreError.stalled = error else { return XCTFail("expected a stall, got \(error)") }
            XCTAssertTrue("\(error)".contains("stalled"))
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 8, "the stall watchdog must fire near its timeout")
    }

    func testTheTokenGoesToTheHubOnlyAndIsNeverPrinted() throws {
        let secret = "hf_secretTOKEN123"
        hub.host(repo: repo, file: "missing-on-purpose", data: Data(), sha256: sha(Data()))
        let data = payload(1000)
        hub.host(repo: repo, file: file, data: data, sha256: sha(data))
        try downloader(token: secret).download(repo: repo, file: file)
        let head = try XCTUnwrap(hub.recorded().first { $0.method == "HEAD" })
        XCTAssertEqual(head.headers["authorization"], "Bearer \(secret)")
        XCTAssertThrowsError(try downloader(token: secret).download(repo: repo, file: "other")) { error in
            XCTAssertFalse("\(error)".contains(secret))
        }
    }

    func testCancellationKeepsThePartialFile() throws {
        let data = payload(100_000)
        hub.host(repo: repo, file: file, data: data, sha256: sha(data), behaviour: .stall(after: 5000))
        let start = Date()
        XCTAssertThrowsError(try downloader().download(repo: repo, file: file, isCancelled: { Date().timeIntervalSince(start) > 0.5 })) { error in
            guard case ModelStoreError.cancelled = error else { return XCTFail("got \(error)") }
        }
        XCTAssertEqual(ModelDiscovery.fileSize(folder.appendingPathComponent("blobs/\(sha(data)).incomplete")), 5000)
    }
}
