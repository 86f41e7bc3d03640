# kvstack — the targets are the interface: `make help` lists them.
# A target shows up in help when its rule line ends with `## description`.

#: the go command
GO          ?= go
#: where the binaries are built
BIN         ?= bin
#: the root module's packages that test, vet and lint act on
PKGS        ?= ./...
#: go test's flags in make test
TEST_FLAGS  ?= -race -count=1 -timeout 20m
#: how long make fuzz runs each fuzz target
FUZZTIME    ?= 10s
#: the gofmt of fmt-check
GOFMT       ?= $(shell $(GO) env GOROOT)/bin/gofmt
#: the staticcheck of lint, pinned
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
#: run-api's and run-consumer's arguments (-env lists the variables)
ARGS        ?=
#: the native stack's command (lab/cmd/stack, lab/native); built by stack-bin
STACK       ?= $(BIN)/stack

.DEFAULT_GOAL := help
.PHONY: mod-check help setup setup-all packages build migrate test test-unit vet fmt-check fuzz \
	lint fmt run-api run-consumer clean run up up-ha down status logs env token tls compose-secrets jaeger e2e test-go test-e2e test-checks test-lab \
	test-compose test-k8s k8s image sbom check-observability bench bench-smoke bench-ha bench-plan chaos chaos-short chaos-ha dr-drill dr-drill-ha backup restore stack-bin \
	slo check-slo check-dashboards config-doc

##@ General

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } \
		/^##@ / { printf "\n%s\n", substr($$0, 5); next } \
		/^[a-zA-Z0-9_.-]+:.*## / { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Services (lab/scripts/services.sh, with the ports of stack.env)

setup: stack-bin ## Install (when missing) and start PostgreSQL, Redis, RabbitMQ; create the kvstack database
	$(STACK) services ensure deps

setup-all: stack-bin ## setup, plus install nginx, Prometheus, Alertmanager, supervisor, wrk, mtail, the nginx, PostgreSQL and Redis exporters, pgbackrest, and Patroni, etcd (the HA topology's)
	$(STACK) services ensure all

packages: stack-bin ## Install every Debian package the project uses (when missing); start nothing
	$(STACK) services install all

##@ Build and run

build: ## Build the service's binaries (cmd/) into bin/
	$(GO) build -o $(BIN)/ ./cmd/...

migrate: setup ## Apply the database migrations, then make the queues RABBITMQ_QUEUE_TYPE (quorum), converting them with their messages
	$(GO) run ./cmd/migrate

run-api: migrate ## Run the API alone in the foreground, configured by environment variables (ARGS=-env lists them)
	$(GO) run ./cmd/api $(ARGS)

run-consumer: migrate ## Run the consumer alone in the foreground, configured by environment variables (ARGS=-env lists them)
	$(GO) run ./cmd/consumer $(ARGS)

##@ Native stack (bin/stack under a private supervisord; ports: stack.env, settings: make env)

stack-bin: ## Build bin/stack, the native stack's command (lab/cmd/stack)
	@$(GO) -C lab build -o $(CURDIR)/$(STACK) ./cmd/stack

run: stack-bin ## up, then follow the logs; Ctrl-C stops the stack (left up if it ran before)
	$(STACK) run

up: stack-bin ## Start what is down, in the background (idempotent); restarts changed or rebuilt processes one at a time
	$(STACK) up

up-ha: stack-bin ## up, of the HA topology: 3 RabbitMQ nodes, 6 Redis Cluster nodes, PostgreSQL primary + sync standby run by Patroni on an etcd, 2 consumers; same edge ports, so one topology at a time (docs/HA.md)
	$(STACK) up-ha

down: stack-bin ## Stop every process and the stack's supervisord, whichever topology runs (the shared PostgreSQL, Redis and RabbitMQ keep running)
	$(STACK) down

status: stack-bin ## Each process (supervisord's state, health, pid, address, log), then the shared services, or the HA topology's clusters (PostgreSQL members as Patroni lists them, Redis roles, RabbitMQ members)
	$(STACK) status

logs: stack-bin ## Follow the logs of every process of the stack
	$(STACK) logs

token: stack-bin ## Print a token for the local stack's API, signed by its key (made on first start): ROLE=admin (comma-separated roles of deploy/auth/policy.yaml), SUB=local-admin, TTL=24h
	@$(STACK) token $(if $(ROLE),-role '$(ROLE)') $(if $(SUB),-sub '$(SUB)') $(if $(TTL),-ttl '$(TTL)')

