// libFuzzer target: the JSON parser and writer (fuzz/run.sh builds it with the model's sources).
// Any input: parsing never crashes or hangs; a value that parses is written back (pretty and
// compact) as text that parses to the same value.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let value = try? JSON.parse(bytes: bytes) else { return 0 }
    for pretty in [true, false] {
        var out: [UInt8] = []
        value.write(into: &out, indent: 0, pretty: pretty)
        guard let again = try? JSON.parse(bytes: out) else { fatalError("written JSON does not parse: \(String(decoding: out.prefix(200), as: UTF8.self))") }
        precondition(again == value, "parse -> write -> parse changed the value")
    }
    return 0
}
