#!/usr/bin/env python3
"""The parse floor: a program with clawflow's swift-argument-parser command tree and nothing else.

    python3 bench/parsefloor.py DUMP_HELP_JSON VERSION OUT_DIR

reads what `clawflow --experimental-dump-help` prints (swift-argument-parser's own description
of the command line: every command, option, flag and positional with its names, kind, parsing
strategy and help) and writes OUT_DIR/Package.swift and OUT_DIR/Sources/parsefloor/Floor.swift:
one ParsableCommand per command, with the same names, options, subcommands, abstracts and
discussions, whose run() does nothing. `make parsefloor` builds it the way `make release` builds
clawflow; bench/startup.sh counts its instructions beside clawflow's (bench/README.md,
"Start-up").

The description has no Swift types, so values are String (String? when optional, [String] when
repeating), flags Bool (Int when repeating), an option whose values are a closed set (allValues)
a Word<WordsN> as clawflow's Word<TaskStatus>, and the options every command has (--spool,
--json) go into one shared ParsableArguments type, as clawflow's GlobalOptions. clawflow's few
other types (one Int64 option, two more option groups) are Strings and direct options here:
slightly fewer distinct types for the runtime to look up, so the floor is, if anything, low.
"""
import json
import os
import re
import sys

KEYWORDS = {"default", "in", "is", "as", "var", "let", "func", "for", "where", "while", "repeat",
            "return", "self", "Self", "static", "struct", "switch", "case", "true", "false",
            "nil", "import", "init", "internal", "private", "public", "protocol", "throw",
            "throws", "try", "enum", "extension", "class", "break", "continue", "do", "else",
            "if", "guard", "operator", "subscript", "super", "Type", "Any", "catch", "defer"}


def swift_string(text):
    """A Swift string literal (backslashes first, so no interpolation survives)."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return '"' + out + '"'


def type_name(path):
    return "".join(re.sub(r"[^A-Za-z0-9]", " ", p).title().replace(" ", "") for p in path) or "Root"


def property_name(arg, taken):
    names = arg.get("names") or []
    base = next((n["name"] for n in names if n["kind"] != "short"), None) or (names[0]["name"] if names else arg.get("valueName") or "value")
    parts = re.split(r"[^A-Za-z0-9]+", base)
    name = parts[0].lower() + "".join(p[:1].upper() + p[1:] for p in parts[1:])
    if not name or name[0].isdigit():
        name = "p" + name
    if name in KEYWORDS:
        name += "Value"
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def name_spec(arg):
    specs = []
    for n in arg.get("names") or []:
        if n["kind"] == "long":
            specs.append(".customLong(%s)" % swift_string(n["name"]))
        elif n["kind"] == "short":
            specs.append(".customShort(Character(%s))" % swift_string(n["name"]))
        else:
            specs.append(".customLong(%s, withSingleDash: true)" % swift_string(n["name"]))
    return "[" + ", ".join(specs) + "]"


def help_spec(arg):
    text = swift_string(arg.get("abstract", ""))
    value = ", valueName: %s" % swift_string(arg["valueName"]) if arg.get("valueName") and arg["kind"] != "flag" else ""
    hidden = ", visibility: .hidden" if not arg.get("shouldDisplay", True) else ""
    return "ArgumentHelp(%s%s%s)" % (text, value, hidden)


def is_builtin(arg):
    names = {(n["kind"], n["name"]) for n in arg.get("names") or []}
    return arg["kind"] == "flag" and (("long", "help") in names or ("long", "version") in names)


def key(arg):
    return (arg["kind"], tuple((n["kind"], n["name"]) for n in arg.get("names") or []))


# Each distinct set of allValues: a WordSet of its own (filled by declaration()).
WORD_SETS = {}


def value_type(arg):
    """String, or for an option whose values are a closed set (allValues), Word<WordsN>: a
    generic ExpressibleByArgument type over one set type per set, as clawflow's Word<TaskStatus>."""
    values = tuple(arg.get("allValues") or ())
    if not values:
        return "String"
    if values not in WORD_SETS:
        WORD_SETS[values] = "Words%d" % (len(WORD_SETS) + 1)
    return "Word<%s>" % WORD_SETS[values]


WORD = """protocol WordSet {
    static var words: [String] { get }
}

struct Word<Set: WordSet>: ExpressibleByArgument {
    let text: String
    init(argument: String) { text = argument }
    static var allValueStrings: [String] { Set.words }
    static var defaultCompletionKind: CompletionKind { .list(Set.words) }
    var defaultValueDescription: String { text }
}
"""


