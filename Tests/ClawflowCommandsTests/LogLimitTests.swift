import ClawflowTestSupport
import Foundation
import Testing

@Suite("Logs stay bounded: run --log-limit, the newest bytes behind a marker line", .serialized)
struct LogLimitTests {
    /// The marker line's numbers: dropped bytes and kept bytes.
    func marker(_ line: String) -> (dropped: Int, kept: Int)? {
        let words = line.split(separator: " ")
        guard line.hasPrefix("[clawflow: log cut "), line.hasSuffix(" bytes kept follow]"), words.count > 8 else { return nil }
        guard let dropped = Int(words[4]), let kept = Int(words[words.count - 4]) else { return nil }
        return (dropped, kept)
    }

    @Test("a log past its limit keeps its newest bytes, from a line start, behind a line saying how many bytes were dropped")
    func cutKeepsNewest() {
        let tmp = TemporarySpool()
        let job = tmp.startJob(["--owner", "chatty", "--log-limit", "4K", "--", "sh", "-c", "for i in $(seq 1 3000); do echo \"line $i\"; done; echo done >&2"])
        #expect(tmp.run(["wait", job.flow]).status == 0)
        #expect(tmp.taskRecord(job.flow, job.task)["logLimit"] as? Int == 4096)
        let r = tmp.run(["logs", job.task])
        #expect(r.status == 0)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let first = lines.first, let cut = marker(first) else {
            Issue.record("no marker line: \(r.stdout.prefix(200))")
            return
        }
        let total = (1...3000).reduce(0) { $0 + "line \($1)\n".utf8.count } + "done\n".utf8.count
        let body = r.stdout.utf8.count - first.utf8.count - 1
        #expect(cut.dropped + body == total, "every byte is either dropped and counted, or kept")
        #expect(body <= 4096 + 65536, "the log is kept near its limit: \(body) bytes")
        #expect(lines[1].hasPrefix("line "), "the kept bytes start at a line: \(lines[1])")
        #expect(lines.suffix(3) == ["line 3000", "done", ""], "stdout and stderr both reach the log, the newest last")
    }

    @Test("logs --follow follows a log across its cuts: its lines come in order, none twice, up to the last")
    func followAcrossCuts() {
        let tmp = TemporarySpool()
        let script = "for i in $(seq 1 4000); do echo \"line $i\"; case $i in *00) sleep 0.02;; esac; done"
        let job = tmp.startJob(["--owner", "follow", "--log-limit", "2K", "--", "sh", "-c", script])
        let r = tmp.run(["logs", "--follow", job.task])
        #expect(r.status == 0)
        let numbers = r.stdout.split(separator: "\n").filter { marker(String($0)) == nil }.compactMap { Int($0.dropFirst(5)) }
        #expect(numbers.last == 4000)
        #expect(zip(numbers, numbers.dropFirst()).allSatisfy { $0 < $1 }, "in order and none twice")
    }

    @Test("without --log-limit a command task records the default limit of 64 MiB; a bad size is a usage error")
    func defaultAndUsage() {
        let tmp = TemporarySpool()
        let job = tmp.startJob(["--owner", "quiet", "--", "true"])
        #expect(tmp.taskRecord(job.flow, job.task)["logLimit"] as? Int == 64 << 20)
        let seq = tmp.startJob(["--owner", "seq", "--goal", "g", "--log-limit", "1M", "--step", "true", "--step", "true"])
        #expect(tmp.run(["wait", job.flow, seq.flow]).status == 0)
        let steps = tmp.json(["flows", "show", seq.flow])["tasks"] as? [[String: Any]] ?? []
        #expect(steps.count == 2 && steps.allSatisfy { $0["logLimit"] as? Int == 1 << 20 }, "every step keeps the limit")
        for bad in ["lots", "-5", "1T", "100"] {
            let r = tmp.run(["run", "--owner", "x", "--log-limit", bad, "--", "true"])
            #expect(r.status == 64, "--log-limit \(bad)")
            #expect(r.stderr.contains("--log-limit"))
        }
    }
}
