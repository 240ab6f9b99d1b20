/// A key the user pressed, decoded from the bytes a terminal sends in raw mode.
public enum Key: Equatable, Sendable {
    /// Arrow keys.
    case up, down, left, right
    /// Page keys.
    case pageUp, pageDown
    /// Home and End.
    case home, end
    /// Return or Enter.
    case enter
    /// Escape alone.
    case escape
    /// Backspace.
    case backspace
    /// Tab.
    case tab
    /// Delete.
    case delete
    /// A control key: `control("c")` is Ctrl-C (the letter in lowercase).
    case control(Character)
    /// A printable character.
    case character(Character)
    /// An escape sequence this decoder does not know (F-keys and the like), ignored by callers.
    case unknown
}

/// Decodes keys from raw terminal input. Bytes may arrive split anywhere: an incomplete
/// escape sequence or UTF-8 character waits for the next `feed`; a lone Escape is told
/// from the start of a sequence by `flush()`, which the caller calls when no more input
/// came shortly after (terminals send a sequence in one write).
public struct KeyDecoder: Sendable {
    private var pending: [UInt8] = []

    /// A decoder with nothing pending.
    public init() {}

    /// Whether bytes wait for more (then call `flush()` if none come soon).
    public var hasPending: Bool { !pending.isEmpty }

    /// Adds input and returns the keys it completes.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [Key] {
        pending.append(contentsOf: bytes)
        return decode(final: false)
    }

    /// Decodes what is pending as if no more input will follow it: a lone Escape is Escape.
    public mutating func flush() -> [Key] { decode(final: true) }

    private mutating func decode(final: Bool) -> [Key] {
        var keys: [Key] = []
        var i = 0
        let b = pending
        decoding: while i < b.count {
            let byte = b[i]
            switch byte {
            case 0x1B:
                guard i + 1 < b.count else {
                    if final {
                        keys.append(.escape)
                        i += 1
                    }
                    break decoding
                }
                let next = b[i + 1]
                if next == UInt8(ascii: "[") || next == UInt8(ascii: "O") {
                    // CSI: parameters 0x30-0x3F, intermediates 0x20-0x2F, one final 0x40-0x7E.
                    // SS3: one final byte.
                    var j = i + 2
                    if next == UInt8(ascii: "[") {
                        while j < b.count, (0x20...0x3F).contains(b[j]) { j += 1 }
                    }
                    guard j < b.count else {
                        if final {
                            keys.append(.unknown)
                            i = b.count
                        }
                        break decoding
                    }
                    let params = String(decoding: b[(i + 2)..<j], as: UTF8.self)
                    keys.append(Self.sequence(final: b[j], parameters: params))
                    i = j + 1
                } else if next == 0x1B {
                    keys.append(.escape)
                    i += 1
                } else {
                    // Alt+key: Escape, then the key.
                    keys.append(.escape)
                    i += 1
                }
            case 0x0D, 0x0A:
                keys.append(.enter)
                i += 1
            case 0x09:
                keys.append(.tab)
                i += 1
            case 0x7F, 0x08:
                keys.append(.backspace)
                i += 1
            case 0x00..<0x20:
                keys.append(.control(Character(Unicode.Scalar(byte + 0x60))))
                i += 1
            case 0x20..<0x80:
                keys.append(.character(Character(Unicode.Scalar(byte))))
                i += 1
            default:
                // UTF-8: the lead byte says how many follow.
                let length = byte & 0xE0 == 0xC0 ? 2 : byte & 0xF0 == 0xE0 ? 3 : byte & 0xF8 == 0xF0 ? 4 : 1
                guard i + length <= b.count else {
                    if final {
                        keys.append(.unknown)
                        i = b.count
                    }
                    break decoding
                }
                let text = String(decoding: b[i..<(i + length)], as: UTF8.self)
                keys.append(text.count == 1 && length > 1 ? .character(text.first!) : .unknown)
                i += length
            }
        }
        pending.removeFirst(i)
        return keys
    }

    /// The key of a CSI or SS3 sequence with final byte `final`.
    private static func sequence(final: UInt8, parameters: String) -> Key {
        switch final {
        case UInt8(ascii: "A"): return .up
        case UInt8(ascii: "B"): return .down
        case UInt8(ascii: "C"): return .right
        case UInt8(ascii: "D"): return .left
        case UInt8(ascii: "H"): return .home
        case UInt8(ascii: "F"): return .end
        case UInt8(ascii: "Z"): return .unknown  // Shift-Tab
        case UInt8(ascii: "~"):
            switch parameters.split(separator: ";").first {
            case "1", "7": return .home
            case "4", "8": return .end
            case "3": return .delete
            case "5": return .pageUp
            case "6": return .pageDown
            default: return .unknown
            }
        default: return .unknown
        }
    }
}
