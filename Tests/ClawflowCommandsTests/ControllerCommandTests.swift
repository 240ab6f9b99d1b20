import ClawflowTestSupport
import Foundation
import Testing

@Suite("Controller commands: checked writes on managed flows")
struct ControllerCommandTests {
    func managed(_ tmp: TemporarySpool) -> String {
        tmp.value(["flows", "create", "--owner", "ctl", "--goal", "g", "--controller", "sched", "--running"])
    }

    @Test("wait, resume, wait blocked, fail: each a checked write that moves the revision, with state in the same write")
    func lifecycle() {
        let tmp = TemporarySpool()
        let flow = managed(tmp)
        let waited = tmp.json([
            "flows", "set-waiting", flow, "--expect-revision", "0", "--wait-json", #"{"until":"approval"}"#, "--step", "review", "--state-json", #"{"n":1}"#,
        ])
        #expect(waited["status"] as? String == "waiting")
        #expect(waited["revision"] as? Int == 1)
        #expect((waited["waitJson"] as? [String: Any])?["until"] as? String == "approval")
        #expect(waited["currentStep"] as? String == "review")
        #expect((waited["stateJson"] as? [String: Any])?["n"] as? Int == 1)

        let resumed = tmp.run(["flows", "resume", flow, "--expect-revision", "1"])
        #expect(resumed.status == 0 && resumed.stdout.contains("is now running (revision 2)"))
        let m = tmp.manifest(flow)
        #expect(m["waitJson"] is NSNull, "resume clears waitJson")
        #expect((m["stateJson"] as? [String: Any])?["n"] as? Int == 1, "absent --state-json keeps the state")

        let task = tmp.linkTask(to: flow, status: "running")
        let blocked = tmp.json([
            "flows", "set-waiting", flow, "--expect-revision", "2", "--blocked-task", task, "--blocked-summary", "needs a human", "--state-json", "null",
        ])
        #expect(blocked["status"] as? String == "blocked")
        #expect(blocked["endedAt"] == nil, "a blocked managed flow stays resumable")
        #expect(blocked["blockedTaskId"] as? String == task)
        #expect(blocked["stateJson"] is NSNull, "null clears the state")

        let failed = tmp.json(["flows", "fail", flow, "--expect-revision", "3", "--blocked-summary", "gave up"])
        #expect(failed["status"] as? String == "failed" && failed["endedAt"] != nil)
        #expect(failed["blockedSummary"] as? String == "gave up")
        let again = tmp.run(["flows", "finish", flow, "--expect-revision", "4", "--json"])
        #expect(again.status == 1)
        #expect((jsonObject(again.stdout)?["error"] as? [String: Any])?["code"] as? String == "already_terminal")
    }

    @Test("a stale revision changes nothing, exits 1 with revision_conflict and prints the current record")
    func staleRevision() {
        let tmp = TemporarySpool()
        let flow = managed(tmp)
        tmp.value(["flows", "set-waiting", flow, "--expect-revision", "0"])
        let before = tmp.text("flows/\(flow)/manifest.json")
        let text = tmp.run(["flows", "finish", flow, "--expect-revision", "0"])
        #expect(text.status == 1)
        #expect(text.stderr.contains("revision 1, not 0"))
        #expect(jsonObject(text.stdout)?["revision"] as? Int == 1, "the current record on stdout")
        let json = tmp.run(["flows", "finish", flow, "--expect-revision", "0", "--json"])
        #expect(json.status == 1)
        let error = jsonObject(json.stdout)?["error"] as? [String: Any]
        #expect(error?["code"] as? String == "revision_conflict")
        #expect((error?["current"] as? [String: Any])?["status"] as? String == "waiting")
        #expect(jsonObject(json.stdout)?["ok"] as? Bool == false)
        #expect(tmp.text("flows/\(flow)/manifest.json") == before, "nothing was written")
    }

    @Test("a controller command on a mirrored flow is refused with not_managed")
    func mirroredRefused() {
        let tmp = TemporarySpool()
        let t = tmp.addTask(owner: "m", status: "running")
        let r = tmp.run(["flows", "finish", t.flow, "--expect-revision", "0", "--json"])
        #expect(r.status == 1)
        #expect((jsonObject(r.stdout)?["error"] as? [String: Any])?["code"] as? String == "not_managed")
    }

    @Test("request-cancel is sticky and refuses new links; a task settling leaves the flow to its controller")
    func requestCancel() {
        let tmp = TemporarySpool()
        let flow = managed(tmp)
        let task = tmp.linkTask(to: flow, status: "running")
        let revision = tmp.manifest(flow)["revision"] as? Int ?? -1
        let r = tmp.json(["flows", "request-cancel", flow, "--expect-revision", String(revision)])
        #expect(r["cancelRequestedAt"] != nil && r["status"] as? String == "running")
        #expect(tmp.run(["tasks", "add", flow, "--runtime", "cron"]).status == 1)
        tmp.value(["tasks", "set", task, "--status", "succeeded"])
        #expect(tmp.manifest(flow)["status"] as? String == "running", "the controller finishes the job")
        #expect(tmp.run(["fsck"]).status == 0, "a request left to its controller is no inconsistency")
        let cancelled = tmp.run(["flows", "cancel", flow])
        #expect(cancelled.status == 0 && tmp.manifest(flow)["status"] as? String == "cancelled")
    }

    @Test("request-cancel with no task active records the request only: no cancelled status, no endedAt")
    func requestCancelWithoutTasks() {
        let tmp = TemporarySpool()
        let flow = managed(tmp)
        let r = tmp.json(["flows", "request-cancel", flow, "--expect-revision", "0"])
        #expect(r["status"] as? String == "running")
        #expect(r["cancelRequestedAt"] != nil && r["endedAt"] == nil)
        #expect(r["revision"] as? Int == 1)
        let finished = tmp.json(["flows", "fail", flow, "--expect-revision", "1", "--blocked-summary", "stopped on request"])
        #expect(finished["status"] as? String == "failed" && finished["endedAt"] != nil)
        #expect(finished["cancelRequestedAt"] as? String == r["cancelRequestedAt"] as? String, "the request stays on record")
    }

    @Test("usage errors: a missing --expect-revision, bad JSON, a bad blocked task id exit 64")
    func usage() {
        let tmp = TemporarySpool()
        let flow = managed(tmp)
        #expect(tmp.run(["flows", "resume", flow]).status == 64)
        #expect(tmp.run(["flows", "set-waiting", flow, "--expect-revision", "0", "--wait-json", "{nope"]).status == 64)
        #expect(tmp.run(["flows", "set-waiting", flow, "--expect-revision", "0", "--blocked-task", "x"]).status == 64)
        #expect(tmp.run(["flows", "finish", flow, "--expect-revision", "-1"]).status == 64)
    }
}
