import SystemPackage

/// The one error type of the watcher: what failed, how to recover, where, and why.
public struct WatchError: Error, Sendable, CustomStringConvertible {
    /// Stable codes.
    public enum Code: String, Sendable {
        /// Another watcher holds the spool.
        case alreadyRunning = "already_running"
        /// libinotifytools or inotify failed.
        case inotify
        /// A file operation failed.
        case io
    }

    /// The error's code.
    public var code: Code
    /// A sentence saying what was being done and how to recover.
    public var message: String
    /// The file involved, if any.
    public var path: FilePath?
    /// The underlying system error, if any.
    public var errno: Errno?

    /// Creates an error.
    public init(_ code: Code, _ message: String, path: FilePath? = nil, errno: Errno? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.errno = errno
    }

    /// The message.
    public var description: String { message }
}
