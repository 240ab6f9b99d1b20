import ArgumentParser
import ClawflowSpool

/// The `clawflow` command: a ledger of background work kept as a spool on the filesystem.
///
/// Synchronous on purpose: an asynchronous root starts Swift's concurrency thread pool and
/// parses on one of its threads, which costs every invocation about 1.6 ms (measured with a
/// one-command ArgumentParser program: 8.4 ms against 6.8 ms). `watch`, the one command that
/// needs the pool, starts it itself (`Watch.run`).
public struct Clawflow: ParsableCommand {
    /// The command tree.
    public static let configuration = CommandConfiguration(
        commandName: "clawflow",
        abstract: "Keep a ledger of background work (tasks grouped into flows) as a spool on the filesystem.",
        discussion: """
            A flow groups the task runs of one job and keeps one owner key. Every flow is a \
            directory under <spool>/flows with a manifest.json and one file per task, so the \
            spool can be read with ls, cat and jq.

            Examples:
              clawflow tasks add --owner session-1 --runtime cron --label nightly
              clawflow flows list
              clawflow flows show session-1
              clawflow flows cancel session-1

            Exit codes: 0 success, 1 the operation failed or was refused, 64 usage error.
            """,
        version: "0.1.0",
        subcommands: [
            Flows.self, Tasks.self, Run.self, Wait.self, Retry.self, QueueCommand.self, Logs.self, Audit.self, MaintenanceCommand.self, Events.self,
            IngestCommand.self, Watch.self, Top.self, Init.self, Fsck.self,
        ]
    )

    /// Options accepted before the command name too.
    @OptionGroup public var global: GlobalOptions

    /// Creates the command.
    public init() {}

    /// Parses the command line and runs the command. A usage error found while parsing
    /// (unknown option, missing or bad value, a failed `validate()`) exits 64 as
    /// argument-parser reports it, text and usage on stderr; when `--json` is on the command
    /// line (before a `--`) it is the `{"ok": false, "error": {"code": "usage", ...}}` object
    /// on stdout instead. Help and `--version` are argument-parser's, unchanged.
    public static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        var command: any ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            let code = exitCode(for: error)
            if code != .success, asksForJSON(arguments) {
                Output(json: true).fail(SpoolError(.usage, message(for: error)))
                exit(withError: code)
            }
            exit(withError: error)
        }
        do { try command.run() } catch { exit(withError: error) }
    }

    /// Whether `--json` is among `arguments` before a `--` (after it, words belong to a command).
    static func asksForJSON(_ arguments: [String]) -> Bool {
        for word in arguments {
            if word == "--" { return false }
            if word == "--json" { return true }
        }
        return false
    }
}

extension Clawflow {
    /// `clawflow flows ...`: whole jobs.
    struct Flows: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "flows",
            abstract: "List, show, cancel and create flows (whole jobs).",
            discussion: """
                A lookup token is a flow id, an owner key (its newest live flow, else its newest), \
                or a unique flow-id prefix of at least 8 characters.

                Example:
                  clawflow flows show session-1
                """,
            subcommands: [
                FlowsList.self, FlowsShow.self, FlowsCancel.self, FlowsCreate.self, FlowsSetWaiting.self, FlowsResume.self, FlowsFinish.self, FlowsFail.self,
                FlowsRequestCancel.self,
            ]
        )
    }

    /// `clawflow tasks ...`: the task ledger.
    struct Tasks: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tasks",
            abstract: "Add, update, list, show and cancel tasks (single runs).",
            discussion: """
                A task lookup is a task id, a unique prefix of at least 8 characters, or a run id.

                Example:
                  clawflow tasks add --owner session-1 --runtime cron --label nightly
                """,
            subcommands: [TasksAdd.self, TasksSet.self, TasksList.self, TasksShow.self, TasksCancel.self, TasksNotify.self]
        )
    }
}
