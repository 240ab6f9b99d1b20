import Testing

@testable import ClawflowTerminal

@Suite("Text width and fitting")
struct TextWidthTests {
    @Test("ASCII takes a column a character, CJK and emoji two, combining marks none")
    func widths() {
        #expect(TextWidth.of("abc") == 3)
        #expect(TextWidth.of("日本") == 4)
        #expect(TextWidth.of("e\u{301}") == 1)
        #expect(TextWidth.of("🚀") == 2)
        #expect(TextWidth.of("") == 0)
    }

    @Test("text too wide is cut with an ellipsis inside the width")
    func cuts() {
        #expect(TextWidth.fit("hello world", width: 5) == "hell…")
        #expect(TextWidth.fit("hello", width: 5) == "hello")
        #expect(TextWidth.fit("hello", width: 1) == "…")
        #expect(TextWidth.fit("hello", width: 0) == "")
        // A wide character that would cross the edge is not split.
        #expect(TextWidth.fit("日本語", width: 4) == "日…")
        #expect(TextWidth.of(TextWidth.fit("日本語", width: 4)) == 3)
    }

    @Test("padding fills to exactly the width")
    func pads() {
        #expect(TextWidth.fit("ab", width: 5, pad: true) == "ab   ")
        #expect(TextWidth.fit("日本語", width: 4, pad: true) == "日… ")
    }

    @Test("control characters never reach the screen: escapes and newlines become ?, tabs spaces")
    func controls() {
        #expect(TextWidth.fit("a\u{1B}[2Jb\nc\td", width: 20) == "a?[2Jb?c d")
        #expect(TextWidth.fit("x\u{202E}y", width: 5) == "x?y")
    }
}

@Suite("Frames and the diffing renderer")
struct RendererTests {
    func frame(_ lines: [String], width: Int = 10) -> Frame {
        var f = Frame(width: width, height: lines.count)
        for (i, text) in lines.enumerated() { f[i] = Line(text, width: width) }
        return f
    }

    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test("a first frame clears the screen and draws every non-empty line")
    func first() {
        let out = text(Renderer.draw(frame(["one", "", "three"]), over: nil, color: true))
        #expect(out.hasPrefix("\u{1B}[0m\u{1B}[H\u{1B}[2J"))
        #expect(out.contains("\u{1B}[1;1Hone\u{1B}[K"))
        #expect(!out.contains("\u{1B}[2;1H"))
        #expect(out.contains("\u{1B}[3;1Hthree\u{1B}[K"))
    }

    @Test("a frame over an equal one writes nothing")
    func unchanged() {
        let f = frame(["one", "two"])
        #expect(Renderer.draw(f, over: f, color: true).isEmpty)
    }

    @Test("only the lines that changed are written, each after a cursor move")
    func changed() {
        let out = text(Renderer.draw(frame(["one", "TWO", "three"]), over: frame(["one", "two", "three"]), color: true))
        #expect(out == "\u{1B}[2;1HTWO\u{1B}[K")
    }

    @Test("a line that became empty is erased")
    func erased() {
        #expect(text(Renderer.draw(frame(["one", ""]), over: frame(["one", "two"]), color: true)) == "\u{1B}[2;1H\u{1B}[K")
    }

    @Test("a line reaching the last column is not followed by an erase, which would take its last character")
    func fullWidth() {
        let out = text(Renderer.draw(frame(["0123456789"]), over: frame(["x"]), color: true))
        #expect(out == "\u{1B}[1;1H0123456789")
    }

    @Test("a resize redraws everything")
    func resize() {
        let out = text(Renderer.draw(frame(["one"], width: 12), over: frame(["one"], width: 10), color: true))
        #expect(out.contains("\u{1B}[2J"))
        #expect(out.contains("one"))
    }

    @Test("colours go without colour; bold and reverse stay")
    func noColor() {
        var f = Frame(width: 20, height: 1)
        var line = Line()
        line.append("ok", Style(color: .green), within: 20)
        line.append("sel", Style(reverse: true), within: 20)
        f[0] = line
        let colored = text(Renderer.draw(f, over: nil, color: true))
        let plain = text(Renderer.draw(f, over: nil, color: false))
        #expect(colored.contains("\u{1B}[32mok\u{1B}[0m"))
        #expect(!plain.contains("32m"))
        #expect(plain.contains("1;1Hok\u{1B}[7msel\u{1B}[0m"))
    }

