import ArgumentParser
import ClawflowModel
import ClawflowSpool
import Glibc
import SystemPackage

/// `clawflow logs <task>`: a command task's output.
struct Logs: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print a command task's output (stdout and stderr); --follow until it ends, exiting 0 when it succeeded, else 1.",
        discussion: """
            With --json the output is one object: flowId, logPath, output (the log as UTF-8, \
            invalid bytes replaced), status and taskId. With --follow --json it is JSON Lines: \
            {"output": ...} for each piece of output as it arrives, then a last line with \
            flowId, logPath, status (the task's final one) and taskId.

            Examples:
              clawflow logs 0196f3a2-7c41-7d2e
              clawflow logs 0196f3a2-7c41-7d2e --follow
              clawflow logs 0196f3a2-7c41-7d2e --json | jq -r .output
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("A task id, unique prefix (8+ characters) or run id; or a flow (an owner key): its current command task.", valueName: "task"))
    var task: String

    @Flag(help: "Keep printing new output until the task ends.")
    var follow = false

    /// Runs `execute`. As for `events`: with --follow --json a failure after the first line is
    /// a line on stderr, so that stdout stays JSON Lines.
    func run() throws {
        let out = Output(json: global.json)
        do {
            // --follow exits with the task's outcome: 0 when it succeeded, else 1.
            if let ended = try show(out), ended != .succeeded { throw ExitCode(1) }
        } catch let error as SpoolError {
            if out.json, follow, out.hasEmitted { out.warn(sanitized(error.message)) } else { out.fail(error) }
            throw ExitCode(error.code == .usage ? 64 : 1)
        }
    }

    func execute(_ out: Output) throws(SpoolError) { _ = try show(out) }

    /// Prints the output; with --follow returns the task's final status.
    func show(_ out: Output) throws(SpoolError) -> TaskStatus? {
        guard let spool = try readSpool() else { throw SpoolError.taskNotFound(task) }
        let (flowId, taskId) = try spool.resolveTaskOrFlow(task)
        let record = try spool.task(flowId: flowId, taskId: taskId)
        guard record.isCommand, let logPath = record.logPath else {
            throw SpoolError(
                .notFound,
                "Task \(taskId) is a \(sanitized(record.runtime)) task reported by another program; only commands started with clawflow run have logs.")
        }
        let path = FilePath(logPath)
        /// The task's status as of now (a command whose supervisor is gone is recorded lost first).
        func settledStatus() throws(SpoolError) -> TaskStatus? {
            try spool.flow(flowId).tasks.first { $0.taskId == taskId }?.status
        }
        func summary(_ status: TaskStatus) -> [String: JSON] {
            ["flowId": .string(flowId), "taskId": .string(taskId), "status": .string(status.rawValue), "logPath": .string(logPath)]
        }

        if out.json, !follow {
            // The status first: a final status means the output read after it is complete.
            let status = try settledStatus() ?? record.status
            var bytes: [UInt8] = []
            var reader = LogReader(path: path)
            try reader.read { bytes.append(contentsOf: $0) }
            var document = summary(status)
            document["output"] = .string(String(decoding: bytes, as: UTF8.self))
            out.emit(.object(JSONObject(document)))
            return nil
        }

        // Text: the bytes as they are. JSON Lines: one {"output"} line per piece read; a UTF-8
        // sequence cut at the end of a piece waits for the rest.
        var pending: [UInt8] = []
        let sink: (UnsafeRawBufferPointer) -> Void = { chunk in
            guard out.json else {
                _ = write(1, chunk.baseAddress, chunk.count)
                return
            }
            pending.append(contentsOf: chunk)
            let complete = UTF8Text.completePrefix(pending)
            guard complete > 0 else { return }
            out.emitLine(.object(["output": .string(String(decoding: pending[..<complete], as: UTF8.self))]))
            pending.removeFirst(complete)
        }
        // A log cut at its limit meanwhile is followed into its new file (`LogReader`).
        var reader = LogReader(path: path)
        var status = record.status
        while true {
            try reader.read(sink)
            guard follow else { return nil }
            let now = try settledStatus()
            if let now { status = now }
            guard let now, now.isActive else {
                try reader.read(sink)
                if out.json {
                    if !pending.isEmpty { out.emitLine(.object(["output": .string(String(decoding: pending, as: UTF8.self))])) }
                    out.emitLine(.object(JSONObject(summary(status))))
                }
                return status
            }
            usleep(100_000)
        }
    }
}

/// UTF-8 cut into pieces.
enum UTF8Text {
    /// How many leading bytes of `bytes` end on a whole UTF-8 sequence: all of them, unless
    /// the last sequence started is cut short (then it is left for the next piece). Invalid
    /// bytes count as whole: decoding replaces them.
    static func completePrefix(_ bytes: [UInt8]) -> Int {
        var i = bytes.count - 1
        while i >= 0, i >= bytes.count - 4 {
            let byte = bytes[i]
            if byte & 0xC0 == 0x80 {
                i -= 1
                continue
            }
            let length = byte & 0xE0 == 0xC0 ? 2 : byte & 0xF0 == 0xE0 ? 3 : byte & 0xF8 == 0xF0 ? 4 : 1
            return bytes.count - i < length ? i : bytes.count
        }
        return bytes.count
    }
}