tls: stack-bin ## Make the stack's local CA and the edge's certificate (KV_STACK_DIR/tls; make up does too) and print where they are: docker compose mounts them, clients trust the CA (curl --cacert)
	@$(STACK) tls

compose-secrets: stack-bin ## For docker compose: make tls, the token key's JWKS, every empty secret of .env (made from .env.example; random values, the others kept) and the engines' certificates and user lists in KV_STACK_DIR/compose (lab/compose)
	@$(STACK) compose-secrets

env: stack-bin ## stack.env and the stack's other settings, with their defaults and current values
	$(STACK) env

jaeger: stack-bin ## Link bin/jaeger to the machine's shared Jaeger build, building it from the Go module proxy when missing (skipped when up to date)
	$(STACK) jaeger

jaeger-up: stack-bin ## jaeger, then start the stack's Jaeger and wait until it answers (a first `make up` builds Jaeger in the background and serves meanwhile)
	$(STACK) jaeger-up

##@ Backups (a stack with engines of its own, KV_ENGINES=private: pgBackRest; docs/OPERATIONS.md)

#: make restore's point in time: RFC 3339 (2026-12-06T14:30:00Z) or "2026-12-06 14:30:00" (UTC)
TO ?=
#: 1: make restore does not ask for a confirmation
YES ?=
#: how long make backup waits for a backup in progress (the scheduler's) to end before taking its own; 0: fail at once
BACKUP_WAIT ?= 30m

backup: stack-bin ## A full pgBackRest backup of the running stack's own PostgreSQL now, once a backup in progress has ended (the backups process also takes them on a schedule)
	$(STACK) backup -wait $(BACKUP_WAIT)

restore: stack-bin ## Restore the running stack to TO="<timestamp>": PostgreSQL to that point, queues and cache purged, processes restarted; asks first unless YES=1
	@test -n '$(TO)' || { echo 'make restore TO="2026-12-06 14:30:00" (UTC, or RFC 3339) [YES=1]'; exit 2; }
	$(STACK) restore -to '$(TO)' $(if $(YES),-yes)

##@ Benchmark (lab/bench/REPORT.md; BENCH_ARGS: kvbench's flags, KV_BENCH_PORT: its own ports)

#: kvbench's flags (bench, bench-smoke, bench-ha, bench-plan)
BENCH_ARGS ?=

# The bench runs kvstack as shipped (issue 22), on either topology: the
# production sampler (lab/native.ProductionSampler; `make up` and `make
# up-ha` restart what it changes), the queue type's and auth's defaults,
# TLS at the edge. kvbench checks the running processes; lab/bench's
# TestMakeBenchRunsTheShippedDefaults these lines.
bench bench-smoke bench-ha: export OTEL_TRACES_SAMPLER = parentbased_traceidratio
bench bench-smoke bench-ha: export OTEL_TRACES_SAMPLER_ARG = 0.1

bench: up ## Every scenario on the native stack, CPU per operation of every process beside the variants and references (~10–25 min); writes lab/bench/REPORT.md
	$(STACK) jaeger-up
	$(GO) -C lab build -o $(CURDIR)/$(BIN)/kvbench ./cmd/kvbench
	$(BIN)/kvbench $(BENCH_ARGS)

bench-smoke: up ## A second or two of every bench scenario, proving the harness works
	$(STACK) jaeger-up
	$(GO) -C lab build -o $(CURDIR)/$(BIN)/kvbench ./cmd/kvbench
	$(BIN)/kvbench -smoke $(BENCH_ARGS)

# The HA topology's scale-out figures (issue 12): the same harness, its
# CPU per operation, on make up-ha's clusters, kvstack as shipped.
# kvbench reads the stack's settings as the HA topology's only when told.
bench-ha: export KV_TOPOLOGY = ha
bench-ha: up-ha ## Scale-out on the HA topology: apply with 1, 2, 4 consumers, GET hit with 2, 4 replicas, each checked (nothing lost, DLQ empty), CPU per operation (~3–6 min); writes lab/bench/SCALEOUT.md
	$(STACK) jaeger-up
	$(GO) -C lab build -o $(CURDIR)/$(BIN)/kvbench ./cmd/kvbench
	$(BIN)/kvbench -scaleout $(BENCH_ARGS)

