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
}
