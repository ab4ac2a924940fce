# The README's two commands live here. Both install what they need first.
GO ?= go
TESTFLAGS ?=

.PHONY: deps test vet build

deps:
	./scripts/deps.sh

vet:
	$(GO) vet ./...

# Every package runs under the race detector: almost all of hangar is
# concurrent, and the few packages that are not cost little extra.
test: deps vet
	$(GO) test -race -count=1 -timeout 80m $(TESTFLAGS) ./...

build:
	$(GO) build -o bin/hangar ./cmd/hangar
