import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A tiny HTTP/1.1 server on 127.0.0.1 that answers like the Hugging Face hub, for download tests.
///
/// `HEAD /<repo>/resolve/<rev>/<file>` gives the hub's metadata headers and, for LFS files, a 302 to
/// `/cdn/<sha256>`; `GET` serves the bytes with `Range` support. Each file can misbehave on purpose.
final class LoopbackHub: @unchecked Sendable {
    enum Behaviour {
        case normal
        /// The first GET closes the connection after this many bytes; later GETs behave.
        case interruptOnce(after: Int)
        /// GET serves these bytes instead of the real ones (the metadata still names the real hash).
        case corrupt(Data)
        /// GET sends the headers and this many bytes, then goes silent until the server stops.
        case stall(after: Int)
    }

    struct Hosted {
        var data: Data
        var sha256: String
        var lfs: Bool
        var behaviour: Behaviour
        var gets = 0
    }

    let commit = "0123456789abcdef0123456789abcdef01234567"
    private(set) var port: UInt16 = 0
    private var listener: Int32 = -1
    private var files: [String: Hosted] = [:]   // key: "<repo>/<file>"
    private(set) var requests: [(method: String, path: String, headers: [String: String])] = []
    private let lock = NSLock()
    private var stopped = false

    var endpoint: String { "http://127.0.0.1:\(port)" }

    func host(repo: String, file: String, data: Data, sha256: String, lfs: Bool = true, behaviour: Behaviour = .normal) {
        lock.withLock { files["\(repo)/\(file)"] = Hosted(data: data, sha256: sha256, lfs: lfs, behaviour: behaviour) }
    }

    func recorded() -> [(method: String, path: String, headers: [String: String])] { lock.withLock { requests } }

    func start() throws {
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw POSIXError(.EIO) }
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) } }
        guard bound == 0, listen(listener, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        port = UInt16(bigEndian: addr.sin_port)
        let fd = listener
        Thread.detachNewThread { [weak self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }
                guard let self else { close(client); return }
                Thread.detachNewThread { self.serve(client) }
            }
        }
    }

    func stop() {
        lock.withLock { stopped = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !buffer.containsHeaderEnd {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return }
            buffer += chunk[0..<n]
        }
        let text = String(decoding: buffer, as: UTF8.self)
        let lines = text.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2 else { return }
        let method = String(parts[0]), path = String(parts[1])
        var headers: [String: String] = [:]
        for line in lines.dropFirst() where line.contains(":") {
            let kv = line.split(separator: ":", maxSplits: 1)
            headers[kv[0].lowercased()] = kv[1].trimmingCharacters(in: .whitespaces)
        }
        lock.withLock { requests.append((method, path, headers)) }

        if path.hasPrefix("/cdn/") {
            let sha = String(path.dropFirst(5))
            guard let key = lock.withLock({ files.first { $0.value.sha256 == sha }?.key }) else { return send(fd, status: "404 Not Found", headers: [:], body: Data()) }
            return get(fd, key: key, range: headers["range"], head: method == "HEAD")
        }
        // /<owner>/<name>/resolve/<rev>/<file>
        let comps = path.split(separator: "/").map(String.init)
        guard comps.count >= 5, comps[2] == "resolve" else { return send(fd, status: "404 Not Found", headers: [:], body: Data()) }
        let key = "\(comps[0])/\(comps[1])/" + comps[4...].joined(separator: "/")
        guard let hosted = lock.withLock({ files[key] }) else {
            return send(fd, status: "404 Not Found", headers: ["X-Error-Code": "EntryNotFound"], body: Data("Entry not found".utf8))
        }
        if method == "HEAD" {
            var h = ["X-Repo-Commit": commit]
            if hosted.lfs {
                h["X-Linked-Etag"] = "\"\(hosted.sha256)\""
                h["X-Linked-Size"] = "\(hosted.data.count)"
                h["ETag"] = "\"deadbeef\""
                h["Location"] = "/cdn/\(hosted.sha256)"
                return send(fd, status: "302 Found", headers: h, body: nil)
            }
            h["ETag"] = "\"\(hosted.sha256)\""
            h["Content-Length"] = "\(hosted.data.count)"
            return send(fd, status: "200 OK", headers: h, body: nil)
        }
        get(fd, key: key, range: headers["range"], head: false)
    }

    private func get(_ fd: Int32, key: String, range: String?, head: Bool) {
        guard var hosted = lock.withLock({ files[key] }) else { return }
        hosted.gets += 1
        lock.withLock { files[key] = hosted }
        var body = hosted.data
        if case let .corrupt(bad) = hosted.behaviour { body = bad }
        var start = 0
        if let range, range.hasPrefix("bytes="), let s = Int(range.dropFirst(6).split(separator: "-").first ?? "") { start = s }
        guard start <= body.count else { return send(fd, status: "416 Range Not Satisfiable", headers: [:], body: Data()) }
        let slice = body.subdata(in: start..<body.count)
        var h = ["Content-Length": "\(slice.count)", "Accept-Ranges": "bytes"]
        if start > 0 { h["Content-Range"] = "bytes \(start)-\(body.count - 1)/\(body.count)" }
        let status = start > 0 ? "206 Partial Content" : "200 OK"
        switch hosted.behaviour {
        case let .interruptOnce(after) where hosted.gets == 1:
            send(fd, status: status, headers: h, body: slice.prefix(after))
        case let .stall(after):
            send(fd, status: status, headers: h, body: slice.prefix(after))
            while !isStopped { usleep(50_000) }
        default:
            send(fd, status: status, headers: h, body: slice)
        }
    }

    private func send(_ fd: Int32, status: String, headers: [String: String], body: Data?) {
        var head = "HTTP/1.1 \(status)\r\nConnection: close\r\n"
        var h = headers
        if let body, h["Content-Length"] == nil { h["Content-Length"] = "\(body.count)" }
        for (k, v) in h { head += "\(k): \(v)\r\n" }
        head += "\r\n"
        var out = Data(head.utf8)
        if let body { out += body }
        out.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                if n <= 0 { return }
                sent += n
            }
        }
    }
}

private extension Array where Element == UInt8 {
    var containsHeaderEnd: Bool {
        count >= 4 && (0...(count - 4)).contains { self[$0] == 13 && self[$0 + 1] == 10 && self[$0 + 2] == 13 && self[$0 + 3] == 10 }
    }
}
