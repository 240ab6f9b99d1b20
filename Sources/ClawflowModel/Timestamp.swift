/// A point in time with millisecond precision, written as ISO-8601 UTC
/// (`2026-11-24T09:15:02.123Z`), the only timestamp form in records.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    public var milliseconds: Int64

    /// A timestamp from milliseconds since the Unix epoch.
    public init(milliseconds: Int64) { self.milliseconds = milliseconds }

    /// Orders by time.
    public static func < (a: Timestamp, b: Timestamp) -> Bool { a.milliseconds < b.milliseconds }

    /// This timestamp plus a number of seconds.
    public func adding(seconds: Int64) -> Timestamp { Timestamp(milliseconds: milliseconds + seconds * 1000) }

    /// Whole seconds from `earlier` to this timestamp (negative when earlier is later).
    public func seconds(since earlier: Timestamp) -> Int64 { (milliseconds - earlier.milliseconds) / 1000 }

    /// The ISO-8601 UTC text with milliseconds.
    public var description: String {
        let ms = milliseconds
        var days = ms / 86_400_000
        var rem = ms % 86_400_000
        if rem < 0 {
            rem += 86_400_000
            days -= 1
        }
        let (y, m, d) = Timestamp.civil(fromDays: days)
        // Digits written in place (every record and event line carries a few of these: an
        // interpolation of padded Strings cost 5,600 instructions each, callgrind).
        guard (0...9999).contains(y) else { return "\(y)-\(Timestamp.padded(m, 2))-\(Timestamp.padded(d, 2))T" + clock(rem) }
        return String(unsafeUninitializedCapacity: 24) { out in
            var i = 0
            func put(_ value: Int64, _ width: Int) {
                var v = value
                for k in stride(from: width - 1, through: 0, by: -1) {
                    out[i + k] = UInt8(ascii: "0") + UInt8(v % 10)
                    v /= 10
                }
                i += width
            }
            func put(_ byte: Unicode.Scalar) {
                out[i] = UInt8(ascii: byte)
                i += 1
            }
            put(y, 4)
            put("-")
            put(m, 2)
            put("-")
            put(d, 2)
            put("T")
            put(rem / 3_600_000, 2)
            put(":")
            put(rem / 60_000 % 60, 2)
            put(":")
            put(rem / 1000 % 60, 2)
            put(".")
            put(rem % 1000, 3)
            put("Z")
            return i
        }
    }

    /// `HH:MM:SS.fffZ` of `rem` milliseconds into the day (years outside 0...9999 only).
    private func clock(_ rem: Int64) -> String {
        "\(Timestamp.padded(rem / 3_600_000, 2)):\(Timestamp.padded(rem / 60_000 % 60, 2)):\(Timestamp.padded(rem / 1000 % 60, 2)).\(Timestamp.padded(rem % 1000, 3))Z"
    }

    private static func padded(_ v: Int64, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (or a `+HH:MM`/`-HH:MM` offset); nil when malformed.
    public init?(iso8601 text: String) {
        guard let ms = text.utf8.withContiguousStorageIfAvailable({ Timestamp.parse($0) }) ?? Timestamp.parse(Array(text.utf8)) else { return nil }
        milliseconds = ms
    }

    private static func parse<B: RandomAccessCollection<UInt8>>(_ b: B) -> Int64? where B.Index == Int {
        func num(_ from: Int, _ count: Int) -> Int64? {
            guard from + count <= b.count else { return nil }
            var v: Int64 = 0
            for i in from..<(from + count) {
                guard b[i] >= 0x30, b[i] <= 0x39 else { return nil }
                v = v * 10 + Int64(b[i] - 0x30)
            }
            return v
        }
        func at(_ i: Int, _ c: Unicode.Scalar) -> Bool { i < b.count && b[i] == UInt8(ascii: c) }
        guard let y = num(0, 4), at(4, "-"), let mo = num(5, 2), at(7, "-"), let d = num(8, 2),
            at(10, "T") || at(10, "t"), let h = num(11, 2), at(13, ":"), let mi = num(14, 2),
            at(16, ":"), let s = num(17, 2),
            (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, s < 61
        else { return nil }
        var i = 19
        var milli: Int64 = 0
        if at(i, ".") {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                if digits < 3 { milli = milli * 10 + Int64(b[i] - 0x30) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            if digits < 3 { for _ in digits..<3 { milli *= 10 } }  // a range 4..<3 would trap
        }
        var offsetMinutes: Int64 = 0
        if at(i, "Z") || at(i, "z") {
            i += 1
        } else if at(i, "+") || at(i, "-") {
            let sign: Int64 = at(i, "-") ? -1 : 1
            guard let oh = num(i + 1, 2), at(i + 3, ":"), let om = num(i + 4, 2) else { return nil }
            offsetMinutes = sign * (oh * 60 + om)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let days = Timestamp.days(fromCivil: y, mo, d)
        return ((days * 24 + h) * 60 + mi - offsetMinutes) * 60_000 + s * 1000 + milli
    }

    // Proleptic Gregorian calendar conversions (days since 1970-01-01), after the
    // well-known era/day-of-era method.
    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}

/// Parses durations: a number of seconds, or numbers with `s`, `m`, `h`, `d` units
/// (`90`, `30s`, `10m`, `1h30m`, `7d`).
public enum DurationText {
    /// Seconds in `text`, or nil when it is not a valid duration.
    public static func seconds(_ text: String) -> Int64? {
        let t = text.trimmingWhitespace()
        guard !t.isEmpty else { return nil }
        if let plain = Int64(t), plain >= 0 { return plain }
        var total: Int64 = 0
        var current: Int64? = nil
        var lastUnit = Int64.max
        for ch in t {
            if let digit = ch.wholeNumberValue, ch.isASCII {
                let (m, o1) = (current ?? 0).multipliedReportingOverflow(by: 10)
                let (v, o2) = m.addingReportingOverflow(Int64(digit))
                if o1 || o2 { return nil }
                current = v
                continue
            }
            let unit: Int64
            switch ch {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86_400
            default: return nil
            }
            guard let n = current, unit < lastUnit else { return nil }
            let (part, o1) = n.multipliedReportingOverflow(by: unit)
            let (sum, o2) = total.addingReportingOverflow(part)
            if o1 || o2 { return nil }
            total = sum
            current = nil
            lastUnit = unit
        }
        return current == nil ? total : nil
    }

    /// A duration for people, in its two largest units: `45 s`, `12m 5s`, `3h 20m`, `7d 2h`.
    public static func describe(_ seconds: Int64) -> String {
        let s = max(0, seconds)
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60)m \(s % 60)s" }
        if s < 86_400 { return "\(s / 3600)h \(s % 3600 / 60)m" }
        return "\(s / 86_400)d \(s % 86_400 / 3600)h"
    }
}

extension String {
    /// The string without leading and trailing Unicode whitespace and newlines.
    public func trimmingWhitespace() -> String {
        var scalars = Substring(self).unicodeScalars[...]
        while let f = scalars.first, f.properties.isWhitespace { scalars.removeFirst() }
        while let l = scalars.last, l.properties.isWhitespace { scalars.removeLast() }
        // String(Substring(_:)), not String.UnicodeScalarView(scalars): that initialiser is
        // generic over the sequence, and its first use makes the runtime look up a protocol
        // conformance by scanning every conformance record of the binary (about 0.16 M
        // instructions of each command's start; bench/README.md, "Start-up").
        return String(Substring(scalars))
    }
}

/// Sizes as people write them: `4096`, `512K`, `64M`, `1G` (binary units; `KiB`, `MiB`,
/// `GiB` and a trailing `B` are accepted too).
public enum SizeText {
    /// Bytes in `text`, or nil when it is not a valid size.
    public static func bytes(_ text: String) -> Int64? {
        var t = Substring(text.trimmingWhitespace())
        if t.last == "B" || t.last == "b" { t = t.dropLast() }
        if t.last == "i", let u = t.dropLast().last, "KkMmGg".contains(u) { t = t.dropLast() }
        var unit: Int64 = 1
        switch t.last {
        case "K", "k": unit = 1 << 10
        case "M", "m": unit = 1 << 20
        case "G", "g": unit = 1 << 30
        default: break
        }
        if unit > 1 { t = t.dropLast() }
        guard !t.isEmpty, t.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int64(t) else { return nil }
        let (value, overflow) = n.multipliedReportingOverflow(by: unit)
        return overflow ? nil : value
    }

    /// A size for people: `64 MiB`, `512 KiB`, else bytes.
    public static func describe(_ bytes: Int64) -> String {
        for (unit, name) in [(Int64(1) << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] where bytes >= unit && bytes % unit == 0 {
            return "\(bytes / unit) \(name)"
        }
        return "\(bytes) bytes"
    }
}