def declaration(arg, taken):
    """The property wrapper and property for one argument."""
    name = property_name(arg, taken)
    repeating, optional, strategy = arg.get("isRepeating", False), arg.get("isOptional", False), arg.get("parsingStrategy", "default")
    if arg["kind"] == "flag":
        if repeating:
            return "@Flag(name: %s, help: %s) var %s: Int" % (name_spec(arg), help_spec(arg), name)
        return "@Flag(name: %s, help: %s) var %s = false" % (name_spec(arg), help_spec(arg), name)
    if arg["kind"] == "option":
        parsing = {"unconditional": ".unconditional", "scanningForValue": ".scanningForValue"}.get(strategy)
        if repeating:
            parsing = {"upToNextOption": ".upToNextOption", "allRemainingInput": ".remaining", "unconditional": ".unconditionalSingleValue"}.get(strategy, ".singleValue")
        parts = ["name: " + name_spec(arg)] + (["parsing: " + parsing] if parsing else []) + ["help: " + help_spec(arg)]
        if repeating:
            return "@Option(%s) var %s: [String] = []" % (", ".join(parts), name)
        default, vtype = arg.get("defaultValue"), value_type(arg)
        if optional and default is None:
            return "@Option(%s) var %s: %s?" % (", ".join(parts), name, vtype)
        if default is not None:
            init = swift_string(default) if vtype == "String" else "%s(argument: %s)" % (vtype, swift_string(default))
            return "@Option(%s) var %s: %s = %s" % (", ".join(parts), name, vtype, init)
        return "@Option(%s) var %s: %s" % (", ".join(parts), name, vtype)
    parsing = {"postTerminator": ".postTerminator", "allUnrecognized": ".allUnrecognized", "allRemainingInput": ".captureForPassthrough"}.get(strategy) if repeating else None
    parts = (["parsing: " + parsing] if parsing else []) + ["help: " + help_spec(arg)]
    if repeating:
        return "@Argument(%s) var %s: [String] = []" % (", ".join(parts), name)
    if optional:
        return "@Argument(%s) var %s: String?" % (", ".join(parts), name)
    return "@Argument(%s) var %s: String" % (", ".join(parts), name)


def commands(command, path=()):
    yield path, command
    for sub in command.get("subcommands") or []:
        if sub["commandName"] == "help" and sub.get("abstract") == "Show subcommand help information.":
            continue  # the help command swift-argument-parser adds itself
        yield from commands(sub, path + (sub["commandName"],))


def generate(dump, version):
    root = dump["command"]
    tree = list(commands(root))
    # Options every command that takes any has: clawflow's GlobalOptions, one shared option
    # group here too.
    shared = None
    for _, cmd in tree:
        keys = {key(a) for a in cmd.get("arguments") or [] if not is_builtin(a)}
        if keys:  # command groups (flows, tasks) take no options
            shared = keys if shared is None else shared & keys
    shared = shared or set()
    lines = ["import ArgumentParser", ""]
    global_args = [a for a in root.get("arguments") or [] if key(a) in shared]
    if global_args:
        taken = set()
        lines.append("struct GlobalOptions: ParsableArguments {")
        lines += ["    " + declaration(a, taken) for a in global_args]
        lines += ["}", ""]
    for path, cmd in tree:
        name = type_name(path)
        subs = [type_name(path + (s["commandName"],)) for s in cmd.get("subcommands") or [] if any(p == path + (s["commandName"],) for p, _ in tree)]
        config = ["commandName: %s" % swift_string(cmd["commandName"])]
        if cmd.get("abstract"):
            config.append("abstract: %s" % swift_string(cmd["abstract"]))
        if cmd.get("discussion"):
            config.append("discussion: %s" % swift_string(cmd["discussion"]))
        if not path:
            config.append("version: %s" % swift_string(version))
        if subs:
            config.append("subcommands: [%s]" % ", ".join(s + ".self" for s in subs))
        if cmd.get("defaultSubcommand"):
            config.append("defaultSubcommand: %s.self" % type_name(path + (cmd["defaultSubcommand"],)))
        if cmd.get("aliases"):
            config.append("aliases: [%s]" % ", ".join(swift_string(a) for a in cmd["aliases"]))
        lines.append(("@main\n" if not path else "") + "struct %s: ParsableCommand {" % name)
        lines.append("    static let configuration = CommandConfiguration(%s)" % ", ".join(config))
        taken = {"configuration", "global"}
        if global_args and shared <= {key(a) for a in cmd.get("arguments") or []}:
            lines.append("    @OptionGroup var global: GlobalOptions")
        for arg in cmd.get("arguments") or []:
            if is_builtin(arg) or key(arg) in shared:
                continue
            lines.append("    " + declaration(arg, taken))
        if not subs:
            lines.append("    func run() {}")
        lines += ["}", ""]
    if WORD_SETS:
        lines.append(WORD)
        for values, name in WORD_SETS.items():
            lines.append("enum %s: WordSet {\n    static var words: [String] { [%s] }\n}\n" % (name, ", ".join(swift_string(v) for v in values)))
    return "\n".join(lines)


PACKAGE = """// swift-tools-version: 6.1
// Generated by bench/parsefloor.py from clawflow --experimental-dump-help; not committed.
import PackageDescription

let package = Package(
    name: "parsefloor",
    dependencies: [.package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")],
    targets: [
        .executableTarget(name: "parsefloor", dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")]),
    ],
    swiftLanguageModes: [.v6]
)
"""


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: parsefloor.py DUMP_HELP_JSON VERSION OUT_DIR")
    dump = json.load(open(sys.argv[1]))
    out = sys.argv[3]
    os.makedirs(os.path.join(out, "Sources", "parsefloor"), exist_ok=True)
    with open(os.path.join(out, "Package.swift"), "w") as f:
        f.write(PACKAGE)
    with open(os.path.join(out, "Sources", "parsefloor", "Floor.swift"), "w") as f:
        f.write(generate(dump, sys.argv[2]))


if __name__ == "__main__":
    main()
