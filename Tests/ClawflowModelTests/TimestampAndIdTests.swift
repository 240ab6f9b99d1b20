import Testing

@testable import ClawflowModel

@Suite("Timestamps, durations and ids")
struct TimestampAndIdTests {
    @Test(
        "timestamps print as ISO-8601 UTC with milliseconds",
        arguments: [
            (Int64(0), "1970-01-01T00:00:00.000Z"),
            (Int64(1_795_000_000_123), "2026-11-18T11:06:40.123Z"),
            (Int64(951_782_400_000), "2000-02-29T00:00:00.000Z"),
            (Int64(-1), "1969-12-31T23:59:59.999Z"),
        ])
    func printing(ms: Int64, text: String) {
        #expect(Timestamp(milliseconds: ms).description == text)
        #expect(Timestamp(iso8601: text)?.milliseconds == ms)
    }

    @Test("a year past 9999 prints with all its digits")
    func farFuture() {
        #expect(Timestamp(milliseconds: 253_402_300_800_000 + 3_723_004).description == "10000-01-01T01:02:03.004Z")
    }

    @Test("offsets and shorter fractions parse; nonsense does not")
    func parsing() {
        #expect(Timestamp(iso8601: "2026-11-24T10:15:02.5+01:00")?.description == "2026-11-24T09:15:02.500Z")
        #expect(Timestamp(iso8601: "2026-11-24T09:15:02Z")?.description == "2026-11-24T09:15:02.000Z")
        for bad in ["", "2026-11-24", "2026-13-01T00:00:00Z", "2026-11-24T09:15:02", "2026-11-24T09:15:02.Z", "x026-11-24T09:15:02Z"] {
            #expect(Timestamp(iso8601: bad) == nil, "\(bad) should not parse")
        }
    }

    @Test("more than three digits of fraction parse (the rest dropped) instead of trapping (found by fuzz/run.sh)")
    func longFraction() {
        #expect(Timestamp(iso8601: "2026-11-30T01:21:25.2247Z")?.description == "2026-11-30T01:21:25.224Z")
        #expect(Timestamp(iso8601: "2026-11-30T01:21:25.123456789Z")?.milliseconds == Timestamp(iso8601: "2026-11-30T01:21:25.123Z")?.milliseconds)
    }

    @Test(
        "durations accept seconds and s/m/h/d units",
        arguments: [
            ("90", Int64(90)), ("30s", 30), ("10m", 600), ("1h30m", 5400), ("7d", 604_800), (" 2h ", 7200),
        ])
    func durations(text: String, seconds: Int64) {
        #expect(DurationText.seconds(text) == seconds)
    }

    @Test("malformed durations are refused", arguments: ["", "-5", "1x", "m", "30m1h", "1.5h", "99999999999999999999d"])
    func badDurations(text: String) {
        #expect(DurationText.seconds(text) == nil)
    }

    @Test(
        "trimming removes leading and trailing Unicode whitespace and keeps the rest, scalar for scalar",
        arguments: [
            ("", ""), ("   ", ""), (" \t\n\r", ""), ("x", "x"), ("  a b  ", "a b"),
            ("\u{00A0}\u{2003}key\u{3000}\n", "key"), ("\u{200B}x", "\u{200B}x"),
            ("e\u{301} ", "e\u{301}"), (" \u{301}x", "\u{301}x"), ("\u{1F600} \u{1F600}\t", "\u{1F600} \u{1F600}"),
        ])
    func trimming(text: String, trimmed: String) {
        #expect(Array(text.trimmingWhitespace().unicodeScalars) == Array(trimmed.unicodeScalars))
    }

    @Test("UUIDv7 ids are lowercase, versioned and time-ordered")
    func uuidV7() {
        let a = Identifier.uuidV7(milliseconds: 1_795_000_000_000, random: Array(repeating: 0xFF, count: 10))
        let b = Identifier.uuidV7(milliseconds: 1_795_000_000_001, random: Array(repeating: 0x00, count: 10))
        #expect(Identifier.isValid(a) && Identifier.isValid(b))
        #expect(a < b)
        #expect(Array(a)[14] == "7")
        #expect("89ab".contains(Array(a)[19]))
        #expect(!Identifier.isValid(a.uppercased()))
        #expect(!Identifier.isValid("not-an-id"))
    }

    @Test("the shortest unique prefix is at least 13 characters and never ambiguous")
    func shortestPrefix() {
        let ids = [
            "01a22a0a-deff-7066-8a25-0cc6c3d39aea",
            "01a22a0a-deff-7066-9a25-0cc6c3d39aea",
            "01a22a0a-dfb1-74a1-888e-0dbc40e664b4",
        ].sorted()
        #expect(Identifier.shortestUniquePrefix(of: ids[2], among: ids) == "01a22a0a-dfb1")
        #expect(Identifier.shortestUniquePrefix(of: ids[0], among: ids) == "01a22a0a-deff-7066-8")
        for id in ids {
            let p = Identifier.shortestUniquePrefix(of: id, among: ids)
            #expect(ids.filter { $0.hasPrefix(p) } == [id])
        }
    }
}

@Suite("Owner keys")
struct OwnerKeyTests {
    @Test("keys are trimmed and refused when empty, too long or holding control characters")
    func validation() throws {
        #expect(try OwnerKey.validate("  session-1 \n") == "session-1")
        #expect(throws: OwnerKey.Problem.empty) { try OwnerKey.validate("   ") }
        #expect(throws: OwnerKey.Problem.controlCharacter) { try OwnerKey.validate("a\u{7}b") }
        #expect(throws: OwnerKey.Problem.controlCharacter) { try OwnerKey.validate("a\u{0}b") }
        #expect(throws: OwnerKey.Problem.tooLong(1025)) { try OwnerKey.validate(String(repeating: "x", count: 1025)) }
        #expect(try OwnerKey.validate(String(repeating: "é", count: 512)).utf8.count == 1024)
    }

    @Test(
        "link names percent-encode unsafe bytes and a leading dot or dash",
        arguments: [
            ("session-1", "session-1"),
            ("team/a b", "team%2Fa%20b"),
            (".hidden", "%2Ehidden"),
            ("-x", "%2Dx"),
            ("a.b_c:d@e+f-g", "a.b_c:d@e+f-g"),
            ("é", "%C3%A9"),
            ("%", "%25"),
        ])
    func linkNames(key: String, name: String) {
        #expect(OwnerKey.linkName(key) == name)
    }

    @Test("names longer than 200 bytes become sha256-<hex of the key>")
    func longNames() {
        let key = String(repeating: "/", count: 67)  // 201 bytes encoded
        #expect(OwnerKey.linkName(key) == "sha256-" + SHA256.hex(Array(key.utf8)))
        #expect(OwnerKey.linkName(String(repeating: "/", count: 66)).count == 198)
    }

    @Test("SHA-256 matches the FIPS test vectors")
    func sha256() {
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test("sanitising replaces control and bidi characters")
    func sanitising() {
        #expect(sanitized("ok\u{1B}[31mred\u{7}") == "ok?[31mred?")
        #expect(sanitized("a\u{202E}b") == "a?b")
        #expect(sanitized("plain é") == "plain é")
    }
}
