/// A column of a table laid out to a screen's width.
public struct Column: Sendable, Equatable {
    /// The heading.
    public var title: String
    /// The narrowest it may be shown (cells are cut with `…` to fit).
    public var minimum: Int
    /// The widest it needs to be.
    public var maximum: Int
    /// Whether it takes the width left over (at most one column should).
    public var flexible: Bool
    /// Columns with a higher number are dropped first when the screen is too narrow.
    public var dropOrder: Int

    /// A column.
    public init(_ title: String, minimum: Int, maximum: Int, flexible: Bool = false, dropOrder: Int = 0) {
        self.title = title
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self.flexible = flexible
        self.dropOrder = dropOrder
    }
}

/// Lays out rows of cells as columns in a given number of columns of the screen.
public enum Table {
    /// The gap between two columns.
    public static let gap = 2

    /// The width of each column (0 for a column dropped): each as wide as its widest cell
    /// or heading within its minimum and maximum; when they do not fit, columns are narrowed
    /// towards their minimum (widest first) and then dropped (highest `dropOrder` first);
    /// the flexible column takes whatever is left over, up to its widest cell.
    public static func widths(_ columns: [Column], rows: [[String]], total: Int) -> [Int] {
        var want = columns.map { max(TextWidth.of($0.title), $0.minimum) }
        for row in rows {
            for (i, cell) in row.enumerated() where i < want.count {
                want[i] = max(want[i], min(TextWidth.of(cell), columns[i].maximum))
            }
        }
        for i in want.indices { want[i] = min(want[i], max(columns[i].maximum, TextWidth.of(columns[i].title))) }
        var shown = Array(repeating: true, count: columns.count)
        func used(_ w: [Int]) -> Int {
            let n = shown.filter { $0 }.count
            return zip(w, shown).reduce(0) { $0 + ($1.1 ? $1.0 : 0) } + max(0, n - 1) * gap
        }
        var widths = want
        // Narrow the widest columns towards their minimum, the flexible one first.
        if let f = columns.firstIndex(where: \.flexible) {
            let over = used(widths) - total
            if over > 0 { widths[f] = max(columns[f].minimum, widths[f] - over) }
        }
        while used(widths) > total {
            let candidates = widths.indices.filter { shown[$0] && widths[$0] > columns[$0].minimum }
            guard let widest = candidates.max(by: { widths[$0] - columns[$0].minimum < widths[$1] - columns[$1].minimum }) else { break }
            widths[widest] -= 1
        }
        // Still too wide: drop columns, highest drop order first (the first column is kept).
        while used(widths) > total {
            let droppable = columns.indices.filter { shown[$0] && $0 > 0 && columns[$0].dropOrder > 0 }
            guard let drop = droppable.max(by: { (columns[$0].dropOrder, $0) < (columns[$1].dropOrder, $1) }) else { break }
            shown[drop] = false
        }
        // Left over room goes to the flexible column, up to what it wants.
        if let f = columns.firstIndex(where: \.flexible), shown[f] {
            let room = total - used(widths)
            if room > 0 { widths[f] = min(want[f], widths[f] + room) }
        }
        return widths.indices.map { shown[$0] ? widths[$0] : 0 }
    }

    /// One row as a line: each cell cut or padded to its column's width (dropped columns
    /// left out), in the style `style(column)` gives, within `total` columns.
    public static func line(_ cells: [String], widths: [Int], total: Int, style: (Int) -> Style = { _ in .plain }) -> Line {
        var line = Line()
        var first = true
        let last = widths.lastIndex { $0 > 0 } ?? -1
        for (i, cell) in cells.enumerated() where i < widths.count && widths[i] > 0 {
            if !first { line.append(String(repeating: " ", count: gap), within: total) }
            first = false
            line.append(cell, style(i), columns: widths[i], pad: i != last, within: total)
        }
        return line
    }
}
