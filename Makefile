# clawflow — the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
PREFIX ?= /usr/local

# make install: where things go. PREFIX=$HOME/.local needs no root; DESTDIR stages a
# package tree (make install DESTDIR=/tmp/pkg PREFIX=/usr).
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
INSTALL ?= install

RELEASE_DIR := .build-release
RELEASE_BIN := $(RELEASE_DIR)/release/clawflow
# Man pages and completions are generated here at install time, never committed.
GEN_DIR := $(RELEASE_DIR)/generated
# Where swift-argument-parser's generate-manual plugin writes (its work directory).
MANUAL_OUT := $(RELEASE_DIR)/plugins/GenerateManual/outputs/clawflow
# MANUAL_FLAGS=--multi-page adds a page per subcommand (clawflow.flows.list.1, ...).
MANUAL_FLAGS ?=
# The page's date: $SOURCE_DATE_EPOCH, else the last commit's, so that rebuilds are identical.
MANUAL_DATE ?= $(shell if [ -n "$$SOURCE_DATE_EPOCH" ]; then date -u -d "@$$SOURCE_DATE_EPOCH" +%F; else git log -1 --format=%cs 2>/dev/null; fi)

.PHONY: all deps build release static-libs parsefloor generated install uninstall demo test fuzz bench powercut format clean

all: build

# System packages: libinotifytools (the watcher's library), jq (the demo), strace (the
# crash tests and the benchmark), valgrind (the start-up instruction counts) and tmux (the
# tests and benchmark of top). Installed only when missing; needs root, as on CI.
deps:
	@if [ ! -f /usr/include/inotifytools/inotifytools.h ] || ! command -v jq >/dev/null || ! command -v strace >/dev/null || ! command -v valgrind >/dev/null || ! command -v tmux >/dev/null; then \
		echo "Installing libinotifytools0-dev, jq, strace, valgrind and tmux..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libinotifytools0-dev jq strace valgrind tmux >/dev/null; \
	fi

build: deps
	$(SWIFT) build

# The release binary links the Swift runtime statically: it starts in about half the time
# of one that loads the runtime's shared libraries. It is also linked position-dependent
# (-no-pie): a PIE of this size makes the loader apply about 41,500 relocations, and copy
# the pages they touch, at every start, about 1 ms of each command here; PIE=1 links a PIE
# (README.md, "Install"). And it links libstdc++ (which the Swift runtime needs) and
# libinotifytools statically: the loader's symbol lookups for libstdc++.so were 1.8 M of the
# 9.8 M instructions of `clawflow --version` (bench/README.md, "Start-up"). The Swift driver
# always passes -lstdc++, so the archives are offered under .so names in a directory searched
# first ($(STATIC_LIBS)); glibc stays shared (its name service, getgrnam, needs it). Only the
# clawflow product is built here (the test support target links Swift Testing).
# -disable-concrete-type-metadata-mangled-name-accessors: the compiler otherwise gets the
# metadata of a concrete generic type (a `[String: TaskRecord]`'s storage, a property wrapper
# of the command tree) by handing its mangled name to the runtime, which must then look up
# each conformance the type's generic requirements name (`String: Hashable`), and the first
# lookup of a pair scans every conformance record of the binary; with the flag it calls the
# type's metadata accessor with the witness tables it already knows: 1.6 M (`--version`) to
# 3 M instructions fewer a command, most in the parse (bench/README.md, "Start-up").
# --no-export-dynamic: the driver's static-stdlib link exports every symbol of the objects it
# links (-export-dynamic; it keeps its archives' own out), over 4,000 here, and at every start
# the runtime finds its own path with dladdr, which walks all of them: 0.15 M instructions.
# --disable-local-rpath: SwiftPM gives the binary a RUNPATH of $ORIGIN, so at every start the
# loader looked for libm, libgcc_s and libc in the binary's directory and its hwcaps
# subdirectories first: 24 failed opens and stats, and a readlink of /proc/self/exe.
# -static-libgcc: the unwinder the runtime links is taken from libgcc_eh.a, so the loader
# maps one shared library fewer and searches one fewer for every symbol it binds (about
# 0.1 ms of CPU a start here).
STATIC_LIBS := $(CURDIR)/$(RELEASE_DIR)/static-libs
STATIC_ARCHIVES := $(shell cc -print-file-name=libstdc++.a) /usr/lib/$(shell cc -print-multiarch)/libinotifytools.a
RELEASE_FLAGS := -c release --static-swift-stdlib $(if $(PIE),,-Xswiftc -Xclang-linker -Xswiftc -no-pie) \
	-Xswiftc -Xclang-linker -Xswiftc -L$(STATIC_LIBS) \
	-Xswiftc -Xfrontend -Xswiftc -disable-concrete-type-metadata-mangled-name-accessors \
	-Xswiftc -Xclang-linker -Xswiftc -static-libgcc -Xlinker --no-export-dynamic --disable-local-rpath
