import CInotifyTools
import CSystemShims
import Dispatch
import Glibc
import Synchronization

/// One inotify event, copied out of libinotifytools' static buffer before the next call.
public struct WatchEvent: Sendable, Equatable {
    /// The watched directory the event happened in (no trailing slash), or "" for an overflow.
    public var directory: String
    /// The entry's name inside `directory` ("" when the event is about the directory itself).
    public var name: String
    /// The event bits.
    public var mask: EventMask
    /// Pairs IN_MOVED_FROM with IN_MOVED_TO.
    public var cookie: UInt32
}

/// inotify event bits, in one type (Glibc imports them with mixed integer types).
public struct EventMask: OptionSet, Sendable, Hashable {
    /// The raw bits.
    public let rawValue: UInt32
    /// Creates a mask from raw bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// A file was written and closed.
    public static let closeWrite = EventMask(rawValue: UInt32(IN_CLOSE_WRITE))
    /// Metadata changed.
    public static let attrib = EventMask(rawValue: UInt32(IN_ATTRIB))
    /// An entry was renamed into the directory.
    public static let movedTo = EventMask(rawValue: UInt32(IN_MOVED_TO))
    /// An entry was created.
    public static let create = EventMask(rawValue: UInt32(IN_CREATE))
    /// A file was written to (every write, not only the last).
    public static let modify = EventMask(rawValue: UInt32(IN_MODIFY))
    /// An entry was renamed out of the directory.
    public static let movedFrom = EventMask(rawValue: UInt32(IN_MOVED_FROM))
    /// An entry was removed.
    public static let delete = EventMask(rawValue: UInt32(IN_DELETE))
    /// The watch was removed.
    public static let ignored = EventMask(rawValue: UInt32(IN_IGNORED))
    /// The entry is a directory.
    public static let isDirectory = EventMask(rawValue: UInt32(IN_ISDIR))
    /// The kernel queue overflowed: events were lost.
    public static let queueOverflow = EventMask(rawValue: UInt32(IN_Q_OVERFLOW))
    /// Watch only if the path is a directory.
    public static let onlyDirectory = EventMask(rawValue: UInt32(IN_ONLYDIR))
    /// Do not follow a symlink at the watched path.
    public static let dontFollow = EventMask(rawValue: UInt32(IN_DONT_FOLLOW))
}

/// Watches added to every directory that appears in `parent` (created or renamed in), before
/// its event is handed out, so that nothing written in it afterwards goes unseen.
public struct AutoWatch: Sendable {
    /// The directory whose new subdirectories are watched.
    public var parent: String
    /// What to watch in each new subdirectory: a path below it ("" for the directory itself) and the mask.
    public var children: [(path: String, mask: EventMask)]

    /// Watches `children` of every directory that appears in `parent`.
    public init(parent: String, children: [(path: String, mask: EventMask)]) {
        self.parent = parent
        self.children = children
    }
}

/// Owns libinotifytools, whose state is process-global, from one dedicated thread: it
/// initialises the library, adds and removes watches, waits for events and hands copies out
/// through `events`. Nothing else in the process calls the library. One instance at a time.
public final class InotifyThread: Sendable {
    /// Events as they arrive; finishes when the thread stops.
    public let events: AsyncStream<WatchEvent>
    private let continuation: AsyncStream<WatchEvent>.Continuation
    private let wakeDirectory: String
    private let wakeFile: String
    private let state = Mutex(State())
    private let ready = DispatchSemaphore(value: 0)
    private static let inUse = Atomic<Bool>(false)

    private struct State {
        var commands: [Command] = []
        var stopping = false
        var startError: WatchError?
        var inotifyDescriptor: Int32 = -1
    }

    private enum Command {
        case watch(String, EventMask, DispatchSemaphore)
        case unwatch(String)
    }

    /// The directories a new flow's tasks are watched with (set by the watcher, used by the
    /// thread to add a watch the moment a flow directory appears).
    private let autoWatch: AutoWatch?
    /// Where events go instead of `events`, called on the thread (it must not block).
    private let sink: (@Sendable (WatchEvent) -> Void)?

