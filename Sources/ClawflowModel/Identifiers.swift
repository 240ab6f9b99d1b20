/// Identifier rules: lowercase UUIDs for flows and tasks, UUIDv7 for new ids.
public enum Identifier {
    /// True when `text` is a lowercase UUID in 8-4-4-4-12 form.
    public static func isValid(_ text: String) -> Bool {
        guard text.utf8.count == 36 else { return false }
        func check<C: Collection<UInt8>>(_ bytes: C) -> Bool {
            var i = 0
            for b in bytes {
                if i == 8 || i == 13 || i == 18 || i == 23 {
                    if b != UInt8(ascii: "-") { return false }
                } else if !((b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66)) {
                    return false
                }
                i += 1
            }
            return true
        }
        return text.utf8.withContiguousStorageIfAvailable(check) ?? check(text.utf8)
    }

    /// True when `text` could be the start of an id: 1–36 lowercase hex digits and dashes.
    public static func isPrefixCandidate(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 36 else { return false }
        return text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) || $0 == UInt8(ascii: "-") }
    }

    /// A UUIDv7 from a Unix time in milliseconds and ten random bytes (RFC 9562 §5.7).
    public static func uuidV7(milliseconds: Int64, random: [UInt8]) -> String {
        precondition(random.count >= 10, "uuidV7 needs ten random bytes")
        var b = [UInt8](repeating: 0, count: 16)
        let ms = UInt64(max(0, milliseconds))
        for i in 0..<6 { b[i] = UInt8(truncatingIfNeeded: ms >> (8 * (5 - UInt64(i)))) }
        for i in 0..<10 { b[6 + i] = random[i] }
        b[6] = 0x70 | (b[6] & 0x0F)
        b[8] = 0x80 | (b[8] & 0x3F)
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(36)
        for (i, byte) in b.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { out.append(UInt8(ascii: "-")) }
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The shortest prefix of `id` (at least `minimum` characters) that no other id in
    /// `others` shares, so that it always resolves back to `id`.
    public static func shortestUniquePrefix(of id: String, among sortedIds: [String], minimum: Int = 13) -> String {
        // The longest common prefix with the neighbours in sorted order decides.
        let idx = lowerBound(sortedIds, id)
        var need = minimum
        let chars = Array(id.utf8)
        for n in [idx - 1, idx, idx + 1] where n >= 0 && n < sortedIds.count && sortedIds[n] != id {
            let other = Array(sortedIds[n].utf8)
            var common = 0
            while common < chars.count, common < other.count, chars[common] == other[common] { common += 1 }
            need = max(need, common + 1)
        }
        return String(decoding: chars.prefix(min(need, chars.count)), as: UTF8.self)
    }

    /// The index of the first id in sorted `sorted` not before `key` (a binary search).
    public static func lowerBound(_ sorted: [String], _ key: String) -> Int {
        var lo = 0
        var hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}

/// Owner keys: validation and the file name of their link in `owners/`.
public enum OwnerKey {
    /// Why an owner key was refused.
    public enum Problem: Error, Sendable, Equatable, CustomStringConvertible {
        case empty
        case tooLong(Int)
        case controlCharacter

        /// A sentence for the user.
        public var description: String {
            switch self {
            case .empty: "owner key is empty"
            case .tooLong(let n): "owner key is \(n) bytes; at most 1024 are allowed"
            case .controlCharacter: "owner key contains a NUL or control character"
            }
        }
    }

    /// Trims surrounding whitespace and checks the rules: non-empty, at most 1024 bytes of
    /// UTF-8, no NUL or control characters. Returns the key to store.
    public static func validate(_ raw: String) throws(Problem) -> String {
        let key = raw.trimmingWhitespace()
        if key.isEmpty { throw .empty }
        if key.utf8.count > 1024 { throw .tooLong(key.utf8.count) }
        if key.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) { throw .controlCharacter }
        return key
    }

    /// The name of the key's link under `owners/` (spool-layout.md, "Owner links").
    public static func linkName(_ key: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for (i, b) in key.utf8.enumerated() {
            let plain =
                (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: ":")
                || b == UInt8(ascii: "@") || b == UInt8(ascii: "+") || b == UInt8(ascii: "-")
            let leadingDotOrDash = i == 0 && (b == UInt8(ascii: ".") || b == UInt8(ascii: "-"))
            if plain && !leadingDotOrDash {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xF)])
            }
        }
        // A key spelled like a hashed name keeps its own: its '-' is encoded, so that no
        // literal key can take over the name of a long key's hash.
        if out.starts(with: Array("sha256-".utf8)) {
            out.replaceSubrange(6..<7, with: Array("%2D".utf8))
        }
        if out.count > 200 {
            return "sha256-" + SHA256.hex(Array(key.utf8))
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Text safe to print on a terminal: control characters become `?`.
public func sanitized(_ text: String) -> String {
    func unsafe(_ s: Unicode.Scalar) -> Bool {
        // Control characters, and every bidirectional control (ALM, LRM, RLM, the embeddings
        // and overrides U+202A-U+202E, the isolates U+2066-U+2069), which can reorder a line.
        s.properties.generalCategory == .control || s.value == 0x061C || s.value == 0x200E || s.value == 0x200F
            || (0x202A...0x202E).contains(s.value) || (0x2066...0x2069).contains(s.value)
    }
    guard text.unicodeScalars.contains(where: unsafe) else { return text }
    var out = String.UnicodeScalarView()
    for s in text.unicodeScalars { out.append(unsafe(s) ? "?" : s) }
    return String(out)
}
