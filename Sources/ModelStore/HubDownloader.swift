import FileErrors
import Foundation
import HubLayout
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Progress of a transfer, reported several times a second.
public struct DownloadProgress: Sendable {
    public let receivedBytes: Int64
    public let totalBytes: Int64
    /// Bytes per second over this run (excluding what an earlier, resumed run fetched).
    public let bytesPerSecond: Double
    /// Seconds left at the current rate, or nil before the rate is known.
    public var etaSeconds: Double? {
        bytesPerSecond > 0 ? Double(totalBytes - receivedBytes) / bytesPerSecond : nil
    }
}

/// Downloads a file from a Hugging Face hub into the hub cache layout, so that diffusers reuses it and
/// its downloads are reused here.
///
/// The protocol is huggingface_hub's: a `HEAD` on `<endpoint>/<repo>/resolve/<revision>/<file>` (no
/// redirects followed) gives `X-Repo-Commit`, `X-Linked-Etag` (the SHA-256 of an LFS file; `ETag`
/// otherwise), `X-Linked-Size`/`Content-Length` and, for LFS files, a `Location` to fetch. The bytes go to
/// `blobs/<etag>.incomplete`, resumed with `Range` after an interruption, are verified, then renamed to
/// `blobs/<etag>` and linked from `snapshots/<commit>/<file>`; `refs/<revision>` records the commit.
public final class HubDownloader: @unchecked Sendable {
    /// The hub's base URL: `$HF_ENDPOINT`, else https://huggingface.co.
    public let endpoint: URL
    /// Sent as a bearer token to the hub's own host only; never printed or logged.
    private let token: String?
    /// How long the transfer may go without receiving a byte.
    public var stallTimeout: TimeInterval
    public let cache: HubCache

