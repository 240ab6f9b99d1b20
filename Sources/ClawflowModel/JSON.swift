#if canImport(Glibc)
    import Glibc
#endif

/// A JSON value that round-trips exactly: numbers keep their literal text, objects keep
/// every key (printed sorted), and an explicit `null` stays `null`.
public enum JSON: Sendable, Hashable {
    case null
    case bool(Bool)
    /// A number, kept as the literal text it was parsed from (or printed from an integer).
    case number(String)
    case string(String)
    case array([JSON])
    case object(JSONObject)

    /// A number value from an integer.
    public static func int<I: BinaryInteger>(_ value: I) -> JSON { .number(String(value)) }

    /// The string payload, or nil for any other kind.
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    /// The object payload, or nil for any other kind.
    public var objectValue: JSONObject? { if case .object(let o) = self { return o } else { return nil } }
    /// The array payload, or nil for any other kind.
    public var arrayValue: [JSON]? { if case .array(let a) = self { return a } else { return nil } }
    /// The boolean payload, or nil for any other kind.
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    /// The number as a 64-bit integer when it is one exactly, else nil.
    public var intValue: Int64? { if case .number(let n) = self { return Int64(n) } else { return nil } }
    /// True for `null`.
    public var isNull: Bool { if case .null = self { return true } else { return false } }

    /// A short name of the value's kind, for error messages.
    public var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

// MARK: - Printing

extension JSON {
    /// Pretty-printed text: two-space indent, sorted keys, `"key": value`, no final newline.
    public func pretty() -> String {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        write(into: &out, indent: 0, pretty: true)
        return String(decoding: out, as: UTF8.self)
    }

    /// Compact one-line text with sorted keys (JSON Lines).
    public func compact() -> String {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out, indent: 0, pretty: false)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the UTF-8 text of this value to `out`.
    public func write(into out: inout [UInt8], indent: Int, pretty: Bool) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let n): out.append(contentsOf: n.utf8)
        case .string(let s): JSON.writeString(s, into: &out)
        case .array(let items):
            if items.isEmpty {
                out.append(contentsOf: "[]".utf8)
                return
            }
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                if pretty { JSON.newline(&out, indent + 1) }
                item.write(into: &out, indent: indent + 1, pretty: pretty)
            }
            if pretty { JSON.newline(&out, indent) }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            members.write(into: &out, indent: indent, pretty: pretty, setting: [])
        }
    }

    /// One member of an object being written: a comma after the first, the key, the value.
    fileprivate static func writeMember(_ key: String, _ value: JSON, first: Bool, into out: inout [UInt8], indent: Int, pretty: Bool) {
        if !first { out.append(UInt8(ascii: ",")) }
        if pretty { JSON.newline(&out, indent + 1) }
        JSON.writeString(key, into: &out)
        out.append(UInt8(ascii: ":"))
        if pretty { out.append(UInt8(ascii: " ")) }
        value.write(into: &out, indent: indent + 1, pretty: pretty)
    }

    /// Keys sort by their UTF-8 bytes, as `jq -S` and most tools do.
    static func keyOrder(_ a: String, _ b: String) -> Bool { keyCompare(a, b) < 0 }

    /// How two keys compare by their UTF-8 bytes: negative, zero (equal) or positive, in one
    /// pass (a lookup in a record needs both answers at each step of its binary search).
    static func keyCompare(_ a: String, _ b: String) -> Int {
        if let r = a.utf8.withContiguousStorageIfAvailable({ x in
            b.utf8.withContiguousStorageIfAvailable { y -> Int in
                // A byte loop, not memcmp: keys are short and differ early, and the call into
                // libc cost more than the comparison (7 % of an audit's time).
                let n = min(x.count, y.count)
                var i = 0
                while i < n {
                    if x[i] != y[i] { return x[i] < y[i] ? -1 : 1 }
                    i += 1
                }
                return x.count - y.count
            }
        }), let result = r {
            return result
        }
        if a.utf8.elementsEqual(b.utf8) { return 0 }
        return a.utf8.lexicographicallyPrecedes(b.utf8) ? -1 : 1
    }

    fileprivate static func newline(_ out: inout [UInt8], _ indent: Int) {
        if indent < newlines.count {
            out.append(contentsOf: newlines[indent])
            return
        }
        out.append(UInt8(ascii: "\n"))
        for _ in 0..<indent { out.append(contentsOf: [UInt8(ascii: " "), UInt8(ascii: " ")]) }
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)
    /// A newline and the indentation of each of the first levels, appended as one array (a
    /// byte at a time, or a slice of spaces, cost 3–5 % of printing a listing).
    private static let newlines: [[UInt8]] = (0..<16).map { [UInt8(ascii: "\n")] + [UInt8](repeating: UInt8(ascii: " "), count: 2 * $0) }

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Fast path: nothing to escape, so the bytes go in as they are.
        let plain = s.utf8.withContiguousStorageIfAvailable { buf -> Bool in
            for b in buf where b < 0x20 || b == 0x22 || b == 0x5C || b == 0x7F { return false }
            out.append(contentsOf: buf)
            return true
        }
        if plain == true {
            out.append(UInt8(ascii: "\""))
            return
        }
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x00..<0x20, 0x7F:
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30])
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

