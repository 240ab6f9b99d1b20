import CSystemShims
import ClawflowModel
import ClawflowSpool
import Glibc
import SystemPackage

/// Delivers recorded notifications to their hooks (README.md, "Notification hooks";
/// spool-layout.md, "Notifications"): one deliverer per spool at a time (`Spool.lockDeliveries`),
/// taking only the deliveries whose file its own user wrote. Before a hook starts, the
/// delivery is marked `started` durably; after it, the hook is recorded as having taken it,
/// or the failure (events.jsonl) and the time of the next run. A deliverer that dies between
/// the two leaves `started`, and the next one runs that hook again, as a repeat.
public struct Deliverer: Sendable {
    /// The spool.
    public let spool: Spool
    /// Timeouts and retries.
    public let policy: DeliveryPolicy
    /// The `source` of the events it logs (`runner`, `watcher`, `cli`, `maintenance`).
    public let source: String

    /// A deliverer for `spool`, logging events as `source`.
    public init(spool: Spool, policy: DeliveryPolicy = Deliverer.environmentPolicy(), source: String) {
        self.spool = spool
        self.policy = policy
        self.source = source
    }

    /// The policy, with the defaults replaced by `CLAWFLOW_HOOK_TIMEOUT` (seconds),
    /// `CLAWFLOW_HOOK_ATTEMPTS` (runs in all) and `CLAWFLOW_HOOK_RETRY_DELAY` (seconds before
    /// the first retry) where those are set to numbers.
    public static func environmentPolicy() -> DeliveryPolicy {
        func number(_ name: String) -> Double? { getenv(name).flatMap { Double(String(cString: $0)) }.flatMap { $0 >= 0 ? $0 : nil } }
        let d = DeliveryPolicy()
        return DeliveryPolicy(
            timeoutSeconds: number("CLAWFLOW_HOOK_TIMEOUT") ?? d.timeoutSeconds, attempts: number("CLAWFLOW_HOOK_ATTEMPTS").map { Int($0) } ?? d.attempts,
            firstDelaySeconds: number("CLAWFLOW_HOOK_RETRY_DELAY") ?? d.firstDelaySeconds)
    }

    /// Seconds a timed-out hook's group gets between SIGTERM and SIGKILL.
    public static let timeoutGrace = 2.0
    /// How long a detached deliverer stays to make retries that are due soon.
    public static let retryHorizon = 900.0

    // MARK: - Who delivers

    /// The cheap check every writer makes after its write (README.md, "Notification hooks"):
    /// one getdents of `notify/`; when it holds a delivery of this user that is due and no
    /// deliverer is at work, forks a detached deliverer (`runDetached`). Call it where no
    /// other thread of this process is at work (a command's end, a supervisor).
    public static func kick(_ spool: Spool, source: String) {
        guard Deliverer(spool: spool, source: source).dueCount(spool.deliveryListing(), limit: 1) > 0 else { return }
        // A probe of the lock: held, a deliverer is at work and looks again once it lets go.
        guard let probe = spool.lockDeliveries() else { return }
        probe.closeQuietly()
        let pid = clawflow_fork_detached()
        if pid == 0 { runDetached(spoolRoot: spool.root, source: source) }
    }

    /// A detached deliverer's life: drains the deliveries that are due, stays for retries due
    /// within `retryHorizon`, and exits.
    static func runDetached(spoolRoot: FilePath, source: String) -> Never {
        FileDescriptor.flushHelpersAreShortLived()
        if let spool = try? Spool.openExisting(at: spoolRoot) {
            Deliverer(spool: spool, source: source).drainUntilIdle(horizon: retryHorizon)
        }
        _exit(0)
    }

    /// Delivers until nothing is due, waiting for retries due within `horizon` seconds; the
    /// first pass waits for the lock (a deliverer at work lets go soon), the later ones return
    /// when another deliverer holds it (it does the rest).
    public func drainUntilIdle(horizon: Double) {
        var wait = true
        while case .idle(let next) = drainOnce(waitForLock: wait), let seconds = next, seconds <= horizon {
            usleep(UInt32(min(max(seconds, 0.01), 60) * 1_000_000))
            wait = false
        }
    }