release: deps static-libs
	$(SWIFT) build $(RELEASE_FLAGS) --product clawflow --scratch-path $(RELEASE_DIR)

# libstdc++.a and libinotifytools.a as libstdc++.so and libinotifytools.so, for the release
# link above; an archive that is missing is left out, and that library is linked shared.
static-libs:
	@mkdir -p "$(STATIC_LIBS)"
	@for a in $(STATIC_ARCHIVES); do \
		n=$$(basename "$$a" .a).so; \
		if [ -f "$$a" ]; then ln -sfn "$$a" "$(STATIC_LIBS)/$$n"; else rm -f "$(STATIC_LIBS)/$$n"; fi; \
	done

# The parse floor (bench/parsefloor.py): clawflow's command tree, as swift-argument-parser
# describes it, in a program that does nothing else, built as the release binary is. Its
# source is generated under $(FLOOR_DIR)/src from the release binary's --experimental-dump-help.
FLOOR_DIR := .build-floor
FLOOR_BIN := $(FLOOR_DIR)/release/parsefloor
parsefloor: release
	mkdir -p "$(FLOOR_DIR)"
	$(RELEASE_BIN) --experimental-dump-help > "$(FLOOR_DIR)/dump-help.json"
	python3 bench/parsefloor.py "$(FLOOR_DIR)/dump-help.json" "$$($(RELEASE_BIN) --version)" "$(FLOOR_DIR)/src"
	$(SWIFT) build $(RELEASE_FLAGS) --package-path "$(FLOOR_DIR)/src" --scratch-path "$(CURDIR)/$(FLOOR_DIR)"

