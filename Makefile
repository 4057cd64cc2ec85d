# redis-sentinel-operator: HA Redis with Sentinel on Incus, driven from Kubernetes.
#   make lab    sets up and runs everything on this machine (Debian bookworm)
#   make test   runs every test on the real stack (what .ci/run calls)

SHELL := /usr/bin/env bash
.SHELLFLAGS := -o pipefail -ec
.DEFAULT_GOAL := help

BIN                      := $(CURDIR)/bin
CONTROLLER_GEN           := $(BIN)/controller-gen
CONTROLLER_TOOLS_VERSION := v0.22.0
# -parallel 4: the e2e tests that run in parallel mostly wait on containers
# and Sentinel, not the CPU (the default is one per core).
GO_TEST_FLAGS            ?= -count=1 -parallel 4
# kube-apiserver + etcd for envtest and the lab control plane (built once, cached in bin/).
ENVTEST_ASSETS            = $(shell hack/envtest-bins.sh)
# The same folder with kubelet, kube-scheduler and kube-controller-manager
# built into it too: the image tests' Kubernetes nodes (test/image).
KUBE_NODE_ASSETS          = $(shell hack/envtest-bins.sh kubelet kube-scheduler kube-controller-manager)

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

$(CONTROLLER_GEN):
	GOBIN=$(BIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC from the kubebuilder markers.
	$(CONTROLLER_GEN) rbac:roleName=rsf-manager-role crd paths=./... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate the deepcopy functions.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./...

.PHONY: verify-generated
verify-generated: $(CONTROLLER_GEN) ## Fail when generated files differ from what is committed.
	@# One after the other: each generator reads the package the other writes.
	+@$(call in-order,generate manifests)
	@git diff --exit-code -- api config || { echo "generated files are stale: run 'make manifests generate' and commit"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- api config); \
		[ -z "$$untracked" ] || { echo "generated files not committed: $$untracked"; exit 1; }

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet, and fail on unformatted files.
	go vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$unformatted" ] || { echo "gofmt needed: $$unformatted"; exit 1; }

.PHONY: build
build: ## Build the operator binary into bin/manager.
	go build -o $(BIN)/manager .

# The operator's OCI image: a static binary on no base image, reproducible
# (file and creation times are the commit's), built without a registry or a
# container engine (hack/image). VERSION tags it; bin/image/digest pins it.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE    ?= localhost/redis-sentinel-operator

.PHONY: image
image: ## Build the operator's OCI image into bin/image/ (OCI layout oci/, a docker-archive, the digest); prints its size.
	mkdir -p $(BIN)/image
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -buildid= -X main.version=$(VERSION)" -o $(BIN)/image/manager .
	go run ./hack/image -binary $(BIN)/image/manager -layout $(BIN)/image/oci -archive $(BIN)/image/redis-sentinel-operator.tar \
		-digest-file $(BIN)/image/digest -repo $(IMAGE) -version $(VERSION) \
		-revision "$$(git rev-parse HEAD 2>/dev/null)" -created "$$(git log -1 --format=%ct 2>/dev/null || echo 0)"

# The overlay `make deploy` applies: config/default with the image pinned to
# the digest `make image` built.
$(BIN)/deploy/kustomization.yaml: $(BIN)/image/digest
	mkdir -p $(BIN)/deploy
	printf '%s\n' "# Written by make deploy: config/default, the image pinned by digest." "resources:" "- ../../config/default" "images:" \
		"- name: redis-sentinel-operator" "  newName: $(IMAGE)" "  digest: $$(sed 's/.*@//' $<)" > $@

.PHONY: deploy
deploy: image $(BIN)/deploy/kustomization.yaml ## Apply CRDs, RBAC and the Deployment to the cluster of $$KUBECONFIG, the image pinned to what make image built.
	kubectl apply --server-side -k $(BIN)/deploy

.PHONY: undeploy
undeploy: ## Delete what make deploy applied (formations first: their finalizers need the operator).
	-kubectl delete redissentinelformations --all --all-namespaces --wait=true --timeout=5m
	kubectl delete -k $(BIN)/deploy --ignore-not-found

##@ Test

# in-order runs the targets one after the other, each in a make of its own:
# under make -j, targets named on one line run at once. The + marks the line
# as running make, which passes it the jobserver.
in-order = for step in $(1); do $(MAKE) --no-print-directory $$step; done

.PHONY: test
test: ## Everything, on the real stack (what .ci/run calls).
	@# The Kubernetes binaries build from the first second, at the lowest
	@# CPU priority, beside the checks and the suites: they take the CPU
	@# the suites leave idle (ansible, Incus and Sentinel waits). A suite
	@# that needs one before it is built waits for it
	@# (hack/envtest-bins.sh).
	$(MAKE) --no-print-directory -j2 test-kube-bins test-suites

.PHONY: test-suites
test-suites: ## The checks beside the lab host tests, then chaos, then the Go suites (unit, envtest, e2e, the image on Kubernetes).
	@# Chaos before the Go suites: its drills mostly wait on Sentinel and
	@# Incus, so on a fresh machine the Kubernetes node binaries build in
	@# the CPU it leaves idle, and are ready when test/image needs them.
	+$(call in-order,test-checks-and-lab test-deps-backports test-chaos test-go)

.PHONY: test-checks-and-lab
test-checks-and-lab: ## The checks (generated files, vet) beside the lab host tests: those mostly wait on apt, debootstrap and Incus, the checks compile.
	$(MAKE) --no-print-directory -j2 test-checks test-lab-host

.PHONY: test-checks
test-checks: ## Generated files up to date, go vet, gofmt.
	+$(call in-order,verify-generated vet)

.PHONY: test-lab-host
test-lab-host: ## The test packages, then the lab host tests.
	+$(call in-order,test-packages test-lab)

.PHONY: test-deps
test-deps: test-packages test-kube-bins ## Install and build what the tests run against.

.PHONY: test-packages
test-packages: ## The Debian packages the tests run against (etcd; containerd, runc and the CNI plugins for the image tests' nodes).
	hack/apt-install.sh redis-server redis-sentinel redis-tools bc python3-redis prometheus gnuplot-nox etcd-server containerd runc containernetworking-plugins

.PHONY: test-kube-bins
test-kube-bins: ## kube-apiserver, then kubelet, kube-scheduler and kube-controller-manager for the image tests' nodes, built from source at the lowest CPU priority (kube-apiserver alone about 22 CPU-minutes, user + system, with an empty Go build cache; less what the project's own build compiled first) and cached in bin/ and ~/.cache/rsf-operator.
	nice -n 19 hack/envtest-bins.sh >/dev/null
	nice -n 19 hack/envtest-bins.sh kubelet kube-scheduler kube-controller-manager >/dev/null

.PHONY: test-deps-backports
test-deps-backports: ## Install Valkey 8 (server, sentinel, tools) from bookworm-backports for the Go tests; its apt source comes with `make lab-host` (in `make test`, test-lab runs it first).
	hack/apt-install.sh --from bookworm-backports valkey-server valkey-sentinel valkey-tools

.PHONY: test-lab
test-lab: ## Lab host: playbook syntax, idempotence (runs it twice), container smoke test, bad input; the lab's Prometheus (a second lab).
	test/lab/run.sh

.PHONY: test-go
test-go: ## Go tests: unit, envtest on a real kube-apiserver + etcd, e2e on the real incusd.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) go test $(GO_TEST_FLAGS) -timeout 60m $$(go list ./... | grep -v /test/chaos)

.PHONY: test-chaos
test-chaos: ## Chaos drills on real containers (test/chaos, ~5-10 min); result table in bin/chaos-report.md (see docs/reliability.md).
	RSF_CHAOS_REPORT=$(BIN)/chaos-report.md KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) \
		go test $(GO_TEST_FLAGS) -v -timeout 40m ./test/chaos/

