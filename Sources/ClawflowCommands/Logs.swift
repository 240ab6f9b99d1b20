import ArgumentParser
import ClawflowModel
import ClawflowRunner
import ClawflowSpool
import Glibc
import SystemPackage

/// `clawflow logs <task>`: a command task's output.
struct Logs: SpoolCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print a command task's output (stdout and stderr); --follow until it ends.",
        discussion: """
        Examples:
          clawflow logs 0196f3a2-7c41-7d2e
          clawflow logs 0196f3a2-7c41-7d2e --follow
        """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("A task id, unique prefix (8+ characters) or run id.", valueName: "task"))
    var task: String

    @Flag(help: "Keep printing new output until the task ends.")
    var follow = false

    func execute(_ out: Output) throws(SpoolError) {
        guard let spool = try readSpool() else { throw SpoolError.taskNotFound(task) }
        let (flowId, taskId) = try spool.resolveTask(task)
        let record = try spool.readTask(flowId: flowId, taskId: taskId)
        guard record.isCommand, let logPath = record.string("logPath") else {
            throw SpoolError(.notFound, "Task \(taskId) is a \(sanitized(record.runtime)) task reported by another program; only commands started with clawflow run have logs.")
        }
        let runner = Runner(spool: spool)
        var offset: Int64 = 0
        while true {
            offset = try copyNewOutput(FilePath(logPath), from: offset)
            guard follow else { return }
            let snap = runner.settle(try spool.readFlow(flowId))
            guard let now = snap.tasks.first(where: { $0.taskId == taskId }), now.status.isActive else {
                _ = try copyNewOutput(FilePath(logPath), from: offset)
                return
            }
            usleep(100_000)
        }
    }

    /// Copies the log from `offset` to stdout; returns the new offset. A log not there yet is empty.
    func copyNewOutput(_ path: FilePath, from offset: Int64) throws(SpoolError) -> Int64 {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, .readOnly, options: [.noFollow, .closeOnExec]) } catch {
            let e = error as? Errno ?? .ioError
            if e == .noSuchFileOrDirectory { return offset }
            throw SpoolError(.io, "Opening the log \(path): \(e)", path: path, errno: e)
        }
        defer { try? fd.close() }
        var position = offset
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n: Int
            do { n = try buffer.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: position, into: $0) } } catch {
                let e = error as? Errno ?? .ioError
                throw SpoolError(.io, "Reading the log \(path): \(e)", path: path, errno: e)
            }
            if n <= 0 { return position }
            _ = buffer.withUnsafeBytes { write(1, $0.baseAddress, n) }
            position += Int64(n)
        }
    }
}