// MARK: - Parsing

/// Why a JSON text could not be parsed, with the byte offset where it went wrong.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was wrong.
    public var reason: String
    /// Byte offset into the input.
    public var offset: Int
    /// "reason at byte N".
    public var description: String { "\(reason) at byte \(offset)" }
}

extension JSON {
    /// Parses one JSON document (RFC 8259), surrounding whitespace allowed.
    public static func parse(_ text: String) throws(JSONParseError) -> JSON {
        try parse(bytes: Array(text.utf8))
    }

    /// Parses one JSON document from UTF-8 bytes.
    public static func parse(bytes: borrowing [UInt8]) throws(JSONParseError) -> JSON {
        try bytes.withUnsafeBufferPointer { (buffer) throws(JSONParseError) -> JSON in
            var parser = Parser(bytes: buffer)
            parser.skipWhitespace()
            let value = try parser.value(depth: 0)
            parser.skipWhitespace()
            if parser.index != buffer.count { throw parser.fail("unexpected text after the JSON value") }
            return value
        }
    }

    /// The deepest nesting `parse` accepts: a value at a deeper level is refused.
    public static let maxDepth = 512

    /// The level of the most deeply nested value in this one, the top being at `level`
    /// (what `parse` checks against `maxDepth`).
    public func deepestLevel(from level: Int = 0) -> Int {
        switch self {
        case .array(let items): items.reduce(level) { max($0, $1.deepestLevel(from: level + 1)) }
        case .object(let members): members.values.reduce(level) { max($0, $1.deepestLevel(from: level + 1)) }
        default: level
        }
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0
        static let maxDepth = JSON.maxDepth

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        func fail(_ reason: String) -> JSONParseError { JSONParseError(reason: reason, offset: index) }

        mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x0A, 0x0D, 0x09: index += 1
                default: return
                }
            }
        }

        mutating func value(depth: Int) throws(JSONParseError) -> JSON {
            guard index < bytes.count else { throw fail("unexpected end of input") }
            if depth > Parser.maxDepth { throw fail("nesting deeper than \(Parser.maxDepth)") }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"):
                try literal("true")
                return .bool(true)
            case UInt8(ascii: "f"):
                try literal("false")
                return .bool(false)
            case UInt8(ascii: "n"):
                try literal("null")
                return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: throw fail("unexpected character")
            }
        }

        mutating func literal(_ word: StaticString) throws(JSONParseError) {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count else { throw fail("unexpected end of input") }
            let expected = UnsafeBufferPointer(start: word.utf8Start, count: count)
            for i in 0..<count where bytes[index + i] != expected[i] { throw fail("invalid literal") }
            index += count
        }

        mutating func object(depth: Int) throws(JSONParseError) -> JSON {
            index += 1
            var members: [(String, JSON)] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(JSONObject())
            }
            while true {
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let key = try string()
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                index += 1
                skipWhitespace()
                members.append((key, try value(depth: depth + 1)))
                skipWhitespace()
                guard index < bytes.count else { throw fail("unexpected end of input") }
                if bytes[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                if bytes[index] == UInt8(ascii: "}") {
                    index += 1
                    var duplicate: String?
                    guard let object = JSONObject(members: members, duplicate: &duplicate) else {
                        index -= 1
                        throw fail("duplicate key \"\(duplicate ?? "")\"")
                    }
                    return .object(object)
                }
                throw fail("expected ',' or '}'")
            }
        }

        mutating func array(depth: Int) throws(JSONParseError) -> JSON {
            index += 1
            var items: [JSON] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(items)
            }
            while true {
                skipWhitespace()
                items.append(try value(depth: depth + 1))
                skipWhitespace()
                guard index < bytes.count else { throw fail("unexpected end of input") }
                if bytes[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                if bytes[index] == UInt8(ascii: "]") {
                    index += 1
                    return .array(items)
                }
                throw fail("expected ',' or ']'")
            }
        }

        mutating func number() throws(JSONParseError) -> JSON {
            let start = index
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count else { throw fail("unexpected end of input") }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
            } else if isDigit(bytes[index]) {
                while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            } else {
                throw fail("invalid number")
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard index < bytes.count, isDigit(bytes[index]) else { throw fail("invalid number") }
                while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard index < bytes.count, isDigit(bytes[index]) else { throw fail("invalid number") }
                while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            }
            return .number(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self))
        }

        func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

        mutating func string() throws(JSONParseError) -> String {
            index += 1
            let start = index
            // Fast path: no escapes; pure ASCII needs no UTF-8 validation.
            var ascii = true
            while index < bytes.count {
                let b = bytes[index]
                if b == UInt8(ascii: "\"") {
                    let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
                    index += 1
                    if ascii { return String(decoding: slice, as: UTF8.self) }
                    return try validated(slice, at: start)
                }
                if b == UInt8(ascii: "\\") { break }
                if b < 0x20 { throw fail("control character in string") }
                if b >= 0x80 { ascii = false }
                index += 1
            }
            var out = Array(UnsafeBufferPointer(rebasing: bytes[start..<index]))
            while index < bytes.count {
                let b = bytes[index]
                if b == UInt8(ascii: "\"") {
                    index += 1
                    return try out.withUnsafeBufferPointer { (buf) throws(JSONParseError) -> String in
                        try validated(buf, at: start)
                    }
                }
                if b < 0x20 { throw fail("control character in string") }
                if b != UInt8(ascii: "\\") {
                    out.append(b)
                    index += 1
                    continue
                }
                index += 1
                guard index < bytes.count else { throw fail("unexpected end of input") }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                        else { throw fail("unpaired surrogate") }
                        index += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw fail("unpaired surrogate")
                    }
                    out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
                default: throw fail("invalid escape")
                }
            }
            throw fail("unterminated string")
        }

        mutating func hex4() throws(JSONParseError) -> UInt32 {
            guard index + 4 <= bytes.count else { throw fail("unexpected end of input") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let b = bytes[index]
                let d: UInt32
                switch b {
                case 0x30...0x39: d = UInt32(b - 0x30)
                case 0x41...0x46: d = UInt32(b - 0x41 + 10)
                case 0x61...0x66: d = UInt32(b - 0x61 + 10)
                default: throw fail("invalid \\u escape")
                }
                v = v << 4 | d
                index += 1
            }
            return v
        }

        func validated(_ buf: UnsafeBufferPointer<UInt8>, at offset: Int) throws(JSONParseError) -> String {
            guard let s = String(validating: buf, as: UTF8.self) else {
                throw JSONParseError(reason: "invalid UTF-8 in string", offset: offset)
            }
            return s
        }
    }
}

