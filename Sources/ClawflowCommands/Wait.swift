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
        let sleeper = FlowSleeper(spool: spool, polling: poll)
        var snaps: [FlowSnapshot] = []
        var timedOut = false
        while true {
            snaps = []
            for id in ids { snaps.append(try spool.flow(id)) }
            if snaps.allSatisfy(\.flow.isTerminal) { break }
            if let deadline, monotonicNow() >= deadline {
                timedOut = true
                break
            }
            // A read may have freed a slot (a run found lost) or put a job back in its queue
            // (a lost run with retries left): the slots are handed on before sleeping, so
            // that what this waits for can start.
            if snaps.contains(where: { $0.flow.status == .queued }) { handOffSlots() }
            sleeper.sleep(on: snaps.filter { !$0.flow.isTerminal }, until: deadline)
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

/// Sleeps until a flow may have changed: on inotify (renames into the flows' directories and
/// their tasks/) and on pidfds of their supervisors (a supervisor that dies changes no file,
/// but its task is then lost), or, polling, a tenth of a second.
final class FlowSleeper {
    let spool: Spool
    let inotify: Int32

    init(spool: Spool, polling: Bool) {
        self.spool = spool
        inotify = polling ? -1 : inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        // The instance's teardown (at its last close) waits for a kernel grace period, 13-19 ms
        // here: a keeper holds a copy so that it happens after this process has exited.
        if inotify >= 0 { _ = clawflow_park_descriptor(inotify) }
    }

    deinit { if inotify >= 0 { close(inotify) } }

    /// Sleeps until one of `pending` may have changed, or `deadline` (monotonic seconds).
    func sleep(on pending: [FlowSnapshot], until deadline: Double?) {
        var remaining: Int32 = -1
        if let deadline { remaining = Int32(max(0, min(Double(Int32.max / 2), (deadline - monotonicNow()) * 1000))) }
        var watching = inotify >= 0
        if watching {
            let mask = UInt32(IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE | IN_DELETE_SELF)
            for snap in pending {
                let dir = spool.flowPath(snap.flow.flowId)
                if inotify_add_watch(inotify, dir.string, mask) < 0 { watching = false }
                _ = inotify_add_watch(inotify, dir.appending(Layout.tasks).string, mask)
            }
        }
        guard watching else {
            usleep(UInt32(remaining < 0 ? 100 : min(100, remaining)) * 1000)
            return
        }
        var fds = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0)]
        for snap in pending {
            for task in snap.tasks where task.isCommand && task.status.isActive {
                guard let pid = task.supervisorPid else { continue }
                let fd = clawflow_pidfd_open(Int32(pid))
                if fd >= 0 { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            }
        }
        defer { for p in fds.dropFirst() { close(p.fd) } }
        // A change between the caller's read and the watches would wake nothing: the flows
        // are read once more now that the watches are in place.
        if pending.contains(where: { p in
            guard let now = try? spool.flow(p.flow.flowId) else { return true }
            return now.flow != p.flow || now.tasks != p.tasks
        }) {
            return
        }
        _ = Glibc.poll(&fds, nfds_t(fds.count), remaining)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while read(inotify, &buffer, buffer.count) > 0 {}
    }
}

func monotonicNow() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
