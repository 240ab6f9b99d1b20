import ClawflowModel
import SystemPackage

/// fsck's part for queues (spool-layout.md, "Queues" and "Invariants and fsck", item 6):
/// every live flow with a `queue` has exactly one entry in it, `waiting/` or `running/`, and
/// every entry names a live flow of that queue.
extension Spool {
    /// Where each queue entry points, as listed without a lock: flow id to the entries that
    /// name it (queue, directory, entry name).
    struct QueueEntry {
        let queue: String
        let sub: String
        let name: String
        let flowId: String
    }

    /// Every entry of every queue, each queue's two directories listed under its lock (a
    /// hand-off moving an entry between them is not seen half done). Names that are no
    /// entry's (a writer's temporary file, something planted) are left out.
    func queueEntries() -> [QueueEntry] {
        var out: [QueueEntry] = []
        for queue in queueNames() {
            guard let lock = try? rootFD.openDirectoryAt(SpoolDirectory.queues.rawValue + "/" + queue) else { continue }
            defer { lock.closeQuietly() }
            _ = try? lock.lock(exclusive: true)
            for sub in [Layout.queueWaiting, Layout.queueRunning] {
                guard let dir = try? rootFD.openDirectoryAt(SpoolDirectory.queues.rawValue + "/" + queue + "/" + sub) else { continue }
                defer { dir.closeQuietly() }
                for entry in (try? dir.entries()) ?? [] where !entry.name.hasPrefix(".") {
                    let id = sub == Layout.queueWaiting ? Layout.waitingJob(fromEntry: entry.name)?.flowId : (Identifier.isValid(entry.name) ? entry.name : nil)
                    if let id { out.append(QueueEntry(queue: queue, sub: sub, name: entry.name, flowId: id)) }
                }
            }
        }
        return out
    }

    /// The queue invariant against `flows` (every readable flow) and `unreadable` (flows whose
    /// records could not be read: their entries are left alone). A live flow of a queue with
    /// no entry is a finding (`missing_queue_entry`: the job would never start); an entry of
    /// a flow that ended or does not exist is a note (`stale_queue_entry`: the hand-off that
    /// meets it removes it); two entries of one flow are a finding (`duplicate_queue_entry`).
    func checkQueues(_ flows: [FlowRecord], unreadable: Set<String>, into report: inout FsckReport) {
        let entries = queueEntries()
        var byFlow: [String: [QueueEntry]] = [:]
        for e in entries { byFlow[e.flowId, default: []].append(e) }
        let live = Dictionary(flows.filter { !$0.isTerminal && $0.queue != nil }.map { ($0.flowId, $0) }, uniquingKeysWith: { a, _ in a })
        for flow in live.values.sorted(by: { $0.flowId < $1.flowId }) {
            let mine = (byFlow[flow.flowId] ?? []).filter { $0.queue == flow.queue }
            let queuePath = SpoolDirectory.queues.path(in: root).appending(flow.queue ?? "")
            // Read before the entries were listed: a flow that has ended since lost its entry.
            if mine.isEmpty, (try? readManifest(flow.flowId))?.isTerminal != true {
                report.findings.append(
                    FsckFinding(
                        code: "missing_queue_entry", path: queuePath.string,
                        message:
                            "\(queuePath): flow \(flow.flowId) is \(flow.status.rawValue) in queue \(flow.queue ?? "") but has no entry there, so no hand-off would start it"
                    ))
            } else if mine.count > 1 {
                report.findings.append(
                    FsckFinding(
                        code: "duplicate_queue_entry", path: queuePath.string,
                        message:
                            "\(queuePath): flow \(flow.flowId) has \(mine.count) entries in queue \(flow.queue ?? ""): \(mine.map { $0.sub + "/" + $0.name }.joined(separator: ", "))"
                    ))
            }
        }
        for e in entries where !unreadable.contains(e.flowId) && live[e.flowId]?.queue != e.queue {
            let path = SpoolDirectory.queues.path(in: root).appending(e.queue).appending(e.sub).appending(e.name)
            report.notes.append(
                FsckFinding(
                    code: "stale_queue_entry", path: path.string,
                    message: "\(path): an entry of flow \(e.flowId), which has ended or is not in queue \(e.queue); the next hand-off of the queue removes it"))
        }
    }

    /// fsck --repair's part: under each queue's lock, the entries of flows that ended or do not
    /// exist are removed, and a live flow of a queue with no entry gets one — in `running/`
    /// when its job has started (a task with a `pid` or a live supervisor), else in `waiting/`,
    /// durably. Entries of unreadable flows are kept.
    func repairQueues(_ flows: [FlowRecord], tasks: [String: [TaskRecord]], unreadable: Set<String>) throws(SpoolError) -> [String] {
        var repairs: [String] = []
        let live = Dictionary(flows.filter { !$0.isTerminal && $0.queue != nil }.map { ($0.flowId, $0) }, uniquingKeysWith: { a, _ in a })
        let names = Set(queueNames()).union(live.values.compactMap(\.queue))
        for name in names.sorted() where QueueName.isValid(name) {
            let queue = try lockQueue(name)
            let listed = try queue.entries()
            var present = Set<String>()
            for id in listed.running {
                if live[id]?.queue == name || unreadable.contains(id) {
                    present.insert(id)
                    continue
                }
                try? queue.runningFD.removeAt(id)
                repairs.append("removed the entry of flow \(id) from queue \(name)'s running/ (the flow has ended or does not exist)")
            }
            for entry in listed.waiting {
                if (live[entry.flowId]?.queue == name || unreadable.contains(entry.flowId)) && !present.contains(entry.flowId) {
                    present.insert(entry.flowId)
                    continue
                }
                try? queue.waitingFD.removeAt(entry.name)
                repairs.append("removed the entry \(entry.name) from queue \(name)'s waiting/ (its flow has ended, does not exist, or has another entry)")
            }
            for flow in live.values where flow.queue == name && !present.contains(flow.flowId) {
                let started = (tasks[flow.flowId] ?? []).contains { $0.isCommand && ($0.pid != nil || $0.supervisor?.isAlive == true) }
                if started {
                    try queue.addRunning(flowId: flow.flowId)
                    repairs.append("gave flow \(flow.flowId), whose job has started, its entry in queue \(name)'s running/")
                } else {
                    try queue.addWaiting(for: flow)
                    repairs.append("put flow \(flow.flowId) back in queue \(name)'s waiting/, where it had no entry")
                }
            }
        }
        return repairs
    }
}

extension LockedQueue {
    /// Adds a `running/` entry for `flowId` (durable when this returns): fsck --repair's, for a
    /// started job that lost its entry.
    func addRunning(flowId: String) throws(SpoolError) {
        let tx = Transaction(nil)
        try tx.create([], as: flowId, in: runningFD, at: self.path.appending(Layout.queueRunning))
        try tx.end()
    }
}
