import ClawflowModel
import Glibc
import SystemPackage

/// The line at the top of a command's log that was cut (spool-layout.md, "Task logs"):
/// `[clawflow: log cut N: D bytes dropped before this line to keep it under L; K bytes kept follow]`.
public enum LogCut {
    /// The default limit of a command's log: 64 MiB.
    public static let defaultLimit: Int64 = 64 << 20
    /// The smallest limit `run --log-limit` takes.
    public static let minimumLimit: Int64 = 1024

    /// The marker line (with its newline) of the `cut`-th cut.
    static func marker(cut: Int64, dropped: Int64, kept: Int64, limit: Int64) -> [UInt8] {
        Array(
            "[clawflow: log cut \(cut): \(dropped) bytes dropped before this line to keep it under \(SizeText.describe(limit)); \(kept) bytes kept follow]\n"
                .utf8)
    }

    /// The dropped byte count of a marker line (without its newline), or nil.
    static func parse(_ line: [UInt8]) -> Int64? {
        let words = String(decoding: line, as: UTF8.self).split(separator: " ")
        guard words.count > 8, words[0] == "[clawflow:", words[1] == "log", words[2] == "cut",
            words.suffix(3) == ["bytes", "kept", "follow]"], words[5] == "bytes", words[6] == "dropped"
        else { return nil }
        return Int64(words[4])
    }

    /// Where the open log starts in the command's whole output (the bytes dropped before
    /// it) and how long its marker line is; (0, 0) for a log never cut.
    static func start(of fd: FileDescriptor) -> (dropped: Int64, markerLength: Int64) {
        var head = [UInt8](repeating: 0, count: 512)
        guard let n = try? head.withUnsafeMutableBytes({ try fd.read(fromAbsoluteOffset: 0, into: $0) }),
            let end = head[..<n].firstIndex(of: 0x0A), let dropped = parse(Array(head[..<end]))
        else { return (0, 0) }
        return (dropped, Int64(end + 1))
    }
}

/// A command's log as its supervisor writes it: the command's output, relayed through a
/// pipe, is appended here; when the log grows past `limit` bytes, its newest `limit / 2`
/// bytes (from a line start when one is near) are copied into a new file behind a marker
/// line, which is renamed over the log. Memory stays one 64 KiB buffer, whatever the output.
public struct TaskLog: ~Copyable {
    /// The log's path.
    public let path: FilePath
    /// The log, open for writing at its end.
    public private(set) var fd: FileDescriptor
    /// The size the log is kept under.
    public let limit: Int64
    private var size: Int64
    private var markerLength: Int64 = 0
    private var cuts: Int64 = 0
    private var dropped: Int64 = 0
    /// After a cut that failed (a full disk), the next try waits until the log grew again.
    private var nextCut: Int64

    /// Opens (creating) the log at `path`, which is kept under `limit` bytes.
    public init(path: FilePath, limit: Int64) throws(Errno) {
        self.path = path
        self.limit = limit
        do {
            fd = try FileDescriptor.open(path, .readWrite, options: [.create, .append, .noFollow, .closeOnExec], permissions: [.ownerReadWrite])
        } catch {
            throw error as? Errno ?? .ioError
        }
        size = (try? fd.status().size) ?? 0
        nextCut = limit
    }

    deinit { fd.closeQuietly() }

    /// Appends a line of clawflow's own (why a command could not start).
    public mutating func append(line: String) {
        Array((line + "\n").utf8).withUnsafeBytes { append($0) }
    }

