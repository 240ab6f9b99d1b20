import ClawflowTestSupport
import Foundation
import Testing

@Suite("audit and maintenance from the command line")
struct AuditMaintenanceCommandTests {
    @Test("audit exits 0 with no findings, 1 with findings; --json has summary and findings; --severity and --code filter")
    func audit() {
        let tmp = TemporarySpool()
        let clean = tmp.run(["audit"])
        #expect(clean.status == 0 && clean.stdout == "No findings.\n")
        tmp.value(["flows", "create", "--owner", "a", "--goal", "g", "--controller", "c", "--running"])
        tmp.addTask(owner: "q")
        #expect(tmp.run(["audit"]).status == 0, "nothing is stale yet")
        let r = tmp.run(["audit", "--stale-running", "0", "--stale-queued", "0", "--json"])
        #expect(r.status == 1)
        let doc = jsonObject(r.stdout) ?? [:]
        #expect(keys(doc) == ["findings", "summary"])
        let findings = doc["findings"] as? [[String: Any]] ?? []
        #expect(Set(findings.map { "\($0["kind"]!):\($0["code"]!)" }) == ["flow:stale_running", "task:stale_queued"])
        #expect(keys(findings.first) == ["ageSeconds", "code", "id", "kind", "message", "path", "severity"])
        #expect(findings.first?["severity"] as? String == "error", "errors come first")
        #expect((doc["summary"] as? [String: Any])?["errors"] as? Int == 1)
        let errors = tmp.run(["audit", "--stale-running", "0", "--stale-queued", "0", "--severity", "error"])
        #expect(errors.status == 1 && errors.stdout.contains("stale_running") && !errors.stdout.contains("stale_queued"))
        let code = tmp.run(["audit", "--stale-running", "0", "--stale-queued", "0", "--code", "stale_queued", "--json"])
        #expect((jsonObject(code.stdout)?["findings"] as? [[String: Any]])?.count == 1)
        #expect(tmp.run(["audit", "--severity", "fatal"]).status == 64)
        #expect(tmp.run(["audit", "--stale-running", "soon"]).status == 64)
    }

    @Test("audit and fsck name an unreadable record with one code, unparseable_record; audit's ID of a manifest is its flow id")
    func unreadableRecord() throws {
        let tmp = TemporarySpool()
        let t = tmp.addTask(owner: "u")
        let manifest = tmp.file("flows/\(t.flow)/manifest.json")
        try "garbage".write(toFile: manifest, atomically: false, encoding: .utf8)
        let audit = tmp.run(["audit"])
        #expect(audit.status == 1)
        let row = lines(audit.stdout).first { $0.contains("unparseable_record") } ?? ""
        #expect(
            row.split(separator: " ", omittingEmptySubsequences: true).map(String.init).prefix(4) == ["error", "unparseable_record", "spool", t.flow],
            "\(audit.stdout)")
        let finding = (tmp.json(["audit"])["findings"] as? [[String: Any]])?.first
        #expect(finding?["code"] as? String == "unparseable_record" && finding?["id"] as? String == t.flow && finding?["path"] as? String == manifest)
        let fsck = tmp.json(["fsck"])["findings"] as? [[String: Any]] ?? []
        #expect(fsck.map { $0["code"] as? String } == ["unparseable_record"] && fsck.first?["path"] as? String == manifest)
        #expect(tmp.run(["fsck"]).stdout.contains("unparseable_record: \(manifest)"))
    }

    @Test("audit's closing line names maintenance --apply only for findings maintenance acts on, fsck for unreadable records, nothing for the rest")
    func closingHint() throws {
        let tmp = TemporarySpool()
        let waiting = tmp.createFlow(owner: "w")
        let revision = tmp.json(["flows", "show", waiting])["revision"] as? Int ?? -1
        tmp.value(["flows", "set-waiting", waiting, "--expect-revision", String(revision)])
        let none = tmp.run(["audit", "--stale-waiting", "0"])
        #expect(none.status == 1 && none.stdout.contains("stale_waiting"))
        #expect(none.stderr == "clawflow: audit found 1 finding(s).\n", "maintenance does not end a waiting flow: \(none.stderr)")

        let running = tmp.createFlow(owner: "r", ["--running"])
        let task = tmp.linkTask(to: running, status: "running")
        tmp.value(["tasks", "set", task, "--status", "failed"])
        let repairable = tmp.run(["audit", "--stale-running", "0", "--code", "stale_running"])
        #expect(repairable.status == 1)
        #expect(repairable.stderr.contains("maintenance --apply makes them"), "\(repairable.stderr)")
        #expect(!repairable.stderr.contains("fsck"))

        let t = tmp.addTask(owner: "u")
        try "garbage".write(toFile: tmp.file("flows/\(t.flow)/manifest.json"), atomically: false, encoding: .utf8)
        let unreadable = tmp.run(["audit", "--code", "unparseable_record"])
        #expect(unreadable.status == 1)
        #expect(!unreadable.stderr.contains("maintenance"), "maintenance cannot repair an unreadable record: \(unreadable.stderr)")
        #expect(unreadable.stderr.contains("clawflow fsck lists unreadable records"))
    }

    @Test("maintenance previews (exit 0, nothing written), --apply makes the repairs; --json has applied, summary and actions")
    func maintenance() {
        let tmp = TemporarySpool()
        let flow = tmp.value(["flows", "create", "--owner", "m", "--goal", "g", "--controller", "c", "--running"])
        let task = tmp.linkTask(to: flow, status: "running")
        tmp.value(["tasks", "set", task, "--status", "failed"])
        let before = tmp.text("flows/\(flow)/manifest.json")
        let preview = tmp.run(["maintenance", "--stale-running", "0", "--json"])
        #expect(preview.status == 0)
        let doc = jsonObject(preview.stdout) ?? [:]
        #expect(keys(doc) == ["actions", "applied", "summary"])
        #expect(doc["applied"] as? Bool == false)
        #expect((doc["summary"] as? [String: Any])?["end_orphaned"] as? Int == 1)
        #expect(keys((doc["actions"] as? [[String: Any]])?.first) == ["action", "id", "kind", "reason"])
        #expect(tmp.text("flows/\(flow)/manifest.json") == before)
        let apply = tmp.run(["maintenance", "--apply", "--stale-running", "0"])
        #expect(apply.status == 0 && apply.stdout.contains("Applied 1 action(s)"))
        #expect(tmp.manifest(flow)["status"] as? String == "failed")
        #expect((tmp.manifest(flow)["blockedSummary"] as? String)?.contains("(maintenance)") == true)
        #expect(tmp.run(["maintenance"]).stdout == "Nothing to do.\n")
        #expect(tmp.run(["events", "--flow", flow]).stdout.contains("repair"))
        #expect(tmp.run(["maintenance", "--lost-after", "never"]).status == 64)
    }
}