// No ExpressibleByNilLiteral: `fields[key] = nil` must remove a member, never store `null`.
extension JSON: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral {
    /// A string value from a literal.
    public init(stringLiteral value: String) { self = .string(value) }
    /// A boolean value from a literal.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension JSONObject {
    /// Appends the text of this object with the members `setting` set in it (each replacing a
    /// member of the same key), as the object so changed would be written, without building it.
    /// `setting` must be sorted by key (`JSON.keyOrder`), each key once.
    public func write(into out: inout [UInt8], indent: Int, pretty: Bool, setting extra: [(key: String, value: JSON)]) {
        if isEmpty && extra.isEmpty {
            out.append(contentsOf: "{}".utf8)
            return
        }
        out.append(UInt8(ascii: "{"))
        var i = 0
        var j = 0
        var first = true
        while i < count || j < extra.count {
            if j == extra.count || (i < count && JSON.keyOrder(keys[i], extra[j].key)) {
                JSON.writeMember(keys[i], values[i], first: first, into: &out, indent: indent, pretty: pretty)
                i += 1
            } else {
                if i < count && keys[i] == extra[j].key { i += 1 }
                JSON.writeMember(extra[j].key, extra[j].value, first: first, into: &out, indent: indent, pretty: pretty)
                j += 1
            }
            first = false
        }
        if pretty { JSON.newline(&out, indent) }
        out.append(UInt8(ascii: "}"))
    }
}
