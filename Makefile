# mptcpd-go build, test and lint entry points. `make test` is what CI runs.
GO       ?= go
BIN      ?= bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# Integration tests build namespaces and talk to the real kernel; bound them.
TEST_TIMEOUT ?= 20m
FUZZTIME ?= 10s
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

CMDS := $(notdir $(wildcard cmd/*))

.PHONY: all build test unit integration lint fuzz bench demo demo-ctl install clean man completion

all: build

# Static binaries: no libc to match on the target, and ~0.8 ms less
# start-up per mptcpctl call than a dynamically linked build.
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

# Unit tests run anywhere; integration tests need root and skip otherwise.
test: lint unit integration

unit:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v /integration)

integration:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./integration/...

lint:
	@fmt=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$fmt" ]; then echo "gofmt needed:"; echo "$$fmt"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Each fuzz target runs for FUZZTIME (go test allows one -fuzz per package).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# The roaming walk (needs root, about 75 s): a virtual laptop in network
# namespaces walks between access points, through a black zone and a 30 s
# outage, under our mptcpd, with a bulk upload and an interactive stream.
# It prints what each step cost them and leaves a trace and its plot in
# DEMO_OUT. DEMO_FLAGS: e.g. -baseline (the kernel alone), -outage 10s.
DEMO_OUT ?= demo-out
demo: build
	$(GO) build -o $(BIN)/mptcpd-demo ./internal/walk/demo
	$(BIN)/mptcpd-demo -mptcpd $(BIN)/mptcpd -o $(DEMO_OUT) $(DEMO_FLAGS)

# mptcpctl beside iproute2 on a two-link namespace pair (needs root).
demo-ctl: build
	$(GO) build -o $(BIN)/mptcpecho ./internal/mptcpecho
	BIN=$(BIN) ./scripts/demo.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

# Man pages (doc/man and mptcpctl's command tree) and mptcpctl's shell
# completion, made by a program run on the build host, so that a
# cross-compiled build gets them too. SOURCE_DATE_EPOCH dates the pages.
man:
	rm -rf $(BIN)/man
	$(GO) run ./doc/docgen -version '$(VERSION)' -man $(BIN)/man

completion:
	rm -rf $(BIN)/completion
	$(GO) run ./doc/docgen -completion $(BIN)/completion

# Installs the binaries, the systemd units, the example configuration
# (never over an existing /etc file), the man pages and mptcpctl's shell
# completion. The ssh.socket drop-in goes to the documentation, not to
# /etc: it works only with systemd 257 or later. DESTDIR for packaging.
PREFIX  ?= /usr
install: build man completion
	install -D -m 0755 $(BIN)/mptcpd $(DESTDIR)$(PREFIX)/sbin/mptcpd
	install -D -m 0755 $(BIN)/mptcpd-ssh $(DESTDIR)$(PREFIX)/sbin/mptcpd-ssh
	install -D -m 0755 $(BIN)/mptcpd-relay $(DESTDIR)$(PREFIX)/sbin/mptcpd-relay
	install -D -m 0755 $(BIN)/mptcpctl $(DESTDIR)$(PREFIX)/bin/mptcpctl
	install -D -m 0644 dist/mptcpd.service $(DESTDIR)/etc/systemd/system/mptcpd.service
	install -D -m 0644 dist/mptcpd-ssh.service $(DESTDIR)/etc/systemd/system/mptcpd-ssh.service
	install -D -m 0644 dist/mptcpd-relay.service $(DESTDIR)/etc/systemd/system/mptcpd-relay.service
	install -D -m 0644 dist/rt_protos.conf $(DESTDIR)/etc/iproute2/rt_protos.d/mptcpd.conf
	install -d $(DESTDIR)/etc/mptcpd
	[ -e $(DESTDIR)/etc/mptcpd/mptcpd.conf ] || install -m 0644 mptcpd.conf.example $(DESTDIR)/etc/mptcpd/mptcpd.conf
	install -D -m 0644 policy.example $(DESTDIR)$(PREFIX)/share/doc/mptcpd-go/policy.example
	install -D -m 0644 dist/ssh.socket-mptcp.conf $(DESTDIR)$(PREFIX)/share/doc/mptcpd-go/ssh.socket-mptcp.conf
	install -d $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0644 $(BIN)/man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 0644 $(BIN)/man/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -D -m 0644 $(BIN)/completion/mptcpctl.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/mptcpctl
	install -D -m 0644 $(BIN)/completion/_mptcpctl $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_mptcpctl
	install -D -m 0644 $(BIN)/completion/mptcpctl.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/mptcpctl.fish

clean:
	rm -rf $(BIN)