    /// - Parameters:
    ///   - environment: reads `HF_ENDPOINT` and `HF_TOKEN` (also the older `HUGGING_FACE_HUB_TOKEN`).
    ///   - cacheRoot: the hub cache folder (see `ModelDiscovery.downloadCacheRoot`).
    public init(environment: [String: String] = ProcessInfo.processInfo.environment, cacheRoot: URL, stallTimeout: TimeInterval = 30) {
        let base = environment["HF_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://huggingface.co"
        self.endpoint = URL(string: base.hasSuffix("/") ? String(base.dropLast()) : base) ?? URL(string: "https://huggingface.co")!
        self.token = environment["HF_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            ?? environment["HUGGING_FACE_HUB_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        self.stallTimeout = stallTimeout
        self.cache = HubCache(root: cacheRoot)
    }

    /// The metadata the hub gives for a file.
    struct Metadata {
        var commit: String
        var etag: String
        var size: Int64
        var downloadURL: URL
    }

    /// Downloads `file` of `repo` at `revision` (a branch, tag or commit), or returns the cached copy.
    /// - Parameters:
    ///   - progress: called during the transfer and while verifying.
    ///   - isCancelled: polled a few times a second; when true the transfer stops and the partial file is kept.
    /// - Returns: the path in `snapshots/<commit>/<file>`.
    /// - Throws: `ModelStoreError` (HTTP errors, stalls, checksum or size mismatch, I/O, cancellation).
    @discardableResult
    public func download(repo: String, file: String, revision: String = "main",
                         progress: @escaping (DownloadProgress) -> Void = { _ in },
                         isCancelled: @escaping () -> Bool = { false }) throws -> URL {
        let resolveURL = endpoint.appendingPathComponent(repo).appendingPathComponent("resolve")
            .appendingPathComponent(revision).appendingPathComponent(file)
        let meta = try head(resolveURL)
        let folder = cache.repoFolder(repo)
        let blob = HubCacheLayout.blob(meta.etag, in: folder)
        let blobs = blob.deletingLastPathComponent()
        let snapshot = HubCacheLayout.snapshotFile(file, commit: meta.commit, in: folder)
        try makeDirectory(blobs)
        try makeDirectory(snapshot.deletingLastPathComponent())

        if !FileManager.default.fileExists(atPath: blob.path) {
            let partial = blobs.appendingPathComponent(meta.etag + ".incomplete")
            try fetch(meta, to: partial, progress: progress, isCancelled: isCancelled)
            try verify(partial, meta: meta, displayName: file)
            do { try FileManager.default.moveItem(at: partial, to: blob) } catch {
                throw ModelStoreError.io(path: blob.path, message: "cannot move the verified download into place: \(FileErrorText.reason(error))")
            }
        }
        try link(snapshot, to: blob, depth: file.split(separator: "/").count)
        if revision != meta.commit {
            let ref = HubCacheLayout.ref(revision, in: folder)
            try makeDirectory(ref.deletingLastPathComponent())
            do { try Data(meta.commit.utf8).write(to: ref, options: .atomic) } catch {
                throw ModelStoreError.io(path: ref.path, message: FileErrorText.reason(error))
            }
        }
        return snapshot
    }

    // MARK: - Steps

    private func head(_ url: URL) throws -> Metadata {
        var request = URLRequest(url: url)
        request.httpMethod = "HEAD"
        request.setValue("identity", forHTTPHeaderField: "Accept-Encoding")
        authorize(&request)
        let response = try Transfer.run(request, followRedirects: false, stallTimeout: stallTimeout, sink: nil,
                                        onData: nil, isCancelled: { false })
        guard (200..<400).contains(response.statusCode) else { throw ModelStoreError.http(status: response.statusCode, url: url.absoluteString) }
        func header(_ name: String) -> String? {
            response.allHeaderFields.first { ($0.key as? String)?.lowercased() == name.lowercased() }?.value as? String
        }
        guard let commit = header("X-Repo-Commit") else { throw ModelStoreError.missingMetadata(url: url.absoluteString, header: "X-Repo-Commit") }
        guard let rawEtag = header("X-Linked-Etag") ?? header("ETag") else {
            throw ModelStoreError.missingMetadata(url: url.absoluteString, header: "ETag")
        }
        let etag = rawEtag.replacingOccurrences(of: "W/", with: "").trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
        guard let sizeText = header("X-Linked-Size") ?? header("Content-Length"), let size = Int64(sizeText) else {
            throw ModelStoreError.missingMetadata(url: url.absoluteString, header: "Content-Length")
        }
        guard !etag.isEmpty, !etag.contains("/"), etag != ".", etag != ".." else {
            throw ModelStoreError.missingMetadata(url: url.absoluteString, header: "ETag (unusable value)")
        }
        var download = url
        if (300..<400).contains(response.statusCode), let location = header("Location"), let target = URL(string: location, relativeTo: url) {
            download = target.absoluteURL
        }
        return Metadata(commit: commit, etag: etag, size: size, downloadURL: download)
    }

    private func fetch(_ meta: Metadata, to partial: URL, progress: @escaping (DownloadProgress) -> Void,
                       isCancelled: @escaping () -> Bool) throws {
        var offset = ModelDiscovery.fileSize(partial)
        if offset > meta.size { try? FileManager.default.removeItem(at: partial); offset = 0 }
        if offset == meta.size { return }
        if !FileManager.default.fileExists(atPath: partial.path) {
            guard FileManager.default.createFile(atPath: partial.path, contents: nil) else {
                throw ModelStoreError.io(path: partial.path, message: "cannot create the download file (is the cache writable?)")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: partial.path) else {
            throw ModelStoreError.io(path: partial.path, message: "cannot open the download file for writing")
        }
        defer { try? handle.close() }
        var request = URLRequest(url: meta.downloadURL)
        request.setValue("identity", forHTTPHeaderField: "Accept-Encoding")
        if offset > 0 { request.setValue("bytes=\(offset)-", forHTTPHeaderField: "Range") }
        authorize(&request)
        let started = Date()
        var received = offset
        var writeError: Error?
        let response = try Transfer.run(request, followRedirects: true, stallTimeout: stallTimeout, sink: { status in
            // 206 continues the partial file; a 200 means the server ignored Range: start over.
            if status == 206 { _ = try? handle.seekToEnd() } else { try? handle.truncate(atOffset: 0); received = 0; offset = 0 }
        }, onData: { data in
            do { try handle.write(contentsOf: data) } catch { writeError = error; return false }
            received += Int64(data.count)
            let elapsed = max(Date().timeIntervalSince(started), 1e-3)
            progress(DownloadProgress(receivedBytes: received, totalBytes: meta.size, bytesPerSecond: Double(received - offset) / elapsed))
            return true
        }, isCancelled: isCancelled)
        if let writeError {
            throw ModelStoreError.io(path: partial.path, message: "write failed (disk full?): \(FileErrorText.reason(writeError))")
        }
        if response.statusCode == 416 { return }  // nothing left to fetch; verification decides
        guard response.statusCode == 200 || response.statusCode == 206 else {
            throw ModelStoreError.http(status: response.statusCode, url: meta.downloadURL.absoluteString)
        }
        try? handle.synchronize()
    }

    private func verify(_ partial: URL, meta: Metadata, displayName: String) throws {
        let size = ModelDiscovery.fileSize(partial)
        guard size == meta.size else {
            if size > meta.size { try? FileManager.default.removeItem(at: partial) }
            throw size > meta.size
                ? ModelStoreError.sizeMismatch(file: displayName, expected: meta.size, actual: size)
                : ModelStoreError.transport(url: meta.downloadURL.absoluteString, message: "the connection closed after \(size) of \(meta.size) bytes")
        }
        // LFS files are named by their SHA-256; other files (a git SHA-1 etag) can only be checked by size.
        guard HubCache.isSHA256(meta.etag) else { return }
        let actual = try FileHash.sha256(of: partial)
        guard actual == meta.etag else {
            try? FileManager.default.removeItem(at: partial)
            throw ModelStoreError.checksumMismatch(file: displayName, expected: meta.etag, actual: actual)
        }
    }

    private func link(_ snapshot: URL, to blob: URL, depth: Int) throws {
        let relative = String(repeating: "../", count: depth + 1) + "blobs/" + blob.lastPathComponent
        if let existing = try? FileManager.default.destinationOfSymbolicLink(atPath: snapshot.path), existing == relative { return }
        try? FileManager.default.removeItem(at: snapshot)
        do { try FileManager.default.createSymbolicLink(atPath: snapshot.path, withDestinationPath: relative) } catch {
            throw ModelStoreError.io(path: snapshot.path, message: "cannot link the snapshot to its blob: \(FileErrorText.reason(error))")
        }
    }

    private func authorize(_ request: inout URLRequest) {
        guard let token, request.url?.host == endpoint.host else { return }
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
    }

    private func makeDirectory(_ url: URL) throws {
        do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
            throw ModelStoreError.io(path: url.path, message: "cannot create the folder: \(FileErrorText.reason(error))")
        }
    }
}

/// One HTTP exchange over URLSession, made synchronous, with a stall watchdog and cancellation.
private final class Transfer: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private let followRedirects: Bool
    private let onStatus: ((Int) -> Void)?
    private let onData: ((Data) -> Bool)?
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var response: HTTPURLResponse?
    private var failure: Error?
    private var lastActivity = Date()

    private init(followRedirects: Bool, onStatus: ((Int) -> Void)?, onData: ((Data) -> Bool)?) {
        self.followRedirects = followRedirects
        self.onStatus = onStatus
        self.onData = onData
    }

    static func run(_ request: URLRequest, followRedirects: Bool, stallTimeout: TimeInterval,
                    sink: ((Int) -> Void)?, onData: ((Data) -> Bool)?, isCancelled: @escaping () -> Bool) throws -> HTTPURLResponse {
        let transfer = Transfer(followRedirects: followRedirects, onStatus: sink, onData: onData)
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = stallTimeout + 5   // our watchdog is the real limit
        config.requestCachePolicy = .reloadIgnoringLocalCacheData
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        let session = URLSession(configuration: config, delegate: transfer, delegateQueue: queue)
        defer { session.finishTasksAndInvalidate() }
        let task = session.dataTask(with: request)
        task.resume()
        let url = request.url?.absoluteString ?? "?"
        while transfer.done.wait(timeout: .now() + 0.2) == .timedOut {
            if isCancelled() {
                task.cancel(); transfer.done.wait()
                throw ModelStoreError.cancelled(partial: url)
            }
            let idle = transfer.lock.withLock { Date().timeIntervalSince(transfer.lastActivity) }
            if idle > stallTimeout {
                task.cancel(); transfer.done.wait()
                throw ModelStoreError.stalled(url: url, seconds: stallTimeout)
            }
        }
        if let response = transfer.response, transfer.failure == nil || (transfer.failure as? URLError)?.code == .cancelled {
            return response
        }
        throw ModelStoreError.transport(url: url, message: transfer.failure.map { ($0 as NSError).localizedDescription } ?? "no response")
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        completionHandler(followRedirects ? request : nil)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        let http = response as? HTTPURLResponse
        lock.withLock { self.response = http; lastActivity = Date() }
        if let status = http?.statusCode, (200..<300).contains(status) { onStatus?(status) }
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        lock.withLock { lastActivity = Date() }
        guard let status = lock.withLock({ response?.statusCode }), (200..<300).contains(status) else { return }
        if onData?(data) == false { dataTask.cancel() }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        lock.withLock {
            if response == nil, let http = task.response as? HTTPURLResponse { response = http }
            failure = error
        }
        done.signal()
    }
}
