# The README's two commands live here. Both install what they need first.
GO ?= go
TESTFLAGS ?=

.PHONY: deps test vet build dev

deps:
	./scripts/deps.sh

vet:
	$(GO) vet ./...

# Every package runs under the race detector: almost all of hangar is
# concurrent, and the few packages that are not cost little extra. The
# end-to-end suite runs as its own step with -v, so that its per-test
# durations and the numbers it measures (dedup, downloads) are printed.
test: deps vet
	$(GO) test -race -count=1 -timeout 60m $(TESTFLAGS) $$($(GO) list ./... | grep -v '/e2e$$')
	$(GO) test -race -count=1 -v -timeout 40m $(TESTFLAGS) ./e2e/

build:
	$(GO) build -o bin/hangar ./cmd/hangar

# hangar dev under software emulation (works everywhere; drop --accel tcg
# where KVM works).
dev: deps
	$(GO) run ./cmd/hangar dev --accel tcg
