# mitogen-go. `make demo` and `make test` do all set-up on a fresh Debian machine.
GO      ?= go
BIN     := bin
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all gen check-gen build test vet fmt-check demo bench deps clean fuzz stress

all: build

# Debian packages the tests and the demo use (needs root; skipped when present).
deps:
	@bash .ci/deps

# Every generated tree, as IDL:output-directory (mitogen-gen derives each
# output's import path from go.mod).
GEN_TREES := idl/mitogen.thrift:gen examples/userservice/idl/userservice.thrift:examples/userservice/gen

gen:
	@set -e; for t in $(GEN_TREES); do \
		echo "mitogen-gen -idl $${t%%:*} -out $${t#*:}"; \
		rm -rf "$${t#*:}.new" && mkdir -p "$${t#*:}.new" && \
		$(GO) run ./cmd/mitogen-gen -idl "$${t%%:*}" -out "$${t#*:}.new" -import "$$($(GO) list -m)/$${t#*:}" && \
		rm -rf "$${t#*:}" && mv "$${t#*:}.new" "$${t#*:}"; \
	done

# Fails when a fresh generation would add, remove or change any file under
# any generated tree.
check-gen:
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && mod=$$($(GO) list -m) && stale=0 && \
	for t in $(GEN_TREES); do \
		idl=$${t%%:*} out=$${t#*:} && mkdir -p $$tmp/$$out && \
		$(GO) run ./cmd/mitogen-gen -idl $$idl -out $$tmp/$$out -import $$mod/$$out || exit 1; \
		if ! diff -r $$out $$tmp/$$out >/dev/null; then \
			echo "check-gen: $$out/ differs from a fresh generation of $$idl (run 'make gen'):"; \
			diff -r $$out $$tmp/$$out | head -40; stale=1; \
		else echo "check-gen: $$out/ is up to date"; fi; \
	done; exit $$stale

# Static (no cgo): the binary is also the fake ssh, started once per ssh
# invocation, and a dynamically linked one spends ~1 ms more in ld.so and
# thread start-up before main (and it is the agent copied to hosts).
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/mitogen ./cmd/mitogen

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: deps check-gen fmt-check vet
	$(GO) test -race -count=1 -timeout 30m ./...

# Runs every fuzz target for FUZZTIME each (go test fuzzes one target per run).
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz: $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME); \
		done; \
	done

# The suite 20 times in a row with two busy loops beside it (stops at the first failure).
stress: deps
	@bash scripts/stress.sh 20

demo: deps build
	@bash scripts/demo.sh

bench: deps build
	@bash scripts/bench.sh

clean:
	rm -rf $(BIN)
