import ClawflowTestSupport
import Foundation
import Testing

@Suite("make demo")
struct DemoTests {
    @Test("the demo runs on a temporary spool it names, leaves the user's ledger alone and no work in flight")
    func demoLeavesNothingRunning() throws {
        let home = TemporarySpool("home")
        try FileManager.default.createDirectory(atPath: home.path, withIntermediateDirectories: true)
        let script = FileManager.default.currentDirectoryPath + "/scripts/demo.sh"
        let r = runProgram("/bin/bash", [script, Clawflow.binary], set: ["HOME": home.path, "TMPDIR": home.parent], unset: ["XDG_STATE_HOME"])
        #expect(r.status == 0, "demo exited \(r.status): \(r.stderr)")
        let first = r.stdout.split(separator: "\n").first.map(String.init) ?? ""
        let spool = try #require(first.firstMatch(of: #/on the spool at (\S+)/#)?.output.1).description
        #expect(spool.hasPrefix(home.parent + "/clawflow-demo."), "a new temporary spool: \(first)")
        #expect(!FileManager.default.fileExists(atPath: home.path + "/.local/state/clawflow"), "the default spool is not touched")
        let listing = Clawflow.run(["--spool", spool, "flows", "list", "--json"])
        let status = jsonObject(listing.stdout)?["status"] as? [String: Any]
        #expect(status?["active"] as? Int == 0, "every flow the demo made has ended: \(listing.stdout)")
        #expect((status?["total"] as? Int ?? 0) >= 4)
        let tasks = jsonObject(Clawflow.run(["--spool", spool, "tasks", "list", "--json"]).stdout)?["tasks"] as? [[String: Any]] ?? []
        #expect(!tasks.contains { ["queued", "running"].contains($0["status"] as? String) }, "no task is left queued or running")
        // Thirty minutes later nothing would be stale: audit with a zero threshold finds nothing.
        let audit = Clawflow.run([
            "--spool", spool, "audit", "--stale-running", "0s", "--task-stale-running", "0s", "--stale-queued", "0s", "--stale-waiting", "0s",
            "--stale-blocked", "0s", "--cancel-stuck", "0s",
        ])
        #expect(audit.status == 0, "\(audit.stdout)\(audit.stderr)")
    }
}
