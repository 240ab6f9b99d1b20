import ClawflowModel
import ClawflowSpool
import Glibc
import Synchronization
import SystemPackage

/// What changed in a spool since a reader last looked, gathered from inotify events.
public struct SpoolChanges: Sendable, Equatable {
    /// Flows whose manifest, task records or event log changed, or that appeared or went.
    public var flows: Set<String> = []
    /// Flows a command task's output log of which grew.
    public var logs: Set<String> = []
    /// The kernel dropped events: everything must be read again.
    public var overflow = false

    /// Nothing changed.
    public var isEmpty: Bool { flows.isEmpty && logs.isEmpty && !overflow }

    /// No changes.
    public init() {}
}

/// Live changes of a spool for a reader (`clawflow top`): which flows changed, told from
/// inotify events on `flows/`, on each followed flow's directory and on its `tasks/`. A flow
/// that appears is followed at once, before its event is handed on. Changes pile up in one
/// set until `take()`; `notify` is called (on the inotify thread; it must not block) when
/// the set stops being empty, so a burst of events costs the reader one wake-up. Reads
/// nothing and writes nothing in the spool: its wake file is in a private directory.
public final class ChangeFeed: Sendable {
    /// The spool root.
    public let root: FilePath
    private let wakeDirectory: String
    private let pending = Pending()
    private let thread: InotifyThread
    private let flowsPath: String

    /// The changes not taken yet, shared with the inotify thread's sink.
    private final class Pending: Sendable {
        let changes = Mutex(SpoolChanges())
    }

    /// What a flow's own directory is watched for: the manifest renamed into place, the event log written.
    static let flowMask: EventMask = [.movedTo, .closeWrite, .modify, .onlyDirectory, .dontFollow]
    /// What a flow's `tasks/` is watched for: records renamed into place, output written.
    static let tasksMask: EventMask = [.movedTo, .closeWrite, .modify, .onlyDirectory, .dontFollow]
    /// What `flows/` is watched for: flows arriving and leaving.
    static let flowsMask: EventMask = [.movedTo, .movedFrom, .create, .delete, .onlyDirectory, .dontFollow]

    /// A feed for the spool at `root`; call `start()` before the process opens many files
    /// (libinotifytools' select() needs its descriptor below 1024).
    public init(root: FilePath, notify: @escaping @Sendable () -> Void) throws(WatchError) {
        self.root = root
        flowsPath = SpoolDirectory.flows.path(in: root).string
        let base = (getenv("TMPDIR").map { String(cString: $0) }).flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((base + "/clawflow-feed.XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            let e = Errno(rawValue: errno)
            throw WatchError(
                .io, "Could not make a private directory under \(base) for the inotify thread: \(e). Set TMPDIR to a writable directory.", errno: e)
        }
        wakeDirectory = String(cString: made)
        let pending = self.pending
        let flowsPath = self.flowsPath
        thread = InotifyThread(
            wakeDirectory: wakeDirectory,
            autoWatch: AutoWatch(parent: flowsPath, children: [("", ChangeFeed.flowMask), (Layout.tasks, ChangeFeed.tasksMask)]),
            sink: { event in
                guard let change = ChangeFeed.classify(event, flows: flowsPath) else { return }
                let wasEmpty = pending.changes.withLock { p -> Bool in
                    let empty = p.isEmpty
                    switch change {
                    case .flow(let id): p.flows.insert(id)
                    case .log(let id): p.logs.insert(id)
                    case .overflow: p.overflow = true
                    }
                    return empty
                }
                if wasEmpty { notify() }
            })
    }

    /// One event's meaning for a reader.
    enum Change: Equatable {
        case flow(String)
        case log(String)
        case overflow
    }

    /// What an event says changed, or nil when it says nothing a reader shows (a temp file,
    /// a lock, a name that is no flow's).
    static func classify(_ event: WatchEvent, flows: String) -> Change? {
        if event.mask.contains(.queueOverflow) { return .overflow }
        if event.name.hasPrefix(".") { return nil }
        if event.directory == flows {
            return Identifier.isValid(event.name) ? .flow(event.name) : nil
        }
        guard event.directory.hasPrefix(flows + "/") else { return nil }
        let below = event.directory.dropFirst(flows.count + 1).split(separator: "/", omittingEmptySubsequences: false)
        guard let first = below.first, Identifier.isValid(String(first)) else { return nil }
        let flowId = String(first)
        if below.count == 1 {
            return event.name == Layout.manifest || event.name == Layout.events ? .flow(flowId) : nil
        }
        guard below.count == 2, below[1] == Layout.tasks else { return nil }
        if event.name.hasSuffix(".log") { return .log(flowId) }
        return Layout.isTaskFile(event.name) ? .flow(flowId) : nil
    }

    /// Starts the inotify thread and watches `flows/` (which must exist).
    public func start() throws(WatchError) {
        try thread.start()
        thread.watch(flowsPath, mask: ChangeFeed.flowsMask)
    }

    /// Watches a flow's directory and its `tasks/` (returns once both watches are in place,
    /// so a read after this call misses nothing). Not on the concurrency pool: it waits.
    public func follow(_ flowId: String) {
        let dir = flowsPath + "/" + flowId
        thread.watch(dir, mask: ChangeFeed.flowMask)
        thread.watch(dir + "/" + Layout.tasks, mask: ChangeFeed.tasksMask)
    }

    /// Stops watching a flow (one that ended: watches cost kernel memory).
    public func forget(_ flowId: String) {
        let dir = flowsPath + "/" + flowId
        thread.unwatch(dir)
        thread.unwatch(dir + "/" + Layout.tasks)
    }

    /// The changes gathered since the last call; the set starts empty again.
    public func take() -> SpoolChanges {
        pending.changes.withLock { p in
            defer { p = SpoolChanges() }
            return p
        }
    }

    /// Stops the thread and removes the private directory.
    public func stop() {
        thread.stop()
        unlink(wakeDirectory + "/.wake")
        rmdir(wakeDirectory)
    }
}
