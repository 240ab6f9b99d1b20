import Testing

@testable import ClawflowModel

@Suite("JSON values")
struct JSONTests {
    @Test("pretty printing sorts keys, indents by two spaces and keeps explicit null")
    func prettyPrinting() throws {
        let value = try JSON.parse(#"{"b": [1, 2.50, {"z": null, "a": true}], "a": "x\ny", "c": {}, "d": []}"#)
        #expect(
            value.pretty() == """
                {
                  "a": "x\\ny",
                  "b": [
                    1,
                    2.50,
                    {
                      "a": true,
                      "z": null
                    }
                  ],
                  "c": {},
                  "d": []
                }
                """)
    }

    @Test(
        "a record's text round-trips byte for byte",
        arguments: [
            #"{"schema": 1, "n": -12.5e+3, "s": "é \u0001 \"q\"", "nested": {"k": [null, false]}}"#,
            #"{"big": 123456789012345678901234567890, "zero": 0, "neg": -0.0}"#,
        ])
    func roundTrip(text: String) throws {
        let first = try JSON.parse(text).pretty()
        let second = try JSON.parse(first).pretty()
        #expect(first == second)
        #expect(first.contains("\\u0001") || !text.contains("\\u0001"))
    }

    @Test("numbers keep their literal text")
    func numbersKeepText() throws {
        #expect(try JSON.parse("1.10").compact() == "1.10")
        #expect(try JSON.parse("123456789012345678901234567890").compact() == "123456789012345678901234567890")
    }

    @Test(
        "malformed documents are refused with the byte offset",
        arguments: [
            ("{", "expected a string key"),
            ("[1, 2", "unexpected end of input"),
            (#"{"a" 1}"#, "expected ':'"),
            (#"{"a": 1,}"#, "expected a string key"),
            (#"{"a": 1} x"#, "unexpected text after the JSON value"),
            (#"{"a": 1, "a": 2}"#, "duplicate key"),
            ("[01]", "expected ',' or ']'"),
            (#""\ud800""#, "unpaired surrogate"),
            ("\"a\u{01}\"", "control character in string"),
        ])
    func malformed(text: String, reason: String) {
        #expect {
            _ = try JSON.parse(text)
        } throws: { error in
            (error as? JSONParseError)?.reason.contains(reason) == true
        }
    }

    @Test("escapes and surrogate pairs decode to the right characters")
    func escapes() throws {
        #expect(try JSON.parse(#""\u00e9\ud83d\ude00\/\t""#) == .string("é😀/\t"))
    }

    @Test("nesting deeper than 512 levels is refused instead of overflowing the stack")
    func deepNesting() {
        let text = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { try JSON.parse(text) }
    }

    @Test("compact output has no spaces and sorted keys")
    func compact() throws {
        #expect(try JSON.parse(#"{"b": 1, "a": [1, 2]}"#).compact() == #"{"a":[1,2],"b":1}"#)
    }

    @Test("an object written with members set in it reads as the object so changed would")
    func writeSetting() throws {
        let base = try JSON.parse(#"{"a": 1, "c": {"x": [true, null]}, "e": "é\n", "tasks": 0}"#).objectValue!
        let cases: [[(key: String, value: JSON)]] = [
            [], [("0", .int(0))], [("b", .string("b"))], [("tasks", .array([]))], [("z", .null)],
            [("a", .int(9)), ("b", .object(["k": .string("v")])), ("taskSummary", .int(1)), ("tasks", .array([.int(1), .int(2)])), ("zz", .bool(false))],
        ]
        for extra in cases {
            var changed = base
            for (k, v) in extra { changed[k] = v }
            for (indent, pretty) in [(0, true), (2, true), (0, false)] {
                var want: [UInt8] = []
                JSON.object(changed).write(into: &want, indent: indent, pretty: pretty)
                var got: [UInt8] = []
                base.write(into: &got, indent: indent, pretty: pretty, setting: extra)
                #expect(got == want, "\(extra.map(\.key)) at indent \(indent): \(String(decoding: got, as: UTF8.self))")
            }
        }
        var empty: [UInt8] = []
        JSONObject().write(into: &empty, indent: 1, pretty: true, setting: [])
        #expect(String(decoding: empty, as: UTF8.self) == "{}")
    }

    @Test("key order and equality are by UTF-8 bytes")
    func keyCompare() throws {
        #expect(JSON.keyCompare("a", "a") == 0)
        #expect(JSON.keyCompare("a", "b") < 0 && JSON.keyCompare("b", "a") > 0)
        #expect(JSON.keyCompare("taskSummary", "tasks") < 0, "S (0x53) before s (0x73)")
        #expect(JSON.keyCompare("ab", "abc") < 0 && JSON.keyCompare("abc", "ab") > 0)
        // Canonically equivalent, different bytes: different keys.
        #expect(JSON.keyCompare("\u{E9}", "e\u{301}") != 0)
        var o = JSONObject()
        o["\u{E9}"] = .int(1)
        o["e\u{301}"] = .int(2)
        #expect(o.count == 2)
        #expect(try JSON.parse("{\"\u{E9}\": 1, \"e\u{301}\": 2}").objectValue?.count == 2)
        #expect(throws: JSONParseError.self) { try JSON.parse(#"{"b": 1, "a": 2, "b": 3}"#) }
    }
}
