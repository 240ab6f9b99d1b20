import ClawflowModel
import ClawflowSpool
import Glibc
import Testing

@testable import ClawflowRunner

/// A wait status as the kernel reports it: an exit code, or a signal.
private func exited(_ code: Int32) -> Int32 { code << 8 }
private func killed(_ signal: Int32) -> Int32 { signal }

@Suite("How a command's end becomes a task status")
struct OutcomeTests {
    static let table: [(name: String, status: Int32, timedOut: Bool, cancelled: Bool, expected: TaskStatus, fields: [String: JSON])] = [
        ("exit 0", exited(0), false, false, .succeeded, ["exitCode": .int(0)]),
        ("exit 2", exited(2), false, false, .failed, ["exitCode": .int(2), "error": "exited with code 2"]),
        ("exit 255", exited(255), false, false, .failed, ["exitCode": .int(255), "error": "exited with code 255"]),
        ("killed by SIGKILL", killed(SIGKILL), false, false, .failed, ["signal": "SIGKILL", "error": "killed by SIGKILL"]),
        ("killed by an unnamed signal", killed(40), false, false, .failed, ["signal": "signal 40", "error": "killed by signal 40"]),
        (
            "timed out, ended by SIGTERM", killed(SIGTERM), true, false, .timedOut,
            ["signal": "SIGTERM", "error": "timed out after 5 s; its process group was ended"]
        ),
        ("timed out, exited on its own", exited(1), true, false, .timedOut, ["error": "timed out after 5 s; its process group was ended"]),
        ("cancelled, ended by SIGTERM", killed(SIGTERM), false, true, .cancelled, ["signal": "SIGTERM"]),
        ("cancelled, exited 0 on SIGTERM", exited(0), true, true, .cancelled, ["exitCode": .int(0)]),
    ]

    @Test("exit codes, signals, timeouts and cancels", arguments: table.map(\.name))
    func outcome(_ name: String) {
        let row = Self.table.first { $0.name == name }!
        let update = Supervisor.outcome(status: row.status, timedOut: row.timedOut, cancelled: row.cancelled, timeout: 5)
        #expect(update.status == row.expected)
        #expect(update.fields == row.fields)
    }
}

@Suite("A command line as the task's text")
struct ShellWordTests {
    @Test(
        "plain words stay as they are; anything else is single-quoted, quotes escaped",
        arguments: [
            ("make", "make"), ("-C", "-C"), ("a/b.c", "a/b.c"), ("k=v:1@2%3+4,5", "k=v:1@2%3+4,5"),
            ("", "''"), ("two words", "'two words'"), ("it's", "'it'\\''s'"), ("$HOME", "'$HOME'"), ("a;b", "'a;b'"), ("é", "'é'"),
        ])
    func word(_ word: String, _ shown: String) {
        #expect(CommandText.shellWord(word) == shown)
    }
}
