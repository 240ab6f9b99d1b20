import ClawflowTestSupport
import Foundation
import Glibc
import Testing

/// The power-cut harness (bench/powercut/powercut.py, bench/README.md "Power cuts") in its
/// short mode: 3 cuts on an ext4 with a journal and 3 on one without, each under concurrent
/// CLI writers, `run` jobs, a watcher applying Maildir drops and maintenance. The long mode
/// (`CUTS=30`) is run by hand.
@Suite("Power cuts")
struct PowerCutTests {
    @Test("after power cuts on ext4 with and without a journal, every acknowledged write is there and every acknowledged drop applied once")
    func shortRun() {
        // CI runs the tests as root, with loop devices: a run without them would prove nothing.
        guard geteuid() == 0 else {
            Issue.record("the power-cut harness needs root (loop devices, mount, the shutdown ioctl); run make test as root")
            return
        }
        let script = FileManager.default.currentDirectoryPath + "/bench/powercut/powercut.py"
        let cuts = ProcessInfo.processInfo.environment["CLAWFLOW_POWERCUT_CUTS"] ?? "3"
        let r = runProgram("/usr/bin/env", ["python3", script, "--cuts", cuts, "--binary", Clawflow.binary])
        let output = r.stdout + r.stderr
        // The per-kind and total lines, for the log of make test.
        for line in output.split(separator: "\n")
        where line.hasPrefix("journal:") || line.hasPrefix("nojournal:") || line.hasPrefix("total:") || line.hasPrefix("time:") {
            print("powercut \(line)")
        }
        #expect(r.status == 0, "\(output)")
        #expect(output.contains(", 0 lost, 0 twice, 0 other problems\n"), "\(output)")
        // Not vacuous: every cut happened, and the workload had acknowledged writes.
        let total = output.split(separator: "\n").first { $0.hasPrefix("total: ") }.map(String.init) ?? ""
        let figures = total.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: CharacterSet.punctuationCharacters)) }
        #expect(figures.count >= 2 && figures[0] == 2 * (Int(cuts) ?? 3) && figures[1] > 0, "\(output)")
    }
}
