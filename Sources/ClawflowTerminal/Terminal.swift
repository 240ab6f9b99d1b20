import Glibc
import Synchronization

/// The one error type of the terminal module: what failed, how to recover, and why.
public struct TerminalError: Error, Sendable, CustomStringConvertible {
    /// A sentence saying what was being done and how to recover.
    public var message: String
    /// The system error number, if any.
    public var errno: Int32?

    /// Creates an error.
    public init(_ message: String, errno: Int32? = nil) {
        self.message = message
        self.errno = errno
    }

    /// The message.
    public var description: String { message }
}

/// The write end of the signal pipe, for the handler (which may not capture anything).
private let signalPipeWriter = Atomic<Int32>(-1)

/// Signals turned into bytes on a pipe, so that one poll() loop waits for keys, changes
/// and signals together (the handler only writes the signal's number).
public final class SignalPipe: Sendable {
    /// The read end: readable when a signal came.
    public let descriptor: Int32
    private let writer: Int32
    private let signals: [Int32]

    /// Catches `signals` (SIGINT, SIGTERM, SIGWINCH, ...) from now on.
    public init(catching signals: [Int32]) throws(TerminalError) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            throw TerminalError("Could not create a pipe for signals (errno \(Glibc.errno)).", errno: Glibc.errno)
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        descriptor = fds[0]
        writer = fds[1]
        self.signals = signals
        signalPipeWriter.store(writer, ordering: .releasing)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { sig in
            let saved = errno
            var byte = UInt8(truncatingIfNeeded: sig)
            _ = write(signalPipeWriter.load(ordering: .acquiring), &byte, 1)
            errno = saved
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_RESTART
        var set = sigset_t()
        sigemptyset(&set)
        for sig in signals {
            sigaction(sig, &action, nil)
            sigaddset(&set, sig)
        }
        // A parent that blocked them (a thread-pool worker, say) would leave them pending forever.
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// The signals that came since the last call, in order.
    public func take() -> [Int32] {
        var out: [Int32] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let n = read(descriptor, &buffer, buffer.count)
            if n <= 0 { break }
            out.append(contentsOf: buffer[0..<n].map { Int32($0) })
        }
        return out
    }

    /// Puts the default actions back.
    public func close() {
        for sig in signals { signal(sig, SIG_DFL) }
        signalPipeWriter.store(-1, ordering: .releasing)
        Glibc.close(descriptor)
        Glibc.close(writer)
    }
}

/// A terminal taken over for a full-screen view: raw input (no echo, no line editing, no
/// signals from keys), the alternate screen, the cursor hidden and no automatic wrap; and
/// put back exactly as it was by `restore()`.
public final class Terminal {
    /// The input descriptor (keys).
    public let input: Int32
    /// The output descriptor (the screen).
    public let output: Int32
    private var saved: termios?
    private var active = false

    /// A terminal on `input` and `output` (0 and 1).
    public init(input: Int32 = 0, output: Int32 = 1) {
        self.input = input
        self.output = output
    }

    /// Whether `fd` is a terminal.
    public static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// The screen's size in columns and rows (80×24 when the terminal does not say).
    public func size() -> (columns: Int, rows: Int) {
        var ws = winsize()
        if ioctl(output, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0, ws.ws_row > 0 {
            return (Int(ws.ws_col), Int(ws.ws_row))
        }
        return (80, 24)
    }

    /// Saves the terminal's settings and takes it over.
    public func enter() throws(TerminalError) {
        var original = termios()
        guard tcgetattr(input, &original) == 0 else {
            throw TerminalError("Could not read the terminal's settings (errno \(errno)); is the input a terminal?", errno: errno)
        }
        var raw = original
        raw.c_iflag &= ~tcflag_t(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON)
        raw.c_lflag &= ~tcflag_t(ECHO | ECHONL | ICANON | ISIG | IEXTEN)
        raw.c_cflag &= ~tcflag_t(CSIZE | PARENB)
        raw.c_cflag |= tcflag_t(CS8)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        guard tcsetattr(input, TCSAFLUSH, &raw) == 0 else {
            throw TerminalError("Could not put the terminal in raw mode (errno \(errno)).", errno: errno)
        }
        saved = original
        active = true
        // Alternate screen, cursor hidden, no automatic wrap.
        write("\u{1B}[?1049h\u{1B}[?25l\u{1B}[?7l\u{1B}[H\u{1B}[2J")
    }

    /// Puts the terminal back: the main screen, the cursor, wrapping, and the saved settings.
    /// Safe to call more than once.
    public func restore() {
        guard active else { return }
        active = false
        write("\u{1B}[0m\u{1B}[?7h\u{1B}[?25h\u{1B}[?1049l")
        if var original = saved { _ = tcsetattr(input, TCSAFLUSH, &original) }
    }

    /// Writes text to the screen.
    public func write(_ text: String) { write(Array(text.utf8)) }

    /// Writes bytes to the screen, all of them (a short write or EINTR is continued; a
    /// screen that is gone stops it).
    public func write(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(output, $0.baseAddress! + offset, bytes.count - offset) }
            if n > 0 {
                offset += n
            } else if n < 0, errno == EINTR {
                continue
            } else if n < 0, errno == EAGAIN {
                var p = pollfd(fd: output, events: Int16(POLLOUT), revents: 0)
                _ = poll(&p, 1, 100)
            } else {
                return
            }
        }
    }

    /// Reads what input there is now (after poll() said so); nil at end of input.
    public func readInput() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let n = read(input, &buffer, buffer.count)
            if n > 0 { return Array(buffer[0..<n]) }
            if n == 0 { return nil }
            if errno == EINTR { continue }
            return errno == EAGAIN ? [] : nil
        }
    }
}
