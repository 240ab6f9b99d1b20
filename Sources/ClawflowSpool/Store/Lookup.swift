import ClawflowModel
import SystemPackage

extension Spool {
    /// Resolves a flow lookup token (spool-layout.md, "Lookup"): an exact flow id, else an
    /// owner key (its link), else a unique flow-id prefix of at least 8 characters.
    public func resolveFlow(_ rawToken: String) throws(SpoolError) -> String {
        let token = rawToken.trimmingWhitespace()
        if token.isEmpty { throw notFound(token) }
        if Identifier.isValid(token), flowExists(token) { return token }
        if let id = flowId(forOwner: token) { return id }  // an existing flow, or nil
        if token.utf8.count >= 8, Identifier.isPrefixCandidate(token) {
            let matches = try flowIds().filter { $0.hasPrefix(token) }
            if matches.count == 1 { return matches[0] }
            if matches.count > 1 { throw ambiguous(token, matches, kind: "flow") }
        }
        throw notFound(token)
    }

    /// Resolves a task lookup token: an exact task id, else a unique prefix of at least 8
    /// characters, else a run id (the newest active task with it, else the newest).
    /// Returns the flow id and the task id.
    public func resolveTask(_ rawToken: String) throws(SpoolError) -> (flowId: String, taskId: String) {
        let token = rawToken.trimmingWhitespace()
        guard !token.isEmpty else { throw taskNotFound(token) }
        if Identifier.isValid(token), let flowId = taskIndexTarget(token), taskFileExists(flowId: flowId, taskId: token) {
            return (flowId, token)
        }
        if token.utf8.count >= 8, Identifier.isPrefixCandidate(token) {
            let ids = try allTaskIds().filter { $0.hasPrefix(token) }.sorted()
            let live = ids.compactMap { id in taskIndexTarget(id).flatMap { taskFileExists(flowId: $0, taskId: id) ? ($0, id) : nil } }
            if live.count == 1 { return live[0] }
            if live.count > 1 { throw ambiguous(token, live.map(\.1), kind: "task") }
        }
        let withRunId = try tasks(withRunId: token)
        if let pick = Rules.runIdPick(withRunId) { return (pick.parentFlowId, pick.taskId) }
        throw taskNotFound(token)
    }

    /// `resolveTask`, and when nothing matches, a flow lookup (an owner key above all): that
    /// flow's running command task, else its newest command task, else its newest task.
    public func resolveTaskOrFlow(_ rawToken: String) throws(SpoolError) -> (flowId: String, taskId: String) {
        do { return try resolveTask(rawToken) } catch  where error.code == .notFound {
            guard let flowId = try? resolveFlow(rawToken), let snap = try? readFlow(flowId) else { throw error }
            let commands = snap.tasks.filter(\.isCommand)
            guard let pick = commands.last(where: { $0.status.isActive }) ?? commands.last ?? snap.tasks.last else { throw error }
            return (flowId, pick.taskId)
        }
    }

    /// Every readable task in the spool, as stored (a full scan).
    func allTasks() throws(SpoolError) -> [TaskRecord] {
        var out: [TaskRecord] = []
        for result in try readAllFlows() {
            if case .success(let snap) = result { out.append(contentsOf: snap.tasks) }
        }
        return out
    }

    /// Reads one task by ids, as stored (`task(flowId:taskId:)` records `lost` first).
    func readTask(flowId: String, taskId: String) throws(SpoolError) -> TaskRecord {
        try task(taskId, in: readFlow(flowId))
    }

    func taskNotFound(_ token: String) -> SpoolError { SpoolError.taskNotFound(token) }

    func ambiguous(_ token: String, _ candidates: [String], kind: String) -> SpoolError {
        let shown = candidates.prefix(10).joined(separator: ", ")
        let more = candidates.count > 10 ? " and \(candidates.count - 10) more" : ""
        return SpoolError(.ambiguous, "The \(kind) id prefix \(sanitized(token)) matches \(candidates.count) \(kind)s: \(shown)\(more). Give more characters.")
    }
}