    /// What a pass found.
    public enum Pass: Sendable, Equatable {
        /// Another deliverer holds the lock: it delivers.
        case busy
        /// Everything due was delivered; the next retry of this user's deliveries is due in
        /// so many seconds (nil: none waits).
        case idle(nextRetry: Double?)
    }

    /// One pass under the deliverers' lock, then a look after releasing it (a writer that
    /// found the lock held counts on that look).
    public func drainOnce(waitForLock: Bool = false) -> Pass {
        var next: Double?
        var wait = waitForLock
        while true {
            guard let lock = spool.lockDeliveries(wait: wait) else { return .busy }
            wait = false
            next = deliverDue()
            lock.closeQuietly()
            if dueCount(spool.deliveryListing(), limit: 1) == 0 { break }
        }
        return .idle(nextRetry: next)
    }

    /// How many of a listing's deliveries (up to `limit`) are this user's and due now; its
    /// orphans, a crash's leftovers to adopt or remove, count as due.
    func dueCount(_ listing: (names: [String], orphans: [String]), limit: Int) -> Int {
        let now = Spool.now()
        var count = listing.orphans.count
        if count >= limit { return count }
        for name in listing.names {
            guard let (d, owner) = try? spool.readDelivery(name), owner == geteuid() else { continue }
            if let at = d.nextAttemptAt, at > now { continue }
            count += 1
            if count >= limit { break }
        }
        return count
    }

    /// Delivers every due delivery of this user, oldest first (call with the lock held).
    /// The seconds until the next retry, or nil when none waits.
    @discardableResult
    public func deliverDue() -> Double? {
        spool.adoptOrphans()
        var next: Double?
        var hooks: [SpoolHook]?
        for name in spool.deliveryNames() {
            guard let (d, owner) = try? spool.readDelivery(name), owner == geteuid() else { continue }
            let now = Spool.now()
            if let at = d.nextAttemptAt, at > now {
                let wait = Double(at.milliseconds - now.milliseconds) / 1000
                next = min(next ?? wait, wait)
                continue
            }
            guard let recordDirectories = spool.standingRecord(of: d) else {
                // The write that recorded it was undone by a crash: there is nothing to tell.
                try? spool.removeDelivery(d.deliveryId)
                continue
            }
            defer { for fd in recordDirectories { fd.closeQuietly() } }
            if hooks == nil { hooks = spool.spoolHooks().hooks }
            if let wait = deliver(d, hooks: hooks ?? [], flushingFirst: recordDirectories) { next = min(next ?? wait, wait) }
        }
        return next
    }

    /// A hook to run: `job` (the record's `notifyCommand`, through `sh -c`) or `hooks/<name>`.
    struct Target {
        var name: String
        var path: String
        var argv: [String]
        var cwd: String
        var environment: [String: String]?
    }

