import ClawflowTestSupport
import Foundation
import Testing

/// Every command path, for --help and parse errors.
let allCommands: [[String]] = [
    [], ["flows"], ["tasks"], ["init"], ["fsck"],
    ["flows", "list"], ["flows", "show"], ["flows", "cancel"], ["flows", "create"],
    ["tasks", "add"], ["tasks", "set"], ["tasks", "list"], ["tasks", "show"], ["tasks", "cancel"],
]

@Suite("usage errors exit 64")
struct UsageErrorTests {
    /// Usage errors found by clawflow's own validation: a line on stderr, exit 64, and a JSON
    /// error object with code usage under --json. Each case starts from a spool holding one
    /// flow of owner "alice" with one task whose run id is "R".
    static let validationCases: [(name: String, arguments: [String], stderr: String)] = [
        ("unknown flow status", ["flows", "list", "--status", "done"], "Unknown flow status \"done\""),
        ("unknown task status in tasks list", ["tasks", "list", "--status", "done"], "Unknown task status \"done\""),
        ("unknown task status in tasks set", ["tasks", "set", "R", "--status", "finished"], "Unknown task status \"finished\""),
        ("unknown task status in tasks add", ["tasks", "add", "--owner", "b", "--runtime", "cron", "--status", "RUNNING"], "Unknown task status \"RUNNING\""),
        ("bad JSON", ["flows", "create", "--owner", "b", "--goal", "g", "--controller", "c", "--state-json", "{\"a\":}"], "--state-json is not valid JSON"),
        (
            "JSON nested past what a record holds",
            [
                "flows", "create", "--owner", "b", "--goal", "g", "--controller", "c", "--state-json",
                String(repeating: "[", count: 512) + "1" + String(repeating: "]", count: 512),
            ], "--state-json nests values deeper than a record can hold"
        ),
        ("blank owner key", ["flows", "create", "--owner", "   ", "--goal", "g", "--controller", "c"], "Invalid owner key: owner key is empty."),
        ("blank owner key in tasks add", ["tasks", "add", "--owner", "   ", "--runtime", "cron"], "Invalid owner key: owner key is empty."),
        ("owner key with a control character", ["tasks", "add", "--owner", "a\u{1}b", "--runtime", "cron"], "owner key contains a NUL or control character"),
        ("owner key with an escape", ["flows", "list", "--owner", "a\u{1B}[31m"], "owner key contains a NUL or control character"),
        ("owner key over 1024 bytes", ["tasks", "add", "--owner", String(repeating: "k", count: 1025), "--runtime", "cron"], "owner key is 1025 bytes"),
        ("bad --grace", ["flows", "cancel", "alice", "--grace", "soon"], "Invalid duration \"soon\" for --grace"),
        ("invalid --task-id", ["tasks", "add", "--owner", "b", "--runtime", "cron", "--task-id", "01234567-89AB-4DEF-8123-456789ABCDEF"], "Invalid task id"),
        ("runtime cli reserved", ["tasks", "add", "--owner", "b", "--runtime", "cli"], "The runtime cli is reserved"),
        ("runtime not matching the pattern", ["tasks", "add", "--owner", "b", "--runtime", "Cron Job"], "Invalid runtime \"Cron Job\""),
        ("unknown outcome", ["tasks", "set", "R", "--status", "succeeded", "--outcome", "partial"], "Unknown outcome \"partial\""),
        ("no flow and no owner", ["tasks", "add", "--runtime", "cron"], "Give a flow to link the task to, or --owner"),
    ]

    @Test(
        "clawflow's own validation: exit 64, one diagnostic line on stderr, nothing on stdout, nothing written",
        arguments: validationCases.map(\.name))
    func validation(name: String) {
        let c = Self.validationCases.first { $0.name == name }!
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", ["--run-id", "R"])
        let before = spool.flowDirectories()
        let eventsBefore = spool.events(t.flow).count
        let r = spool.run(c.arguments)
        #expect(r.status == 64)
        #expect(r.stdout == "")
        #expect(r.stderr.hasPrefix("clawflow: "))
        #expect(r.stderr.contains(c.stderr), "\(r.stderr)")
        #expect(lines(r.stderr).count == 1)
        #expect(!hasControlCharacters(r.stderr))
        #expect(spool.flowDirectories() == before)
        #expect(spool.events(t.flow).count == eventsBefore)
    }

