import ArgumentParser
import ClawflowModel
import Logging

/// A closed set of words an option takes: statuses, severities, log levels.
protocol WordSet {
    /// Every word of the set, in the order help lists them.
    static var words: [String] { get }
}

/// An option's value from a closed set (`--status`, `--severity`, `--log-level`): help and
/// completions list the set. A word outside it is kept as given, and the command refuses it
/// with its own usage error (`Parse`), which says what the word was and what the set is.
struct Word<Set: WordSet>: ExpressibleByArgument, Sendable {
    /// The word as given.
    let text: String

    init(argument: String) { text = argument }

    static var allValueStrings: [String] { Set.words }

    static var defaultCompletionKind: CompletionKind { .list(Set.words) }

    var defaultValueDescription: String { text }
}

extension TaskStatus: WordSet {
    static var words: [String] { allCases.map(\.rawValue) }
}

extension FlowStatus: WordSet {
    static var words: [String] { allCases.map(\.rawValue) }
}

extension AuditSeverity: WordSet {
    static var words: [String] { ["warn", "error"] }
}

extension Logger.Level: WordSet {
    static var words: [String] { allCases.map(\.rawValue) }
}
