import ClawflowModel
import ClawflowTestSupport
import Foundation
import SystemPackage
import Testing

@testable import ClawflowSpool

@Suite("Owner links follow the lookup rule")
struct OwnerLinkTests {
    /// A spool, an owner key, and a check that its link (and fsck) agree with `expected`.
    struct Fixture {
        let tmp = TemporarySpool()
        let spool: Spool
        init() throws { spool = try Spool.open(at: FilePath(tmp.path)) }

        func expectLink(_ key: String, _ flowId: String?, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let text = link(tmp.file("owners/" + OwnerKey.linkName(key)))
            #expect(text == flowId.map { "../flows/" + $0 }, sourceLocation: sourceLocation)
            #expect(spool.flowId(forOwner: key) == flowId, sourceLocation: sourceLocation)
            let report = try spool.fsck(repair: false)
            #expect(report.findings.isEmpty, "\(report.findings)", sourceLocation: sourceLocation)
            #expect(report.notes.isEmpty, "\(report.notes)", sourceLocation: sourceLocation)
        }

        func managed(_ key: String) throws -> String {
            try spool.createManagedFlow(ownerKey: key, goal: "g", controllerId: "c", running: true, step: nil, stateJson: nil, source: "test").flow.flowId
        }

        func mirrored(_ key: String, _ status: TaskStatus = .running) throws -> (flow: String, task: String) {
            let (snap, task) = try spool.addTaskInNewFlow(ownerKey: key, task: NewTask(runtime: "cron", status: status), goal: nil, source: "test")
            return (snap.flow.flowId, task)
        }
    }

    @Test("the link moves to each new flow, back to the newest live one when that ends, and stays on the newest when all end")
    func everyStateChange() throws {
        let f = try Fixture()
        let a = try f.mirrored("k")
        try f.expectLink("k", a.flow)
        let b = try f.mirrored("k")
        try f.expectLink("k", b.flow)
        // b ends: a is the newest live flow.
        _ = try f.spool.updateTask(flowId: b.flow, taskId: b.task, update: TaskUpdate(status: .succeeded), source: "test")
        try f.expectLink("k", a.flow)
        // A progress report on a leaves the link alone.
        _ = try f.spool.updateTask(flowId: a.flow, taskId: a.task, update: TaskUpdate(status: .running, fields: ["progressSummary": "x"]), source: "test")
        try f.expectLink("k", a.flow)
        // a ends: every flow is finished, so the newest (b) wins.
        _ = try f.spool.updateTask(flowId: a.flow, taskId: a.task, update: TaskUpdate(status: .failed), source: "test")
        try f.expectLink("k", b.flow)
        // A flow created already finished becomes the newest.
        let c = try f.mirrored("k", .succeeded)
        try f.expectLink("k", c.flow)
        // A live managed flow wins; cancelling it (no tasks) hands the link back to the newest.
        let d = try f.managed("k")
        try f.expectLink("k", d)
        _ = try f.spool.cancel(flowId: d, grace: 1, source: "test")
        try f.expectLink("k", d)
    }

    @Test("a flow created finished does not take the link from a live flow")
    func finishedCreationKeepsLiveLink() throws {
        let f = try Fixture()
        let live = try f.mirrored("k")
        _ = try f.mirrored("k", .failed)
        try f.expectLink("k", live.flow)
    }

    @Test("owners are independent, and a very long key uses its sha256 name")
    func independentOwners() throws {
        let f = try Fixture()
        let long = String(repeating: "ключ/", count: 60)
        let x = try f.mirrored("x")
        let y = try f.mirrored(long)
        try f.expectLink("x", x.flow)
        try f.expectLink(long, y.flow)
        #expect(OwnerKey.linkName(long).hasPrefix("sha256-"))
    }

    @Test("an interrupted link update is a note, resolved by the index, and finished by the next write")
    func interruptedUpdate() throws {
        let f = try Fixture()
        let a = try f.mirrored("k")
        let b = try f.mirrored("k")
        // Simulate a crash after the records were written but before the marker was renamed:
        // b has ended and the marker names a, but the link still names b.
        _ = try f.spool.updateTask(flowId: b.flow, taskId: b.task, update: TaskUpdate(status: .succeeded), source: "test")
        try FileManager.default.removeItem(atPath: f.tmp.file("owners/k"))
        try FileManager.default.createSymbolicLink(atPath: f.tmp.file("owners/k"), withDestinationPath: "../flows/\(b.flow)")
        try FileManager.default.createSymbolicLink(atPath: f.tmp.file("owners/.k.next"), withDestinationPath: "../flows/\(a.flow)")
        #expect(f.spool.flowId(forOwner: "k") == a.flow)
        let report = try f.spool.fsck(repair: false)
        #expect(report.findings.isEmpty)
        #expect(report.notes.map(\.code) == ["pending_owner_link"])
        // A stale link without a marker is a finding.
        try FileManager.default.removeItem(atPath: f.tmp.file("owners/.k.next"))
        #expect(try f.spool.fsck(repair: false).findings.map(\.code) == ["stale_owner_link"])
        let repaired = try f.spool.fsck(repair: true)
        #expect(repaired.findings.isEmpty)
        try f.expectLink("k", a.flow)
    }

