import ArgumentParser
import ClawflowModel
import ClawflowRunner
import ClawflowSpool

/// `clawflow queue ...`: the queues jobs wait in for a slot.
struct QueueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue",
        abstract: "Set, list and show the queues jobs wait in for a slot.",
        discussion: """
            Every job `clawflow run` starts waits in a queue (--queue; without it, the one named default) until one \
            of the queue's slots is free; jobs start by priority (higher first), then in order of \
            arrival. A queue never set has no slot limit. A finishing job, a cancel or any later \
            clawflow command hands a freed slot on; no watcher is needed.

            Examples:
              clawflow queue set default --slots 1      # one job at a time, as nq
              clawflow queue set gpu --slots 2
              clawflow queue show gpu
            """,
        subcommands: [QueueSet.self, QueueList.self, QueueShow.self]
    )
}

/// `clawflow queue set NAME --slots N`.
struct QueueSet: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Set how many of a queue's jobs run at once (changeable while they run).",
        discussion: """
            More slots start waiting jobs at once; fewer let running jobs finish and start no \
            new one until the queue is below its slots. --slots 0 removes the limit.

            Example:
              clawflow queue set default --slots 4
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The queue's name ([a-z0-9_-]{1,32}).", valueName: "name"))
    var name: String

    @Option(help: ArgumentHelp("Jobs that may run at once; 0 for no limit.", valueName: "n"))
    var slots: Int64

    func execute(_ out: Output) throws(SpoolError) {
        _ = try Parse.queueName(name)
        guard slots >= 0 else { throw Parse.usage("--slots must be 0 (no limit) or more.") }
        let spool = try writeSpool()
        let settings = QueueSettings(name: name, slots: slots == 0 ? nil : slots)
        do {
            let queue = try spool.lockQueue(name)
            try queue.setSettings(settings)
        }
        let jobs = try Runner(spool: spool).handOff(queue: name)
        if out.json {
            out.emit(QueueView.json(settings, jobs: jobs, details: nil))
        } else {
            out.print("Queue \(name): \(QueueView.slotsText(settings.slots)), \(jobs.running.count) running, \(jobs.waiting.count) queued.")
        }
    }
}

/// `clawflow queue list`.
struct QueueList: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the queues: slots, running and queued jobs.",
        discussion: """
            Example:
              clawflow queue list --json | jq '.queues[] | select(.queued > 0)'
            """
    )

    @OptionGroup var global: GlobalOptions

    func execute(_ out: Output) throws(SpoolError) {
        var rows: [(QueueSettings, QueueJobs)] = []
        if let spool = try readSpool() {
            var names = spool.queueNames()
            if !names.contains(Layout.defaultQueue) { names.insert(Layout.defaultQueue, at: 0) }
            for name in names {
                rows.append((try spool.queueSettings(name), try QueueView.jobs(spool, name)))
            }
        } else {
            rows.append((QueueSettings(name: Layout.defaultQueue, slots: nil), QueueJobs(running: [], waiting: [])))
        }
        if out.json {
            out.emit(.object(JSONObject(["count": .int(Int64(rows.count)), "queues": .array(rows.map { QueueView.json($0.0, jobs: $0.1, details: nil) })])))
            return
        }
        out.table(
            ["QUEUE", "SLOTS", "RUNNING", "QUEUED"],
            rows.map { settings, jobs in
                [settings.name, settings.slots.map(String.init) ?? "unlimited", String(jobs.running.count), String(jobs.waiting.count)]
            })
    }
}

/// `clawflow queue show NAME`.
struct QueueShow: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a queue: its running jobs, then its queued jobs in the order they will start.",
        discussion: """
            Example:
              clawflow queue show default
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The queue's name; without it, the default queue.", valueName: "name"))
    var queueName: String?

    func execute(_ out: Output) throws(SpoolError) {
        let name = queueName ?? Layout.defaultQueue
        _ = try Parse.queueName(name)
        var settings = QueueSettings(name: name, slots: nil)
        var jobs = QueueJobs(running: [], waiting: [])
        var details: [String: FlowSnapshot] = [:]
        if let spool = try readSpool() {
            settings = try spool.queueSettings(name)
            jobs = try QueueView.jobs(spool, name)
            for id in jobs.running + jobs.waiting { details[id] = try? spool.flow(id) }
            // Settling may have ended some: show only the live ones.
            jobs.running = jobs.running.filter { details[$0].map { !$0.flow.isTerminal } ?? false }
            jobs.waiting = jobs.waiting.filter { details[$0].map { !$0.flow.isTerminal } ?? false }
        }
        if out.json {
            out.emit(QueueView.json(settings, jobs: jobs, details: details))
            return
        }
        out.print(out.bold("Queue \(name)") + "  \(QueueView.slotsText(settings.slots)), \(jobs.running.count) running, \(jobs.waiting.count) queued")
        let rows = (jobs.running + jobs.waiting).compactMap { id -> [String]? in
            guard let snap = details[id] else { return nil }
            let task = snap.tasks.last { $0.isCommand }
            return [id, snap.flow.status.rawValue, String(snap.flow.priority), snap.flow.ownerKey, sanitized(task?.task ?? snap.flow.goal ?? "")]
        }
        if !rows.isEmpty { out.table(["FLOW", "STATUS", "PRIO", "OWNER", "COMMAND"], rows) }
    }
}

/// Shared rendering of queues.
enum QueueView {
    /// A queue's entries (none when it has no directory yet), without taking its lock.
    static func jobs(_ spool: Spool, _ name: String) throws(SpoolError) -> QueueJobs {
        guard spool.queueNames().contains(name) else { return QueueJobs(running: [], waiting: []) }
        return try spool.lockQueue(name).jobs()
    }

    static func slotsText(_ slots: Int64?) -> String {
        guard let slots else { return "no slot limit" }
        return slots == 1 ? "1 slot" : "\(slots) slots"
    }

    static func json(_ settings: QueueSettings, jobs: QueueJobs, details: [String: FlowSnapshot]?) -> JSON {
        var object: [String: JSON] = [
            "name": .string(settings.name), "slots": settings.slots.map(JSON.int) ?? .null,
            "running": .int(Int64(jobs.running.count)), "queued": .int(Int64(jobs.waiting.count)),
        ]
        if let details {
            func job(_ id: String) -> JSON {
                guard let snap = details[id] else { return .object(JSONObject(["flowId": .string(id)])) }
                var o = snap.flow.fields
                o["tasks"] = .array(snap.tasks.map { .object($0.fields) })
                return .object(o)
            }
            object["runningJobs"] = .array(jobs.running.map(job))
            object["queuedJobs"] = .array(jobs.waiting.map(job))
        }
        return .object(JSONObject(object))
    }
}
