import Testing

@testable import ClawflowWatch

@Suite("The change feed's reading of inotify events")
struct ChangeFeedTests {
    let flows = "/spool/flows"
    let id = "01a2445f-255f-79db-a4fe-231dae580d52"

    func event(_ directory: String, _ name: String, _ mask: EventMask = .movedTo) -> WatchEvent {
        WatchEvent(directory: directory, name: name, mask: mask, cookie: 0)
    }

    @Test("a flow arriving in flows/, its manifest, its event log and its task records name the flow")
    func flowChanges() {
        #expect(ChangeFeed.classify(event(flows, id, [.movedTo, .isDirectory]), flows: flows) == .flow(id))
        #expect(ChangeFeed.classify(event(flows + "/" + id, "manifest.json"), flows: flows) == .flow(id))
        #expect(ChangeFeed.classify(event(flows + "/" + id, "events.jsonl", .modify), flows: flows) == .flow(id))
        #expect(ChangeFeed.classify(event(flows + "/" + id + "/tasks", id + ".json"), flows: flows) == .flow(id))
    }

    @Test("a command's output names its flow's log; an overflow asks for everything")
    func logsAndOverflow() {
        #expect(ChangeFeed.classify(event(flows + "/" + id + "/tasks", id + ".log", .modify), flows: flows) == .log(id))
        #expect(ChangeFeed.classify(event("", "", .queueOverflow), flows: flows) == .overflow)
    }

    @Test("temp files, other names and other directories say nothing")
    func ignored() {
        #expect(ChangeFeed.classify(event(flows, ".tmp-123"), flows: flows) == nil)
        #expect(ChangeFeed.classify(event(flows, "not-an-id"), flows: flows) == nil)
        #expect(ChangeFeed.classify(event(flows + "/" + id, ".manifest.json.123"), flows: flows) == nil)
        #expect(ChangeFeed.classify(event(flows + "/" + id, "other"), flows: flows) == nil)
        #expect(ChangeFeed.classify(event("/spool/incoming/new", "drop.json"), flows: flows) == nil)
        #expect(ChangeFeed.classify(event(flows + "/" + id + "/tasks/deeper", "x.json"), flows: flows) == nil)
    }
}