    /// Runs the hooks that have not yet taken `d`, each marked `started` durably first. The
    /// seconds until its retry, or nil when it is done (delivered, or failed for good).
    /// `flushingFirst` (the record's directories) are flushed with the first `started` mark,
    /// in one round: no hook is told of a change a power cut could still undo.
    func deliver(_ delivery: Delivery, hooks: [SpoolHook], flushingFirst: [FileDescriptor] = []) -> Double? {
        var d = delivery
        var flushing = flushingFirst
        let record = d.record
        var targets: [Target] = []
        let recordEnv = record["environment"]?.objectValue.map { o in
            Dictionary(uniqueKeysWithValues: o.keys.indices.compactMap { i in o.values[i].stringValue.map { (o.keys[i], $0) } })
        }
        if let command = d.command {
            var cwd = spool.root.string
            if let c = record["cwd"]?.stringValue, (try? FileDescriptor.currentDirectory.statusAt(c))?.kind == .directory { cwd = c }
            targets.append(Target(name: "job", path: "/bin/sh", argv: ["sh", "-c", command], cwd: cwd, environment: recordEnv))
        }
        for h in hooks {
            targets.append(Target(name: "hooks/" + h.name, path: h.path.string, argv: [h.path.string], cwd: spool.root.string, environment: nil))
        }
        let done = Set(d.delivered)
        var failures: [(Target, HookOutcome)] = []
        for target in targets where !done.contains(target.name) {
            var runs = d.fields["runs"]?.objectValue ?? JSONObject()
            let before = runs[target.name]?.intValue ?? 0
            runs[target.name] = .int(before + 1)
            d.fields["runs"] = .object(runs)
            d.status = .started
            d.startedHook = target.name
            d.attempts += 1
            do { try spool.saveDelivery(d, alsoFlushing: flushing) } catch {
                // Not marked: nothing may run. The next pass tries again.
                return 1
            }
            flushing = []
            let outcome = run(target, d, attempt: Int(before + 1), repeated: before > 0)
            d.startedHook = nil
            var event: [String: JSON] = [
                "deliveryId": .string(d.deliveryId), "hook": .string(target.name), "attempt": .int(before + 1), "to": .string(d.to),
            ]
            if let t = d.taskId { event["taskId"] = .string(t) }
            if before > 0 { event["repeat"] = .bool(true) }
            if outcome.succeeded {
                d.delivered.append(target.name)
                event["status"] = .string("delivered")
            } else {
                failures.append((target, outcome))
                event["status"] = .string(outcome.timedOut ? "timed_out" : "failed")
                for (k, v) in outcome.fields { event[k] = v }
            }
            spool.logDelivery(flowId: d.flowId, event, source: source)
        }
        if failures.isEmpty {
            try? spool.removeDelivery(d.deliveryId)
            return nil
        }
        let failed = Int(d.fields["failures"]?.intValue ?? 0) + 1
        d.fields["failures"] = .int(Int64(failed))
        var last = JSONObject()
        last["hook"] = .string(failures[0].0.name)
        last["at"] = .string(Spool.now().description)
        for (k, v) in failures[0].1.fields { last[k] = v }
        d.lastError = last
        if let delay = policy.delay(afterAttempt: failed) {
            d.status = .retrying
            d.nextAttemptAt = Timestamp(milliseconds: Spool.now().milliseconds + Int64(delay * 1000))
            try? spool.saveDelivery(d)
            return delay
        }
        d.status = .failed
        d.nextAttemptAt = nil
        try? spool.failDelivery(d)
        return nil
    }

    // MARK: - Running one hook

    /// How a hook run ended.
    struct HookOutcome {
        var status: Int32?
        var timedOut = false
        var spawnError: Errno?
        var statusLost = false
        var stderrLine = ""

        var succeeded: Bool { !timedOut && spawnError == nil && !statusLost && status.map { $0 & 0x7F == 0 && ($0 >> 8) & 0xFF == 0 } == true }

        /// The event fields of a failure: `exitCode` or `signal`, `timedOut`, `stderr`.
        var fields: [String: JSON] {
            var f: [String: JSON] = [:]
            if let e = spawnError { f["error"] = .string("could not start the hook: \(e)") }
            if let s = status {
                if s & 0x7F == 0 { f["exitCode"] = .int(Int64((s >> 8) & 0xFF)) } else if s & 0x7F != 0x7F { f["signal"] = .string(SignalName.of(s & 0x7F)) }
            }
            if timedOut { f["timedOut"] = .bool(true) }
            if statusLost { f["error"] = .string("its exit status was taken by another process") }
            if !stderrLine.isEmpty { f["stderr"] = .string(stderrLine) }
            return f
        }
    }

