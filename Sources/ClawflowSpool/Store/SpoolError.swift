import ClawflowModel
import SystemPackage

/// The one error type of the spool: what failed, what to do about it, where, and why.
public struct SpoolError: Error, Sendable, CustomStringConvertible {
    /// Stable error codes (printed in `--json` error objects).
    public enum Code: String, Sendable {
        case notFound = "not_found"
        case ambiguous
        case alreadyTerminal = "already_terminal"
        case stillActive = "still_active"
        case revisionConflict = "revision_conflict"
        case notManaged = "not_managed"
        case linkRefused = "link_refused"
        case invalidRecord = "invalid_record"
        case usage
        case io
    }

    /// The error's code.
    public var code: Code
    /// A sentence saying what was being done and, where it helps, how to recover.
    public var message: String
    /// The file or directory involved, if any.
    public var path: FilePath?
    /// The underlying system error, if any.
    public var errno: Errno?
    /// The current stored record, for `revision_conflict`.
    public var current: JSON?
    /// The error this one reports, where there is one: the `errno`, or why a record was
    /// refused (`RecordError`, `JSONParseError`).
    public var underlying: (any Error)?

    /// Creates an error; `underlying` defaults to `errno`.
    public init(_ code: Code, _ message: String, path: FilePath? = nil, errno: Errno? = nil, current: JSON? = nil, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.errno = errno
        self.current = current
        self.underlying = underlying ?? errno
    }

    /// An I/O failure while `doing` something to `path`.
    static func io(_ doing: String, _ path: FilePath, _ errno: Errno) -> SpoolError {
        SpoolError(.io, "\(doing) \(path): \(errno.description) (errno \(errno.rawValue))", path: path, errno: errno)
    }

    /// The error for a flow lookup that matched nothing (the wording of spool-layout.md, "Lookup").
    public static func flowNotFound(_ token: String) -> SpoolError {
        SpoolError(.notFound, "Flow not found: \(sanitized(token)). Run clawflow flows list to see recent flow ids.")
    }

    /// The error for a task lookup that matched nothing.
    public static func taskNotFound(_ token: String) -> SpoolError {
        SpoolError(.notFound, "Task not found: \(sanitized(token)). Run clawflow tasks list to see recent task ids.")
    }

    /// The message, with the path and errno where the message does not already name them.
    public var description: String { message }
}
