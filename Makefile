# Building, testing and packaging Picket. `make help` lists the targets.
#
# The tools are pinned (shared/DESIGN.md) and run with `go run module@version`, so the only
# prerequisite is Go; the first run compiles them, later runs come from Go's build cache.

GO         ?= go
GORELEASER ?= $(GO) run github.com/goreleaser/goreleaser/v2@v2.16.0
NFPM       ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

# Version stamped into `make build` and `make deb`/`make rpm`: the latest v* tag's
# `git describe`, else 0.0.0-dev.<commit>. Releases get theirs from goreleaser.
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
VERSION ?= $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//' | grep . || echo 0.0.0-dev.$$(git rev-parse --short HEAD 2>/dev/null || echo unknown))
ARCH    ?= $(shell $(GO) env GOARCH)

PKG     := github.com/picketmon/picket/app
LDFLAGS := -s -w -X $(PKG).version=$(VERSION) -X $(PKG).commit=$(COMMIT) -X $(PKG).date=$(DATE)

# goreleaser reads the commit only if it can also read the repository's remote URL; give a
# clone without a remote the project's URL for that. Nothing is fetched from it.
ifeq ($(shell git remote 2>/dev/null),)
GORELEASER_ENV := GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=remote.origin.url GIT_CONFIG_VALUE_0=https://github.com/picketmon/picket
endif

.PHONY: help build test packages check deb rpm test-install test-systemd clean

help:
	@echo 'make build         static ./picket for this machine (CGO_ENABLED=0, version stamped)'
	@echo 'make test          go vet and the race-enabled test suite, as .ci/run runs it'
	@echo 'make packages      goreleaser snapshot: binaries, tar.gz, checksums, deb and rpm'
	@echo '                   for linux/amd64 and linux/arm64 in dist/ (offline)'
	@echo 'make check         goreleaser check'
	@echo 'make deb, make rpm one package for this machine in dist/nfpm/ (faster than packages)'
	@echo 'make test-install  install, upgrade, remove and purge the deb here (root, Debian)'
	@echo 'make test-systemd  run the deb'"'"'s units under a real systemd in systemd-nspawn (root)'
	@echo 'make clean         remove ./picket and dist/'

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o picket .

test:
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 25m ./...

packages:
	$(GORELEASER_ENV) $(GORELEASER) release --snapshot --clean

check:
	$(GORELEASER_ENV) $(GORELEASER) check

deb rpm: build
	mkdir -p dist/nfpm
	VERSION=$(VERSION) ARCH=$(ARCH) PICKET_BINARY=./picket $(NFPM) pkg -f packaging/nfpm.yaml -p $@ -t dist/nfpm/

test-install:
	packaging/test-install.sh

test-systemd:
	packaging/test-systemd.sh

clean:
	rm -rf picket dist