# The capacity plan (issue 22, docs/PERFORMANCE.md): nodes per tier for a
# load, from the last report's CPU per operation; runs nothing.
bench-plan: ## The capacity plan from the last report's figures (lab/bench/REPORT.json, else REPORT.md), checked against SCALEOUT's: nodes per tier for 1 M requests/s, 95 % reads, 99 % hits (BENCH_ARGS='-rps N -reads S -hits S -cores N …')
	$(GO) -C lab build -o $(CURDIR)/$(BIN)/kvbench ./cmd/kvbench
	$(BIN)/kvbench -plan $(BENCH_ARGS)

##@ Reliability (docs/RELIABILITY.md, lab/chaos)

# The campaign (lab/chaos) starts PRIVATE PostgreSQL, Redis, RabbitMQ
# and kvstack processes on the chaos ports under a supervisord of its own
# (state in tmp/chaos), injects its faults through that supervisor, and
# tears it all down: the shared services and `make up`'s stack are never
# touched. It waits while a benchmark (kvbench) or another campaign runs.
#: the fault campaign's flags (go -C lab run ./chaos -h lists them)
CHAOS_ARGS ?=

chaos: packages ## Fuzzing, then every fault under load, the checks; writes docs/RELIABILITY.md (~5 min)
	$(GO) -C lab run ./chaos -mode full -out docs/RELIABILITY.md $(CHAOS_ARGS)

chaos-short: packages ## Five faults under a small load (a rolling restart among them), the same checks (~2.5 min)
	$(GO) -C lab run ./chaos -mode short $(CHAOS_ARGS)

# The HA campaign: make up-ha's topology (3 RabbitMQ nodes, 6 Redis Cluster
# nodes, two PostgreSQL nodes run by Patroni on an etcd, 2 replicas, 2
# consumers) on private ports of its own (state in tmp/chaos-ha), a kill -9
# per fault (the PostgreSQL primary's postgres, then its whole node).
chaos-ha: packages ## Kill -9 each kind of node of the HA topology under load, the same checks; writes its section of docs/RELIABILITY.md (~10 min)
	$(GO) -C lab run ./chaos -mode ha -out docs/RELIABILITY.md $(CHAOS_ARGS)

# The disaster-recovery drill: a private single-node stack whose PostgreSQL
# archives with pgBackRest, on ports of its own (state in tmp/dr-drill);
# writes under load, a backup, a point T, the accident, a restore to T.
dr-drill: packages ## Backup, accident (data directory removed, kv_store truncated) and restore to a point T under load; checks every write, writes its section of docs/RELIABILITY.md (~3 min)
	$(GO) -C lab run ./chaos -mode dr -out docs/RELIABILITY.md $(CHAOS_ARGS)

# The same drill on the HA topology: make chaos-ha's private stack (Patroni
# cluster archiving into one stanza, Redis Cluster, RabbitMQ cluster) on
# ports of its own (state in tmp/dr-drill-ha); the restore is make restore's
# on HA (Patroni's cluster bootstrapped again from the backup).
dr-drill-ha: packages ## The DR drill on the HA topology (the primary's data directory lost, kv_store truncated; restore to T; the cluster whole again); writes its section of docs/RELIABILITY.md (~6 min)
	$(GO) -C lab run ./chaos -mode dr-ha -out docs/RELIABILITY.md $(CHAOS_ARGS)

##@ Quality

# Tests that break a dependency (named *Disruptive*) do it to private
# PostgreSQL, Redis and RabbitMQ instances they start themselves
# (internal/engine/enginetest), never to the shared services: they
# run with the rest, in one pass. go test's own vet pass is off (-vet=off)
# wherever go vet has just run on the same packages (lint's vet, and the
# vet before each module's test): the same analyses, and more, are made
# once instead of twice.
test: setup lint fmt-check check-observability check-slo check-dashboards ## lint, every Go test on real services, test-compose, test-k8s, e2e (stack stopped after only if it was down), chaos-short
	@# Two steps at a time: the service's tests beside the checks
	@# (deploy/composetest mostly waits on the engines it boots: 0.6-0.8
	@# of a core busy, measured alone), then e2e beside chaos-short, each
	@# on engines and a stack of its own. Each step's output is printed
	@# whole when it ends (--output-sync).
	@$(MAKE) --no-print-directory -j2 --output-sync=recurse test-go test-checks
	@$(MAKE) --no-print-directory -j2 --output-sync=recurse test-e2e chaos-short

