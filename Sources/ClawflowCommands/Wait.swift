import ArgumentParser
import CSystemShims
import ClawflowModel
import ClawflowSpool
import Glibc

/// `clawflow wait <lookup>...`: block until flows end (tsp -w, pueue wait).
struct Wait: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait",
        abstract: "Wait until flows have ended; exit 0 when all succeeded, else 1.",
        discussion: """
            Each lookup is a flow id, an owner key, a unique flow-id prefix, or a task id or run \
            id (its flow). wait sleeps on inotify (and on the supervisors' pidfds, so a \
            supervisor that dies wakes it); with --poll, or where inotify is unavailable, it \
            re-reads the flows ten times a second instead. Prints one line per flow (its id \
            and final status), or with --json {"flows": [flow + "tasks"], "timedOut": bool}.

            Exit codes: 0 every flow succeeded; 1 one did not (failed, cancelled, lost, ended \
            blocked); with --exit-status, the exit code of the one command task (128+N when a \
            signal N ended it); 124 --timeout passed first; 64 usage error.

            Examples:
              clawflow run --owner build -- make && clawflow wait build
              clawflow wait "$flow" --exit-status --timeout 10m
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("Flow ids, owner keys, or task ids / run ids.", valueName: "lookup"))
    var lookups: [String]

    @Flag(name: .customLong("exit-status"), help: "Exit with the exit code of the one command task of the one flow named.")
    var exitStatus = false

    @Option(parsing: .unconditional, help: ArgumentHelp("Give up after this long (exit 124).", valueName: "duration"))
    var timeout: String?

    @Flag(help: "Re-read the flows ten times a second instead of sleeping on inotify.")
    var poll = false

    /// Exits with the outcome's status (not argument-parser's 0).
    func run() throws {
        let out = Output(json: global.json)
        let code: Int32
        do { code = try waitForFlows(out) } catch {
            out.fail(error)
            throw ExitCode(error.code == .usage ? 64 : 1)
        }
        handOffSlots()
        if code != 0 { throw ExitCode(code) }
    }

    func execute(_ out: Output) throws(SpoolError) { _ = try waitForFlows(out) }

    /// Waits, prints the flows, and returns the exit status.
    func waitForFlows(_ out: Output) throws(SpoolError) -> Int32 {
        guard !lookups.isEmpty else { throw Parse.usage("Name at least one flow to wait for.") }
        if exitStatus, lookups.count != 1 { throw Parse.usage("--exit-status takes exactly one flow.") }
        let limit = try timeout.map { (t) throws(SpoolError) in try Parse.duration(t, option: "--timeout") }
        guard let spool = try readSpool() else { throw SpoolError.flowNotFound(lookups[0]) }
        var ids: [String] = []
        for lookup in lookups {
            let id: String
            do { id = try spool.resolveFlow(lookup) } catch  where error.code == .notFound {
                do { id = try spool.resolveTask(lookup).flowId } catch  where error.code == .notFound { throw SpoolError.flowNotFound(lookup) }
            }
            if !ids.contains(id) { ids.append(id) }
        }
        let deadline = limit.map { monotonicNow() + Double($0) }
        // Watched before the first read, so that no change after it goes unseen; after that,
        // only the flows a wake-up names are read again (a wait on a queue's 1,000 jobs
        // otherwise read all of them at each of their changes).
        let sleeper = FlowSleeper(spool: spool, polling: poll, flowIds: ids)
        var current: [String: FlowSnapshot] = [:]
        var stale = ids
        var snaps: [FlowSnapshot] = []
        var timedOut = false
        while true {
            for id in stale { current[id] = try spool.flow(id) }
            snaps = ids.compactMap { current[$0] }
            if snaps.allSatisfy(\.flow.isTerminal) { break }
            if let deadline, monotonicNow() >= deadline {
                timedOut = true
                break
            }
            // A read may have freed a slot (a run found lost) or put a job back in its queue
            // (a lost run with retries left): the slots are handed on before sleeping, so
            // that what this waits for can start.
            if snaps.contains(where: { $0.flow.status == .queued }) { handOffSlots() }
            for snap in snaps where snap.flow.isTerminal { sleeper.forget(snap.flow.flowId) }
            stale = sleeper.sleep(on: snaps.filter { !$0.flow.isTerminal }, until: deadline)
        }
        if out.json {
            let flows: [JSON] = snaps.map { snap in
                var o = snap.flow.fields
                o["tasks"] = .array(snap.tasks.map { .object($0.fields) })
                return .object(o)
            }
            out.emit(.object(JSONObject(["flows": .array(flows), "timedOut": .bool(timedOut)])))
        } else {
            for snap in snaps { out.print("\(snap.flow.flowId) \(snap.flow.status.rawValue)") }
        }
        if timedOut {
            if !out.json { out.warn("Timed out after \(limit ?? 0) s; \(snaps.filter { !$0.flow.isTerminal }.count) flow(s) still active.") }
            return 124
        }
        if exitStatus {
            guard let task = snaps[0].tasks.last(where: \.isCommand) else {
                throw SpoolError(.notFound, "Flow \(snaps[0].flow.flowId) has no command task; --exit-status needs a job started with clawflow run.")
            }
            if let code = task.exitCode { return Int32(truncatingIfNeeded: code) }
            if let name = task.signal, let number = SignalNumber.of(name) { return 128 + number }
            return task.status == .succeeded ? 0 : 1
        }
        return snaps.allSatisfy { $0.flow.status == .succeeded } ? 0 : 1
    }
}

/// Signal numbers of the names task records carry.
enum SignalNumber {
    static func of(_ name: String) -> Int32? {
        let numbers: [String: Int32] = [
            "SIGHUP": SIGHUP, "SIGINT": SIGINT, "SIGQUIT": SIGQUIT, "SIGILL": SIGILL, "SIGABRT": SIGABRT,
            "SIGFPE": SIGFPE, "SIGKILL": SIGKILL, "SIGSEGV": SIGSEGV, "SIGPIPE": SIGPIPE, "SIGALRM": SIGALRM,
            "SIGTERM": SIGTERM, "SIGUSR1": SIGUSR1, "SIGUSR2": SIGUSR2, "SIGBUS": SIGBUS, "SIGXCPU": SIGXCPU,
        ]
        if let n = numbers[name] { return n }
        if name.hasPrefix("signal ") { return Int32(name.dropFirst(7)) }
        return nil
    }
}

/// Sleeps until flows may have changed: on inotify (names other than temp files appearing or
/// written in the flows' directories and their tasks/) and on pidfds of their supervisors (a
/// supervisor that dies changes no file, but its task is then lost), or, polling, a tenth of
/// a second. Each wake-up names the flows that may have changed.
final class FlowSleeper {
    let spool: Spool
    let inotify: Int32
    private var flowOfWatch: [Int32: String] = [:]
    private var watchesOfFlow: [String: [Int32]] = [:]
    /// The supervisor each flow's active command has, with a pidfd open on it.
    private var supervisors: [String: (pid: Int64, fd: Int32)] = [:]
    /// Supervisors no pidfd could be opened on (gone, or out of descriptors): their flows are
    /// read again once, then watched through inotify alone, so a read that changes nothing
    /// does not spin.
    private var unwatchable: [String: Int64] = [:]

    /// Watches `flowIds` from now on; without inotify, or when a watch cannot be added, it polls.
    init(spool: Spool, polling: Bool, flowIds: [String]) {
        self.spool = spool
        var fd = polling ? -1 : inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        // The instance's teardown (at its last close) waits for a kernel grace period, 13-19 ms
        // here: a keeper holds a copy so that it happens after this process has exited.
        if fd >= 0 { _ = clawflow_park_descriptor(fd) }
        let mask = UInt32(IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE | IN_DELETE_SELF)
        for id in flowIds where fd >= 0 {
            let dir = spool.flowPath(id)
            let watches = [inotify_add_watch(fd, dir.string, mask), inotify_add_watch(fd, dir.appending(Layout.tasks).string, mask)]
            if watches[0] < 0 {
                close(fd)
                fd = -1
                break
            }
            for wd in watches where wd >= 0 { flowOfWatch[wd] = id }
            watchesOfFlow[id] = watches.filter { $0 >= 0 }
        }
        inotify = fd
    }

    deinit {
        for s in supervisors.values { close(s.fd) }
        if inotify >= 0 { close(inotify) }
    }

    /// Stops watching a flow that has ended.
    func forget(_ flowId: String) {
        for wd in watchesOfFlow.removeValue(forKey: flowId) ?? [] {
            _ = inotify_rm_watch(inotify, wd)
            flowOfWatch[wd] = nil
        }
        if let s = supervisors.removeValue(forKey: flowId) { close(s.fd) }
        unwatchable[flowId] = nil
    }

    /// Sleeps until one of `pending` may have changed, or `deadline` (monotonic seconds);
    /// returns the ids of those to read again (all of them when polling or when events were
    /// lost; none at the deadline).
    func sleep(on pending: [FlowSnapshot], until deadline: Double?) -> [String] {
        var remaining: Int32 = -1
        if let deadline { remaining = Int32(max(0, min(Double(Int32.max / 2), (deadline - monotonicNow()) * 1000))) }
        let all = pending.map(\.flow.flowId)
        guard inotify >= 0 else {
            usleep(UInt32(remaining < 0 ? 100 : min(100, remaining)) * 1000)
            return all
        }
        // A pidfd for each active command's supervisor; one gone already has changed its flow.
        var dead: [String] = []
        for snap in pending {
            let id = snap.flow.flowId
            let pid = snap.tasks.last(where: { $0.isCommand && $0.status.isActive })?.supervisorPid
            if let held = supervisors[id], held.pid != pid {
                close(held.fd)
                supervisors[id] = nil
            }
            guard let pid, supervisors[id] == nil, unwatchable[id] != pid else { continue }
            let fd = clawflow_pidfd_open(Int32(truncatingIfNeeded: pid))
            if fd >= 0 {
                supervisors[id] = (pid, fd)
            } else {
                unwatchable[id] = pid
                dead.append(id)
            }
        }
        if !dead.isEmpty { return dead }
        let watched = Array(supervisors)
        var fds = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0)] + watched.map { pollfd(fd: $0.value.fd, events: Int16(POLLIN), revents: 0) }
        guard Glibc.poll(&fds, nfds_t(fds.count), remaining) > 0 else { return [] }
        var changed: [String] = []
        for (i, entry) in watched.enumerated() where fds[i + 1].revents != 0 { changed.append(entry.key) }
        // struct inotify_event: wd, mask, cookie, len (4 bytes each), then len bytes of name.
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = read(inotify, &buffer, buffer.count)
            guard n > 0 else { break }
            var offset = 0
            while offset + 16 <= n {
                let (wd, mask, len) = buffer.withUnsafeBytes { raw in
                    (
                        raw.loadUnaligned(fromByteOffset: offset, as: Int32.self), raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self),
                        Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                    )
                }
                if mask & UInt32(IN_Q_OVERFLOW) != 0 { return all }
                // A temp file of a write in progress is not a change yet: its rename will be.
                let isTemp = len > 0 && buffer[offset + 16] == UInt8(ascii: ".")
                if !isTemp, let id = flowOfWatch[wd], !changed.contains(id) { changed.append(id) }
                offset += 16 + len
            }
        }
        return changed
    }
}

func monotonicNow() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
