import ClawflowModel
import Glibc
import SystemPackage

/// One line of a flow's `events.jsonl`, parsed, with where it came from.
public struct LoggedEvent: Sendable {
    /// The flow whose log holds it (the directory name, not a field of the line).
    public var flowId: String
    /// Its line number in the log, from 1.
    public var line: Int
    /// The event exactly as stored.
    public var fields: JSONObject

    /// Creates an event read from line `line` of the log of `flowId`.
    public init(flowId: String, line: Int, fields: JSONObject) {
        self.flowId = flowId
        self.line = line
        self.fields = fields
    }

    /// The event's `at` timestamp text, or "" when it has none (such events sort first).
    public var at: String { fields["at"]?.stringValue ?? "" }

    /// The history order of spool-layout.md, "Event log": by `at`, then flow id, then line.
    public static func precedes(_ a: LoggedEvent, _ b: LoggedEvent) -> Bool {
        let (x, y) = (a.at, b.at)
        if x != y { return x.utf8.lexicographicallyPrecedes(y.utf8) }
        if a.flowId != b.flowId { return a.flowId.utf8.lexicographicallyPrecedes(b.flowId.utf8) }
        return a.line < b.line
    }
}

/// A line of an event log that is not a JSON object, reported instead of skipped silently.
public struct EventLogProblem: Sendable, CustomStringConvertible {
    /// The log file.
    public var path: FilePath
    /// The line number, from 1.
    public var line: Int
    /// What is wrong, naming the file and the line.
    public var message: String
    /// The message.
    public var description: String { message }
}

/// What one read of an event log found: the complete lines from an offset on.
public struct EventBatch: Sendable {
    /// The events of the complete lines read, in line order.
    public var events: [LoggedEvent]
    /// The byte offset after the last complete line: where the next read starts. A last line
    /// without its newline (a write in progress) is left for that read.
    public var nextOffset: Int
    /// The line number of the line at `nextOffset`.
    public var nextLine: Int
    /// The file size `fstat` reported when the log was opened (0 when there is no log yet).
    public var size: Int
    /// Complete lines that are not JSON objects.
    public var problems: [EventLogProblem]
}

extension Spool {
    /// The path of a flow's event log.
    public func eventLogPath(_ flowId: String) -> FilePath { flowPath(flowId).appending(Layout.events) }

    /// The size of a flow's event log as `fstatat` sees it (not following a final symlink),
    /// or nil when the flow or its log does not exist: a cheap check for new lines.
    public func eventLogSize(_ flowId: String) -> Int? {
        guard Identifier.isValid(flowId), let st = try? flowsFD.statusAt(flowId + "/" + Layout.events) else { return nil }
        return Int(st.size)
    }

    /// Reads the complete lines of `flows/<flowId>/events.jsonl` from byte `offset` (line
    /// number `line`) to its end. The log is opened relative to the flow directory without
    /// following a symlink and must be a regular file. A missing log is empty; a missing flow
    /// is `not_found`; a log that cannot be read is `invalid_record` or `io`. Lines that are
    /// not JSON objects come back as problems, and reading goes on after them.
    public func readEvents(flowId: String, from offset: Int = 0, line: Int = 1) throws(SpoolError) -> EventBatch {
        let dirPath = flowPath(flowId)
        let dir: FileDescriptor
        do { dir = try flowsFD.openDirectoryAt(flowId) } catch {
            if error == .noSuchFileOrDirectory { throw notFound(flowId) }
            if error == .tooManySymbolicLinkLevels || error == .notDirectory {
                throw SpoolError(
                    .invalidRecord, "\(dirPath) is not a flow directory (a symlink or another kind of file); clawflow does not follow it. Run clawflow fsck.",
                    path: dirPath, errno: error)
            }
            throw SpoolError.io("Opening the flow directory", dirPath, error)
        }
        defer { dir.closeQuietly() }
        let path = dirPath.appending(Layout.events)
        let fd: FileDescriptor
        do { fd = try dir.openAt(Layout.events, .readOnly, options: [.noFollow, .nonBlocking]) } catch {
            if error == .noSuchFileOrDirectory { return EventBatch(events: [], nextOffset: offset, nextLine: line, size: 0, problems: []) }
            if error == .tooManySymbolicLinkLevels {
                throw SpoolError(
                    .invalidRecord,
                    "\(path) is a symlink; clawflow does not follow symlinks in the spool. Remove it, or run clawflow fsck to see what else is out of place.",
                    path: path, errno: error)
            }
            throw SpoolError.io("Opening", path, error)
        }
        defer { fd.closeQuietly() }
        let status: FileStatus
        do { status = try fd.status() } catch { throw SpoolError.io("Reading the status of", path, error) }
        guard status.kind == .regular else {
            throw SpoolError(
                .invalidRecord, "\(path) is a \(status.kind.word), not a regular file; clawflow reads only regular files. Remove it, or run clawflow fsck.",
                path: path)
        }
        let size = Int(status.size)

        var events: [LoggedEvent] = []
        var problems: [EventLogProblem] = []
        var nextOffset = offset  // the start of the first line not yet parsed
        var nextLine = line
        var pending: [UInt8] = []  // bytes read from nextOffset on
        var position = offset  // where the next pread starts
        var chunk = [UInt8](repeating: 0, count: min(max(size - offset, 4096), 1 << 20))
        while true {
            let n: Int
            do {
                n = try retrying { chunk.withUnsafeMutableBytes { Glibc.pread(fd.rawValue, $0.baseAddress!, $0.count, off_t(position)) } }
            } catch {
                throw SpoolError.io("Reading", path, error)
            }
            if n == 0 { break }
            position += n
            pending.append(contentsOf: chunk[0..<n])
            var start = 0
            while let newline = pending[start...].firstIndex(of: 0x0A) {
                let text = Array(pending[start..<newline])
                do {
                    let value = try JSON.parse(bytes: text)
                    if let object = value.objectValue {
                        events.append(LoggedEvent(flowId: flowId, line: nextLine, fields: object))
                    } else {
                        problems.append(
                            EventLogProblem(
                                path: path, line: nextLine, message: "\(path) line \(nextLine) holds a JSON \(value.kindName), not an event object; skipped it."
                            ))
                    }
                } catch {
                    problems.append(
                        EventLogProblem(path: path, line: nextLine, message: "\(path) line \(nextLine) is not valid JSON (\(error.description)); skipped it."))
                }
                nextLine += 1
                start = newline + 1
            }
            nextOffset += start
            pending.removeFirst(start)
        }
        return EventBatch(events: events, nextOffset: nextOffset, nextLine: nextLine, size: size, problems: problems)
    }
}