    @Test(
        "clawflow's own validation under --json: {\"ok\": false, \"error\": {\"code\": \"usage\", ...}} on stdout",
        arguments: validationCases.map(\.name))
    func validationJSON(name: String) {
        let c = Self.validationCases.first { $0.name == name }!
        let spool = TemporarySpool()
        spool.addTask(owner: "alice", ["--run-id", "R"])
        let r = spool.run(c.arguments + ["--json"])
        #expect(r.status == 64)
        #expect(r.stderr == "")
        #expect(topLevelKeys(r.stdout) == ["error", "ok"])
        let doc = jsonObject(r.stdout)
        #expect(doc?["ok"] as? Bool == false)
        #expect(errorField(doc, "code") == "usage")
        #expect(errorField(doc, "message")?.contains(c.stderr) == true)
    }

    @Test(
        "argument-parser errors (unknown option, missing value, unknown subcommand) exit 64 with usage text on stderr",
        arguments: [
            ["flows", "list", "--bogus"], ["flows", "show"], ["flows", "cancel", "x", "--grace"],
            ["flows", "create", "--owner", "a", "--goal", "g"], ["tasks", "add", "--owner", "a"],
            ["tasks", "set", "x"], ["tasks", "list", "--verbose"], ["tasks", "frobnicate"],
            ["flows", "show", "a", "b"], ["init", "--force"], ["fsck", "--fix"], ["bogus"],
        ])
    func parseErrors(arguments: [String]) {
        let spool = TemporarySpool()
        let r = spool.run(arguments)
        #expect(r.status == 64)
        #expect(r.stdout == "")
        #expect(r.stderr.contains("Error:"))
        #expect(r.stderr.contains("Usage:") || r.stderr.contains("See 'clawflow"))
        #expect(!spool.exists)
    }
}

@Suite("argument-parser's usage errors under --json")
struct ParseErrorJSONTests {
    /// Errors argument-parser finds: the arguments (without --json) and the start of its message.
    static let cases: [(name: String, arguments: [String], message: String)] = [
        ("unknown option", ["flows", "list", "--bogus"], "Unknown option '--bogus'"),
        ("missing value", ["flows", "cancel", "x", "--grace"], "Missing value for '--grace <duration>'"),
        ("bad value", ["flows", "set-waiting", "x", "--expect-revision", "abc"], "The value 'abc' is invalid for '--expect-revision <n>'"),
        ("failed validate", ["watch", "--log-level", "loud"], "Unknown --log-level \"loud\""),
        ("missing option", ["tasks", "add", "--owner", "a"], "Missing expected argument '--runtime <name>'"),
        ("unknown subcommand", ["tasks", "frobnicate"], "Unexpected argument 'frobnicate'"),
    ]

    @Test(
        "with --json anywhere before --: the usage error object on stdout, nothing on stderr, exit 64",
        arguments: cases.map(\.name))
    func json(name: String) {
        let c = Self.cases.first { $0.name == name }!
        let spool = TemporarySpool()
        for arguments in [c.arguments + ["--json"], ["--json"] + c.arguments, Array(c.arguments.prefix(1)) + ["--json"] + c.arguments.dropFirst()] {
            let r = spool.run(arguments)
            #expect(r.status == 64, "\(arguments)")
            #expect(r.stderr == "", "\(arguments)")
            #expect(topLevelKeys(r.stdout) == ["error", "ok"], "\(arguments): \(r.stdout)")
            #expect(keysSortedEverywhere(r.stdout))
            let doc = jsonObject(r.stdout)
            #expect(doc?["ok"] as? Bool == false)
            #expect(keys(doc?["error"] as? [String: Any]) == ["code", "message"])
            #expect(errorField(doc, "code") == "usage")
            #expect(errorField(doc, "message")?.hasPrefix(c.message) == true, "\(arguments): \(r.stdout)")
        }
        #expect(!spool.exists)
    }