# The man page (generate-manual, the command plugin of swift-argument-parser) and the
# bash, zsh and fish completions (written by the binary itself), staged in $(GEN_DIR).
# The plugin builds the package itself: in debug, so that it leaves the static release
# binary alone (a release build of its own would replace it with a dynamically linked one).
# clawflow.1 then gets the sections the plugin does not write (ENVIRONMENT, FILES, EXIT
# STATUS, SEE ALSO, from $(MAN_SECTIONS)) in place of its generic EXIT STATUS, before
# AUTHORS if there is one, else at the end.
MAN_SECTIONS := contrib/clawflow.1.sections
generated: release
	rm -rf "$(MANUAL_OUT)" "$(GEN_DIR)"
	$(SWIFT) package --scratch-path $(RELEASE_DIR) plugin generate-manual --configuration debug $(if $(MANUAL_DATE),--date $(MANUAL_DATE)) $(MANUAL_FLAGS)
	mkdir -p "$(GEN_DIR)/man1"
	cp "$(MANUAL_OUT)"/*.1 "$(GEN_DIR)/man1/"
	awk -v sections="$(MAN_SECTIONS)" ' \
		BEGIN { while ((getline line < sections) > 0) text = text line "\n"; if (text == "") exit 2 } \
		/^\.Sh/ { skip = ($$0 ~ /^\.Sh "?EXIT STATUS"?$$/) } \
		/^\.Sh "?AUTHORS"?$$/ && !done { printf "%s", text; done = 1 } \
		!skip { print } \
		END { if (!done) printf "%s", text }' "$(MANUAL_OUT)/clawflow.1" > "$(GEN_DIR)/man1/clawflow.1"
	$(RELEASE_BIN) --generate-completion-script bash > "$(GEN_DIR)/clawflow.bash"
	$(RELEASE_BIN) --generate-completion-script zsh > "$(GEN_DIR)/_clawflow"
	$(RELEASE_BIN) --generate-completion-script fish > "$(GEN_DIR)/clawflow.fish"
	@for f in "$(GEN_DIR)/man1/clawflow.1" "$(GEN_DIR)/clawflow.bash" "$(GEN_DIR)/_clawflow" "$(GEN_DIR)/clawflow.fish"; do \
		[ -s "$$f" ] || { echo "error: $$f was not generated" >&2; exit 1; }; \
	done

# The binary is installed stripped (install -s strips the installed copy, about half the
# size; the one in $(RELEASE_DIR) keeps its symbols for debugging).
install: generated
	$(INSTALL) -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(BASHCOMPDIR)" "$(DESTDIR)$(ZSHCOMPDIR)" "$(DESTDIR)$(FISHCOMPDIR)"
	$(INSTALL) -m 0755 -s $(RELEASE_BIN) "$(DESTDIR)$(BINDIR)/clawflow"
	$(INSTALL) -m 0644 "$(GEN_DIR)"/man1/*.1 "$(DESTDIR)$(MANDIR)/man1/"
	$(INSTALL) -m 0644 "$(GEN_DIR)/clawflow.bash" "$(DESTDIR)$(BASHCOMPDIR)/clawflow"
	$(INSTALL) -m 0644 "$(GEN_DIR)/_clawflow" "$(DESTDIR)$(ZSHCOMPDIR)/_clawflow"
	$(INSTALL) -m 0644 "$(GEN_DIR)/clawflow.fish" "$(DESTDIR)$(FISHCOMPDIR)/clawflow.fish"

# Removes what install put there (with the same PREFIX and DESTDIR); leaves the directories.
uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/clawflow" \
		"$(DESTDIR)$(MANDIR)/man1/clawflow.1" "$(DESTDIR)$(MANDIR)/man1/"clawflow.*.1 \
		"$(DESTDIR)$(BASHCOMPDIR)/clawflow" "$(DESTDIR)$(ZSHCOMPDIR)/_clawflow" \
		"$(DESTDIR)$(FISHCOMPDIR)/clawflow.fish"

# Runs a short job on a new temporary spool (SPOOL=dir for another) and says where it is;
# every task it starts has ended when it finishes. Your own ledger is never touched.
SPOOL ?=
demo: build
	@bash scripts/demo.sh "$$($(SWIFT) build --show-bin-path)/clawflow" $(SPOOL)

# The whole test suite: a short fuzzing run (FUZZ_SECONDS per target, fuzz/run.sh), the
# start-up instruction counts of the release binary against bench/startup-counts.txt (fails
# on a rise of more than 10 %; bench/README.md, "Start-up"), then swift test, whose summary
# line closes the output.
FUZZ_SECONDS ?= 15
test: deps
	bash fuzz/run.sh $(FUZZ_SECONDS)
	bash bench/startup.sh --check
	$(SWIFT) build --build-tests
	$(SWIFT) test 2>&1 | tee .build/test-output.txt; exit $${PIPESTATUS[0]}

# The long fuzzing run: each libFuzzer target for 10 minutes (fuzz/run.sh).
fuzz:
	bash fuzz/run.sh 600

bench: deps
	@bash bench/run.sh

# Power cuts on loop-mounted ext4 images, with and without a journal (needs root): CUTS per
# kind; make test runs 3 of each (bench/README.md, "Power cuts").
CUTS ?= 30
powercut: build
	python3 bench/powercut/powercut.py --cuts $(CUTS)

# The code's layout: swift-format (in the toolchain) with .swift-format (4 spaces, lines up to 160).
format:
	$(SWIFT) format --in-place --recursive --parallel Sources Tests fuzz

clean:
	rm -rf .build .build-release .build-bench .build-fuzz .build-floor