    /// Prepares the thread; `wakeDirectory` is a private directory it watches so that
    /// commands and `stop()` wake it at once. With `autoWatch`, a directory created or
    /// renamed into `parent` gets a watch on `<it>/<child>` before its event is handed out.
    public convenience init(wakeDirectory: String, autoWatch: (parent: String, child: String, mask: EventMask)? = nil) {
        self.init(wakeDirectory: wakeDirectory, autoWatch: autoWatch.map { AutoWatch(parent: $0.parent, children: [($0.child, $0.mask)]) }, sink: nil)
    }

    /// Prepares the thread, with `autoWatch` for new subdirectories; with `sink`, each event
    /// is handed to it, on the thread, instead of to `events` (which then only finishes).
    public init(wakeDirectory: String, autoWatch: AutoWatch?, sink: (@Sendable (WatchEvent) -> Void)?) {
        (events, continuation) = AsyncStream.makeStream(of: WatchEvent.self, bufferingPolicy: .unbounded)
        self.wakeDirectory = wakeDirectory
        self.wakeFile = wakeDirectory + "/.wake"
        self.autoWatch = autoWatch
        self.sink = sink
    }

    private func hand(_ event: WatchEvent) {
        if let sink { sink(event) } else { continuation.yield(event) }
    }

    /// The inotify file descriptor, once started (for tests of the guards).
    public var descriptor: Int32 { state.withLock { $0.inotifyDescriptor } }

    /// Starts the thread and waits until the library is initialised (or failed).
    public func start() throws(WatchError) {
        guard !InotifyThread.inUse.exchange(true, ordering: .acquiringAndReleasing) else {
            throw WatchError(.inotify, "libinotifytools is already in use in this process; its state is global, so only one watcher may run per process.")
        }
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { raw in
                let me = Unmanaged<InotifyThread>.fromOpaque(raw!).takeRetainedValue()
                me.main()
                return nil
            }, box.toOpaque())
        if rc != 0 {
            box.release()
            InotifyThread.inUse.store(false, ordering: .releasing)
            throw WatchError(.inotify, "Could not start the inotify thread (pthread_create returned \(rc)).")
        }
        pthread_detach(thread)
        ready.wait()
        if let error = state.withLock({ $0.startError }) { throw error }
    }

    /// Adds a watch and waits until the thread has added it (so a scan after this call
    /// cannot miss an event). Must not be called from the Swift concurrency pool.
    public func watch(_ path: String, mask: EventMask) {
        let done = DispatchSemaphore(value: 0)
        let accepted = state.withLock { s -> Bool in
            if s.stopping { return false }
            s.commands.append(.watch(path, mask, done))
            return true
        }
        guard accepted else { return }
        wake()
        done.wait()
    }

    /// Removes a watch (asynchronously).
    public func unwatch(_ path: String) {
        state.withLock { $0.commands.append(.unwatch(path)) }
        wake()
    }

    /// Asks the thread to stop; `events` finishes shortly after.
    public func stop() {
        state.withLock { $0.stopping = true }
        wake()
    }

    private func wake() {
        let fd = open(wakeFile, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o600)
        if fd >= 0 { close(fd) }
    }

    // MARK: - The thread

    private func main() {
        defer {
            inotifytools_cleanup()
            continuation.finish()
            InotifyThread.inUse.store(false, ordering: .releasing)
        }
        if let error = initialise() {
            state.withLock { $0.startError = error }
            ready.signal()
            return
        }
        ready.signal()
        var paths: [Int32: String] = [:]
        while true {
            let (commands, stopping) = state.withLock { s -> ([Command], Bool) in
                defer { s.commands = [] }
                return (s.commands, s.stopping)
            }
            for command in commands {
                switch command {
                case .watch(let path, let mask, let done):
                    addWatch(path, mask, &paths)
                    done.signal()
                case .unwatch(let path):
                    if let wd = paths.first(where: { $0.value == path })?.key {
                        inotifytools_remove_watch_by_wd(wd)
                        paths[wd] = nil
                    }
                }
            }
            if stopping { return }
            guard let raw = inotifytools_next_event(1) else { continue }
            let event = UnsafeRawPointer(raw)
            let wd = event.loadUnaligned(fromByteOffset: 0, as: Int32.self)
            let mask = EventMask(rawValue: event.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            let cookie = event.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
            let length = Int(event.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
            // inotify_event.name is a flexible array after the 16-byte header, NUL padded.
            var name = ""
            if length > 0 {
                let bytes = UnsafeRawBufferPointer(start: event + 16, count: length)
                name = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            }
            if mask.contains(.queueOverflow) {
                hand(WatchEvent(directory: "", name: "", mask: mask, cookie: 0))
                continue
            }
            guard let directory = paths[wd] else { continue }
            if mask.contains(.ignored) {
                paths[wd] = nil
                continue
            }
            if directory == wakeDirectory { continue }
            if let auto = autoWatch, directory == auto.parent, mask.contains(.isDirectory),
                !mask.intersection([.create, .movedTo]).isEmpty, !name.hasPrefix(".")
            {
                for child in auto.children {
                    addWatch(directory + "/" + name + (child.path.isEmpty ? "" : "/" + child.path), child.mask, &paths)
                }
            }
            hand(WatchEvent(directory: directory, name: name, mask: mask, cookie: cookie))
        }
    }

    private func addWatch(_ path: String, _ mask: EventMask, _ paths: inout [Int32: String]) {
        guard inotifytools_watch_file(path, Int32(bitPattern: mask.rawValue)) != 0 else { return }
        let wd = inotifytools_wd_from_filename(path + "/") > 0 ? inotifytools_wd_from_filename(path + "/") : inotifytools_wd_from_filename(path)
        if wd > 0 { paths[wd] = path }
    }

    /// Initialises the library with the guards of the engineering notes: its inotify fd
    /// below 1024 (it waits with select()), close-on-exec, and a watch on the wake directory.
    private func initialise() -> WatchError? {
        let freed = FileDescriptorGuard.freeLowDescriptor()
        guard inotifytools_initialize() != 0 else {
            let e = inotifytools_error()
            return WatchError(
                .inotify,
                "Could not initialise inotify (errno \(e): \(String(cString: strerror(e)))). Check /proc/sys/fs/inotify/max_user_instances, or run clawflow watch --poll 2."
            )
        }
        guard let fd = FileDescriptorGuard.findInotifyDescriptor() else {
            return WatchError(.inotify, "Could not find libinotifytools' inotify descriptor under /proc/self/fd.")
        }
        _ = freed
        state.withLock { $0.inotifyDescriptor = fd }
        if fd >= 1024 {
            return WatchError(
                .inotify,
                "The inotify descriptor is \(fd), at or above FD_SETSIZE (1024), where libinotifytools' select() would abort. Start the watcher with fewer open files."
            )
        }
        let flags = fcntl(fd, F_GETFD)
        _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC)
        guard inotifytools_watch_file(wakeDirectory, Int32(bitPattern: (EventMask.closeWrite.union(.attrib)).rawValue)) != 0 else {
            let e = inotifytools_error()
            return WatchError(.inotify, "Could not watch \(wakeDirectory) (errno \(e): \(String(cString: strerror(e)))).")
        }
        return nil
    }
}

