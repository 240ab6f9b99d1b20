/// How many terminal columns text takes, and text cut or padded to a number of columns.
/// Pure: the same answer whatever the locale (glibc's `wcwidth` says -1 for every
/// non-ASCII character in the C locale, which a program started by cron or ssh often has).
public enum TextWidth {
    /// The columns one scalar takes: 0 for combining marks and zero-width characters,
    /// 2 for East Asian wide and fullwidth characters and most emoji, else 1.
    /// Control characters take 0 here; `fit` replaces them before they reach a screen.
    public static func of(_ scalar: Unicode.Scalar) -> Int {
        let v = scalar.value
        if v < 0x20 || (0x7F..<0xA0).contains(v) { return 0 }
        if v < 0x300 { return 1 }
        switch scalar.properties.generalCategory {
        case .nonspacingMark, .enclosingMark, .format: return 0
        default: break
        }
        if v == 0x200B || (0xFE00...0xFE0F).contains(v) { return 0 }
        for range in wide where range.contains(v) { return 2 }
        return 1
    }

    /// The columns a character takes: its first scalar's, or 2 for an emoji presentation sequence.
    public static func of(_ character: Character) -> Int {
        let scalars = character.unicodeScalars
        guard let first = scalars.first else { return 0 }
        let w = of(first)
        if w == 1, scalars.contains(where: { $0.value == 0xFE0F }) { return 2 }
        return w
    }

    /// The columns `text` takes.
    public static func of(_ text: String) -> Int {
        var n = 0
        for ch in text { n += of(ch) }
        return n
    }

    /// `text` on one line in at most `width` columns: control characters (newlines included)
    /// become `?` (a tab a space), and text too wide is cut with a final `…`. With `pad`,
    /// spaces fill it to exactly `width` columns.
    public static func fit(_ text: String, width: Int, pad: Bool = false) -> String {
        guard width > 0 else { return "" }
        var out = ""
        var used = 0
        var cut = false
        // Where `out` stood, and its width, when it last had room for the ellipsis.
        var lastFit = (count: 0, used: 0)
        for ch in text {
            var c = ch
            if ch == "\t" {
                c = " "
            } else if ch.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F..<0xA0).contains($0.value) || isBidiControl($0.value) }) {
                c = "?"
            }
            let w = of(c)
            if used + w > width {
                cut = true
                break
            }
            out.append(c)
            used += w
            if used <= width - 1 { lastFit = (out.unicodeScalars.count, used) }
        }
        if cut {
            // Drop back to where the ellipsis fits, then add it.
            var scalars = String.UnicodeScalarView()
            scalars.append(contentsOf: out.unicodeScalars.prefix(lastFit.count))
            out = String(scalars) + "…"
            used = lastFit.used + 1
        }
        if pad, used < width { out += String(repeating: " ", count: width - used) }
        return out
    }

    /// Bidirectional controls, which can reorder what a line shows.
    static func isBidiControl(_ v: UInt32) -> Bool {
        v == 0x061C || v == 0x200E || v == 0x200F || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v)
    }

    /// East Asian Wide and Fullwidth blocks, and the emoji blocks terminals draw two columns wide.
    private static let wide: [ClosedRange<UInt32>] = [
        0x1100...0x115F, 0x231A...0x231B, 0x2329...0x232A, 0x23E9...0x23EC, 0x23F0...0x23F0, 0x23F3...0x23F3,
        0x25FD...0x25FE, 0x2614...0x2615, 0x2648...0x2653, 0x267F...0x267F, 0x2693...0x2693, 0x26A1...0x26A1,
        0x26AA...0x26AB, 0x26BD...0x26BE, 0x26C4...0x26C5, 0x26CE...0x26CE, 0x26D4...0x26D4, 0x26EA...0x26EA,
        0x26F2...0x26F3, 0x26F5...0x26F5, 0x26FA...0x26FA, 0x26FD...0x26FD, 0x2705...0x2705, 0x270A...0x270B,
        0x2728...0x2728, 0x274C...0x274C, 0x274E...0x274E, 0x2753...0x2755, 0x2757...0x2757, 0x2795...0x2797,
        0x27B0...0x27B0, 0x27BF...0x27BF, 0x2B1B...0x2B1C, 0x2B50...0x2B50, 0x2B55...0x2B55,
        0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF, 0xA960...0xA97F,
        0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE10...0xFE19, 0xFE30...0xFE6F, 0xFF00...0xFF60, 0xFFE0...0xFFE6,
        0x16FE0...0x18AFF, 0x1B000...0x1B2FF, 0x1F004...0x1F004, 0x1F0CF...0x1F0CF, 0x1F18E...0x1F18E,
        0x1F191...0x1F19A, 0x1F200...0x1F251, 0x1F300...0x1F64F, 0x1F680...0x1F6FF, 0x1F7E0...0x1F7EB,
        0x1F90C...0x1F9FF, 0x1FA70...0x1FAFF, 0x20000...0x2FFFD, 0x30000...0x3FFFD,
    ]
}
