// libFuzzer target: the record decoder. Any object that validates as a task or flow record
// is written as clawflow writes records (fileBytes) and must read back, validate again and
// hold the same fields.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRecord(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let object = (try? JSON.parse(bytes: bytes))?.objectValue else { return 0 }
    if let task = try? TaskRecord(validating: object) {
        let written = task.fileBytes()
        guard let back = (try? JSON.parse(bytes: written))?.objectValue, let again = try? TaskRecord(validating: back) else {
            fatalError("a valid task record does not read back")
        }
        precondition(again == task, "task record round trip changed it")
        _ = (task.taskId, task.status, task.runtime, task.isCommand, task.createdAt)
    }
    if let flow = try? FlowRecord(validating: object) {
        let written = flow.fileBytes()
        guard let back = (try? JSON.parse(bytes: written))?.objectValue, let again = try? FlowRecord(validating: back) else {
            fatalError("a valid flow record does not read back")
        }
        precondition(again == flow, "flow record round trip changed it")
        _ = (flow.flowId, flow.status, flow.isTerminal, flow.revision, Rules.reconcile(flow, tasks: [], at: flow.createdAt))
    }
    return 0
}