    @Test("a link naming a flow whose creation a crash lost is a note, resolved by the index, and fixed by the next write or --repair")
    func danglingLink() throws {
        let f = try Fixture()
        let a = try f.mirrored("k")
        // A crash kept the link's rename and lost the flow's (they are flushed together).
        let lost = Identifier.uuidV7(milliseconds: 1_900_000_000_000, random: Array(repeating: 9, count: 10))
        try FileManager.default.removeItem(atPath: f.tmp.file("owners/k"))
        try FileManager.default.createSymbolicLink(atPath: f.tmp.file("owners/k"), withDestinationPath: "../flows/\(lost)")
        #expect(f.spool.flowId(forOwner: "k") == a.flow)
        #expect(try f.spool.resolveFlow("k") == a.flow)
        let report = try f.spool.fsck(repair: false)
        #expect(report.findings.isEmpty, "\(report.findings)")
        #expect(report.notes.map(\.code) == ["dangling_owner_link"])
        let b = try f.mirrored("k")
        try f.expectLink("k", b.flow)

        // An owner whose only flow was that lost creation: no flow, and --repair removes the link.
        try FileManager.default.createSymbolicLink(atPath: f.tmp.file("owners/n"), withDestinationPath: "../flows/\(lost)")
        #expect(f.spool.flowId(forOwner: "n") == nil)
        #expect(throws: SpoolError.self) { try f.spool.resolveFlow("n") }
        let second = try f.spool.fsck(repair: false)
        #expect(second.findings.isEmpty, "\(second.findings)")
        #expect(second.notes.map(\.code) == ["dangling_owner_link"])
        #expect(try f.spool.fsck(repair: true).findings.isEmpty)
        #expect(link(f.tmp.file("owners/n")) == nil)
        try f.expectLink("k", b.flow)
    }

    @Test("a key's first link is made without a marker; if a crash loses it, the key resolves through its index and the next write makes it")
    func firstLink() throws {
        let f = try Fixture()
        // The links `tasks add` makes, from a trace of its symlinkat calls.
        let trace = f.tmp.path + ".trace"
        defer { try? FileManager.default.removeItem(atPath: trace) }
        let traced = runProgram(
            "/usr/bin/strace",
            [
                "-f", "-qq", "-e", "trace=symlinkat", "-o", trace, "--", Clawflow.binary, "--spool", f.tmp.path, "tasks", "add", "--owner", "k", "--runtime",
                "cron",
            ])
        #expect(traced.status == 0, "\(traced.stderr)")
        let calls = try String(contentsOfFile: trace, encoding: .utf8)
        #expect(!calls.contains("\".k.next\""), "\(calls)")
        #expect(calls.contains("\"../flows/"), "\(calls)")
        let a = try #require(f.spool.flowId(forOwner: "k"))
        try f.expectLink("k", a)
        // The state a crash between the flow's rename and the link's leaves.
        try FileManager.default.removeItem(atPath: f.tmp.file("owners/k"))
        #expect(f.spool.flowId(forOwner: "k") == a)
        #expect(try f.spool.resolveFlow("k") == a)
        let report = try f.spool.fsck(repair: false)
        #expect(report.findings.isEmpty, "\(report.findings)")
        #expect(report.notes.map(\.code) == ["missing_owner_link"])
        #expect(f.spool.flowId(forOwner: "nobody") == nil)
        let b = try f.mirrored("k")
        try f.expectLink("k", b.flow)
    }

    @Test("resolution never follows an owner link that points outside flows/")
    func hostileLink() throws {
        let f = try Fixture()
        _ = try f.mirrored("k")
        try FileManager.default.removeItem(atPath: f.tmp.file("owners/k"))
        try FileManager.default.createSymbolicLink(atPath: f.tmp.file("owners/k"), withDestinationPath: "/etc")
        #expect(f.spool.flowId(forOwner: "k") == nil)
        #expect(throws: SpoolError.self) { try f.spool.resolveFlow("k") }
        #expect(try f.spool.fsck(repair: false).findings.map(\.code) == ["bad_owner_link"])
        #expect(try f.spool.fsck(repair: true).findings.isEmpty)
        #expect(f.spool.flowId(forOwner: "k") != nil)
    }
}
