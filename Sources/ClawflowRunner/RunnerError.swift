import ClawflowSpool
import SystemPackage

/// The one error type of the runner: what failed, how to recover, where, and why.
public struct RunnerError: Error, Sendable, CustomStringConvertible {
    /// The error's code (the spool's codes: the CLI prints them alike).
    public var code: SpoolError.Code
    /// A sentence saying what was being done and, where it helps, how to recover.
    public var message: String
    /// The file involved, if any.
    public var path: FilePath?
    /// The underlying system error, if any.
    public var errno: Errno?

    /// Creates an error.
    public init(_ code: SpoolError.Code, _ message: String, path: FilePath? = nil, errno: Errno? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.errno = errno
    }

    /// A spool failure met while running commands.
    public init(_ error: SpoolError) {
        self.init(error.code, error.message, path: error.path, errno: error.errno)
    }

    /// The same error as a spool error, for output.
    public var spoolError: SpoolError { SpoolError(code, message, path: path, errno: errno) }

    /// The message.
    public var description: String { message }
}
