import ClawflowTestSupport
import Foundation
import Glibc
import Testing

extension WatcherTests {
    @Test("the watcher delivers the notifications of the drops it applies, with inotify and in poll mode", arguments: modes)
    func deliversHooks(mode: [String]) throws {
        let spool = TemporarySpool()
        spool.value(["init"])
        let log = spool.parent + "/hook.log"
        mkdir(spool.file("hooks"), 0o700)
        _ = FileManager.default.createFile(
            atPath: spool.file("hooks/10-log"), contents: Data("#!/bin/sh\necho \"$CLAWFLOW_STATUS $CLAWFLOW_DELIVERY_REPEAT\" >> \(log)\n".utf8))
        chmod(spool.file("hooks/10-log"), 0o755)
        let watcher = try WatcherProcess(spool, arguments: mode)
        #expect(watcher.waitUntilWatching(), "\(watcher.log)")
        drop(spool, "job.json", #"{"kind":"task","ownerKey":"hw","runtime":"cron","runId":"h1","status":"running"}"#)
        drop(spool, "job-done.json", #"{"kind":"task-update","runId":"h1","status":"succeeded"}"#)
        #expect(WatcherProcess.waitFor { !fileLines(log).isEmpty }, "\(watcher.log)")
        usleep(300_000)
        #expect(fileLines(log) == ["succeeded 0"])
        let flow = spool.run(["flows", "show", "hw", "--json"]).stdout
        let id = (try? JSONSerialization.jsonObject(with: Data(flow.utf8)) as? [String: Any])?["flowId"] as? String ?? ""
        let events = ((try? String(contentsOfFile: spool.file("flows/\(id)/events.jsonl"), encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(events.contains { $0.contains(#""event":"notify""#) && $0.contains(#""source":"watcher""#) }, "\(events)")
        #expect(watcher.stop().status == 0)
    }
}

/// The lines of the file at `path` (none when it does not exist).
private func fileLines(_ path: String) -> [String] {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
}