    /// Runs one hook with the record on stdin and the `CLAWFLOW_*` variables, in a process
    /// group of its own that is ended at the timeout; keeps the first line of its stderr.
    func run(_ target: Target, _ d: Delivery, attempt: Int, repeated: Bool) -> HookOutcome {
        var outcome = HookOutcome()
        // stdin: the record, from an anonymous file (a hook that does not read it never blocks us).
        let input = clawflow_memfd("clawflow-record")
        if input >= 0 {
            var bytes: [UInt8] = []
            JSON.object(d.record).write(into: &bytes, indent: 0, pretty: true)
            bytes.append(0x0A)
            _ = try? FileDescriptor(rawValue: input).writeFully(bytes)
            _ = lseek(input, 0, SEEK_SET)
        }
        defer { if input >= 0 { close(input) } }
        var ends: [Int32] = [-1, -1]
        if pipe(&ends) == 0 {
            _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
            _ = fcntl(ends[0], F_SETFL, fcntl(ends[0], F_GETFL) | O_NONBLOCK)
        }
        defer { if ends[0] >= 0 { close(ends[0]) } }
        var set: [String: String] = [
            "CLAWFLOW_SPOOL": spool.root.string, "CLAWFLOW_FLOW_ID": d.flowId, "CLAWFLOW_STATUS": d.to, "CLAWFLOW_EVENT": d.event.rawValue,
            "CLAWFLOW_EXIT_CODE": d.record["exitCode"]?.intValue.map { String($0) } ?? "", "CLAWFLOW_PREVIOUS_STATUS": d.from ?? "",
            "CLAWFLOW_DELIVERY_ID": d.deliveryId, "CLAWFLOW_DELIVERY_ATTEMPT": String(attempt), "CLAWFLOW_DELIVERY_REPEAT": repeated ? "1" : "0",
            "CLAWFLOW_HOOK": target.name, "CLAWFLOW_OWNER_KEY": d.record["ownerKey"]?.stringValue ?? "",
        ]
        set["CLAWFLOW_TASK_ID"] = d.taskId ?? ""
        let base = target.environment ?? Deliverer.currentEnvironment()
        let entries = base.filter { !$0.key.hasPrefix("CLAWFLOW_") || $0.key == "CLAWFLOW_HOOK_TIMEOUT" }.merging(set) { _, new in new }
            .sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let cArgs = target.argv.map { strdup($0) } + [nil]
        let cEnv = entries.map { strdup($0) } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        var pid: pid_t = 0
        let rc: Int32 = cArgs.withUnsafeBufferPointer { args in
            cEnv.withUnsafeBufferPointer { env in
                clawflow_spawn_hook(target.path, args.baseAddress, UnsafeMutablePointer(mutating: env.baseAddress), target.cwd, input, ends[1], &pid)
            }
        }
        if ends[1] >= 0 { close(ends[1]) }
        guard rc == 0 else {
            outcome.spawnError = Errno(rawValue: rc)
            return outcome
        }
        let pidfd = clawflow_pidfd_open(pid)
        defer { if pidfd >= 0 { close(pidfd) } }
        var stderrBytes: [UInt8] = []
        func drain() {
            guard ends[0] >= 0 else { return }
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(ends[0], $0.baseAddress, $0.count) }
                if n > 0 {
                    if stderrBytes.count < 4096 { stderrBytes += buffer[0..<min(n, 4096 - stderrBytes.count)] }
                    continue
                }
                if n < 0, errno == EINTR { continue }
                if n == 0 {
                    close(ends[0])
                    ends[0] = -1
                }
                return
            }
        }
        let deadline = monotonicSeconds() + policy.timeoutSeconds
        var status: Int32?
        while status == nil {
            let left = deadline - monotonicSeconds()
            if left <= 0 {
                outcome.timedOut = true
                ProcessGroup.end(
                    pid, grace: Deliverer.timeoutGrace,
                    reap: {
                        var s: Int32 = 0
                        if status == nil, waitpid(pid, &s, WNOHANG) == pid { status = s }
                    })
                if status == nil {
                    var s: Int32 = 0
                    if waitpid(pid, &s, 0) == pid { status = s }
                }
                break
            }
            var fds = [pollfd(fd: ends[0], events: Int16(POLLIN), revents: 0), pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
            let wait = Int32(min(left, 1) * 1000)
            _ = poll(&fds, 2, pidfd >= 0 ? max(wait, 1) : min(max(wait, 1), 20))
            drain()
            var s: Int32 = 0
            let r = waitpid(pid, &s, WNOHANG)
            if r == pid {
                status = s
            } else if r < 0, errno == ECHILD {
                outcome.statusLost = true  // reaped by someone else: how it ended is unknown
                break
            }
        }
        drain()
        outcome.status = status
        let text = String(decoding: stderrBytes, as: UTF8.self)
        outcome.stderrLine = String(text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: true).first ?? "").prefix(500).description
        return outcome
    }

    /// This process's environment.
    static func currentEnvironment() -> [String: String] { Runner.currentEnvironment() }
}