    @Test(
        "without --json: argument-parser's own text on stderr (Error: and the usage), nothing on stdout, exit 64",
        arguments: cases.map(\.name))
    func text(name: String) {
        let c = Self.cases.first { $0.name == name }!
        let spool = TemporarySpool()
        let r = spool.run(c.arguments)
        #expect(r.status == 64)
        #expect(r.stdout == "")
        #expect(r.stderr.hasPrefix("Error: " + c.message), "\(r.stderr)")
        #expect(r.stderr.contains("Usage:") || r.stderr.contains("See 'clawflow"))
        #expect(!spool.exists)
    }

    @Test("a --json after -- belongs to the command run: the usage error stays text")
    func afterTerminator() {
        let spool = TemporarySpool()
        let r = spool.run(["run", "--owner", "a", "--bogus", "--", "echo", "--json"])
        #expect(r.status == 64)
        #expect(r.stdout == "")
        #expect(r.stderr.hasPrefix("Error: Unknown option '--bogus'"))
    }

    @Test(
        "help and --version print as before, with or without --json", arguments: [["--help"], ["--version"], ["flows", "list", "--help"], ["help", "tasks"]])
    func cleanExits(arguments: [String]) {
        let plain = Clawflow.run(arguments)
        let json = Clawflow.run(arguments + ["--json"])
        #expect(plain.status == 0 && json.status == 0)
        #expect(plain.stderr == "" && json.stderr == "")
        #expect(!plain.stdout.isEmpty && json.stdout == plain.stdout)
    }
}

@Suite("duration options")
struct DurationOptionTests {
    /// Every duration option, with a negative value. Each case starts from a spool holding one
    /// flow of owner "alice" with one task whose run id is "R".
    static let negative: [(option: String, arguments: [String])] = [
        ("--timeout", ["run", "--owner", "a", "--timeout", "-5", "--", "true"]),
        ("--grace", ["flows", "cancel", "alice", "--grace", "-5"]),
        ("--grace", ["tasks", "cancel", "R", "--grace", "-5"]),
        ("--grace", ["tasks", "cancel", "nobody", "--grace", "-5"]),
        ("--stale-running", ["audit", "--stale-running", "-5"]),
        ("--stale-waiting", ["audit", "--stale-waiting", "-5"]),
        ("--stale-blocked", ["audit", "--stale-blocked", "-5"]),
        ("--cancel-stuck", ["audit", "--cancel-stuck", "-5"]),
        ("--stale-queued", ["audit", "--stale-queued", "-5"]),
        ("--task-stale-running", ["maintenance", "--task-stale-running", "-5"]),
        ("--lost-after", ["maintenance", "--lost-after", "-5"]),
        ("--retention", ["maintenance", "--retention", "-5"]),
        ("--temp-age", ["maintenance", "--temp-age", "-5"]),
        ("--rejected-age", ["maintenance", "--rejected-age", "-5"]),
        ("--poll", ["watch", "--poll", "-5"]),
        ("--maintenance-interval", ["watch", "--maintenance-interval", "-5"]),
    ]

    @Test(
        "a negative duration is refused as negative (exit 64), not as a missing value",
        arguments: negative.map { $0.arguments.joined(separator: " ") })
    func negativeValue(command: String) {
        let c = Self.negative.first { $0.arguments.joined(separator: " ") == command }!
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "running", ["--run-id", "R"])
        let before = spool.text("flows/\(t.flow)/manifest.json")
        let r = spool.run(c.arguments)
        #expect(r.status == 64)
        #expect(r.stdout == "")
        #expect(r.stderr.contains("Invalid duration \"-5\" for \(c.option): it is negative"), "\(r.stderr)")
        #expect(!r.stderr.contains("Missing value"))
        #expect(spool.text("flows/\(t.flow)/manifest.json") == before)
        let json = spool.run(c.arguments.prefix(1) + ["--json"] + c.arguments.dropFirst())
        #expect(json.status == 64)
        #expect(errorField(jsonObject(json.stdout), "code") == "usage")
        #expect(errorField(jsonObject(json.stdout), "message")?.contains("it is negative") == true, "\(json.stdout)")
    }

    @Test("watch --poll takes a duration (5, 2s, 1m) from 1 s to 1d and names that range when refused")
    func poll() {
        let spool = TemporarySpool()
        for value in ["5", "2s", "1m", "1d"] {
            let r = spool.run(["watch", "--once", "--poll", value])
            #expect(r.status == 0, "--poll \(value): \(r.stderr)")
        }
        for value in ["0", "2d", "86401"] {
            let r = spool.run(["watch", "--once", "--poll", value])
            #expect(r.status == 64, "--poll \(value)")
            #expect(r.stderr.contains("--poll must be from 1 s to 1d (86400 s)"), "\(r.stderr)")
        }
        let bad = spool.run(["watch", "--once", "--poll", "soon"])
        #expect(bad.status == 64 && bad.stderr.contains("Invalid duration \"soon\" for --poll"), "\(bad.stderr)")
    }
}