    /// Appends output; past the limit, cuts the log.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd.rawValue, bytes.baseAddress! + done, bytes.count - done)
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return }  // a full disk: the output is lost, as it would be for any writer
            done += n
            size += Int64(n)
        }
        if size > nextCut { cut() }
    }

    /// Copies the newest `limit / 2` bytes behind a marker into a temp file in the log's
    /// directory, flushes it and renames it over the log (flushing the directory); the log
    /// then goes on in the new file. On failure the old log stays, and grows.
    private mutating func cut() {
        let keep = limit / 2
        var start = size - keep
        var buffer = [UInt8](repeating: 0, count: 65536)
        // From the start of a line, when one starts within the first 4 KiB kept.
        if let n = try? buffer.withUnsafeMutableBytes({ try fd.read(fromAbsoluteOffset: start, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<4096])) }),
            let newline = buffer[..<n].firstIndex(of: 0x0A), newline + 1 < n
        {
            start += Int64(newline + 1)
        }
        let kept = size - start
        let marker = LogCut.marker(cut: cuts + 1, dropped: dropped + start - markerLength, kept: kept, limit: limit)
        let directoryPath = path.removingLastComponent()
        let temp = Layout.tempName(for: path.lastComponent?.string ?? "log", pid: Spool.pid)
        guard let directory = try? FileDescriptor.currentDirectory.openAt(directoryPath.string, .readOnly, options: [.directory]) else {
            nextCut = size + keep
            return
        }
        defer { directory.closeQuietly() }
        guard let copy = try? directory.openAt(temp, .readWrite, options: [.create, .exclusiveCreate, .noFollow], permissions: 0o600) else {
            nextCut = size + keep
            return
        }
        var ok = (try? copy.writeFully(marker)) != nil
        var position = start
        while ok, position < size {
            let n = (try? buffer.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: position, into: $0) }) ?? -1
            guard n > 0 else {
                ok = false
                break
            }
            ok = (try? copy.writeFully(Array(buffer[..<min(n, Int(size - position))]))) != nil
            position += Int64(n)
        }
        ok =
            ok && (try? copy.synchronize()) != nil
            && (try? directory.renameAt(temp, to: directory, path.lastComponent!.string)) != nil
        guard ok else {
            copy.closeQuietly()
            try? directory.removeAt(temp)
            nextCut = size + keep
            return
        }
        try? directory.synchronize()
        fd.closeQuietly()
        fd = copy
        cuts += 1
        dropped += start - markerLength
        markerLength = Int64(marker.count)
        size = markerLength + kept
        nextCut = limit
    }
}

/// Reads a command's log from its start and, called again, what was added since, across the
/// cuts of `TaskLog`: after a cut it goes on in the new log where the old one ended, by the
/// dropped byte counts of the markers (or, when what it had not read yet was dropped, at the
/// new log's start, whose marker says so).
public struct LogReader: ~Copyable {
    private let path: FilePath
    private var fd: FileDescriptor?
    private var inode: UInt64 = 0
    private var position: Int64 = 0
    /// Where the open log starts in the command's whole output, and its marker's length.
    private var start: (dropped: Int64, markerLength: Int64) = (0, 0)

    /// A reader of the log at `path`, from its start.
    public init(path: FilePath) { self.path = path }

    deinit { fd?.closeQuietly() }

    /// Hands what was added since the last call (the whole log the first time) to `sink`, a
    /// piece at a time. A log not there yet is empty.
    public mutating func read(_ sink: (UnsafeRawBufferPointer) -> Void) throws(SpoolError) {
        if fd == nil {
            guard let opened = try open() else { return }
            fd = opened.fd
            inode = opened.inode
            start = LogCut.start(of: opened.fd)
        }
        try drain(sink)
        // Cut meanwhile: finish the old log (the supervisor wrote its last bytes there before
        // the rename), then go on in the new one.
        while let now = try? FileDescriptor.currentDirectory.statusAt(path.string), now.inode != inode {
            try drain(sink)
            guard let opened = try open() else { return }
            let read = start.dropped + position - start.markerLength  // in the whole output
            fd?.closeQuietly()
            fd = opened.fd
            inode = opened.inode
            start = LogCut.start(of: opened.fd)
            position = read >= start.dropped ? start.markerLength + read - start.dropped : 0
            try drain(sink)
        }
    }

    private func open() throws(SpoolError) -> (fd: FileDescriptor, inode: UInt64)? {
        do {
            let fd = try FileDescriptor.open(path, .readOnly, options: [.noFollow, .closeOnExec, .nonBlocking])
            return (fd, (try? fd.status().inode) ?? 0)
        } catch {
            let e = error as? Errno ?? .ioError
            if e == .noSuchFileOrDirectory { return nil }
            throw SpoolError(.io, "Opening the log \(path): \(e)", path: path, errno: e)
        }
    }

    private mutating func drain(_ sink: (UnsafeRawBufferPointer) -> Void) throws(SpoolError) {
        guard let fd else { return }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n: Int
            do { n = try buffer.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: position, into: $0) } } catch {
                let e = error as? Errno ?? .ioError
                throw SpoolError(.io, "Reading the log \(path): \(e)", path: path, errno: e)
            }
            if n <= 0 { return }
            buffer.withUnsafeBytes { sink(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            position += Int64(n)
        }
    }
}
