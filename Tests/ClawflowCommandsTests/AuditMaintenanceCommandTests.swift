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