    @Test("a line never grows past its width, and plain text drops trailing spaces")
    func bounded() {
        var line = Line()
        line.append("abcdef", within: 4)
        line.append("more", within: 4)
        #expect(line.text == "abc…")
        #expect(line.width == 4)
        var f = Frame(width: 8, height: 2)
        var padded = Line()
        padded.append("x", columns: 5, pad: true, within: 8)
        f[0] = padded
        #expect(f.plainText == "x\n")
    }
}

@Suite("Table layout")
struct TableTests {
    let columns = [
        Column("ID", minimum: 4, maximum: 8),
        Column("STATUS", minimum: 6, maximum: 9),
        Column("QUEUE", minimum: 5, maximum: 10, dropOrder: 1),
        Column("TEXT", minimum: 4, maximum: 200, flexible: true),
    ]

    @Test("columns are as wide as their widest cell, within their bounds")
    func natural() {
        let w = Table.widths(columns, rows: [["abcdef", "running", "q", "hello"]], total: 100)
        #expect(w == [6, 7, 5, 5])
    }

    @Test("the flexible column gives way first, then the widest, then a column is dropped")
    func narrow() {
        let rows = [["abcdefgh", "succeeded", "build", String(repeating: "x", count: 50)]]
        #expect(Table.widths(columns, rows: rows, total: 60) == [8, 9, 5, 32])
        #expect(Table.widths(columns, rows: rows, total: 30) == [6, 9, 5, 4])
        #expect(Table.widths(columns, rows: rows, total: 20) == [4, 6, 0, 6])
    }

    @Test("a row is laid out cell by cell, the last cell not padded")
    func line() {
        let w = [4, 6, 0, 5]
        let l = Table.line(["abcdef", "ok", "gone", "tail text"], widths: w, total: 40)
        #expect(l.text == "abc…  ok      tail…")
    }
}

@Suite("Key decoding")
struct KeyDecoderTests {
    @Test("arrows, pages, home and end in both CSI and SS3 forms")
    func sequences() {
        var d = KeyDecoder()
        #expect(d.feed(Array("\u{1B}[A\u{1B}[B\u{1B}OC\u{1B}OD".utf8)) == [.up, .down, .right, .left])
        #expect(d.feed(Array("\u{1B}[5~\u{1B}[6~\u{1B}[H\u{1B}[F\u{1B}[1~\u{1B}[4~\u{1B}[3~".utf8)) == [.pageUp, .pageDown, .home, .end, .home, .end, .delete])
        #expect(d.feed(Array("\u{1B}[1;5A".utf8)) == [.up])
        #expect(d.feed(Array("\u{1B}[15~".utf8)) == [.unknown])
    }

    @Test("letters, enter, backspace and control keys")
    func plainKeys() {
        var d = KeyDecoder()
        #expect(d.feed(Array("qc\r\n\u{7F}\u{03}\t".utf8)) == [.character("q"), .character("c"), .enter, .enter, .backspace, .control("c"), .tab])
        #expect(d.feed(Array("é".utf8)) == [.character("é")])
    }

    @Test("a sequence split across reads waits for its end")
    func split() {
        var d = KeyDecoder()
        #expect(d.feed([0x1B]) == [])
        #expect(d.hasPending)
        #expect(d.feed(Array("[".utf8)) == [])
        #expect(d.feed(Array("B".utf8)) == [.down])
        #expect(!d.hasPending)
        #expect(d.feed([0xC3]) == [])
        #expect(d.feed([0xA9]) == [.character("é")])
    }

    @Test("a lone Escape is Escape once no more input follows")
    func loneEscape() {
        var d = KeyDecoder()
        #expect(d.feed([0x1B]) == [])
        #expect(d.flush() == [.escape])
        #expect(!d.hasPending)
        #expect(d.feed(Array("\u{1B}\u{1B}[A".utf8)) == [.escape, .up])
    }
}