@Suite("--json error objects")
struct JSONErrorTests {
    @Test(
        "not_found, ambiguous, already_terminal, still_active and link_refused print {\"ok\": false, \"error\": {code, message}} with exit 1",
        arguments: ["not_found", "ambiguous", "already_terminal", "still_active", "link_refused"])
    func codes(code: String) {
        let spool = TemporarySpool()
        var arguments: [String]
        switch code {
        case "not_found":
            arguments = ["flows", "show", "nobody"]
        case "ambiguous":
            let (a, _) = spool.twoFlowsSharingPrefix()
            arguments = ["flows", "show", String(a.prefix(8))]
        case "already_terminal":
            spool.addTask(owner: "alice", status: "succeeded")
            arguments = ["flows", "cancel", "alice"]
        case "still_active":
            spool.addTask(owner: "alice", status: "running")
            arguments = ["flows", "cancel", "alice"]
        default:
            spool.addTask(owner: "alice", status: "running")
            arguments = ["tasks", "add", "alice", "--runtime", "cron"]
        }
        let r = spool.run(arguments + ["--json"])
        #expect(r.status == 1)
        #expect(r.stderr == "", "with --json the error goes to stdout only")
        #expect(topLevelKeys(r.stdout) == ["error", "ok"])
        #expect(keysSortedEverywhere(r.stdout))
        let doc = jsonObject(r.stdout)
        #expect(doc?["ok"] as? Bool == false)
        let error = doc?["error"] as? [String: Any]
        #expect(error?["code"] as? String == code)
        #expect((error?["message"] as? String)?.isEmpty == false)
        #expect(Set(keys(error)).isSuperset(of: ["code", "message"]))
        if code == "not_found" { #expect(error?["message"] as? String == flowNotFound("nobody")) }
        if code == "already_terminal" { #expect(error?["message"] as? String == "Flow is already succeeded.") }
        if code == "still_active" { #expect(error?["message"] as? String == "One or more child tasks are still active.") }
        // The same error as text: one line on stderr, exit 1.
        let text = spool.run(arguments)
        #expect(text.status == 1)
        #expect(text.stderr.hasPrefix("clawflow: "))
        #expect(text.stderr.contains(error?["message"] as? String ?? "?"))
    }

    @Test("the error object's inner keys are sorted too: code before message")
    func innerOrder() {
        let spool = TemporarySpool()
        let r = spool.run(["flows", "show", "x", "--json"])
        let code = r.stdout.range(of: "\"code\"")?.lowerBound
        let message = r.stdout.range(of: "\"message\"")?.lowerBound
        let ok = r.stdout.range(of: "\"ok\"")?.lowerBound
        #expect(code != nil && message != nil && ok != nil)
        if let code, let message, let ok { #expect(code < message && message < ok) }
    }
}

@Suite("help")
struct HelpTests {
    @Test("--help on every command exits 0 and shows an example", arguments: allCommands)
    func help(command: [String]) {
        let r = Clawflow.run(command + ["--help"])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        #expect(r.stdout.contains("Example"))
        #expect(r.stdout.contains("USAGE:"))
    }

    /// Every command, for the checks of their help screens.
    static let everyCommand: [[String]] =
        allCommands + [
            ["flows", "set-waiting"], ["flows", "resume"], ["flows", "finish"], ["flows", "fail"], ["flows", "request-cancel"],
            ["run"], ["logs"], ["audit"], ["maintenance"], ["events"], ["ingest"], ["watch"],
        ]

    @Test("the examples in every help screen fit 80 columns: no example line is wrapped", arguments: everyCommand)
    func examplesFit(command: [String]) {
        let r = Clawflow.run(command + ["--help"], environment: ["COLUMNS": "80"])
        #expect(r.status == 0)
        var inExamples = false
        var seen = 0
        for line in r.stdout.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("Example") {
                inExamples = true
                continue
            }
            if line.isEmpty {
                inExamples = false
                continue
            }
            guard inExamples else { continue }
            seen += 1
            #expect(line.hasPrefix("  ") && line.count <= 80, "a wrapped example line in clawflow \(command.joined(separator: " ")) --help: \(line)")
        }
        #expect(seen > 0)
    }

    @Test("every default is shown once", arguments: everyCommand)
    func defaultsOnce(command: [String]) {
        let r = Clawflow.run(command + ["--help"], environment: ["COLUMNS": "400"])
        for line in r.stdout.split(separator: "\n") {
            #expect(line.ranges(of: "default").count <= 1, "clawflow \(command.joined(separator: " ")) --help: \(line)")
        }
        if command == ["tasks", "add"] {
            #expect(r.stdout.contains("Initial status. (values: queued, running, succeeded, failed, timed_out, cancelled, lost; default: queued)"))
        }
    }

    @Test(
        "an option that takes a word of a closed set lists the set in help and completions",
        arguments: [["tasks", "set"], ["tasks", "list"], ["flows", "list"], ["audit"], ["watch"]])
    func closedSets(command: [String]) {
        let help = Clawflow.run(command + ["--help"], environment: ["COLUMNS": "400"]).stdout
        #expect(help.contains("(values: "), "clawflow \(command.joined(separator: " ")) --help")
        for shell in ["bash", "zsh", "fish"] {
            let script = Clawflow.run(["--generate-completion-script", shell]).stdout
            #expect(script.contains("timed_out") && script.contains("critical") && script.contains("warn"), "\(shell) completions")
        }
    }

    @Test("-h works too")
    func shortHelp() {
        let r = Clawflow.run(["flows", "show", "-h"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("Example"))
    }
}

@Suite("text output is safe for a terminal")
struct SanitisingTests {
    static let nasty = "red\u{1B}[31mALERT\u{07}\u{202E}txt"

    @Test(
        "control characters in record strings never reach text output",
        arguments: [
            ["flows", "show", "alice"], ["flows", "list"], ["tasks", "list"], ["tasks", "show", "R"],
        ])
    func sanitised(arguments: [String]) {
        let spool = TemporarySpool()
        let t = spool.addTask(owner: "alice", status: "running", ["--label", Self.nasty, "--run-id", "R"])
        spool.value(["tasks", "set", t.task, "--status", "running", "--progress", "p\u{1B}]0;title\u{07}"])
        let r = spool.run(arguments)
        #expect(r.status == 0)
        #expect(!r.stdout.contains("\u{1B}"))
        #expect(!hasControlCharacters(r.stdout))
        #expect(r.stdout.contains("red?[31mALERT"))
    }

    @Test("--json keeps the exact string, escaped, with no raw control byte")
    func jsonEscapes() {
        let spool = TemporarySpool()
        spool.addTask(owner: "alice", ["--label", Self.nasty])
        let r = spool.run(["flows", "show", "alice", "--json"])
        #expect(r.status == 0)
        #expect(!r.stdout.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" })
        #expect(jsonObject(r.stdout)?["goal"] as? String == Self.nasty)
    }

    @Test("a lookup with control characters is sanitised in the error message")
    func errorMessage() {
        let spool = TemporarySpool()
        spool.addTask(owner: "alice")
        let r = spool.run(["flows", "show", "\u{1B}[2Jgone"])
        #expect(r.status == 1)
        #expect(!r.stderr.contains("\u{1B}"))
        #expect(r.stderr == "clawflow: " + flowNotFound("?[2Jgone") + "\n")
    }
}

@Suite("colour")
struct ColourTests {
    static let script = "/usr/bin/script"

    /// Runs clawflow on a pseudo-terminal (via script(1)), with or without NO_COLOR.
    func onTerminal(_ spool: TemporarySpool, _ arguments: [String], noColor: Bool) -> CommandResult {
        let command = ([Clawflow.binary, "--spool", spool.path] + arguments).map(shellQuote).joined(separator: " ")
        return runProgram(Self.script, ["-qec", command, "/dev/null"], set: noColor ? ["NO_COLOR": "1"] : [:], unset: noColor ? [] : ["NO_COLOR"])
    }

    @Test("no colour when stdout is a pipe, even without NO_COLOR")
    func pipe() {
        let spool = TemporarySpool()
        spool.addTask(owner: "alice", status: "running")
        let r = runProgram("/usr/bin/env", ["-u", "NO_COLOR", Clawflow.binary, "--spool", spool.path, "flows", "show", "alice"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("running"))
        #expect(!r.stdout.contains("\u{1B}"))
    }

    @Test(
        "on a terminal NO_COLOR turns colour off (and without it colour is on)",
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/script")))
    func terminal() {
        let spool = TemporarySpool()
        spool.addTask(owner: "alice", status: "running")
        let plain = onTerminal(spool, ["flows", "list"], noColor: true)
        #expect(plain.status == 0)
        #expect(plain.stdout.contains("running"))
        #expect(!plain.stdout.contains("\u{1B}"))
        let coloured = onTerminal(spool, ["flows", "list"], noColor: false)
        #expect(coloured.status == 0)
        #expect(coloured.stdout.contains("\u{1B}["), "the control case: a terminal without NO_COLOR gets colour")
    }
}

@Suite("--json prints one document")
struct OneDocumentTests {
    @Test(
        "a command that reports problems and exits 1 still prints exactly one JSON document",
        arguments: ["fsck with findings", "flows list with an unreadable manifest", "flows show with an unreadable task", "tasks list with an unreadable task"])
    func oneDocument(scenario: String) throws {
        let spool = TemporarySpool()
        let good = spool.createFlow(owner: "good")
        let t = spool.addTask(owner: "alice")
        let manifest = spool.file("flows/\(t.flow)/manifest.json")
        let taskFile = spool.file("flows/\(t.flow)/tasks/\(t.task).json")
        var arguments: [String]
        var path: String
        switch scenario {
        case "fsck with findings":
            try "garbage".write(toFile: manifest, atomically: false, encoding: .utf8)
            (arguments, path) = (["fsck"], manifest)
        case "flows list with an unreadable manifest":
            try "garbage".write(toFile: manifest, atomically: false, encoding: .utf8)
            (arguments, path) = (["flows", "list"], manifest)
        case "flows show with an unreadable task":
            try "garbage".write(toFile: taskFile, atomically: false, encoding: .utf8)
            (arguments, path) = (["flows", "show", t.flow], taskFile)
        default:
            try "garbage".write(toFile: taskFile, atomically: false, encoding: .utf8)
            (arguments, path) = (["tasks", "list"], taskFile)
        }
        let r = spool.run(arguments + ["--json"])
        #expect(r.status == 1)
        let doc = jsonObject(r.stdout)
        #expect(doc != nil, "stdout must be one JSON document (spec §6.1), got: \(r.stdout)")
        if scenario != "tasks list with an unreadable task" { #expect(r.stdout.contains(path)) }
        switch scenario {
        case "fsck with findings":
            #expect(doc?["ok"] as? Bool == false)
            #expect(
                (doc?["findings"] as? [[String: Any]])?.contains { $0["code"] as? String == "unparseable_record" && $0["path"] as? String == manifest } == true)
        case "flows list with an unreadable manifest":
            #expect(doc?["count"] as? Int == 1)
            #expect((doc?["flows"] as? [[String: Any]])?.first?["flowId"] as? String == good)
        default:
            break
        }
    }
}