test-checks: ## test-compose, test-lab and test-k8s, one after the other (make test runs them beside test-go)
	$(MAKE) --no-print-directory test-compose
	$(MAKE) --no-print-directory test-lab
	$(MAKE) --no-print-directory test-k8s

test-lab: ## Every Go test of lab/, the native stack's module (the stack itself is not started)
	$(GO) -C lab test -vet=off $(TEST_FLAGS) ./...

test-go: ## Every Go test of the service's module, on real services (make test runs it beside test-checks)
	$(GO) test -vet=off $(TEST_FLAGS) $(PKGS)

test-e2e: stack-bin ## e2e, then stop the stack only if this run started its supervisord (make test runs it beside chaos-short)
	@# A developer's running stack stays up (a process of it that was
	@# down is started, and stays up).
	@if $(STACK) running; then \
		$(MAKE) --no-print-directory e2e; \
	else \
		rc=0; $(MAKE) --no-print-directory e2e || rc=$$?; \
		$(STACK) down; exit $$rc; \
	fi

# Rendered by bin/stack itself into a scratch state dir (no running process
# is touched), as the stack renders them, and with the test-only short
# durations (KV_ALERT_FOR) too.
#: where check-observability renders the configs it checks
OBS_CHECK ?= $(CURDIR)/tmp/check-observability
check-observability: setup-all ## promtool/amtool: Prometheus config, rules and their unit tests, Alertmanager config
	@for v in prod short ha; do \
		dir=$(OBS_CHECK)/$$v; rm -rf $$dir; \
		if [ $$v = short ]; then export KV_ALERT_FOR=5s; fi; \
		if [ $$v = ha ]; then export KV_TOPOLOGY=ha; fi; \
		KV_STACK_DIR=$$dir $(STACK) render || exit 1; \
		echo "promtool check config ($$v)"; promtool check config $$dir/config/prometheus.yml || exit 1; \
		echo "amtool check-config ($$v)"; amtool check-config $$dir/config/alertmanager.yml >/dev/null || exit 1; \
	done
	promtool check rules observability/rules/*.yml
	promtool test rules observability/tests/*.yml

# Sloth (tools/sloth, a module of its own) generates the SLOs' rules from
# observability/slo/; the test fails when the committed ones differ. Its
# build is the machine's, shared like Jaeger's (~/.cache/kvstack/sloth-KEY,
# KEY from tools/sloth's go.mod and go.sum): only the first run compiles
# Sloth, which took more than go test's default 10 minutes at load 25.
config-doc: ## Regenerate docs/CONFIGURATION.md from the code's own settings (a test fails when it differs)
	$(GO) -C lab test -count=1 ./configdoc -update

slo: ## Regenerate observability/rules/kvstack-slo.yml from observability/slo/ with Sloth
	cd tools/sloth && $(GO) test -count=1 -timeout 30m -run TestRulesAreGeneratedFromTheSpecs ./... -args -update

check-slo: ## The committed SLO rules are what Sloth generates from observability/slo/
	cd tools/sloth && $(GO) vet ./... && $(GO) test -vet=off -count=1 -timeout 30m ./...

check-dashboards: ## Decode grafana/dashboards strictly with the Grafana Foundation SDK; datasources provisioned
	cd grafana/dashboardtest && $(GO) vet ./... && $(GO) test -vet=off -count=1 ./...

test-compose: jaeger ## Check docker-compose.yml, docker-compose.ha.yml, the Dockerfile and the rendered configs (promtool, amtool, nginx -t, jaeger validate; no Docker needed)
	cd deploy/composetest && $(GO) vet ./... && $(GO) test -vet=off -count=1 -timeout 30m ./...

test-k8s: ## Render deploy/k8s/chart for each values file and check it against the real types, schemas and the repository (no cluster needed)
	cd deploy/k8s && $(GO) vet ./... && $(GO) test -vet=off -count=1 ./...

#: the values file make k8s renders: dev, prod or prod-external
OVERLAY ?= dev
k8s: ## Print the chart's manifests for values/OVERLAY.yaml (dev|prod|prod-external), as helm template does
	@cd deploy/k8s && $(GO) run ./cmd/render $(OVERLAY)

# The image: the chart's default (deploy/k8s/chart values image.registry/
# repository, tag its appVersion); the test in deploy/composetest keeps
# these equal. buildx builds each platform of PLATFORMS, cross-compiled
# (the Dockerfile's builder runs on the build host), attaches an SBOM
# (BuildKit's syft scanner) and a provenance attestation, and either
# pushes (PUSH=1) or writes an OCI archive: a multi-platform image cannot
# be loaded into the local image store.
#: the image make image builds, without its tag
IMAGE     ?= ghcr.io/kvstack/kvstack
#: the image's tag: the chart's appVersion
VERSION   ?= $(shell awk '/^appVersion:/ { gsub(/"/, "", $$2); print $$2 }' deploy/k8s/chart/Chart.yaml)
#: the image's revision label: the commit
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
#: the platforms make image builds
PLATFORMS ?= linux/amd64,linux/arm64
#: 1: make image pushes IMAGE:VERSION instead of writing an OCI archive
PUSH      ?=
image: ## Build the image for PLATFORMS with docker buildx, labelled (OCI source, revision, version), with SBOM and provenance; PUSH=1 pushes IMAGE:VERSION, else bin/kvstack-VERSION.oci.tar
	docker buildx build --platform $(PLATFORMS) \
		--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
		--sbom=true --provenance=mode=max \
		-t $(IMAGE):$(VERSION) \
		$(if $(PUSH),--push,--output type=oci$(comma)dest=$(BIN)/kvstack-$(VERSION).oci.tar) .

comma := ,

# The SBOM of what the image runs, without a container engine: the Go
# modules compiled into each binary (CycloneDX 1.6, from the Go module
# proxy; about 45 components for the API). It names the main module's
# version from git: run it in a clone (in a `git worktree` its git library
# finds no HEAD and stops).
#: the SBOM generator of make sbom, pinned
CYCLONEDX_GOMOD ?= $(GO) run github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0
sbom: ## CycloneDX SBOM of each binary the image holds (its Go modules, licences): bin/sbom/<binary>.cdx.json
	@mkdir -p $(BIN)/sbom
	@for b in api consumer migrate; do \
		$(CYCLONEDX_GOMOD) app -json -licenses -main cmd/$$b -output $(BIN)/sbom/$$b.cdx.json . || exit 1; \
		echo "$(BIN)/sbom/$$b.cdx.json"; \
	done

e2e: up ## End-to-end tests through nginx on the native stack (starts what is down)
	$(STACK) jaeger-up
	$(GO) -C lab vet -tags e2e ./e2e/...
	$(GO) -C lab test -vet=off -tags e2e -count=1 -timeout 10m ./e2e/...

test-unit: ## Unit tests only (-short), no services needed
	$(GO) test -race -short $(PKGS)
	$(GO) -C lab test -race -short ./...

fuzz: ## Run each Fuzz* target under ./internal for FUZZTIME (default 10s)
	GO="$(GO)" FUZZTIME="$(FUZZTIME)" lab/scripts/fuzz.sh ./internal/...

# Modules of their own (heavy tool dependencies): linted each in its dir.
#: the modules besides the root that lint runs staticcheck in
TOOL_MODULES ?= lab tools/sloth grafana/dashboardtest

lint: vet mod-check ## go vet, staticcheck (the service, the lab and the tool modules), go mod tidy
	$(STATICCHECK) $(PKGS)
	@for m in $(TOOL_MODULES); do echo "staticcheck $$m"; (cd $$m && $(STATICCHECK) ./...) || exit 1; done

# The modules whose go.mod we write by hand. tools/jaeger only names the
# Jaeger release to build; tidying it would pull every test dependency of
# Jaeger's tree for nothing.
#: the modules whose go.mod mod-check holds to go mod tidy
TIDY_MODULES ?= . lab deploy/composetest deploy/k8s tools/sloth grafana/dashboardtest

mod-check: ## Fail when go mod tidy would change a go.mod or go.sum (direct imports marked indirect, say)
	@for m in $(TIDY_MODULES); do 		(cd $$m && $(GO) mod tidy -diff) || { echo "go mod tidy would change $$m/go.mod or go.sum (run it there)"; exit 1; }; 	done

vet: ## go vet, the service and the lab
	$(GO) vet $(PKGS)
	$(GO) -C lab vet ./...

fmt-check: ## Fail when a Go file is not gofmt-formatted (testdata excepted)
	@files=$$($(GOFMT) -l . | grep -Ev '(^|/)testdata/' || true); \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi

fmt: ## gofmt every Go file
	$(GOFMT) -w $$($(GOFMT) -l . | grep -Ev '(^|/)testdata/')

clean: ## Remove build output and coverage files
	rm -rf $(BIN) tmp coverage.out coverage.html
