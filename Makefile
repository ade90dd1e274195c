# speckle hub: `make hub` sets up and starts the product, `make test` sets up and runs every test.
SHELL := /bin/bash
# A python every spawned user can execute (not one under /root): see FIELD-NOTES.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# The proxy: npm's configurable-http-proxy (never the PyPI package of that name), inside the project.
PROXY_DIR := hub_config/proxy
PROXY_BIN := $(PROXY_DIR)/node_modules/.bin/configurable-http-proxy
CHROMIUM := /usr/bin/chromium
ROOT := $(shell test "$$(id -u)" = 0 && echo yes)

.PHONY: hub hub-check test setup setup-hub setup-test bench gpu-wheels proxy chromium slurm ldap kernels clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	touch $@

$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(PIP) install -e .
	touch $@

# The compiled XPCS kernels, once per install, into a cache every user reads (speckle/xpcs/kernel_cache.py).
$(VENV)/.kernels: $(VENV)/.installed $(wildcard speckle/xpcs/*kernel*.py)
	$(PY) -m speckle.xpcs.engine
	$(PY) -m compileall -q speckle  # bytecode for users who cannot write the install (30-40 ms a start)
	touch $@

kernels: $(VENV)/.kernels

$(VENV)/.installed-hub: $(VENV)/.installed pyproject.toml
	$(PIP) install -e '.[hub]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-hub pyproject.toml
	$(PIP) install -e '.[test]'
	touch $@

# node and npm come from Debian when missing (root only); the proxy installs from the lock file.
$(PROXY_BIN): $(PROXY_DIR)/package.json $(PROXY_DIR)/package-lock.json
	@command -v npm >/dev/null || { if [ -n "$(ROOT)" ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm || \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; }; \
	  else echo "npm is missing: as root, apt-get install -y nodejs npm" >&2; exit 1; fi; }
	cd $(PROXY_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

proxy: $(PROXY_BIN)

# Debian's chromium for the browser tests (never `playwright install`: it downloads).
chromium:
	@test -x $(CHROMIUM) || { if [ -n "$(ROOT)" ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; \
	  else echo "chromium is missing: as root, apt-get install -y chromium" >&2; exit 1; fi; }

# Slurm and munge from Debian for tests/hub/test_scale_out_slurm.py (a real single-node cluster;
# root only: the test is skipped for other users, so this is too).
SLURM_PROGRAMS := /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged /usr/bin/sbatch /usr/bin/srun
slurm:
	@for p in $(SLURM_PROGRAMS); do test -x $$p || missing=1; done; \
	if [ -n "$$missing" ]; then if [ -n "$(ROOT)" ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge || \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge; }; \
	  else echo "Slurm is missing (its test is skipped when not root): as root, apt-get install slurmctld slurmd slurm-client munge" >&2; fi; fi

# OpenLDAP from Debian for tests/hub/test_auth_ldap.py (a real directory: the test runs slapd as
# the current user on a free port with its own config and database). Preseeded so that the package
# sets up and starts no system-wide directory of its own. Root installs it; others are told how.
LDAP_PROGRAMS := /usr/sbin/slapd /usr/sbin/slapadd /usr/bin/ldapsearch
ldap:
	@for p in $(LDAP_PROGRAMS); do test -x $$p || missing=1; done; \
	if [ -n "$$missing" ]; then if [ -n "$(ROOT)" ]; then \
	    echo "slapd slapd/no_configuration boolean true" | debconf-set-selections; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slapd ldap-utils || \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slapd ldap-utils; }; \
	  else echo "slapd is missing: as root, apt-get install slapd ldap-utils" >&2; exit 1; fi; fi

setup: $(VENV)/.installed $(VENV)/.kernels
setup-hub: $(VENV)/.installed-hub $(VENV)/.kernels proxy
setup-test: $(VENV)/.installed-test $(VENV)/.kernels proxy chromium slurm ldap

# Set up and start the hub in the foreground (Ctrl-C stops it, its proxy and the user servers).
# Settings: hub_config/settings.yaml (or SPECKLE_HUB_SETTINGS=...), state: hub_config/state
# (or SPECKLE_HUB_STATE=...). Run as root for a beamline (one unix account per user).
hub: setup-hub
	$(PY) hub_config/launch.py

# Check the settings and the setup, print where to log in, do not start.
hub-check: setup-hub
	$(PY) hub_config/launch.py --check

test: setup-test
	$(PY) -m pytest

bench: setup-test
	$(PY) benchmarks/bench_xpcs.py

# Wheels the lent GPU machine lacks (it reaches no registry): carried by benchmarks/gpu_check.sh.
gpu-wheels: $(VENV)/.created
	$(PIP) download --no-deps --only-binary=:all: --python-version 3.12 \
	    --platform manylinux_2_28_x86_64 -d benchmarks/.wheels hdf5plugin boost_corr==0.1.7

clean:
	rm -rf $(VENV) .pytest_cache $(PROXY_DIR)/node_modules
