/// The members of a JSON object, kept sorted by the UTF-8 bytes of their keys (the order
/// records are written in), so lookups need no hashing and printing needs no sorting.
public struct JSONObject: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    /// The keys, sorted and unique.
    public private(set) var keys: [String]
    /// The values, in the order of `keys`.
    public private(set) var values: [JSON]

    /// An empty object.
    public init() {
        keys = []
        values = []
    }

    /// An object with the members of a dictionary.
    public init(_ dictionary: [String: JSON]) {
        let sorted = dictionary.sorted { JSON.keyOrder($0.key, $1.key) }
        keys = sorted.map(\.key)
        values = sorted.map(\.value)
    }

    /// An object from a dictionary literal (a later duplicate key wins).
    public init(dictionaryLiteral elements: (String, JSON)...) {
        self.init()
        for (k, v) in elements { self[k] = v }
    }

    /// Builds an object from members in document order; nil when a key repeats (the
    /// repeated key is returned through `duplicate`).
    init?(members: [(String, JSON)], duplicate: inout String?) {
        var sorted = true
        for i in members.indices.dropFirst() where !JSON.keyOrder(members[i - 1].0, members[i].0) {
            sorted = false
            break
        }
        let ordered = sorted ? members : members.sorted { JSON.keyOrder($0.0, $1.0) }
        if !sorted {
            for i in ordered.indices.dropFirst() where JSON.keyCompare(ordered[i - 1].0, ordered[i].0) == 0 {
                duplicate = ordered[i].0
                return nil
            }
        }
        keys = ordered.map(\.0)
        values = ordered.map(\.1)
    }

    /// The number of members.
    public var count: Int { keys.count }
    /// Whether there are no members.
    public var isEmpty: Bool { keys.isEmpty }

    /// The position of `key`, or where it would go.
    private func search(_ key: String) -> (index: Int, found: Bool) {
        var lo = 0
        var hi = keys.count
        while lo < hi {
            let mid = (lo + hi) / 2
            let c = JSON.keyCompare(keys[mid], key)
            if c == 0 { return (mid, true) }
            if c < 0 { lo = mid + 1 } else { hi = mid }
        }
        return (lo, false)
    }

    /// The value of `key`; setting nil removes the member.
    public subscript(key: String) -> JSON? {
        get {
            let (i, found) = search(key)
            return found ? values[i] : nil
        }
        set {
            let (i, found) = search(key)
            switch (found, newValue) {
            case (true, .some(let v)): values[i] = v
            case (true, .none):
                keys.remove(at: i)
                values.remove(at: i)
            case (false, .some(let v)):
                keys.insert(key, at: i)
                values.insert(v, at: i)
            case (false, .none): break
            }
        }
    }

    /// The members in key order.
    public func makeIterator() -> some IteratorProtocol<(key: String, value: JSON)> {
        zip(keys, values).lazy.map { (key: $0.0, value: $0.1) }.makeIterator()
    }
}
