// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "clawflow",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "clawflow", targets: ["clawflow"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // Entry point only: hands the command line to ClawflowCommands.
        .executableTarget(
            name: "clawflow",
            dependencies: ["ClawflowCommands", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // One subcommand per file, output rendering, exit codes.
        .target(
            name: "ClawflowCommands",
            dependencies: [
                "ClawflowWatch",
                "ClawflowRunner",
                "ClawflowSpool",
                "ClawflowModel",
                "ClawflowTerminal",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The watcher: the only module that imports libinotifytools, from one dedicated thread.
        // It reads and writes through ClawflowSpool alone.
        .target(
            name: "ClawflowWatch",
            dependencies: [
                "ClawflowRunner",
                "ClawflowSpool",
                "ClawflowModel",
                "CInotifyTools",
                "CSystemShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // `run`: starting detached commands, their supervisor, timeouts (liveness and process
        // groups are ClawflowSpool's, so that every read records `lost`).
        .target(
            name: "ClawflowRunner",
            dependencies: [
                "ClawflowSpool",
                "ClawflowModel",
                "CSystemShims",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // libinotifytools (Debian libinotifytools0-dev, GPL-2.0).
        .systemLibrary(name: "CInotifyTools", providers: [.apt(["libinotifytools0-dev"])]),
        // The filesystem as a database: durable primitives, layout, locks, the one mutation
        // path, reads that record `lost`, the cancel protocol.
        .target(
            name: "ClawflowSpool",
            dependencies: [
                "ClawflowModel",
                "CSystemShims",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The full-screen view of `top`: frames diffed line by line, keys decoded from raw
        // input, raw mode and the alternate screen, restored on exit and on signals. Pure but
        // for Terminal.swift; no dependency (console-kit and Rainbow do styled lines and
        // colours, not a diffed full screen with raw keys: README.md, "top").
        .target(name: "ClawflowTerminal"),
        // Pure values and rules: records, JSON, ids, statuses, precedence, lookup. No I/O.
        .target(name: "ClawflowModel"),
        // What Swift cannot reach, a file each: syscalls.c, the syscalls Glibc hides without
        // _GNU_SOURCE (renameat2, syncfs, getdents64, statfs, flock, pidfd_open); flush.c, the
        // threads that issue a barrier's fsyncs together; spawn.c, the fork/exec of a held
        // command or supervisor, after which only C may run.
        .target(name: "CSystemShims"),
        // Temporary spools and a runner for the built binary, shared by the test targets.
        .target(name: "ClawflowTestSupport", path: "Tests/ClawflowTestSupport"),
        .testTarget(name: "ClawflowModelTests", dependencies: ["ClawflowModel"]),
        .testTarget(name: "ClawflowSpoolTests", dependencies: ["ClawflowSpool", "ClawflowModel", "ClawflowTestSupport"]),
        .testTarget(name: "ClawflowCommandsTests", dependencies: ["ClawflowModel", "ClawflowTestSupport"]),
        .testTarget(name: "ClawflowRunnerTests", dependencies: ["ClawflowRunner", "ClawflowSpool", "ClawflowModel"]),
        .testTarget(name: "ClawflowTerminalTests", dependencies: ["ClawflowTerminal"]),
        .testTarget(name: "ClawflowWatchTests", dependencies: ["ClawflowWatch", "ClawflowSpool", "ClawflowModel", "ClawflowTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
