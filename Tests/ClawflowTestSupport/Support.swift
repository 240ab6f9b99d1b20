import Foundation
import Glibc
import Testing

/// A fresh spool directory under /tmp, removed when the value is deinitialised.
public final class TemporarySpool: Sendable {
    /// The spool root (not created yet: the first write creates it).
    public let path: String
    /// The directory holding the spool (also removed at the end).
    public let parent: String

    /// Where test spools go: `$CLAWFLOW_TEST_DIR`, else /dev/shm (tmpfs: removing thousands
    /// of files from a disk mounted with online discard takes minutes), else /tmp.
    static let base: String = {
        if let dir = ProcessInfo.processInfo.environment["CLAWFLOW_TEST_DIR"], !dir.isEmpty { return dir }
        return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    }()

    /// Makes a new empty parent directory; the spool itself is `<parent>/spool`.
    public init(_ label: String = "spool") {
        var template = Array("\(TemporarySpool.base)/clawflow-test-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        parent = dir
        path = dir + "/" + label
    }

    deinit { try? FileManager.default.removeItem(atPath: parent) }

    /// A path inside the spool.
    public func file(_ relative: String) -> String { path + "/" + relative }

    /// Runs the built `clawflow` with `--spool` set to this spool.
    @discardableResult
    public func run(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil) -> CommandResult {
        Clawflow.run(["--spool", path] + arguments, environment: environment, stdin: stdin)
    }

    /// Runs a command and returns its stdout with the trailing newline removed; records an
    /// issue when it does not exit 0.
    @discardableResult
    public func value(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let r = run(arguments)
        #expect(r.status == 0, "clawflow \(arguments.joined(separator: " ")) exited \(r.status): \(r.stderr)", sourceLocation: sourceLocation)
        return r.stdout.trimmingCharacters(in: .newlines)
    }

    /// Runs a command with `--json` and parses stdout as a JSON object.
    public func json(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) -> [String: Any] {
        let r = run(arguments + ["--json"])
        guard let data = r.stdout.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else {
            Issue.record("clawflow \(arguments.joined(separator: " ")) --json printed no JSON object: \(r.stdout) \(r.stderr)", sourceLocation: sourceLocation)
            return [:]
        }
        return object
    }
}

/// What a finished process printed and how it ended.
public struct CommandResult: Sendable {
    /// Exit status (128+signal when killed).
    public var status: Int32
    /// Everything written to stdout.
    public var stdout: String
    /// Everything written to stderr.
    public var stderr: String

    /// A result from its parts.
    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// Finds and runs the `clawflow` binary built beside the test bundle.
public enum Clawflow {
    /// The path of the built binary (same build directory as the tests).
    public static let binary: String = {
        if let env = ProcessInfo.processInfo.environment["CLAWFLOW_BINARY"] { return env }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("clawflow").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".build/debug/clawflow").path
    }()

    /// Runs the binary with `arguments`, waiting for it to finish.
    public static func run(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil) -> CommandResult {
        runProgram(binary, arguments, set: environment, stdin: stdin)
    }
}

/// Runs any program with the test environment (NO_COLOR=1, no CLAWFLOW_SPOOL) adjusted:
/// `set` overrides variables and `unset` removes them. Waits for the program to end,
/// reading stdout and stderr to the end first so a large output cannot block it.
public func runProgram(_ executable: String, _ arguments: [String], set: [String: String] = [:], unset: [String] = [], stdin: String? = nil) -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env["NO_COLOR"] = "1"
    env.removeValue(forKey: "CLAWFLOW_SPOOL")
    for (k, v) in set { env[k] = v }
    for k in unset { env.removeValue(forKey: k) }
    process.environment = env
    let out = Pipe()
    let err = Pipe()
    let input = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = input
    do { try process.run() } catch {
        return CommandResult(status: -1, stdout: "", stderr: "could not start \(executable): \(error)")
    }
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try? input.fileHandleForWriting.close()
    let group = DispatchGroup()
    nonisolated(unsafe) var errData = Data()
    group.enter()
    DispatchQueue.global().async {
        errData = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    return CommandResult(status: status, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
}

/// A small ext4 filesystem made for one test: a sparse image under /dev/shm, loop-mounted,
/// with or without a journal; unmounted, detached and deleted when the value is
/// deinitialised. Needs root and a free loop device, as CI has: `init` throws (and the test
/// fails) when they are missing, so no test passes without running.
public final class ScratchExt4: Sendable {
    /// The mount point.
    public let path: String
    /// The loop device.
    public let device: String
    private let directory: String

    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    /// Makes and mounts a filesystem of `megabytes` MiB; `journal: false` makes it with
    /// `mkfs.ext4 -O ^has_journal`.
    public init(journal: Bool, megabytes: Int = 64) throws {
        guard geteuid() == 0 else { throw Unavailable(description: "a loop-mounted ext4 needs root (CI runs the tests as root)") }
        var template = Array("/dev/shm/clawflow-ext4-XXXXXX".utf8CString)
        directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        let image = directory + "/fs.img"
        path = directory + "/mnt"
        func run(_ tool: String, _ arguments: [String]) throws -> String {
            let r = runProgram(tool, arguments)
            guard r.status == 0 else {
                throw Unavailable(description: "\(tool) \(arguments.joined(separator: " ")) exited \(r.status): \(r.stderr)")
            }
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        do {
            _ = try run("/usr/bin/truncate", ["-s", "\(megabytes)M", image])
            _ = try run("/sbin/mkfs.ext4", ["-q", "-F", "-b", "4096", "-I", "256"] + (journal ? [] : ["-O", "^has_journal"]) + [image])
            device = try run("/sbin/losetup", ["-f", "--show", image])
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            _ = try run("/bin/mount", [device, path])
        } catch {
            _ = runProgram("/sbin/losetup", ["-d", device])
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    deinit {
        if runProgram("/bin/umount", [path]).status != 0 { _ = runProgram("/bin/umount", ["-l", path]) }
        _ = runProgram("/sbin/losetup", ["-d", device])
        try? FileManager.default.removeItem(atPath: directory)
    }
}
