// libFuzzer target: the drop validator and the name rules. Any object either validates as a
// drop or is refused with one of the documented codes; a valid task drop's fields make a
// valid task record. Any text is a drop name or not, and any valid owner key encodes to a
// link name that is a single safe file name.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDrop(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let text = String(decoding: bytes, as: UTF8.self)
    _ = DropName.isValid(text)
    if let key = try? OwnerKey.validate(text) {
        let name = OwnerKey.linkName(key)
        precondition(!name.isEmpty && name.utf8.count <= 200 && !name.contains("/") && !name.hasPrefix(".") && !name.hasPrefix("-"), "unsafe link name \(name)")
        precondition(!name.hasPrefix("sha256-") || name.utf8.count == 71 && key.utf8.count > 66, "a literal key took a hashed name: \(name)")
    }
    guard let object = (try? JSON.parse(bytes: bytes))?.objectValue else { return 0 }
    do {
        let drop = try Drop(object)
        if case .task(let task) = drop.kind {
            var record = TaskRecord(
                taskId: "00000000-0000-4000-8000-000000000000", flowId: "00000000-0000-4000-8000-000000000001", ownerKey: task.ownerKey ?? "o",
                runtime: task.newTask.runtime, status: task.newTask.status, at: Timestamp(milliseconds: 0))
            for (k, v) in task.newTask.fields where !v.isNull { record.fields[k] = v }
            precondition((try? TaskRecord(validating: record.fields)) != nil, "a valid task drop made an invalid record")
        }
    } catch {
        let codes: Set<String> = ["unknown_kind", "bad_fields"]
        precondition(codes.contains(error.code), "undocumented code \(error.code)")
    }
    return 0
}