.PHONY: test-valkey
test-valkey: ## The e2e and chaos suites with every formation on Valkey 8 (RSF_ENGINE=valkey; make test runs the Valkey bring-up, drill and migration).
	RSF_ENGINE=valkey KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) go test $(GO_TEST_FLAGS) -timeout 60m ./test/e2e/
	RSF_ENGINE=valkey RSF_CHAOS_REPORT=$(BIN)/chaos-report-valkey.md KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) \
		go test $(GO_TEST_FLAGS) -v -timeout 40m ./test/chaos/

##@ Lab

.PHONY: lab-host
lab-host: ## Bootstrap this machine as the Incus lab host (idempotent; see docs/lab-host.md).
	ansible/bootstrap.sh
	ansible-playbook -i ansible/inventory/lab.yml ansible/playbooks/lab_host.yml

.PHONY: lab-cluster
lab-cluster: ## Lab only: a three-member Incus cluster of nested Incus hosts beside the lab host (needs make lab-host; idempotent; see docs/lab-host.md, Cluster lab).
	ansible/bootstrap.sh
	ansible-playbook -i ansible/inventory/lab.yml ansible/playbooks/lab_cluster.yml

.PHONY: lab-cluster-down
lab-cluster-down: ## Remove the cluster lab: its nodes (and the cluster in them), node profile, bridge rsfclbr0 and remote rsfcl; keeps the node image.
	ansible-playbook -i ansible/inventory/lab.yml ansible/playbooks/lab_cluster_down.yml

.PHONY: lab
lab: lab-host ## Lab host, local control plane, operator, Prometheus (127.0.0.1:9090) and the sample formation; waits until it is Ready (idempotent).
	RSF_ENVTEST_ASSETS="$(ENVTEST_ASSETS)" hack/lab.sh up

