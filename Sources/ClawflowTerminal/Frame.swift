/// How a piece of text looks.
public struct Style: Hashable, Sendable {
    /// A foreground colour (the eight ANSI colours; dropped when colour is off).
    public enum Color: UInt8, Sendable {
        /// Red, for failures.
        case red = 31
        /// Green, for success.
        case green = 32
        /// Yellow, for work in progress.
        case yellow = 33
        /// Blue.
        case blue = 34
        /// Magenta.
        case magenta = 35
        /// Cyan, for waiting work.
        case cyan = 36
    }

    /// Bold (kept without colour: it is not one).
    public var bold = false
    /// Faint.
    public var dim = false
    /// Reverse video (kept without colour: it marks the selection).
    public var reverse = false
    /// The foreground colour, if any.
    public var color: Color?

    /// A style.
    public init(bold: Bool = false, dim: Bool = false, reverse: Bool = false, color: Color? = nil) {
        self.bold = bold
        self.dim = dim
        self.reverse = reverse
        self.color = color
    }

    /// No attributes.
    public static let plain = Style()

    /// The SGR parameters of this style ("" for plain), colour left out unless `color`.
    func parameters(color withColor: Bool) -> String {
        var p: [String] = []
        if bold { p.append("1") }
        if dim, withColor { p.append("2") }
        if reverse { p.append("7") }
        if withColor, let color { p.append(String(color.rawValue)) }
        return p.joined(separator: ";")
    }
}

/// A run of text in one style.
public struct Span: Hashable, Sendable {
    /// The text: one line, no control characters (`Line` makes sure).
    public var text: String
    /// Its style.
    public var style: Style
}

/// One screen line: spans whose widths add up to at most the screen's width.
public struct Line: Hashable, Sendable {
    /// The spans, left to right.
    public private(set) var spans: [Span] = []
    /// The columns taken so far.
    public private(set) var width = 0

    /// An empty line.
    public init() {}

    /// A line of one span, fitted into `width` columns.
    public init(_ text: String, _ style: Style = .plain, width: Int) {
        append(text, style, within: width)
    }

    /// Appends `text` in `style`, cut (with `…`) where the line would pass `limit` columns;
    /// with `pad` to exactly `columns` (still within `limit`). Control characters become `?`.
    public mutating func append(_ text: String, _ style: Style = .plain, columns: Int? = nil, pad: Bool = false, within limit: Int) {
        let room = max(0, limit - width)
        let allowed = min(room, columns ?? room)
        guard allowed > 0 else { return }
        let fitted = TextWidth.fit(text, width: allowed, pad: pad)
        guard !fitted.isEmpty else { return }
        width += TextWidth.of(fitted)
        if let last = spans.last, last.style == style {
            spans[spans.count - 1].text += fitted
        } else {
            spans.append(Span(text: fitted, style: style))
        }
    }

    /// Pads the line with spaces (in `style`) to `limit` columns.
    public mutating func fill(to limit: Int, _ style: Style = .plain) {
        if width < limit { append(String(repeating: " ", count: limit - width), style, within: limit) }
    }

    /// The text without styles.
    public var text: String { spans.map(\.text).joined() }
}

/// What the screen shows: `height` lines of at most `width` columns.
public struct Frame: Equatable, Sendable {
    /// Columns.
    public let width: Int
    /// Rows.
    public let height: Int
    /// Exactly `height` lines.
    public private(set) var lines: [Line]

    /// A blank frame of the given size.
    public init(width: Int, height: Int) {
        self.width = max(0, width)
        self.height = max(0, height)
        lines = Array(repeating: Line(), count: self.height)
    }

    /// Sets row `row` (0-based); rows outside the frame are ignored.
    public subscript(row: Int) -> Line {
        get { row >= 0 && row < height ? lines[row] : Line() }
        set { if row >= 0, row < height { lines[row] = newValue } }
    }

    /// The frame as plain text, one line per row, trailing spaces removed (for a snapshot off a terminal).
    public var plainText: String {
        lines.map { line in
            var t = line.text
            while t.last == " " { t.removeLast() }
            return t
        }.joined(separator: "\n")
    }
}

/// Turns frames into the bytes that change a terminal from one to the next.
public enum Renderer {
    /// The bytes that draw `next` on a screen that shows `previous`: only the lines that
    /// differ, each with a cursor move, its text, and an erase of the rest of the line when
    /// it does not reach the last column. With no previous frame, or one of another size,
    /// the screen is cleared and drawn whole. Colours only with `color` (bold and reverse
    /// are kept: they are not colours).
    public static func draw(_ next: Frame, over previous: Frame?, color: Bool) -> [UInt8] {
        var out: [UInt8] = []
        let whole = previous == nil || previous!.width != next.width || previous!.height != next.height
        if whole { out.append(contentsOf: Array("\u{1B}[0m\u{1B}[H\u{1B}[2J".utf8)) }
        for row in 0..<next.height {
            let line = next.lines[row]
            if whole {
                if line.width == 0 { continue }
            } else if previous!.lines[row] == line {
                continue
            }
            out.append(contentsOf: Array("\u{1B}[\(row + 1);1H".utf8))
            for span in line.spans {
                let p = span.style.parameters(color: color)
                if p.isEmpty {
                    out.append(contentsOf: Array(span.text.utf8))
                } else {
                    out.append(contentsOf: Array("\u{1B}[\(p)m".utf8))
                    out.append(contentsOf: Array(span.text.utf8))
                    out.append(contentsOf: Array("\u{1B}[0m".utf8))
                }
            }
            // At the last column the cursor waits to wrap, and an erase there would take the
            // last character with it.
            if line.width < next.width { out.append(contentsOf: Array("\u{1B}[K".utf8)) }
        }
        return out
    }
}