/// The file descriptor guards libinotifytools needs.
enum FileDescriptorGuard {
    /// When every descriptor below 1024 is taken, moves one inherited descriptor (3…1023)
    /// above 1024 so that the next one opened (inotify's) gets a number select() accepts.
    /// Call before the process opens files of its own. Returns the descriptor freed, if any.
    static func freeLowDescriptor() -> Int32? {
        let probe = fcntl(0, F_DUPFD_CLOEXEC, 0)
        if probe >= 0 { close(probe) }
        guard probe >= 1024 || probe < 0 else { return nil }
        for fd in stride(from: Int32(1023), through: 3, by: -1) where fcntl(fd, F_GETFD) != -1 {
            let cloexec = fcntl(fd, F_GETFD) & FD_CLOEXEC
            let moved = fcntl(fd, cloexec != 0 ? F_DUPFD_CLOEXEC : F_DUPFD, 1024)
            guard moved >= 0 else { return nil }
            close(fd)
            return fd
        }
        return nil
    }

    /// The number of the process's inotify descriptor (its /proc/self/fd link reads
    /// "anon_inode:inotify"), or nil.
    static func findInotifyDescriptor() -> Int32? {
        guard let dir = opendir("/proc/self/fd") else { return nil }
        defer { closedir(dir) }
        var found: Int32?
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let fd = Int32(name) else { continue }
            var buf = [CChar](repeating: 0, count: 64)
            let n = readlink("/proc/self/fd/" + name, &buf, 63)
            if n > 0, String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == "anon_inode:inotify" {
                found = max(found ?? -1, fd)
            }
        }
        return found
    }
}