.PHONY: lab-down
lab-down: ## Delete the sample formation and its containers, stop the operator, Prometheus and control plane, remove .lab/.
	hack/lab.sh down

.PHONY: lab-status
lab-status: ## Show what of the lab runs (processes, readiness, Prometheus's target, formations, containers).
	hack/lab.sh status

# The picture of docs/monitoring.md: the health dashboard's key panels for
# the lab's formation over the last LAB_PNG_SPAN, from the lab's Prometheus.
LAB_PNG_SPAN ?= 10m

.PHONY: lab-dashboard-png
lab-dashboard-png: ## Draw the health dashboard's key panels from the lab's Prometheus into docs/img/formation-health.png (gnuplot; LAB_PNG_SPAN=10m).
	@mkdir -p docs/img
	go run ./hack/dashboard-png -prometheus "http://$${RSF_LAB_PROMETHEUS_ADDR:-127.0.0.1:9090}" \
		-namespace "$$(cat "$${RSF_LAB_DIR:-.lab}/namespace" 2>/dev/null || echo default)" -formation cache \
		-span $(LAB_PNG_SPAN) -out docs/img/formation-health.png

##@ Benchmarks

# Load conditions recorded in docs/benchmarks.md, e.g. BENCH_NOTE="idle machine".
BENCH_NOTE ?=
# The real-stack benchmarks (test/bench): apply -> Ready next to the raw
# Incus floor on the lab's pool and a dir pool, with its phases and member
# rebuild -> full redundancy; failover drills, write gap during an image roll,
# steady state, the operator process's CPU and memory, TLS next to plaintext,
# Valkey next to Redis and the live Redis -> Valkey migration.
# RSF_BENCH_OPERATOR_LOG=<file> keeps the benchmarked operator's log there.
BENCH_REAL ?= ApplyToReady|Failover|ImageRoll|SteadyState|OperatorProcess|PasswordRotation|TLS|Engines|Cluster
# make bench-compare: the git revision to compare the working tree with, and
# the test/bench benchmarks to run for both (names without "Benchmark",
# separated by |, no regexps).
BASE          ?=
BENCH_COMPARE ?= ApplyToReady|Failover|SteadyState
# The scale benchmark on the fake backends runs in a network namespace with
# only loopback: the fake's instance addresses exist nowhere, and although
# the benchmark stubs everything that would dial them (Sentinel watcher,
# canary), nothing can leave such a namespace even if one were missed.
# kube-apiserver needs a default route to pick its advertise address (here
# via lo); 10.0.0.0/8 unreachable makes any stray dial fail at once.
BENCH_NETNS = unshare --net sh -ec 'ip link set lo up; ip addr add 10.255.255.1/32 dev lo; \
	ip route add default dev lo; ip route add unreachable 10.0.0.0/8; exec "$$0" "$$@"'

.PHONY: bench
bench: ## Measure the operator against its targets on the real stack (as root, ~30-60 min; the leader handover runs the image, make image): prints one table, writes docs/benchmarks.md (keeps its "Before and after" section).
	go build -o $(BIN)/bench-manager .
	go test -c -o $(BIN)/bench.test ./test/bench/
	@export KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" RSF_BENCH_MANAGER="$(BIN)/bench-manager"; { \
		$(BIN)/bench.test -test.v -test.run '^$$' -test.bench '$(BENCH_REAL)' -test.benchtime 1x -test.timeout 90m \
			|| echo "BENCH-FAILED: test/bench (real stack)"; \
		$(BENCH_NETNS) $(BIN)/bench.test -test.v -test.run '^$$' -test.bench 'ScaleFake' -test.benchtime 1x -test.timeout 60m \
			|| echo "BENCH-FAILED: test/bench ScaleFake"; \
		go test -run '^$$' -bench 'GetSetPaired$$' -benchtime 20000x -count 1 ./internal/redisclient/ \
			|| echo "BENCH-FAILED: internal/redisclient"; \
		$(MAKE) --no-print-directory image >/dev/null && KUBEBUILDER_ASSETS="$(KUBE_NODE_ASSETS)" go test -v -run '^$$' -bench 'LeaderHandover' -benchtime 1x -timeout 20m ./test/image/ \
			|| echo "BENCH-FAILED: test/image"; \
	} 2>&1 | tee $(BIN)/bench.out | go run ./hack/benchtable -o docs/benchmarks.md -note "$(BENCH_NOTE)"

.PHONY: bench-compare
bench-compare: ## BASE=<git rev>: run BENCH_COMPARE for BASE and the working tree, alternating per benchmark (as root, ~15 min for the default three); writes the "Before and after" section of docs/benchmarks.md.
	BASE="$(BASE)" BENCH_COMPARE="$(BENCH_COMPARE)" BENCH_NOTE="$(BENCH_NOTE)" hack/bench-compare.sh
